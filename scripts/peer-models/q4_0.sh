#!/usr/bin/env bash
# Does the Hadamard rotation help llama.cpp's q4_0 cache on each model, as it helps kvlab's?
# llama.cpp scores the ids experiments/models.toml scores (512 tokens of Hamlet, kvlab's
# tokenization, equal to llama.cpp's) with f32 and q4_0 K/V caches, rotation off and on (its
# default), on an F32 copy of the same GGUF; the join puts kvlab's q4_0 rows of
# results/models/perplexity.csv beside them, each change against its own engine's full cache.
#
#   scripts/peer-models/q4_0.sh --venv /tmp/llamavenv
#   options: --models "smollm2-135m gemma3-270m qwen2.5-coder-1.5b"  --results DIR
#            (default results/models)  --runner PATH  --threads N
#            --keep DIR (llama.cpp's rows per model are kept there, and a model whose rows
#            are there is not scored again: rerun the join after a kvlab re-run in seconds)
#
# Run it after `runner experiments/models.toml` (which replaces results/models): writes
# DIR/llama-cpp-q4_0.csv and .md.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"
venv="" models="smollm2-135m gemma3-270m qwen2.5-coder-1.5b"
results="$root/results/models" runner="" threads="$(nproc)" keep=""
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --results) results="$2"; shift 2 ;;
        --runner) runner="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "peer-models/q4_0: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -f "$results/perplexity.csv" ] || {
    echo "peer-models/q4_0: $results/perplexity.csv not found: run \`runner experiments/models.toml\` first" >&2
    exit 2
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
scratch="${keep:-$tmp}"
mkdir -p "$scratch"
venv="${venv:-$tmp/venv}"
ensure_llama_venv "$venv"
runner="$(runner_path "$runner")"
for model in $models; do
    if [ -n "$keep" ] && [ -s "$scratch/$model.csv" ]; then
        echo "peer-models/q4_0: $model: llama.cpp's rows kept in $scratch/$model.csv" >&2
        continue
    fi
    # The experiment's own perplexity workload, for this model alone: the same ids.
    sed "s/^model = \[.*\]/model = [\"$model\"]/" "$root/experiments/models.toml" > "$scratch/$model.toml"
    "$runner" tokens "$scratch/$model.toml" > "$scratch/$model.ids"   # also fetches the GGUF
    gguf="$("$runner" model-path "$model")"
    # Layers and KV width (n_kv_heads · head_dim) for the peer's bytes-per-token column.
    shape="$("$runner" list | sed -n "s/^  $model  *\([0-9]*\) layers.* \([0-9]*\) kv heads × \([0-9]*\) dims.*/\1 \2 \3/p")"
    read -r layers kv_heads head_dim <<< "$shape"
    echo "peer-models/q4_0: $model ($layers layers, $kv_heads × $head_dim KV)" >&2
    "$venv/bin/python" "$root/scripts/peer-quant/llama_cpp_ppl.py" --gguf "$gguf" \
        --f32 "${gguf%.gguf}.F32.gguf" --ids "$scratch/$model.ids" --out "$scratch/$model.csv" \
        --kv-types f32,q4_0 --layers "$layers" --kv-width "$((kv_heads * head_dim))" \
        --threads "$threads"
done
"$venv/bin/python" "$here/q4_0.py" --scratch "$scratch" --models $models \
    --kvlab "$results/perplexity.csv" --out "$results/llama-cpp-q4_0"
