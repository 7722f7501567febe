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
          "ppl_delta_pct", "kv_bytes_per_token", "seconds", "cpu"]


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


def split_type(kv_type: str) -> tuple[str, str]:
    """`q8_0/q4_0` -> (keys' type, values' type); `q4_0` -> both."""
    k, _, v = kv_type.partition("/")
    return k, v or k


def score(llama_cpp, model: str, ids: list[int], kv_type: str, rotate: bool, threads: int):
    """All positions' logits of one forward over `ids` with this KV type (`K/V` or one type)."""
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
    del llm
    return logits, seconds


def block_bytes(kv_type: str) -> float:
    """Bytes per stored value of one llama.cpp type (ggml_row_size / values): blocks of 32 with
    an f16 scale (q4_1, q5_1: and an f16 minimum; q5_*: and 4 bytes of fifth bits)."""
    return {"f32": 4.0, "f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
            "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}[kv_type]


def pair_bytes(kv_type: str) -> float:
    """Bytes per stored key value plus per value value of a `K/V` (or single) type."""
    k, v = split_type(kv_type)
    return block_bytes(k) + block_bytes(v)


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
            logits, seconds = score(llama_cpp, args.f32, ids, kv_type, rotate, args.threads)
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
            })
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
