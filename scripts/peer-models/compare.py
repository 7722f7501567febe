#!/usr/bin/env python3
"""Joins run.sh's per-model JSON outputs into llama-cpp-agreement.{csv,md}."""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess

FIELDS = ["model", "tokens", "kvlab_ppl", "llama_cpp_ppl", "ppl_rel_diff", "top1_agree_pct",
          "kvlab_mean_nll", "llama_cpp_mean_nll", "llama_cpp_version"]


def cpu() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--tokens", nargs="+", type=int, required=True)
    ap.add_argument("--out", required=True, help="path without extension")
    a = ap.parse_args()
    rows = []
    for model in a.models:
        for n in a.tokens:
            base = os.path.join(a.scratch, f"{model}.{n}")
            kv = json.load(open(base + ".kvlab.json"))
            ll = json.load(open(base + ".llama.json"))
            top1 = [p["top_k"][0][0] for p in kv["positions"]]
            agree = sum(x == y for x, y in zip(top1, ll["argmax"]))
            kvlab_ppl = math.exp(kv["mean_nll"])
            rows.append({
                "model": model, "tokens": n,
                "kvlab_ppl": f"{kvlab_ppl:.6f}", "llama_cpp_ppl": f"{ll['ppl']:.6f}",
                "ppl_rel_diff": f"{abs(kvlab_ppl - ll['ppl']) / ll['ppl']:.2e}",
                "top1_agree_pct": f"{100 * agree / len(top1):.2f}",
                "kvlab_mean_nll": f"{kv['mean_nll']:.9f}",
                "llama_cpp_mean_nll": f"{ll['mean_nll']:.9f}",
                "llama_cpp_version": ll["version"],
            })
    with open(a.out + ".csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with open(a.out + ".md", "w", encoding="utf-8") as f:
        f.write("# Full-cache perplexity: kvlab beside llama.cpp, same token ids\n\n")
        f.write(f"`scripts/peer-models/run.sh`, commit {rev.stdout.strip()}, {cpu()}. Hamlet "
                "tokenized by kvlab (equal to llama.cpp's tokenization); llama.cpp "
                f"{rows[0]['llama_cpp_version']} on an F32 copy of the same GGUF, one forward, "
                "f32 KV cache; kvlab one forward with no cache (`runner logits`). Target: "
                "perplexity within 1e-3 relative, top-1 agreement ≥ 99%.\n\n")
        f.write("| model | tokens | kvlab ppl | llama.cpp ppl | relative difference | "
                "greedy top-1 agreement |\n|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['model']} | {r['tokens']} | {r['kvlab_ppl']} | {r['llama_cpp_ppl']} | "
                    f"{r['ppl_rel_diff']} | {r['top1_agree_pct']}% |\n")
    print(open(a.out + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    main()
