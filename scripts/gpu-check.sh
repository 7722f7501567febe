#!/usr/bin/env bash
# scripts/gpu-check.sh — run kvlab on a CUDA GPU machine that has no Rust toolchain.
#
# Build here (no CUDA toolkit needed; cubecl loads libcuda.so and NVRTC at run time):
#   cargo build --release -p runner --features cuda && strip -o /tmp/runner target/release/runner
# then on the GPU machine, from a checkout (for experiments/smoke.toml):
#   scripts/gpu-check.sh --runner /tmp/runner [--out results/gpu] [--smoke experiments/smoke.toml]
#                        [--budget SECONDS] [--skip-smoke] [--skip-sweep]
#
# Runs, on --backend cuda, most wanted first: throughput sweeps (random weights, SmolLM2-135M
# shapes, static/paged/int8, batch 1/8/32, context 512-8,192, attention keys bucketed to 64),
# the keep-policies' decode (static vs window vs h2o vs tova at 1,024 slots: the observe path
# copies attention to the host per layer), keys not bucketed (what per-shape kernels cost),
# then the smoke experiment. With --budget, a step starts only while time is left and is
# stopped (its finished rows kept) when the budget runs out: lent GPU time is short.
# Every CSV row under OUT gets two more columns, gpu_name and gpu_driver (from nvidia-smi), and
# OUT/device.txt records nvidia-smi's view. Exits non-zero with one clear line when something is missing.
set -euo pipefail

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    echo
    echo "usage: $0 --runner PATH [--out DIR] [--smoke TOML] [--budget SECONDS] [--skip-smoke] [--skip-sweep]"
}
die() {
    echo "gpu-check: $1" >&2
    exit "${2:-1}"
}

RUNNER=""
OUT="results/gpu"
SMOKE="experiments/smoke.toml"
SWEEP=1
SMOKE_RUN=1
BUDGET=0
while [ $# -gt 0 ]; do
    case "$1" in
        --runner) [ $# -ge 2 ] || die "--runner needs a path" 2; RUNNER="$2"; shift 2 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory" 2; OUT="$2"; shift 2 ;;
        --smoke) [ $# -ge 2 ] || die "--smoke needs a TOML file" 2; SMOKE="$2"; shift 2 ;;
        --skip-sweep) SWEEP=0; shift ;;
        --skip-smoke) SMOKE_RUN=0; shift ;;
        --budget) [ $# -ge 2 ] || die "--budget needs seconds" 2; BUDGET="$2"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" 2 ;;
    esac
done

case "$BUDGET" in '' | *[!0-9]*) die "--budget takes whole seconds, got '$BUDGET'" 2 ;; esac
[ -n "$RUNNER" ] || { usage >&2; die "missing --runner PATH (a runner built with --features cuda)" 2; }
[ -f "$RUNNER" ] || die "runner binary '$RUNNER' does not exist"
[ -x "$RUNNER" ] || die "runner binary '$RUNNER' is not executable (chmod +x it)"
[ -f "$SMOKE" ] || die "smoke experiment '$SMOKE' does not exist (run from the repository root or pass --smoke)"
BACKENDS=$("$RUNNER" list 2>&1) ||
    die "'$RUNNER' does not run ('$RUNNER list' failed: $(echo "$BACKENDS" | tail -n 3)); a shared library missing there? ('ldd $RUNNER'; carry it and set LD_LIBRARY_PATH)"
echo "$BACKENDS" | grep -Eq '^[[:space:]]*cuda[[:space:]]+compiled in' ||
    die "'$RUNNER' was built without CUDA: rebuild with 'cargo build --release -p runner --features cuda'"
command -v nvidia-smi >/dev/null 2>&1 ||
    die "nvidia-smi not found: this is not a machine with the NVIDIA driver installed"
GPU_INFO=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -n1) ||
    die "nvidia-smi failed: $GPU_INFO"
[ -n "$GPU_INFO" ] || die "nvidia-smi lists no GPU"
GPU_NAME=$(echo "$GPU_INFO" | cut -d, -f1 | sed 's/^ *//; s/ *$//')
GPU_DRIVER=$(echo "$GPU_INFO" | cut -d, -f2 | sed 's/^ *//; s/ *$//')
echo "gpu-check: $GPU_NAME, driver $GPU_DRIVER"

mkdir -p "$OUT"
{
    echo "gpu_name: $GPU_NAME"
    echo "gpu_driver: $GPU_DRIVER"
    echo "runner: $RUNNER"
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
} >"$OUT/device.txt"

# Each step runs even when an earlier one failed (rows already written stay on disk: the
# runner flushes each run's row as it finishes); the script exits non-zero at the end if any
# step failed.
FAILED=""
START=$SECONDS
timed() {
    local label=$1
    shift
    local t0=$SECONDS limit=()
    if [ "$BUDGET" -gt 0 ]; then
        local left=$((BUDGET - (SECONDS - START)))
        if [ "$left" -lt 20 ]; then
            echo "gpu-check: $label skipped: ${left} s of the budget left" >&2
            FAILED="$FAILED $label(skipped)"
            return
        fi
        limit=(timeout --signal=INT --kill-after=10 "$left")
    fi
    if "${limit[@]}" "$@"; then
        echo "gpu-check: $label took $((SECONDS - t0)) s"
    else
        echo "gpu-check: $label FAILED (exit $?) after $((SECONDS - t0)) s" >&2
        FAILED="$FAILED $label"
    fi
}

if [ "$SWEEP" = 1 ]; then
    # Decode as a researcher would quote it: SmolLM2-135M's shapes with random weights (the
    # GGUF is not carried to the GPU machine; speed does not depend on the values), one
    # warm-up decode before the timed ones; device memory from cubecl's allocator beside the
    # accounted bytes (memory workload). Long contexts take batch 1 and 8 only: a dense
    # prefill of 32 x 8,192 tokens needs 77 GB of attention scores per layer.
    write_sweep() { # name, question, [sweep] lines
        cat >"$OUT/$1.toml" <<EOF
# Written by scripts/gpu-check.sh: decode throughput on CUDA, SmolLM2-135M shapes, random weights.
[experiment]
name = "$1"
question = "$2"
model = "smollm2-135m"
weights = "random"
seed = 0

[sweep]
$3

[workload.memory]

[workload.throughput]
decode_tokens = 64
repeats = 3
warmup = 1
EOF
    }
    write_sweep gpu-throughput \
        "How fast do static, paged and int8 caches decode SmolLM2-135M's shapes on a CUDA GPU?" \
        'strategy = ["static", "paged"]
block_size = [16]
bits = [32, 8]
batch = [1, 8, 32]
key_bucket = [64]
context = [512, 2048]'
    write_sweep gpu-throughput-long \
        "How fast do static and paged caches decode 8,192 tokens of context on a CUDA GPU?" \
        'strategy = ["static", "paged"]
block_size = [16]
batch = [1, 8]
key_bucket = [64]
context = [8192]'
    write_sweep gpu-eviction \
        "What does a keep-policy that watches attention (h2o, tova) cost per decode step on a CUDA GPU, against a window and a static cache?" \
        'strategy = ["static", "window", "h2o", "tova"]
cache_tokens = [1024]
batch = [1, 8]
key_bucket = [64]
context = [2048]'
    write_sweep gpu-unbucketed \
        "What do attention keys not bucketed (a new shape each step) cost on a CUDA GPU, against buckets of 64?" \
        'strategy = ["static"]
batch = [1, 8]
key_bucket = [0, 64]
context = [512]'
    for sweep in gpu-throughput gpu-throughput-long gpu-eviction gpu-unbucketed; do
        timed "$sweep" "$RUNNER" --backend cuda --quiet --out "$OUT" "$OUT/$sweep.toml"
    done
fi

[ "$SMOKE_RUN" = 0 ] || timed smoke "$RUNNER" --backend cuda --quiet --out "$OUT" "$SMOKE"

# gpu_name and gpu_driver on every row (quoted: names contain spaces, never commas or quotes).
find "$OUT" -name '*.csv' -print0 | while IFS= read -r -d '' csv; do
    head -n1 "$csv" | grep -q ',gpu_name,gpu_driver$' && continue
    awk -v n="$GPU_NAME" -v d="$GPU_DRIVER" 'NR == 1 { print $0 ",gpu_name,gpu_driver"; next }
        { print $0 ",\"" n "\",\"" d "\"" }' "$csv" >"$csv.tmp" && mv "$csv.tmp" "$csv"
done
echo "gpu-check: results under $OUT ($(find "$OUT" -name '*.csv' | wc -l) CSVs)"
[ -z "$FAILED" ] || die "failed:$FAILED"
