#!/usr/bin/env python3
"""llama.cpp as the quant report's peer: perplexity of the same token ids under each KV type.

For every KV-cache type (f32, f16, q8_0, q4_0, q4_1 by default; `type_k = type_v`, or keys
and values apart as `K/V`, e.g. `q8_0/q4_0` for `-ctk q8_0 -ctv q4_0`), with llama.cpp's
Hadamard rotation of quantized K/V on (its default, `attn_rot_k = attn_rot_v = 1`) and off
(`LLAMA_ATTN_ROT_DISABLE=1`), this scores the ids `runner tokens EXPERIMENT.toml` prints:
one forward over all of them with flash attention (which llama.cpp needs for a quantized V
cache), logits at every position. Every position's attention reads K/V back from the cache
after they were written in the cache's type, as kvlab's streaming evaluation does, so each
prediction sees quantized keys and values of every earlier token and of itself.

The weights are an F32 copy of the same GGUF kvlab reads (written with llama.cpp's own
quantize API, `LLAMA_FTYPE_ALL_F32`: every tensor dequantized once), so both engines run the
same float weights.

Writes one CSV row per (kv type, rotation) to --out: mean_nll over the tokens but the first,
ppl, and ppl_delta_pct against llama.cpp's own f32 cache on the same tokens.

With --draws N, each row also scores the ids under N perturbations of the model: control
vectors (llama.cpp's `llama_set_adapter_cvec`, added to the residual stream after layers 1..)
of Gaussian noise with standard deviation --draw-scale, seeds 1..N, generated exactly as
kvlab's `kvlab_model::control_vector` generates them (SplitMix64, Box-Muller), so that both
engines are perturbed by the very same vectors; the row gets their perplexities' mean and
sample standard deviation (percent of the mean).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np

KV_TYPES = ["f32", "f16", "q8_0", "q4_0", "q4_1"]
FIELDS = ["engine", "engine_version", "kv_type", "rotation", "tokens", "mean_nll", "ppl",
          "ppl_delta_pct", "kv_bytes_per_token", "seconds", "cpu", "draws", "draw_scale",
          "ppl_draw_mean", "ppl_draw_sd_pct"]
MASK64 = (1 << 64) - 1


def log(msg: str) -> None:
    print(f"llama_cpp_ppl: {msg}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def f32_copy(llama_cpp, src: str, dst: str) -> None:
    """Writes the F32 copy of `src` once (skipped when `dst` exists)."""
    if os.path.isfile(dst):
        return
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    tmp = dst + ".partial"
    if llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), params) != 0:
        sys.exit(f"llama_cpp_ppl: llama.cpp could not write an F32 copy of {src}")
    os.replace(tmp, dst)


def mean_nll(logits: np.ndarray, ids: list[int]) -> float:
    """Mean negative log-likelihood of ids[1:] under the logits of positions 0..n-2 (float64)."""
    x = logits[:-1].astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    logz = np.log(np.exp(x).sum(axis=1))
    target = x[np.arange(len(ids) - 1), ids[1:]]
    return float((logz - target).mean())


def normal_values(seed: int, n: int) -> list[float]:
    """`n` standard normal values from `seed`: SplitMix64 uniforms (top 53 bits, centred),
    Box-Muller over consecutive pairs (kvlab_model::control_vector::normal_values)."""
    state, out = seed & MASK64, []

    def uniform() -> float:
        nonlocal state
        state = (state + 0x9E3779B97F4A7C15) & MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        z ^= z >> 31
        return ((z >> 11) + 0.5) / float(1 << 53)

    while len(out) < n:
        u1, u2 = uniform(), uniform()
        r = math.sqrt(-2.0 * math.log(u1))
        out.extend([r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)])
    return out[:n]


def perturb(llama_cpp, llm, seed: int, scale: float) -> None:
    """Sets the control vectors of draw `seed` on layers 1.. (seed 0: clears them)."""
    import ctypes

    n_embd, n_layer = llm.n_embd(), llama_cpp.llama_model_n_layer(llm.model)
    if seed == 0:
        rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, None, 0, n_embd, 0, 0)
    else:
        v = np.array(normal_values(seed, n_embd * (n_layer - 1)), dtype=np.float64)
        v = (v * scale).astype(np.float32)
        ptr = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = llama_cpp.llama_set_adapter_cvec(llm.ctx, ptr, v.size, n_embd, 1, n_layer - 1)
    if rc != 0:
        sys.exit(f"llama_cpp_ppl: llama.cpp refused the control vector of draw {seed} ({rc})")


def split_type(kv_type: str) -> tuple[str, str]:
    """`q8_0/q4_0` -> (keys' type, values' type); `q4_0` -> both."""
    k, _, v = kv_type.partition("/")
    return k, v or k


def score(llama_cpp, model: str, ids: list[int], kv_type: str, rotate: bool, threads: int,
          draws: int = 0, scale: float = 0.0):
    """All positions' logits of one forward over `ids` with this KV type (`K/V` or one type),
    its seconds, and the mean NLL of each perturbed draw (seeds 1..draws)."""
    if rotate:
        os.environ.pop("LLAMA_ATTN_ROT_DISABLE", None)
    else:
        os.environ["LLAMA_ATTN_ROT_DISABLE"] = "1"
    type_k, type_v = (getattr(llama_cpp, f"GGML_TYPE_{t.upper()}") for t in split_type(kv_type))
    n = len(ids)
    llm = llama_cpp.Llama(
        model_path=model, n_ctx=n, n_batch=n, n_ubatch=n, logits_all=True, flash_attn=True,
        type_k=type_k, type_v=type_v, n_threads=threads, n_threads_batch=threads,
        verbose=False, seed=0,
    )
    start = time.perf_counter()
    llm.eval(ids)
    seconds = time.perf_counter() - start
    logits = np.array(llm.scores[:n], dtype=np.float32)
    drawn = []
    for seed in range(1, draws + 1):
        perturb(llama_cpp, llm, seed, scale)
        llm.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llm.ctx), True)
        llm.eval(ids)
        drawn.append(mean_nll(np.array(llm.scores[:n], dtype=np.float32), ids))
    del llm
    return logits, seconds, drawn


def block_bytes(kv_type: str) -> float:
    """Bytes per stored value of one llama.cpp type (ggml_row_size / values): blocks of 32 with
    an f16 scale (q4_1, q5_1: and an f16 minimum; q5_*: and 4 bytes of fifth bits)."""
    return {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
            "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}[kv_type]


def pair_bytes(kv_type: str) -> float:
    """Bytes per stored key value plus per value value of a `K/V` (or single) type."""
    k, v = split_type(kv_type)
    return block_bytes(k) + block_bytes(v)


def draw_fields(drawn: list[float], scale: float) -> dict[str, str]:
    """The draws' columns from their mean NLLs (empty without draws)."""
    if not drawn:
        return {"draws": "", "draw_scale": "", "ppl_draw_mean": "", "ppl_draw_sd_pct": ""}
    ppl = np.exp(np.array(drawn, dtype=np.float64))
    sd = float(np.std(ppl, ddof=1) / ppl.mean() * 100) if len(ppl) > 1 else 0.0
    log(f"    {len(ppl)} draws: ppl " + " ".join(f"{p:.4f}" for p in ppl)
        + f" (mean {ppl.mean():.4f}, sd {sd:.2f}%)")
    return {"draws": str(len(ppl)), "draw_scale": f"{scale:g}",
            "ppl_draw_mean": f"{ppl.mean():.6f}", "ppl_draw_sd_pct": f"{sd:.6f}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="the GGUF kvlab reads (SmolLM2-135M-Instruct.Q4_1.gguf)")
    ap.add_argument("--f32", required=True, help="where the F32 copy is (written if missing)")
    ap.add_argument("--ids", required=True, help="file of comma-separated ids (`runner tokens`)")
    ap.add_argument("--out", required=True, help="CSV to write")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--kv-types", default=",".join(KV_TYPES))
    ap.add_argument("--layers", type=int, default=30, help="layers (for bytes per token)")
    ap.add_argument("--kv-width", type=int, default=192, help="n_kv_heads · head_dim")
    ap.add_argument("--draws", type=int, default=0, help="perturbed draws per row (0: none)")
    ap.add_argument("--draw-scale", type=float, default=1e-3,
                    help="standard deviation of the control vectors' entries")
    args = ap.parse_args()

    import llama_cpp

    with open(args.ids, encoding="utf-8") as f:
        ids = [int(t) for t in f.read().replace(",", " ").split()]
    if len(ids) < 2:
        sys.exit(f"llama_cpp_ppl: {args.ids}: needs at least 2 ids")
    f32_copy(llama_cpp, args.gguf, args.f32)
    cpu = cpu_model()
    rows = []
    reference = None
    for kv_type in args.kv_types.split(","):
        quantized = kv_type not in ("f32", "f16")
        for rotate in ([False, True] if quantized else [False]):
            logits, seconds, drawn = score(llama_cpp, args.f32, ids, kv_type, rotate,
                                           args.threads, args.draws, args.draw_scale)
            nll = mean_nll(logits, ids)
            if kv_type == "f32":
                reference = nll
            ppl = math.exp(nll)
            delta = (ppl / math.exp(reference) - 1) * 100 if reference is not None else float("nan")
            rotation = "hadamard" if rotate else "none"
            log(f"{kv_type:5} rotation={rotation:8} mean_nll={nll:.6f} ppl={ppl:.6f} "
                f"delta={delta:+.4f}% ({seconds:.2f} s)")
            rows.append({
                "engine": "llama.cpp", "engine_version": f"llama-cpp-python {llama_cpp.__version__}",
                "kv_type": kv_type, "rotation": rotation, "tokens": len(ids) - 1,
                "mean_nll": f"{nll:.6f}", "ppl": f"{ppl:.6f}", "ppl_delta_pct": f"{delta:.6f}",
                "kv_bytes_per_token": f"{args.layers * args.kv_width * pair_bytes(kv_type):.0f}",
                "seconds": f"{seconds:.3f}", "cpu": cpu,
                **draw_fields(drawn, args.draw_scale),
            })
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
