#!/usr/bin/env python3
"""Run one throughput experiment several times in a row and report each run's step time as a
ratio to a baseline run *of the same round*, with the median over rounds.

Why: a runner process measures its runs one after another. On a shared machine the speed
drifts by tens of percent within minutes, so a single process can put a strategy that ran
later at a disadvantage. Rounds alternate the whole sweep (A B C, A B C, ...), each ratio is
taken side by side within one round, and the median over rounds is what gets quoted.

    scripts/perf-rounds.py experiments/perf-overhead.toml --rounds 5 \\
        --baseline strategy=static --baseline bits=32 --group context --out results/perf

writes, under <out>/<experiment name>/: the runner's own CSVs, charts and report from round 1,
`rounds.csv` (every round's rows with their ratio) and `rounds.md` (medians, min-max).
"""

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Sweep parameters that identify a run (the throughput CSV's columns before the measurements).
PARAMS = ["model", "strategy", "cache_tokens", "sink_tokens", "block_size", "bits", "group_size",
          "quant_axis", "scheme", "residual", "kv_heads", "head_reduction", "batch", "attention", "context"]
TIME = "ms_per_token_p50"


def parse_pairs(pairs: list[str], what: str) -> dict[str, str]:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or key not in PARAMS:
            sys.exit(f"perf-rounds: {what} `{p}` is not KEY=VALUE with KEY one of {', '.join(PARAMS)}")
        out[key] = value
    return out


def label(row: dict, shown: list[str]) -> str:
    return " ".join(f"{k}={row[k]}" for k in shown if row.get(k, "") != "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("experiment", help="a throughput experiment TOML")
    ap.add_argument("--rounds", type=int, default=5, help="runner processes, one after another (default 5)")
    ap.add_argument("--baseline", action="append", default=[], metavar="KEY=VALUE",
                    help="what the baseline run's parameters include (repeatable)")
    ap.add_argument("--group", action="append", default=[], metavar="KEY",
                    help="parameters a run shares with its baseline (repeatable; e.g. context)")
    ap.add_argument("--runner", default=None, help="runner binary (default: target/debug/runner)")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "perf"), help="results dir")
    args = ap.parse_args()

    if args.rounds < 1:
        sys.exit("perf-rounds: --rounds must be at least 1")
    baseline = parse_pairs(args.baseline, "--baseline")
    if not baseline:
        sys.exit("perf-rounds: give the baseline run with --baseline KEY=VALUE")
    for g in args.group:
        if g not in PARAMS:
            sys.exit(f"perf-rounds: --group `{g}` is not one of {', '.join(PARAMS)}")
    runner = os.path.abspath(args.runner or os.path.join(
        os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target"), "debug", "runner"))
    if not os.access(runner, os.X_OK):
        sys.exit(f"perf-rounds: runner {runner} not found; `cargo build -p runner` or pass --runner")

    tmp = tempfile.mkdtemp(prefix="perf-rounds-")
    rows: list[dict] = []
    name = None
    for r in range(1, args.rounds + 1):
        out = os.path.join(tmp, f"round{r}")
        cmd = [runner, args.experiment, "--out", out, "--quiet"]
        print(f"[perf-rounds] round {r}/{args.rounds}: {' '.join(cmd)}", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, cwd=ROOT)
        if proc.returncode != 0:
            sys.exit(f"perf-rounds: round {r} failed (exit {proc.returncode}); rounds so far are in {tmp}")
        (name,) = os.listdir(out)
        with open(os.path.join(out, name, "throughput.csv"), newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                row["round"] = str(r)
                rows.append(row)
    dest = os.path.join(args.out, name)
    if os.path.exists(dest):
        shutil.rmtree(dest)
    shutil.copytree(os.path.join(tmp, "round1", name), dest)
    shutil.rmtree(tmp, ignore_errors=True)

    def key(row: dict, keys: list[str]) -> tuple:
        return tuple(row.get(k, "") for k in keys)

    base_time = {}
    for row in rows:
        if all(row.get(k) == v for k, v in baseline.items()):
            base_time[(row["round"], key(row, args.group))] = float(row[TIME])
    for row in rows:
        b = base_time.get((row["round"], key(row, args.group)))
        if b is None:
            sys.exit(f"perf-rounds: no baseline run ({baseline}) in round {row['round']} "
                     f"for {dict(zip(args.group, key(row, args.group)))}")
        row["ratio"] = f"{float(row[TIME]) / b:.4f}"

    shown = [k for k in PARAMS if len({row.get(k, '') for row in rows}) > 1]
    columns = ["round", *PARAMS, "prefill_tok_per_s", "decode_tok_per_s", TIME, "ms_per_token_p90",
               "ratio"]
    with open(os.path.join(dest, "rounds.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)

    configs: dict[tuple, list[dict]] = {}
    for row in rows:
        configs.setdefault(key(row, PARAMS), []).append(row)
    base_label = " ".join(f"{k}={v}" for k, v in baseline.items())
    same = f" at the same {', '.join(args.group)}" if args.group else ""
    lines = [
        f"# {name}: step-time ratios over {args.rounds} rounds",
        "",
        f"`{' '.join(['scripts/perf-rounds.py', os.path.relpath(args.experiment, ROOT), '--rounds', str(args.rounds)] + [f'--baseline {b}' for b in args.baseline] + [f'--group {g}' for g in args.group])}`",
        "",
        f"Each round is one runner process over the whole sweep; a run's ratio is its p50 decode step "
        f"time over the baseline run's ({base_label}{same}) in the same round. Medians over rounds; "
        f"every row is in `rounds.csv`.",
        "",
        f"| run | median prefill tok/s | median ms/token (p50) | median ratio | min ratio | max ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for runs in configs.values():
        ratios = [float(r["ratio"]) for r in runs]
        times = [float(r[TIME]) for r in runs]
        prefill = statistics.median(float(r["prefill_tok_per_s"]) for r in runs)
        lines.append(f"| {label(runs[0], shown)} | {prefill:.1f} | {statistics.median(times):.3f} | "
                     f"{statistics.median(ratios):.3f}x | {min(ratios):.3f}x | {max(ratios):.3f}x |")
    with open(os.path.join(dest, "rounds.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
