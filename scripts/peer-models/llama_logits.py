#!/usr/bin/env python3
"""llama.cpp's full-cache perplexity and greedy top-1 on given token ids, for one model.

The weights are an F32 copy of the GGUF kvlab reads, written once by llama.cpp's own quantize
API (LLAMA_FTYPE_ALL_F32: every tensor dequantized, as kvlab's loader does), so both engines
multiply the same float weights. One forward over the first N ids (n_ctx = n_batch = n_ubatch =
N, an f32 KV cache, no flash attention), logits at every position.

Prints one JSON object: tokens, mean_nll over ids[1:N] (float64 log-softmax), ppl, and the
argmax id after every position.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

# The F32 copy is written as the quant peer writes it (one function for both).
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "peer-quant"))
from llama_cpp_ppl import f32_copy  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True, help="the GGUF kvlab reads")
    ap.add_argument("--f32", required=True, help="where the F32 copy is (written if missing)")
    ap.add_argument("--ids", required=True, help="file of comma/space separated token ids")
    ap.add_argument("--n", type=int, required=True, help="score the first N ids")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama

    f32_copy(llama_cpp, a.gguf, a.f32)
    text = open(a.ids, encoding="utf-8").read().replace(",", " ").split()
    ids = [int(t) for t in text][: a.n]
    if len(ids) < a.n:
        sys.exit(f"llama_logits: {a.ids} holds {len(ids)} ids, fewer than --n {a.n}")
    llm = Llama(model_path=a.f32, n_ctx=a.n, n_batch=a.n, n_ubatch=a.n, logits_all=True,
                n_threads=a.threads, type_k=0, type_v=0, flash_attn=False, verbose=False)
    llm.eval(ids)
    logits = np.asarray(llm.scores[: a.n], dtype=np.float64)
    x = logits[:-1] - logits[:-1].max(axis=1, keepdims=True)
    logz = np.log(np.exp(x).sum(axis=1))
    nll = logz - x[np.arange(a.n - 1), ids[1:]]
    mean_nll = float(nll.mean())
    print(json.dumps({
        "engine": "llama.cpp",
        "version": getattr(llama_cpp, "__version__", "?"),
        "tokens": a.n,
        "mean_nll": mean_nll,
        "ppl": float(np.exp(mean_nll)),
        "argmax": [int(i) for i in logits.argmax(axis=1)],
    }))


if __name__ == "__main__":
    main()
