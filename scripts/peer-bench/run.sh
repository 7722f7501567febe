#!/usr/bin/env bash
# Peer benchmark: kvlab vs Hugging Face transformers (eager and sdpa attention) and llama.cpp,
# prefill and decode speed + memory-bandwidth roofline.
#
#   scripts/peer-bench/run.sh [--venv DIR] [--release] [run.py options...]
#
#   --venv DIR   python venv with scripts/peer-bench/requirements.txt installed (reused, kept);
#                without it a throwaway venv is created in a temp dir and deleted afterwards.
#   --release    build and benchmark `cargo build --release -p runner` instead of the dev profile.
#   everything else goes to run.py (see `python3 scripts/peer-bench/run.py --help`), e.g.
#   --runs 5 --batches 1,8 --new-tokens 128 --threads 2 --out results/perf
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
cd "$ROOT"

VENV=""
PROFILE="debug"
CARGO_PROFILE_ARGS=()
PASS=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --venv) VENV="$2"; shift 2 ;;
        --venv=*) VENV="${1#--venv=}"; shift ;;
        --release) PROFILE="release"; CARGO_PROFILE_ARGS=(--release); shift ;;
        *) PASS+=("$1"); shift ;;
    esac
done

PYTHON_BIN="${PYTHON:-python3}"
CLEANUP=""
if [[ -z "$VENV" ]]; then
    VENV="$(mktemp -d "${TMPDIR:-/tmp}/peer-bench-venv.XXXXXX")"
    CLEANUP="$VENV"
    trap '[[ -n "$CLEANUP" ]] && rm -rf "$CLEANUP"' EXIT
    echo "[peer-bench] creating a throwaway venv in $VENV" >&2
    "$PYTHON_BIN" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r "$HERE/requirements.txt"
    "$VENV/bin/pip" install --quiet -r "$HERE/requirements-llama.txt" \
        || echo "[peer-bench] llama-cpp-python did not build: running without the llama.cpp engine" >&2
fi
[[ -x "$VENV/bin/python" ]] || { echo "[peer-bench] $VENV/bin/python not found" >&2; exit 2; }

echo "[peer-bench] cargo build ${CARGO_PROFILE_ARGS[*]:+${CARGO_PROFILE_ARGS[*]} }-p runner" >&2
cargo build "${CARGO_PROFILE_ARGS[@]}" -p runner
RUNNER="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/runner"

RERUN="scripts/peer-bench/run.sh"
[[ "$PROFILE" == "release" ]] && RERUN+=" --release"
for a in "${PASS[@]}"; do RERUN+=" $(printf '%q' "$a")"; done

"$VENV/bin/python" "$HERE/run.py" --runner "$RUNNER" --rerun-command "$RERUN" "${PASS[@]}"
