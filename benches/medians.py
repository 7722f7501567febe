#!/usr/bin/env python3
"""Prints the medians of the last `cargo bench -p benches` run as a Markdown table per group.

Reads criterion's `target/criterion/<group>/<function>/<parameter>/new/estimates.json`.
Usage: python3 benches/medians.py [TARGET_DIR]
"""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target") / "criterion"


def fmt(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


ORDER = ["concat", "static", "window", "shift-window", "sink", "paged"]


def row_key(name):
    return (ORDER.index(name), "") if name in ORDER else (len(ORDER), name)


def key(p):
    return int(p) if p.isdigit() else p


for group in sorted(d for d in root.iterdir() if d.is_dir() and d.name != "report"):
    rows, cols = {}, set()
    for est in group.glob("*/*/new/estimates.json"):
        function, param = est.parts[-4], est.parts[-3]
        median = json.loads(est.read_text())["median"]["point_estimate"]
        rows.setdefault(function, {})[param] = median
        cols.add(param)
    if not rows:
        continue
    cols = sorted(cols, key=key)
    print(f"\n### {group.name} (median)\n")
    print("| | " + " | ".join(cols) + " | last / first |")
    print("|---|" + "---:|" * (len(cols) + 1))
    for function, values in sorted(rows.items(), key=lambda kv: row_key(kv[0])):
        cells = [fmt(values[c]) if c in values else "" for c in cols]
        present = [values[c] for c in cols if c in values]
        ratio = f"{present[-1] / present[0]:.2f}x" if len(present) > 1 else ""
        print(f"| {function} | " + " | ".join(cells) + f" | {ratio} |")
