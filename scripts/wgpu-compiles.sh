#!/usr/bin/env bash
# Counts the GPU kernels cubecl compiles for a wgpu decode of the seed-toy model, with attention
# keys bucketed (key_bucket = 64) and not (0), for a short and a long decode: if kernels were
# compiled per shape, the count would grow with the decode's length. cubecl logs each
# compilation when CUBECL_DEBUG_LOG names a file ("[START_KERNEL_COMPILATION]" per kernel).
#
#   scripts/wgpu-compiles.sh [--runner target/debug/runner] [--out results/wgpu/kernel-compiles.csv]
#
# The runner must be built with --features wgpu; on a machine without a GPU, Mesa's lavapipe
# (mesa-vulkan-drivers) provides the Vulkan device. Each count is one fresh process.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runner="$root/target/debug/runner" out="$root/results/wgpu/kernel-compiles.csv"
while [ $# -gt 0 ]; do
    case "$1" in
        --runner) runner="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "wgpu-compiles: unknown option $1" >&2; exit 2 ;;
    esac
done
"$runner" list | grep -Eq '^[[:space:]]*wgpu[[:space:]]+compiled in' ||
    { echo "wgpu-compiles: $runner was built without wgpu (cargo build -p runner --features wgpu)" >&2; exit 2; }
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"   # wgpu's Wayland probe asks for it
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$(dirname "$out")"
echo "model,strategy,batch,context,decode_tokens,key_bucket,kernels_compiled" > "$scratch/out.csv"
for bucket in 0 64; do
    for decode in 64 512; do
        cat > "$scratch/exp.toml" <<TOML
[experiment]
name = "compiles"
question = "How many kernels does this decode compile?"
model = "seed-toy"
weights = "random"
seed = 0
[sweep]
strategy = ["static"]
batch = [1]
key_bucket = [$bucket]
context = [16]
[workload.throughput]
decode_tokens = $decode
repeats = 1
warmup = 0
TOML
        log="$scratch/cubecl-$bucket-$decode.log"
        CUBECL_DEBUG_LOG="$log" "$runner" "$scratch/exp.toml" --backend wgpu --out "$scratch/res" --quiet
        n=$(grep -c 'START_KERNEL_COMPILATION' "$log" || true)
        echo "seed-toy,static,1,16,$decode,$bucket,$n" >> "$scratch/out.csv"
        echo "wgpu-compiles: key_bucket $bucket, $decode decode steps: $n kernels compiled" >&2
    done
done
mv "$scratch/out.csv" "$out"
echo "wgpu-compiles: wrote $out" >&2
