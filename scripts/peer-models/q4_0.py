#!/usr/bin/env python3
"""Joins q4_0.sh's llama.cpp rows with kvlab's q4_0 rows into llama-cpp-q4_0.{csv,md}."""

from __future__ import annotations

import argparse
import csv
import os
import subprocess

FIELDS = ["model", "rotation", "kvlab_ppl", "kvlab_change_pct", "llama_cpp_ppl",
          "llama_cpp_change_pct", "kvlab_full_ppl", "llama_cpp_f32_ppl", "tokens",
          "llama_cpp_version", "cpu"]


def kvlab_rows(path: str, model: str) -> dict[str, dict[str, str]]:
    """kvlab's full cache (key `full`) and q4_0 rows (keys `none`, `hadamard`) of one model."""
    out = {}
    for r in csv.DictReader(open(path, encoding="utf-8")):
        if r["model"] != model:
            continue
        if r["strategy"] == "concat":
            out["full"] = r
        elif r["strategy"] == "static" and r["scheme"] == "q4_0" and r["key_order"] == "llama-cpp":
            out[r["rotation"]] = r
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--kvlab", required=True, help="results/models/perplexity.csv")
    ap.add_argument("--out", required=True, help="path without extension")
    a = ap.parse_args()
    rows = []
    for model in a.models:
        kv = kvlab_rows(a.kvlab, model)
        peer = {(r["kv_type"], r["rotation"]): r
                for r in csv.DictReader(open(os.path.join(a.scratch, f"{model}.csv"), encoding="utf-8"))}
        missing = [k for k in ("full", "none", "hadamard") if k not in kv]
        if missing:
            raise SystemExit(f"q4_0.py: {a.kvlab} lacks {model}'s {', '.join(missing)} row(s) "
                             "(q4_0 rows with key_order = \"llama-cpp\")")
        for rotation in ("none", "hadamard"):
            p, k = peer[("q4_0", rotation)], kv[rotation]
            if int(p["tokens"]) != int(k["tokens"]):
                raise SystemExit(f"q4_0.py: {model}: llama.cpp scored {p['tokens']} tokens, "
                                 f"kvlab {k['tokens']}")
            rows.append({
                "model": model, "rotation": rotation,
                "kvlab_ppl": k["ppl"], "kvlab_change_pct": f"{float(k['ppl_delta_pct']):.4f}",
                "llama_cpp_ppl": p["ppl"],
                "llama_cpp_change_pct": f"{float(p['ppl_delta_pct']):.4f}",
                "kvlab_full_ppl": kv["full"]["ppl"], "llama_cpp_f32_ppl": peer[("f32", "none")]["ppl"],
                "tokens": k["tokens"], "llama_cpp_version": p["engine_version"], "cpu": p["cpu"],
            })
    with open(a.out + ".csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    with open(a.out + ".md", "w", encoding="utf-8") as f:
        f.write("# q4_0 caches with and without the Hadamard rotation: kvlab beside llama.cpp\n\n")
        f.write(f"`scripts/peer-models/q4_0.sh`, commit {rev.stdout.strip()}, {rows[0]['cpu']}. "
                f"The {rows[0]['tokens']} predicted tokens of `experiments/models.toml`'s "
                f"perplexity workload. llama.cpp ({rows[0]['llama_cpp_version']}, an F32 copy of "
                "the same GGUF, one forward, flash attention, `type_k = type_v = q4_0`; rotation "
                "is its default and `LLAMA_ATTN_ROT_DISABLE=1` turns it off) against its own f32 "
                "cache; kvlab's static q4_0 cache streaming one token at a time, against its own "
                "full cache, with keys grouped in the channel order llama.cpp's cache holds "
                "(`key_order = \"llama-cpp\"`: interleaved for SmolLM2's Llama GGUF, kvlab's "
                "half-split for Gemma 3 and Qwen2, which llama.cpp rotates NEOX-style) and "
                "rotated in llama.cpp's blocks (keys by the head's largest power-of-two block, "
                "values by 64×64 blocks).\n\n")
        f.write("| model | rotation | kvlab ppl | llama.cpp ppl | kvlab change % | "
                "llama.cpp change % | kvlab / llama.cpp ppl |\n|---|---|---|---|---|---|---|\n")
        for r in rows:
            ratio = float(r["kvlab_ppl"]) / float(r["llama_cpp_ppl"]) - 1
            f.write(f"| {r['model']} | {r['rotation']} | {float(r['kvlab_ppl']):.4f} | "
                    f"{float(r['llama_cpp_ppl']):.4f} | {float(r['kvlab_change_pct']):+.3f} | "
                    f"{float(r['llama_cpp_change_pct']):+.3f} | {100 * ratio:+.2f}% |\n")
        f.write("\n")
        for model in a.models:
            none, rot = [r for r in rows if r["model"] == model]
            says, verdicts = [], set()
            for engine, col in (("kvlab", "kvlab_change_pct"), ("llama.cpp", "llama_cpp_change_pct")):
                helps = float(rot[col]) < float(none[col])
                verdicts.add(helps)
                says.append(f"{engine}: rotation {'helps' if helps else 'hurts'} "
                            f"({float(none[col]):+.2f}% → {float(rot[col]):+.2f}%)")
            agree = "the engines agree" if len(verdicts) == 1 else "**the engines disagree**"
            f.write(f"- {model}: " + "; ".join(says) + f"; {agree}.\n")
    print(open(a.out + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    main()
