#!/usr/bin/env python3
"""Peer benchmark: kvlab vs Hugging Face transformers decode speed on the same model and CPU,
with a memory-bandwidth roofline.

For each batch size (default 1 and 8) it alternates process invocations of

* `hf_decode.py`  (transformers, fp32 weights dequantized from the GGUF, eager, DynamicCache)
* `runner generate --json` (kvlab, burn CPU backend, static KV cache)

on the same 128-token prompt (SmolLM2's tokenization of the start of Hamlet, from
crates/model/tests/fixtures/smollm2_reference.json), greedy, 128 new tokens. Runs alternate
ABBA-style (HF,kvlab / kvlab,HF / ...) so load drift on the machine hits both engines.

`runner bandwidth --json` (an all-threads memory-read probe) runs before, between and after the
batch blocks; its median gives the roofline: at batch 1 every decoded token streams all the
fp32 parameters once (134,515,008 x 4 bytes for SmolLM2-135M with tied embeddings; the LM head
reads the embedding matrix once per token), so no engine can decode faster than
bandwidth / parameter_bytes tokens per second.

Writes <out>/peer.csv, peer.md, peer.png, peer.svg and peer_raw.jsonl (every process's JSON).
"""

from __future__ import annotations

import argparse
import atexit
import csv
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURE = os.path.join(ROOT, "crates", "model", "tests", "fixtures", "smollm2_reference.json")
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
EXPECTED_PARAMS = 134_515_008  # SmolLM2-135M, tied embeddings counted once
PROMPT_TOKENS = 128

CSV_COLUMNS = [
    "batch",
    "engine",
    "runs",
    "median_decode_tok_per_s",
    "p10",
    "p90",
    "median_prefill_s",
    "ratio_vs_hf",
    "bandwidth_gb_per_s",
    "roofline_tok_per_s",
    "roofline_fraction",
    "tokens_identical",
    "device",
    "threads",
]


def log(msg: str) -> None:
    print(f"[peer-bench] {msg}", file=sys.stderr, flush=True)


def default_gguf_path() -> str:
    if os.environ.get("KVLAB_CACHE_DIR"):
        base = os.environ["KVLAB_CACHE_DIR"]
    elif os.environ.get("XDG_CACHE_HOME"):
        base = os.path.join(os.environ["XDG_CACHE_HOME"], "kvlab")
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "kvlab")
    return os.path.join(base, "models", GGUF_NAME)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    try:
        with open("/proc/stat", encoding="utf-8") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def hamlet_prompt(n: int) -> list[int]:
    with open(FIXTURE, encoding="utf-8") as f:
        fixture = json.load(f)
    entries = [t for t in fixture["tokenization"] if t["name"] == "hamlet"]
    if not entries:
        sys.exit(f"peer-bench: no 'hamlet' tokenization entry in {FIXTURE}")
    ids = entries[0]["ids"]
    if len(ids) < n:
        sys.exit(f"peer-bench: the hamlet entry has {len(ids)} ids, need {n}")
    return [int(i) for i in ids[:n]]


def gguf_parameter_count(path: str) -> int:
    """Sum of the element counts of every tensor in the GGUF file (what the fp32 model holds)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return sum(int(t.n_elements) for t in reader.tensors)


def torch_bandwidth(threads: int, mib: int = 512, repeats: int = 7) -> float:
    """Independent cross-check of `runner bandwidth`: torch.sum over a float32 buffer with
    `threads` intra-op threads (vectorized, multi-threaded, memory-bound); median GB/s."""
    import torch

    torch.set_num_threads(threads)
    data = torch.ones(mib * (1 << 20) // 4, dtype=torch.float32)
    data.sum()  # touch the pages, start the thread pool
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data.sum()
        times.append(time.perf_counter() - t0)
    return data.numel() * 4 / statistics.median(times) / 1e9


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def parse_json_stdout(stdout: str, what: str) -> dict:
    """The last stdout line that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    try:  # a pretty-printed object spanning several lines
        start = stdout.index("{")
        return json.loads(stdout[start:])
    except (ValueError, json.JSONDecodeError):
        pass
    raise RuntimeError(f"{what}: no JSON object on stdout:\n{stdout[-2000:]}")


def run_json(cmd: list[str], env: dict, what: str, timeout: float) -> dict:
    log(f"$ {shlex.join(cmd)}")
    t0 = time.perf_counter()
    busy0, kids0 = cpu_busy_s(), children_cpu_s()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    busy1, kids1 = cpu_busy_s(), children_cpu_s()
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"{what}: exit status {proc.returncode}")
    obj = parse_json_stdout(proc.stdout, what)
    obj["_wall_s"] = time.perf_counter() - t0
    if busy0 is not None and busy1 is not None:
        # CPUs' worth of time other processes used while this one ran (0 on a quiet machine)
        obj["_other_cpus"] = max(0.0, ((busy1 - busy0) - (kids1 - kids0)) / obj["_wall_s"])
    return obj


def first_divergence(a: list[int], b: list[int]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None


def compare_tokens(hf_runs: list[dict], kv_runs: list[dict], n: int) -> str:
    """'yes' when every kvlab row equals HF's first run's row 0 over the first n tokens,
    else 'no (first divergence at token i[, row r])'. Also notes run-to-run differences."""
    if not hf_runs or not kv_runs:
        return ""
    ref = hf_runs[0]["tokens"][0][:n]
    notes = []
    for engine, runs in (("hf", hf_runs), ("kvlab", kv_runs)):
        for k, run in enumerate(runs):
            for r, row in enumerate(run["tokens"]):
                d = first_divergence(ref, row[:n])
                if d is not None:
                    where = f"token {d}" + (f", row {r}" if r else "")
                    if engine == "kvlab":
                        return f"no (first divergence at {where})"
                    notes.append(f"hf run {k} {where}")
    if notes:
        return "yes (vs hf run 0; hf itself differs: " + "; ".join(notes[:3]) + ")"
    return "yes"


def draw_chart(rows: list[dict], roofline: float | None, out_base: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    engines = [e for e in ("hf-transformers", "kvlab") if any(r["engine"] == e for r in rows)]
    colors = {"hf-transformers": "#f2a541", "kvlab": "#3a7ca5"}
    width = 0.8 / max(len(engines), 1)
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=130)
    for j, engine in enumerate(engines):
        xs, ys, lo, hi = [], [], [], []
        for i, b in enumerate(batches):
            row = next((r for r in rows if r["batch"] == b and r["engine"] == engine), None)
            if row is None:
                continue
            x = i + (j - (len(engines) - 1) / 2) * width
            xs.append(x)
            ys.append(row["median_decode_tok_per_s"])
            lo.append(row["median_decode_tok_per_s"] - row["p10"])
            hi.append(row["p90"] - row["median_decode_tok_per_s"])
        bars = ax.bar(xs, ys, width * 0.95, label=engine, color=colors.get(engine), yerr=[lo, hi], capsize=3)
        for rect, y, h in zip(bars, ys, hi):
            ax.annotate(f"{y:.1f}", (rect.get_x() + rect.get_width() / 2, y + h), xytext=(0, 3),
                        textcoords="offset points", ha="center", va="bottom", fontsize=8)
    if roofline is not None and 1 in batches:
        i = batches.index(1)
        ax.hlines(roofline, i - 0.48, i + 0.48, colors="#c0392b", linestyles="dashed",
                  label=f"batch-1 roofline ({roofline:.1f} tok/s)")
    ax.set_xticks(range(len(batches)))
    ax.set_xticklabels([f"batch {b}" for b in batches])
    ax.set_ylabel("decode tokens/s (median, p10–p90 whiskers)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    top = max([r["p90"] for r in rows] + ([roofline] if roofline else []))
    ax.set_ylim(0, top * 1.18)
    fig.tight_layout()
    fig.savefig(out_base + ".png")
    fig.savefig(out_base + ".svg")
    plt.close(fig)


def fmt(x, nd=2) -> str:
    if x is None or x == "":
        return ""
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def display_path(path: str) -> str:
    rel = os.path.relpath(path, ROOT)
    return path if rel.startswith("..") else rel


def git_describe() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runner", default=None,
                    help="kvlab runner binary (default: $CARGO_TARGET_DIR or target/, debug profile)")
    ap.add_argument("--hf-python", default=sys.executable,
                    help="python with torch+transformers for hf_decode.py (default: this one)")
    ap.add_argument("--gguf", default=None, help=f"{GGUF_NAME} (default: kvlab's cache dir)")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--runs", type=int, default=5, help="process invocations per engine and batch (default 5)")
    ap.add_argument("--repeat", type=int, default=1, help="timed generations per process (default 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations per process (default 1)")
    ap.add_argument("--new-tokens", type=int, default=128, help="generated tokens per row (default 128)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for both engines: torch.set_num_threads and RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--backend", default="flex", help="kvlab backend (default flex)")
    ap.add_argument("--engines", default="hf,kvlab", help="hf,kvlab (default) or just one of them")
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "perf"), help="output dir (default results/perf)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process before giving up")
    ap.add_argument("--rerun-command", default=None, help=argparse.SUPPRESS)  # set by run.sh
    args = ap.parse_args()

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    if not set(engines) <= {"hf", "kvlab"} or not engines:
        sys.exit("peer-bench: --engines takes hf, kvlab or hf,kvlab")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    use_kv = "kvlab" in engines
    use_hf = "hf" in engines

    gguf_path = os.path.abspath(args.gguf or default_gguf_path())
    if not os.path.isfile(gguf_path):
        sys.exit(f"peer-bench: {gguf_path} not found; run `cargo run -p runner -- generate --prompt hi` "
                 "once to fetch it, or pass --gguf")

    runner = args.runner
    if use_kv:
        if runner is None:
            target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
            runner = os.path.join(target, "debug", "runner")
        runner = os.path.abspath(runner)
        if not os.access(runner, os.X_OK):
            sys.exit(f"peer-bench: kvlab runner {runner} not found; `cargo build -p runner` or pass --runner")

    os.makedirs(args.out, exist_ok=True)
    prompt = hamlet_prompt(PROMPT_TOKENS)
    tmp = tempfile.mkdtemp(prefix="peer-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    ids_file = os.path.join(tmp, "hamlet128.txt")
    with open(ids_file, "w", encoding="utf-8") as f:
        f.write(",".join(map(str, prompt)) + "\n")

    n_params = gguf_parameter_count(gguf_path)
    if n_params != EXPECTED_PARAMS:
        log(f"warning: GGUF holds {n_params:,} parameters, expected {EXPECTED_PARAMS:,}")
    bytes_per_token = 4 * n_params
    log(f"GGUF {gguf_path}: {n_params:,} parameters -> {bytes_per_token / 1e6:.1f} MB fp32 per batch-1 token")

    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(args.threads)
    # torch reads these too; hf_decode.py also calls torch.set_num_threads(--threads).
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["MKL_NUM_THREADS"] = str(args.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")

    gen_args = ["--ids-file", ids_file, "--new-tokens", str(args.new_tokens), "--repeat", str(args.repeat),
                "--warmup", str(args.warmup), "--json"]

    def hf_cmd(batch: int) -> list[str]:
        return [args.hf_python, os.path.join(HERE, "hf_decode.py"), *gen_args, "--batch", str(batch),
                "--gguf", gguf_path, "--threads", str(args.threads)]

    def kv_cmd(batch: int) -> list[str]:
        model = ["--model", gguf_path] if args.gguf else []  # else kvlab's own cache (same path)
        # global options after the subcommand: before it, clap takes `generate` for an experiment file
        return [runner, "generate", *model, "--backend", args.backend, *gen_args, "--batch", str(batch)]

    raw_path = os.path.join(args.out, "peer_raw.jsonl")
    raw = open(raw_path, "w", encoding="utf-8")

    bandwidth: list[dict] = []

    def probe_bandwidth(when: str) -> None:
        if not use_kv:
            return
        obj = run_json([runner, "bandwidth", "--json"], env, "runner bandwidth", args.timeout)
        obj["_when"] = when
        bandwidth.append(obj)
        raw.write(json.dumps({"kind": "bandwidth", **obj}) + "\n")
        raw.flush()
        log(f"bandwidth ({when}): {obj['gb_per_s']:.2f} GB/s over {obj.get('bytes', 0) / 1e6:.0f} MB, "
            f"{obj.get('threads')} threads")

    load_start = load_average()
    busy0, kids0, wall0 = cpu_busy_s(), children_cpu_s(), time.monotonic()
    results: dict[tuple[int, str], list[dict]] = {}
    probe_bandwidth("before")
    for bi, batch in enumerate(batches):
        if bi > 0:
            probe_bandwidth("between")
        for k in range(args.runs):
            order = ["hf", "kvlab"] if k % 2 == 0 else ["kvlab", "hf"]
            for engine in order:
                if engine not in engines:
                    continue
                cmd = hf_cmd(batch) if engine == "hf" else kv_cmd(batch)
                obj = run_json(cmd, env, f"{engine} batch {batch}", args.timeout)
                name = "hf-transformers" if engine == "hf" else "kvlab"
                results.setdefault((batch, name), []).append(obj)
                raw.write(json.dumps({"kind": "generate", "run": k, **obj}) + "\n")
                raw.flush()
                rates = ", ".join(f"{x:.2f}" for x in obj["decode_tok_per_s"])
                log(f"batch {batch} run {k + 1}/{args.runs} {name}: decode {rates} tok/s "
                    f"(process {obj['_wall_s']:.1f}s, other load {obj.get('_other_cpus', float('nan')):.2f} CPUs)")
    probe_bandwidth("after")
    raw.close()
    busy1, kids1, wall1 = cpu_busy_s(), children_cpu_s(), time.monotonic()
    # CPU time the rest of the machine used while we ran, in CPUs (0 = quiet machine).
    other_cpus = None
    if busy0 is not None and busy1 is not None:
        other_cpus = max(0.0, ((busy1 - busy0) - (kids1 - kids0)) / (wall1 - wall0))

    torch_bw = None
    if bandwidth:
        try:
            torch_bw = torch_bandwidth(args.threads)
            log(f"torch.sum cross-check bandwidth: {torch_bw:.2f} GB/s ({args.threads} threads)")
        except (ImportError, MemoryError, RuntimeError) as e:
            log(f"torch bandwidth cross-check skipped: {e}")

    bw = statistics.median([b["gb_per_s"] for b in bandwidth]) if bandwidth else None
    bw_threads = bandwidth[0].get("threads") if bandwidth else None
    roofline = bw * 1e9 / bytes_per_token if bw else None
    device = cpu_model()

    rows = []
    for batch in batches:
        hf_runs = results.get((batch, "hf-transformers"), [])
        kv_runs = results.get((batch, "kvlab"), [])
        identical = compare_tokens(hf_runs, kv_runs, args.new_tokens)
        medians = {}
        for name, runs in (("hf-transformers", hf_runs), ("kvlab", kv_runs)):
            if not runs:
                continue
            rates = [x for r in runs for x in r["decode_tok_per_s"]]
            prefill = [x for r in runs for x in r["prefill_s"]]
            med = statistics.median(rates)
            medians[name] = med
            threads = runs[0].get("threads") if name == "hf-transformers" else (bw_threads or args.threads)
            rows.append({
                "batch": batch,
                "engine": name,
                "runs": len(rates),
                "median_decode_tok_per_s": med,
                "p10": percentile(rates, 10),
                "p90": percentile(rates, 90),
                "median_prefill_s": statistics.median(prefill),
                "ratio_vs_hf": None,
                "bandwidth_gb_per_s": bw,
                "roofline_tok_per_s": roofline if batch == 1 else None,
                "roofline_fraction": (med / roofline) if (roofline and batch == 1) else None,
                "tokens_identical": identical,
                "device": device,
                "threads": threads,
            })
        for row in rows:
            if row["batch"] == batch and "hf-transformers" in medians:
                row["ratio_vs_hf"] = row["median_decode_tok_per_s"] / medians["hf-transformers"]

    csv_path = os.path.join(args.out, "peer.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for row in rows:
            out = {}
            for c in CSV_COLUMNS:
                v = row[c]
                if isinstance(v, float):
                    v = f"{v:.4f}" if c in ("ratio_vs_hf", "roofline_fraction", "median_prefill_s") else f"{v:.3f}"
                out[c] = "" if v is None else v
            w.writerow(out)

    hf_versions = next((r[0].get("versions") for k, r in results.items() if k[1] == "hf-transformers"), None)
    kv_backend = next((r[0].get("backend") for k, r in results.items() if k[1] == "kvlab"), args.backend)
    title = f"SmolLM2-135M fp32 decode, {args.threads} thread{'s' if args.threads != 1 else ''}, {device}"
    draw_chart(rows, roofline, os.path.join(args.out, "peer"), title)

    rerun = args.rerun_command or shlex.join(["python3", "scripts/peer-bench/run.py", *sys.argv[1:]])
    md = []
    md.append("# Peer benchmark: kvlab vs Hugging Face transformers (decode)\n")
    md.append(f"SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32 in both engines; prompt = the first "
              f"{PROMPT_TOKENS} token ids of Hamlet (reference tokenization), greedy, {args.new_tokens} new "
              f"tokens; decode tok/s = batch x {args.new_tokens - 1} decode steps / decode seconds "
              f"(prefill timed separately). {args.runs} process invocations per engine and batch, "
              f"{args.repeat} timed generation(s) after {args.warmup} warm-up each, engines alternated.\n")
    md.append("| batch | engine | runs | median decode tok/s | p10 | p90 | median prefill s | kvlab / HF | "
              "roofline tok/s | fraction of roofline | tokens identical |")
    md.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        md.append(
            f"| {row['batch']} | {row['engine']} | {row['runs']} | {fmt(row['median_decode_tok_per_s'])} | "
            f"{fmt(row['p10'])} | {fmt(row['p90'])} | {fmt(row['median_prefill_s'], 3)} | "
            f"{fmt(row['ratio_vs_hf'], 2) + 'x' if row['ratio_vs_hf'] is not None else ''} | "
            f"{fmt(row['roofline_tok_per_s'])} | "
            f"{fmt(100 * row['roofline_fraction'], 1) + ' %' if row['roofline_fraction'] is not None else ''} | "
            f"{row['tokens_identical']} |")
    md.append("")
    if bw is not None:
        md.append(f"Roofline: `runner bandwidth` median {bw:.2f} GB/s "
                  f"({', '.join(b['_when'] + ' ' + format(b['gb_per_s'], '.2f') for b in bandwidth)}; {bw_threads} threads) / "
                  f"{n_params:,} parameters x 4 bytes = {bytes_per_token / 1e6:.1f} MB per batch-1 token "
                  f"-> {roofline:.2f} tok/s. Weights only (the KV cache adds ~2 % at 256 positions), so it is an "
                  f"upper bound. Cross-check: torch.sum over 512 MiB of float32 with {args.threads} "
                  f"threads reads {fmt(torch_bw) or '(not run)'} GB/s.\n")
    else:
        md.append(f"Roofline: not measured (kvlab not run). {n_params:,} parameters x 4 bytes = "
                  f"{bytes_per_token / 1e6:.1f} MB per batch-1 token.\n")
    md.append(f"- device: {device}; threads: {args.threads} (torch.set_num_threads, RAYON_NUM_THREADS); "
              f"logical CPUs: {os.cpu_count()}")
    if other_cpus is not None:
        md.append(f"- other processes on the machine during the run: {other_cpus:.2f} CPUs on average "
                  f"(1-minute load average before it: {fmt(load_start)}); near 0 means a quiet machine, "
                  f"anything comparable to the thread count means contended timings")
    if hf_versions:
        md.append(f"- HF: torch {hf_versions.get('torch')}, transformers {hf_versions.get('transformers')}, "
                  f"python {hf_versions.get('python')}; eager attention, DynamicCache")
    if use_kv:
        md.append(f"- kvlab: backend {kv_backend}, static KV cache, binary `{display_path(runner)}`, "
                  f"git {git_describe() or 'unknown'}")
    md.append("- raw per-process JSON: `peer_raw.jsonl`; chart: `peer.png` / `peer.svg`\n")
    md.append("Rerun:\n")
    md.append("```sh\n" + rerun + "\n```")
    with open(os.path.join(args.out, "peer.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")

    print("\n".join(md[2:4 + len(rows)]))
    log(f"wrote {csv_path}, peer.md, peer.png, peer.svg, peer_raw.jsonl in {args.out}")
    if torch_bw is not None and bw is not None and torch_bw > 1.15 * bw:
        log(f"warning: torch.sum read {torch_bw:.2f} GB/s but `runner bandwidth` {bw:.2f} GB/s: the roofline "
            "is probably too low and the roofline fractions too high (a dev-profile runner compiles the "
            "probe at opt-level 1; try run.sh --release)")
    if other_cpus is not None and other_cpus > 0.25:
        log(f"warning: other processes used {other_cpus:.2f} CPUs on average during the run; "
            "timings are contended (rerun on a quiet machine)")


if __name__ == "__main__":
    main()
