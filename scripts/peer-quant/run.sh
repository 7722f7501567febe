#!/usr/bin/env bash
# llama.cpp as the quant report's peer: its perplexity on the very tokens a kvlab quant
# experiment scores, per KV type, written into that experiment's results directory as
# peer-llama-cpp.csv; then the report is redrawn with the side-by-side section.
#
#   scripts/peer-quant/run.sh                       # throwaway venv, experiments/quant.toml
#   scripts/peer-quant/run.sh --venv /tmp/llamavenv # reuse (or create) a venv
#   options: --experiment FILE  --results DIR  --runner PATH  --threads N
#            --kv-types LIST   (comma-separated; K/V for keys and values apart, e.g. q8_0/q4_0)
#            --draws N         (each type also under N perturbation draws, as the experiment's)
#
# Run it after `runner experiments/quant.toml`: a re-run of the experiment replaces
# results/quant and so drops the peer file (no stale peer row beside new tokens).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="" experiment="$root/experiments/quant.toml" results="" runner="" threads="$(nproc)" kv_types=""
draws=""
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --experiment) experiment="$2"; shift 2 ;;
        --results) results="$2"; shift 2 ;;
        --runner) runner="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --kv-types) kv_types="$2"; shift 2 ;;
        --draws) draws="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "peer-quant: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$experiment" ] || { echo "peer-quant: $experiment: no such experiment file" >&2; exit 2; }
name="$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$experiment" | head -1)"
results="${results:-$root/results/$name}"
[ -f "$results/perplexity.csv" ] || {
    echo "peer-quant: $results/perplexity.csv not found: run \`runner $experiment\` first" >&2; exit 2; }

cache="${KVLAB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kvlab}"
gguf="$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
f32="$cache/models/SmolLM2-135M-Instruct.F32.gguf"

scratch="$(mktemp -d)"
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
if [ -z "$venv" ]; then
    venv="$scratch/venv"
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
    echo "peer-quant: building llama-cpp-python from its source package into $venv (minutes)" >&2
    python3 -m venv "$venv"
    CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
        "$venv/bin/pip" install --quiet --no-binary llama-cpp-python -r "$here/requirements.txt"
fi

if [ -z "$runner" ]; then
    (cd "$root" && cargo build --quiet -p runner)
    runner="$root/target/debug/runner"
fi
"$runner" tokens "$experiment" > "$scratch/ids.txt"   # also fetches the GGUF if missing
"$venv/bin/python" "$here/llama_cpp_ppl.py" --gguf "$gguf" --f32 "$f32" --ids "$scratch/ids.txt" \
    --threads "$threads" --out "$results/peer-llama-cpp.csv" ${kv_types:+--kv-types "$kv_types"} \
    ${draws:+--draws "$draws"}
"$runner" report "$results" >/dev/null
echo "peer-quant: wrote $results/peer-llama-cpp.csv and redrew $results/report.md" >&2
