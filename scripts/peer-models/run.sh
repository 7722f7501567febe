#!/usr/bin/env bash
# Each model's full-cache perplexity and greedy top-1 in kvlab beside llama.cpp, on the same
# token ids (kvlab's tokenization of Hamlet, which equals llama.cpp's: crates/model/tests/
# gguf_models.rs), at 1,024 and 2,048 tokens. llama.cpp runs an F32 copy of the very GGUF kvlab
# dequantizes (its quantize API, LLAMA_FTYPE_ALL_F32), so both multiply the same weights.
#
#   scripts/peer-models/run.sh --venv /tmp/llamavenv
#   options: --models "smollm2-135m gemma3-270m qwen2.5-coder-1.5b"  --tokens "1024 2048"
#            --out DIR (default results/models)  --runner PATH  --threads N
#
# Writes DIR/llama-cpp-agreement.csv and .md. Qwen2.5-Coder-1.5B needs ~17 GB of memory in
# kvlab (f32 weights) and ~7 GB of disk for its F32 copy.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/lib.sh"
venv="" models="smollm2-135m gemma3-270m qwen2.5-coder-1.5b" tokens="1024 2048"
out="$root/results/models" runner="" threads="$(nproc)"
while [ $# -gt 0 ]; do
    case "$1" in
        --venv) venv="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --tokens) tokens="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --runner) runner="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "peer-models: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
venv="${venv:-$scratch/venv}"
ensure_llama_venv "$venv"
runner="$(runner_path "$runner")"
max=0
for n in $tokens; do [ "$n" -gt "$max" ] && max=$n; done
mkdir -p "$out"
for model in $models; do
    cat > "$scratch/$model.toml" <<TOML
[experiment]
name = "peer-models"
question = "Which ids does kvlab score for $model?"
model = "$model"
weights = "pretrained"
seed = 0

[workload.perplexity]
corpus = "shakespeare:hamlet"
tokens = $max
mode = "streaming"
TOML
    "$runner" tokens "$scratch/$model.toml" > "$scratch/$model.ids"   # also fetches the GGUF
    gguf="$("$runner" model-path "$model")"
    for n in $tokens; do
        echo "peer-models: $model, $n tokens" >&2
        "$venv/bin/python" "$here/llama_logits.py" --gguf "$gguf" --f32 "${gguf%.gguf}.F32.gguf" \
            --ids "$scratch/$model.ids" --n "$n" --threads "$threads" \
            > "$scratch/$model.$n.llama.json" 2>"$scratch/$model.$n.llama.log"
        ids="$(tr ',' '\n' < "$scratch/$model.ids" | head -n "$n" | paste -sd, -)"
        "$runner" --model "$gguf" logits --ids "$ids" --top-k 1 > "$scratch/$model.$n.kvlab.json"
    done
done
"$venv/bin/python" "$here/compare.py" --scratch "$scratch" --models $models --tokens $tokens \
    --out "$out/llama-cpp-agreement"
