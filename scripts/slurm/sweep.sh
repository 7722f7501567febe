#!/usr/bin/env bash
# Runs one kvlab experiment as a Slurm job array of N shards plus a merge job that starts when
# every shard has succeeded (afterok).
#
#   scripts/slurm/sweep.sh EXPERIMENT.toml --shards N [--out DIR] [--runner PATH]
#                          [--cache-dir DIR] [--backend B] [--only KEY=VALUE]... [--resume]
#                          [--wait] [SBATCH OPTIONS...]
#
# Every path must be on a filesystem all nodes share: the runner binary (build it once with
# `cargo build --release -p runner`, with `--features cuda` for GPU sweeps), the experiment
# file, the results directory and the asset cache (the model and corpus are fetched there on
# first use; fetch them once before submitting, as compute nodes often have no network:
# `runner EXPERIMENT.toml --dry-run` does not, a one-run `--only` run does).
#
# Layout under --out (default ./sweep-<experiment file name>):
#   shards/shard-I/<name>/   shard I's CSVs and shard.json (the plan it ran under)
#   logs/                    one log per array task and one for the merge
#   <name>/                  the merged CSVs, charts and report.md
#
# SBATCH OPTIONS (anything not listed above, e.g. --partition=gpu --time=2:00:00 --gres=gpu:1)
# go to the array job; the merge job gets them too, except --gres/--gpus* (it needs no GPU).
# --backend and --only are passed to the runner (the plan and every shard).
# --resume re-runs a sweep into the same --out, skipping every run a shard already wrote
# (after a node failure or a time limit). --wait blocks until the merge job has ended and exits
# with its status (what CI does).
set -euo pipefail

usage() {
  sed -n "2,25p" "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[ $# -ge 1 ] || usage
case $1 in -h|--help) usage ;; esac
experiment=$1
shift
shards=""
out=""
runner=""
cache_dir="${KVLAB_CACHE_DIR:-}"
resume=""
wait_flag=""
array_opts=()
merge_opts=()
runner_opts=()
while [ $# -gt 0 ]; do
  case $1 in
    --shards) shards=${2:?--shards needs a number}; shift 2 ;;
    --shards=*) shards=${1#*=}; shift ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    --runner) runner=${2:?--runner needs a path}; shift 2 ;;
    --runner=*) runner=${1#*=}; shift ;;
    --cache-dir) cache_dir=${2:?--cache-dir needs a directory}; shift 2 ;;
    --cache-dir=*) cache_dir=${1#*=}; shift ;;
    --backend|--only) runner_opts+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --backend=*|--only=*) runner_opts+=("$1"); shift ;;
    --resume) resume="--resume"; shift ;;
    --wait) wait_flag="--wait"; shift ;;
    -h|--help) usage ;;
    --gres|--gpus|--gpus-per-node|--gpus-per-task)
      array_opts+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
    --gres=*|--gpus=*|--gpus-per-node=*|--gpus-per-task=*) array_opts+=("$1"); shift ;;
    *) array_opts+=("$1"); merge_opts+=("$1"); shift ;;
  esac
done

die() { echo "sweep.sh: $*" >&2; exit 1; }
[ -f "$experiment" ] || die "experiment file '$experiment' not found"
[[ $shards =~ ^[1-9][0-9]*$ ]] || die "--shards N is required (N ≥ 1), got '${shards}'"
command -v sbatch >/dev/null || die "sbatch not found: run this on a Slurm login node"
repo=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "$runner" ]; then
  for candidate in "$repo/target/release/runner" "$repo/target/debug/runner"; do
    if [ -x "$candidate" ]; then runner=$candidate; break; fi
  done
fi
if [ -z "$runner" ] || [ ! -x "$runner" ]; then
  die "no runner binary: build one (cargo build --release -p runner) or pass --runner PATH"
fi
[ -n "$out" ] || out="sweep-$(basename "$experiment" .toml)"

# Absolute paths: the jobs may start in another directory on another node.
abs() { (cd "$(dirname "$1")" && printf '%s/%s\n' "$(pwd)" "$(basename "$1")"); }
runner=$(abs "$runner")
experiment=$(abs "$experiment")
mkdir -p "$out/shards" "$out/logs"
out=$(cd "$out" && pwd)
cache_args=()
if [ -n "$cache_dir" ]; then
  mkdir -p "$cache_dir"
  cache_args=(--cache-dir "$(cd "$cache_dir" && pwd)")
fi

# The plan is checked here, before anything is queued: a bad file fails now, not on a node.
"$runner" plan "$experiment" --shards "$shards" "${runner_opts[@]}" >"$out/plan.txt"
printf -v q_runner '%q' "$runner"
printf -v q_experiment '%q' "$experiment"
printf -v q_out '%q' "$out"
q_extra=""
extra=("${cache_args[@]}" "${runner_opts[@]}")
if [ ${#extra[@]} -gt 0 ]; then printf -v q_extra ' %q' "${extra[@]}"; fi

array_id=$(sbatch --parsable --job-name=kvlab-shard --array="0-$((shards - 1))" \
  --output="$out/logs/shard-%a.log" "${array_opts[@]}" \
  --wrap="exec $q_runner $q_experiment --shard \$SLURM_ARRAY_TASK_ID/$shards \
--out $q_out/shards/shard-\$SLURM_ARRAY_TASK_ID --quiet $resume$q_extra")
array_id=${array_id%%;*}
echo "submitted shards: job array $array_id (0-$((shards - 1))); plan in $out/plan.txt"

# --kill-on-invalid-dep: a failed shard cancels the merge instead of leaving it pending.
merge_cmd="exec $q_runner merge"
for ((i = 0; i < shards; i++)); do merge_cmd+=" $q_out/shards/shard-$i"; done
merge_cmd+=" --out $q_out --quiet"
set +e
merge_id=$(sbatch --parsable --job-name=kvlab-merge --dependency="afterok:$array_id" \
  --kill-on-invalid-dep=yes --output="$out/logs/merge.log" "${merge_opts[@]}" $wait_flag \
  --wrap="$merge_cmd")
status=$?
set -e
merge_id=${merge_id%%;*}
if [ -z "$wait_flag" ]; then
  [ $status -eq 0 ] || die "submitting the merge job failed"
  echo "submitted merge: job $merge_id (after $array_id succeeds); results in $out"
  exit 0
fi
# sbatch --wait exits 0 for a job cancelled because a shard failed (its exit code is 0:0):
# only the job's final state says whether the merge ran.
state=$(scontrol show job -o "$merge_id" 2>/dev/null | grep -o 'JobState=[A-Z_]*' || true)
if [ $status -ne 0 ] || [ "$state" != "JobState=COMPLETED" ]; then
  echo "sweep.sh: the merge job $merge_id did not complete (sbatch status $status, ${state:-state unknown})" >&2
  echo "shards (job array $array_id):" >&2
  scontrol show job -o "$array_id" 2>/dev/null | grep -o 'ArrayTaskId=[0-9]* .*JobState=[A-Z_]*' |
    sed -E 's/ArrayTaskId=([0-9]+) .*JobState=([A-Z_]+)/  shard \1: \2/' >&2 || true
  echo "logs:" >&2
  tail -n 20 "$out"/logs/*.log >&2 || true
  exit 1
fi
echo "merged: $out ($(sed -n 1p "$out/plan.txt"))"
