#!/usr/bin/env python3
"""Peer benchmark: kvlab vs Hugging Face transformers (eager and sdpa attention) and llama.cpp,
prefill and decode speed on the same model and CPU, with a memory-bandwidth roofline.

For each batch size (default 1 and 8) it alternates process invocations of

* `hf_decode.py --attn eager` (hf-eager: transformers, fp32 weights dequantized from the GGUF by
  the gguf package, eager attention, DynamicCache)
* `hf_decode.py --attn sdpa`  (hf-sdpa: the same with torch's scaled_dot_product_attention,
  transformers' default attention)
* `llama_decode.py`           (llama.cpp through llama-cpp-python's low-level API, on an F32 copy of
  the GGUF written by llama.cpp's own quantize API, f32 KV cache, one llama_batch per step)
* `runner generate --json`    (kvlab, burn CPU backend, static KV cache)

on the same 128-token prompt (SmolLM2's tokenization of the start of Hamlet, from
crates/model/tests/fixtures/smollm2_reference.json), greedy, 128 new tokens. The engine order
rotates by one every run (A,B,C,D / B,C,D,A / ...) so no engine always goes first and load drift
on the machine hits all of them.

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
from peer_common import GGUF_NAME, default_gguf_path

EXPECTED_PARAMS = 134_515_008  # SmolLM2-135M, tied embeddings counted once
DEFAULT_MODEL = "smollm2-135m"
DEFAULT_OUT = os.path.join(ROOT, "results", "perf")
MODEL_TITLES = {"smollm2-135m": "SmolLM2-135M-Instruct", "gemma3-270m": "Gemma 3 270M",
                "qwen2.5-coder-1.5b": "Qwen2.5-Coder-1.5B-Instruct"}
PROMPT_TOKENS = 128

# display order (tables, chart, default --engines)
ENGINES = ["hf-eager", "hf-sdpa", "llama.cpp", "kvlab"]
ENGINE_ALIASES = {"hf": "hf-eager", "eager": "hf-eager", "sdpa": "hf-sdpa", "llama": "llama.cpp",
                  "llamacpp": "llama.cpp", "llama-cpp": "llama.cpp"}
HF_ENGINES = ("hf-eager", "hf-sdpa")
# whose tokens the others are compared with: the first of these that ran
TOKEN_REFERENCE_ORDER = ["hf-eager", "hf-sdpa", "kvlab", "llama.cpp"]
COLORS = {"hf-eager": "#f2a541", "hf-sdpa": "#c8553d", "llama.cpp": "#5b8e7d", "kvlab": "#3a7ca5"}

# issue #18's targets for kvlab
TARGET_DECODE_VS_BEST_HF_B1 = 1.5
TARGET_DECODE_VS_SDPA_B8 = 1.2
TARGET_PREFILL_VS_SDPA = 1.0

CSV_COLUMNS = [
    "batch",
    "engine",
    "runs",
    "median_decode_tok_per_s",
    "p10",
    "p90",
    "median_prefill_s",
    "prefill_p10",
    "prefill_p90",
    "decode_vs_best_hf",
    "decode_vs_hf_sdpa",
    "prefill_vs_hf_sdpa",
    "bandwidth_gb_per_s",
    "roofline_tok_per_s",
    "roofline_fraction",
    "tokens_identical",
    "device",
    "threads",
]


def log(msg: str) -> None:
    print(f"[peer-bench] {msg}", file=sys.stderr, flush=True)


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


def runner_path(arg: str | None) -> str:
    """The kvlab runner: --runner, else the debug build under $CARGO_TARGET_DIR or target/."""
    if arg is None:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
        arg = os.path.join(target, "debug", "runner")
    return os.path.abspath(arg)


def model_prompt(runner: str, model: str, n: int) -> list[int]:
    """The first n ids of Hamlet in `model`'s tokenization, as `runner tokens` prints them."""
    with tempfile.TemporaryDirectory() as tmp:
        toml = os.path.join(tmp, "prompt.toml")
        with open(toml, "w", encoding="utf-8") as f:
            f.write(f'[experiment]\nname = "prompt"\nquestion = "Which ids?"\nmodel = "{model}"\n'
                    f'weights = "pretrained"\n\n[workload.perplexity]\ncorpus = "shakespeare:hamlet"\n'
                    f'tokens = {n}\nmode = "streaming"\n')
        out = subprocess.run([runner, "tokens", toml], check=True, capture_output=True, text=True).stdout
    return [int(t) for t in out.replace(",", " ").split()][:n]


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


def gguf_parameter_count(path: str) -> tuple[int, int]:
    """(every tensor's elements, the elements a batch-1 decode step reads). With a separate
    `output.weight` (untied, Qwen2.5) the token embeddings are gathered one row per token, not
    streamed; tied (SmolLM2, Gemma 3), the LM head reads them whole."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    sizes = {t.name: int(t.n_elements) for t in reader.tensors}
    total = sum(sizes.values())
    untied = "output.weight" in sizes
    return total, total - (sizes.get("token_embd.weight", 0) if untied else 0)


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


def compare_tokens(results: dict[str, list[dict]], n: int) -> tuple[str | None, dict[str, dict | None]]:
    """Compares every row of every run of every engine with the reference engine's run 0, row 0
    over the first n tokens. Returns (reference engine, {engine: None if identical, else the first
    divergence {"token", "row", "run", "expected", "got"} (smallest token index, then row, run)})."""
    ref_engine = next((e for e in TOKEN_REFERENCE_ORDER if results.get(e)), None)
    if ref_engine is None:
        return None, {}
    ref = results[ref_engine][0]["tokens"][0][:n]
    out: dict[str, dict | None] = {}
    for engine, runs in results.items():
        first = None
        for k, run in enumerate(runs):
            for r, row in enumerate(run["tokens"]):
                row = row[:n]
                d = first_divergence(ref, row)
                if d is None:
                    continue
                cand = {"token": d, "row": r, "run": k,
                        "expected": ref[d] if d < len(ref) else None,
                        "got": row[d] if d < len(row) else None}
                if first is None or (d, r, k) < (first["token"], first["row"], first["run"]):
                    first = cand
        out[engine] = first
    return ref_engine, out


def divergence_text(div: dict | None, ref_engine: str | None) -> str:
    if div is None:
        return "yes"
    return (f"no (first divergence at token {div['token']}, row {div['row']}, run {div['run']}: "
            f"{div['got']} vs {ref_engine}'s {div['expected']})")


def draw_chart(rows: list[dict], roofline: float | None, out_base: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = sorted({r["batch"] for r in rows})
    engines = [e for e in ENGINES if any(r["engine"] == e for r in rows)]
    width = 0.8 / max(len(engines), 1)
    fig, (ax, axp) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=130, gridspec_kw={"width_ratios": [3, 2]})
    panels = (
        (ax, "median_decode_tok_per_s", "p10", "p90", "decode tokens/s (median, p10–p90 whiskers)", "{:.1f}"),
        (axp, "median_prefill_s", "prefill_p10", "prefill_p90",
         f"prefill seconds, {PROMPT_TOKENS}-token prompt (lower is better)", "{:.2f}"),
    )
    for axis, key, k_lo, k_hi, ylabel, label_fmt in panels:
        for j, engine in enumerate(engines):
            xs, ys, lo, hi = [], [], [], []
            for i, b in enumerate(batches):
                row = next((r for r in rows if r["batch"] == b and r["engine"] == engine), None)
                if row is None:
                    continue
                xs.append(i + (j - (len(engines) - 1) / 2) * width)
                ys.append(row[key])
                lo.append(max(0.0, row[key] - row[k_lo]))
                hi.append(max(0.0, row[k_hi] - row[key]))
            bars = axis.bar(xs, ys, width * 0.95, label=engine, color=COLORS.get(engine), yerr=[lo, hi],
                            capsize=3)
            for rect, y, h in zip(bars, ys, hi):
                axis.annotate(label_fmt.format(y), (rect.get_x() + rect.get_width() / 2, y + h), xytext=(0, 3),
                              textcoords="offset points", ha="center", va="bottom", fontsize=7)
        axis.set_xticks(range(len(batches)))
        axis.set_xticklabels([f"batch {b}" for b in batches])
        axis.set_ylabel(ylabel, fontsize=9)
        axis.grid(axis="y", alpha=0.3)
        top = max([r[k_hi] for r in rows] + ([roofline] if (roofline and axis is ax) else []))
        axis.set_ylim(0, top * 1.18 if top > 0 else 1)
    if roofline is not None and 1 in batches:
        i = batches.index(1)
        ax.hlines(roofline, i - 0.48, i + 0.48, colors="#c0392b", linestyles="dashed",
                  label=f"batch-1 roofline ({roofline:.1f} tok/s)")
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out_base + ".png")
    fig.savefig(out_base + ".svg")
    plt.close(fig)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_x(x: float | None, nd: int = 2) -> str:
    return "" if x is None else f"{x:.{nd}f}x"


def verdict(x: float | None, target: float, higher_is_better: bool) -> str:
    if x is None:
        return "n/a (an engine it needs was not run)"
    ok = x >= target if higher_is_better else x <= target
    return "met" if ok else "not met"


def parse_engines(spec: str | None) -> list[str] | None:
    """--engines value -> engine names in display order (None: the default)."""
    if spec is None or spec.strip() in ("", "default"):
        return None
    names = []
    for raw in spec.split(","):
        raw = raw.strip().lower()
        if not raw:
            continue
        if raw == "all":
            names.extend(ENGINES)
            continue
        name = ENGINE_ALIASES.get(raw, raw)
        if name not in ENGINES:
            sys.exit(f"peer-bench: unknown engine {raw!r} in --engines; use any of {', '.join(ENGINES)} "
                     "(hf = hf-eager)")
        names.append(name)
    if not names:
        sys.exit("peer-bench: --engines is empty")
    return [e for e in ENGINES if e in names]


def llama_binding_check(python: str) -> str | None:
    """None when `python` imports llama_cpp, else the reason it does not."""
    try:
        proc = subprocess.run([python, "-c", "import llama_cpp; print(llama_cpp.__version__)"],
                              capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{python}: {e}"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
        return f"{python} cannot import llama_cpp ({last})"
    return None


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
    ap.add_argument("--llama-python", default=None,
                    help="python with llama-cpp-python for llama_decode.py (default: --hf-python)")
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"kvlab model preset (default {DEFAULT_MODEL}); another preset takes its GGUF from "
                         "`runner model-path`, its prompt from `runner tokens`, and runs llama.cpp and kvlab "
                         "only (the HF engines load SmolLM2's architecture)")
    ap.add_argument("--gguf", default=None, help=f"{GGUF_NAME} (default: kvlab's cache dir)")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--runs", type=int, default=5, help="process invocations per engine and batch (default 5)")
    ap.add_argument("--repeat", type=int, default=1, help="timed generations per process (default 1)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations per process (default 1)")
    ap.add_argument("--new-tokens", type=int, default=128, help="generated tokens per row (default 128)")
    ap.add_argument("--threads", type=int, default=2,
                    help="threads for every engine: torch.set_num_threads, llama.cpp n_threads and "
                         "n_threads_batch, RAYON_NUM_THREADS (default 2)")
    ap.add_argument("--backend", default="flex", help="kvlab backend (default flex)")
    ap.add_argument("--kvlab-attention", choices=["dense", "fused"], default="fused",
                    help="kvlab's attention: fused (one pass on flex, default) or dense (the reference)")
    ap.add_argument("--engines", default=None,
                    help="comma-separated subset of hf-eager, hf-sdpa, llama.cpp, kvlab (hf = hf-eager; "
                         "default: all four, or the three others when --llama-python cannot import llama_cpp)")
    ap.add_argument("--llama-kv-type", choices=("f32", "f16"), default="f32",
                    help="llama.cpp K/V cache type (default f32, like the fp32 peers)")
    ap.add_argument("--llama-flash-attn", choices=("auto", "on", "off"), default="auto",
                    help="llama.cpp flash_attn_type (default auto, llama.cpp's default)")
    ap.add_argument("--out", default=DEFAULT_OUT,
                    help="output dir (default results/perf; another --model: results/perf/models/<model>)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process before giving up")
    ap.add_argument("--rerun-command", default=None, help=argparse.SUPPRESS)  # set by run.sh
    args = ap.parse_args()

    llama_python = args.llama_python or args.hf_python
    engines = parse_engines(args.engines)
    other_model = args.model != DEFAULT_MODEL
    if other_model and engines is None:
        engines = ["llama.cpp", "kvlab"]
    if other_model and any(e in HF_ENGINES for e in engines):
        sys.exit(f"peer-bench: the HF engines load SmolLM2's architecture only, not {args.model}")
    if other_model and args.out == DEFAULT_OUT:
        args.out = os.path.join(DEFAULT_OUT, "models", args.model)
    if engines is None:
        reason = llama_binding_check(llama_python)
        if reason is None:
            engines = list(ENGINES)
        else:
            engines = [e for e in ENGINES if e != "llama.cpp"]
            log(f"llama.cpp left out: {reason}; `pip install llama-cpp-python` into that venv, or pass "
                "--llama-python, to add it")
    elif "llama.cpp" in engines:
        reason = llama_binding_check(llama_python)
        if reason is not None:
            sys.exit(f"peer-bench: --engines asks for llama.cpp but {reason}")
    log(f"engines: {', '.join(engines)}")
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    use_kv = "kvlab" in engines

    runner = runner_path(args.runner)
    if other_model and not args.gguf:
        args.gguf = subprocess.run([runner, "model-path", args.model], check=True, capture_output=True,
                                   text=True).stdout.strip()
    gguf_path = os.path.abspath(args.gguf or default_gguf_path())
    if not os.path.isfile(gguf_path):
        sys.exit(f"peer-bench: {gguf_path} not found; run `cargo run -p runner -- generate --prompt hi` "
                 "once to fetch it, or pass --gguf")

    if (use_kv or other_model) and not os.access(runner, os.X_OK):
        sys.exit(f"peer-bench: kvlab runner {runner} not found; `cargo build -p runner` or pass --runner")

    os.makedirs(args.out, exist_ok=True)
    prompt = model_prompt(runner, args.model, PROMPT_TOKENS) if other_model else hamlet_prompt(PROMPT_TOKENS)
    tmp = tempfile.mkdtemp(prefix="peer-bench-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    ids_file = os.path.join(tmp, "hamlet128.txt")
    with open(ids_file, "w", encoding="utf-8") as f:
        f.write(",".join(map(str, prompt)) + "\n")

    total_params, n_params = gguf_parameter_count(gguf_path)
    if total_params != EXPECTED_PARAMS and not other_model:
        log(f"warning: GGUF holds {total_params:,} parameters, expected {EXPECTED_PARAMS:,}")
    bytes_per_token = 4 * n_params
    log(f"GGUF {gguf_path}: {total_params:,} parameters, {n_params:,} read per token "
        f"-> {bytes_per_token / 1e6:.1f} MB fp32 per batch-1 token")

    env = dict(os.environ)
    env["RAYON_NUM_THREADS"] = str(args.threads)
    # torch and llama.cpp's OpenMP read these too; hf_decode.py also calls torch.set_num_threads and
    # llama_decode.py sets n_threads / n_threads_batch to --threads.
    env["OMP_NUM_THREADS"] = str(args.threads)
    env["MKL_NUM_THREADS"] = str(args.threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("HF_HUB_OFFLINE", "1")

    gen_args = ["--ids-file", ids_file, "--new-tokens", str(args.new_tokens), "--repeat", str(args.repeat),
                "--warmup", str(args.warmup), "--json"]
    llama_opts = ["--kv-type", args.llama_kv_type, "--flash-attn", args.llama_flash_attn]

    def engine_cmd(engine: str, batch: int) -> list[str]:
        if engine in HF_ENGINES:
            return [args.hf_python, os.path.join(HERE, "hf_decode.py"), *gen_args, "--batch", str(batch),
                    "--gguf", gguf_path, "--threads", str(args.threads), "--attn", engine.split("-", 1)[1]]
        if engine == "llama.cpp":
            return [llama_python, os.path.join(HERE, "llama_decode.py"), *gen_args, "--batch", str(batch),
                    "--gguf", gguf_path, "--threads", str(args.threads), *llama_opts]
        model = ["--model", gguf_path] if args.gguf else []  # else kvlab's own cache (same path)
        # global options after the subcommand: before it, clap takes `generate` for an experiment file
        return [runner, "generate", *model, "--backend", args.backend, "--attention", args.kvlab_attention,
                *gen_args, "--batch", str(batch)]

    raw_path = os.path.join(args.out, "peer_raw.jsonl")
    raw = open(raw_path, "w", encoding="utf-8")

    f32_copy = None
    if "llama.cpp" in engines:
        # llama.cpp's F32 copy of the GGUF is written once here (untimed), cached for later runs
        f32_copy = run_json([llama_python, os.path.join(HERE, "llama_decode.py"), "--convert-only",
                             "--gguf", gguf_path, "--threads", str(args.threads)],
                            env, "llama_decode.py --convert-only", args.timeout)
        raw.write(json.dumps({"kind": "llama_f32_copy", **f32_copy}) + "\n")
        log(f"llama.cpp weights: {f32_copy.get('f32_gguf')} "
            f"(vs the gguf package's dequantization: {f32_copy.get('vs_gguf_py_dequantize')})")

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
            shift = k % len(engines)
            order = engines[shift:] + engines[:shift]  # rotate: every engine leads in turn
            for engine in order:
                obj = run_json(engine_cmd(engine, batch), env, f"{engine} batch {batch}", args.timeout)
                results.setdefault((batch, engine), []).append(obj)
                raw.write(json.dumps({"kind": "generate", "run": k, "peer_engine": engine, **obj}) + "\n")
                raw.flush()
                rates = ", ".join(f"{x:.2f}" for x in obj["decode_tok_per_s"])
                prefills = ", ".join(f"{x:.3f}" for x in obj["prefill_s"])
                log(f"batch {batch} run {k + 1}/{args.runs} {engine}: decode {rates} tok/s, prefill "
                    f"{prefills} s (process {obj['_wall_s']:.1f}s, other load "
                    f"{obj.get('_other_cpus', float('nan')):.2f} CPUs)")
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
    summaries = []  # per batch: ratios against the targets, token comparison
    for batch in batches:
        by_engine = {e: results[(batch, e)] for e in engines if results.get((batch, e))}
        ref_engine, divergences = compare_tokens(by_engine, args.new_tokens)
        med_rate, med_prefill = {}, {}
        batch_rows = []
        for engine, runs in by_engine.items():
            rates = [x for r in runs for x in r["decode_tok_per_s"]]
            prefill = [x for r in runs for x in r["prefill_s"]]
            med_rate[engine] = statistics.median(rates)
            med_prefill[engine] = statistics.median(prefill)
            threads = (bw_threads or args.threads) if engine == "kvlab" else runs[0].get("threads")
            batch_rows.append({
                "batch": batch,
                "engine": engine,
                "runs": len(rates),
                "median_decode_tok_per_s": med_rate[engine],
                "p10": percentile(rates, 10),
                "p90": percentile(rates, 90),
                "median_prefill_s": med_prefill[engine],
                "prefill_p10": percentile(prefill, 10),
                "prefill_p90": percentile(prefill, 90),
                "bandwidth_gb_per_s": bw,
                "roofline_tok_per_s": roofline if batch == 1 else None,
                "roofline_fraction": (med_rate[engine] / roofline) if (roofline and batch == 1) else None,
                "tokens_identical": divergence_text(divergences.get(engine), ref_engine),
                "device": device,
                "threads": threads,
            })
        hf_present = [e for e in HF_ENGINES if e in med_rate]
        best_hf = max(hf_present, key=lambda e: med_rate[e]) if hf_present else None
        for row in batch_rows:
            e = row["engine"]
            row["decode_vs_best_hf"] = ratio(med_rate[e], med_rate.get(best_hf))
            row["decode_vs_hf_sdpa"] = ratio(med_rate[e], med_rate.get("hf-sdpa"))
            row["prefill_vs_hf_sdpa"] = ratio(med_prefill[e], med_prefill.get("hf-sdpa"))
        rows.extend(batch_rows)
        summaries.append({
            "batch": batch,
            "best_hf": best_hf,
            "kv_vs_best_hf": ratio(med_rate.get("kvlab"), med_rate.get(best_hf)),
            "kv_vs_sdpa": ratio(med_rate.get("kvlab"), med_rate.get("hf-sdpa")),
            "kv_prefill_vs_sdpa": ratio(med_prefill.get("kvlab"), med_prefill.get("hf-sdpa")),
            "kv_vs_llama": ratio(med_rate.get("kvlab"), med_rate.get("llama.cpp")),
            "kv_prefill_vs_llama": ratio(med_prefill.get("kvlab"), med_prefill.get("llama.cpp")),
            "llama_rate": med_rate.get("llama.cpp"),
            "llama_prefill": med_prefill.get("llama.cpp"),
            "llama_vs_best_hf": ratio(med_rate.get("llama.cpp"), med_rate.get(best_hf)),
            "ref_engine": ref_engine,
            "divergences": divergences,
            "engines": list(by_engine),
        })

    ratio_cols = ("decode_vs_best_hf", "decode_vs_hf_sdpa", "prefill_vs_hf_sdpa", "roofline_fraction",
                  "median_prefill_s", "prefill_p10", "prefill_p90")
    csv_path = os.path.join(args.out, "peer.csv")
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for row in rows:
            out = {}
            for c in CSV_COLUMNS:
                v = row[c]
                if isinstance(v, float):
                    v = f"{v:.4f}" if c in ratio_cols else f"{v:.3f}"
                out[c] = "" if v is None else v
            w.writerow(out)

    def first_json(engine_names, key):
        for (_, e), runs in results.items():
            if e in engine_names and runs and runs[0].get(key) is not None:
                return runs[0].get(key)
        return None

    hf_versions = first_json(HF_ENGINES, "versions")
    kv_backend = first_json(("kvlab",), "backend") or args.backend
    kv_attention = first_json(("kvlab",), "attention") or args.kvlab_attention
    llama_by_batch = [(b, results[(b, "llama.cpp")][0]) for b in batches if results.get((b, "llama.cpp"))]
    llama_json = llama_by_batch[0][1] if llama_by_batch else None
    model_title = MODEL_TITLES.get(args.model, args.model)
    title = (f"{model_title} fp32, {args.threads} thread{'s' if args.threads != 1 else ''}, {device}: "
             f"{', '.join(engines)}")
    draw_chart(rows, roofline, os.path.join(args.out, "peer"), title)

    rerun = args.rerun_command or shlex.join(["python3", "scripts/peer-bench/run.py", *sys.argv[1:]])
    md = []
    md.append(f"# Peer benchmark: {', '.join(engines)} (prefill and decode)\n")
    md.append(f"{model_title}, the same GGUF dequantized to fp32 in every engine; prompt = the "
              f"first {PROMPT_TOKENS} token ids of Hamlet (kvlab's tokenization, which equals llama.cpp's), greedy, {args.new_tokens} new "
              f"tokens; decode tok/s = batch x {args.new_tokens - 1} decode steps / decode seconds "
              f"(prefill timed separately: the {PROMPT_TOKENS}-token prompt of every row in one forward, plus "
              f"the first argmax). {args.runs} process invocations per engine and batch, {args.repeat} timed "
              f"generation(s) after {args.warmup} warm-up each, engine order rotated every run.\n")
    table_start = len(md)
    md.append("| batch | engine | runs | median decode tok/s | p10 | p90 | median prefill s | decode / best HF | "
              "decode / HF sdpa | prefill / HF sdpa | roofline tok/s | fraction of roofline | tokens identical |")
    md.append("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        md.append(
            f"| {row['batch']} | {row['engine']} | {row['runs']} | {fmt(row['median_decode_tok_per_s'])} | "
            f"{fmt(row['p10'])} | {fmt(row['p90'])} | {fmt(row['median_prefill_s'], 3)} | "
            f"{fmt_x(row['decode_vs_best_hf'])} | {fmt_x(row['decode_vs_hf_sdpa'])} | "
            f"{fmt_x(row['prefill_vs_hf_sdpa'])} | {fmt(row['roofline_tok_per_s'])} | "
            f"{fmt(100 * row['roofline_fraction'], 1) + ' %' if row['roofline_fraction'] is not None else ''} | "
            f"{row['tokens_identical']} |")
    md.append("")
    md.append("Decode ratios are median tok/s over the other engine's (>1: faster); the prefill ratio is median "
              "seconds over HF sdpa's (<1: faster). \"best HF\" is the faster of hf-eager and hf-sdpa at that "
              "batch.\n")
    table_end = len(md)

    md.append("## kvlab against the targets (issue #18)\n")
    md.append("| batch | kvlab decode / best HF | kvlab decode / HF sdpa | kvlab prefill / HF sdpa prefill | "
              "llama.cpp decode tok/s | llama.cpp prefill s | llama.cpp decode / best HF | "
              "kvlab decode / llama.cpp | kvlab prefill / llama.cpp prefill |")
    md.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in summaries:
        best = f" ({s['best_hf']})" if s["best_hf"] and s["kv_vs_best_hf"] is not None else ""
        md.append(f"| {s['batch']} | {fmt_x(s['kv_vs_best_hf'])}{best} | {fmt_x(s['kv_vs_sdpa'])} | "
                  f"{fmt_x(s['kv_prefill_vs_sdpa'])} | {fmt(s['llama_rate'])} | {fmt(s['llama_prefill'], 3)} | "
                  f"{fmt_x(s['llama_vs_best_hf'])} | {fmt_x(s['kv_vs_llama'])} | "
                  f"{fmt_x(s['kv_prefill_vs_llama'])} |")
    md.append("")
    for s in summaries:
        if not use_kv:
            md.append(f"- batch {s['batch']}: kvlab not run")
            continue
        checks = []
        if s["batch"] == 1:
            checks.append(f"decode >= {TARGET_DECODE_VS_BEST_HF_B1}x the faster HF: "
                          f"{fmt_x(s['kv_vs_best_hf']) or '-'} -> "
                          f"{verdict(s['kv_vs_best_hf'], TARGET_DECODE_VS_BEST_HF_B1, True)}")
        if s["batch"] == 8:
            checks.append(f"decode >= {TARGET_DECODE_VS_SDPA_B8}x HF sdpa: "
                          f"{fmt_x(s['kv_vs_sdpa']) or '-'} -> "
                          f"{verdict(s['kv_vs_sdpa'], TARGET_DECODE_VS_SDPA_B8, True)}")
        checks.append(f"prefill <= HF sdpa's time: {fmt_x(s['kv_prefill_vs_sdpa']) or '-'} -> "
                      f"{verdict(s['kv_prefill_vs_sdpa'], TARGET_PREFILL_VS_SDPA, False)}")
        md.append(f"- batch {s['batch']}: " + "; ".join(checks))
    md.append("")

    md.append("## Greedy tokens\n")
    for s in summaries:
        divs = {e: d for e, d in s["divergences"].items() if d is not None}
        if s["ref_engine"] is None:
            continue
        if not divs:
            md.append(f"- batch {s['batch']}: all {len(s['engines'])} engines ({', '.join(s['engines'])}) generated "
                      f"identical tokens in every row and run over the {args.new_tokens} new tokens.")
        else:
            parts = [f"{e}: first divergence at token {d['token']} (row {d['row']}, run {d['run']}), "
                     f"{d['got']} instead of {d['expected']}" for e, d in divs.items()]
            same = [e for e in s["engines"] if e not in divs]
            md.append(f"- batch {s['batch']}: compared with {s['ref_engine']}'s run 0 row 0; identical: "
                      f"{', '.join(same) or 'none'}; " + "; ".join(parts) + ".")
    md.append("")

    if bw is not None:
        md.append(f"Roofline: `runner bandwidth` median {bw:.2f} GB/s "
                  f"({', '.join(b['_when'] + ' ' + format(b['gb_per_s'], '.2f') for b in bandwidth)}; {bw_threads} threads) / "
                  f"{n_params:,} parameters read per token (of {total_params:,}: an untied model's token "
                  f"embeddings are gathered, not streamed) x 4 bytes = {bytes_per_token / 1e6:.1f} MB per "
                  f"batch-1 token -> {roofline:.2f} tok/s. Weights only (the KV cache adds ~2 % at 256 positions), so it is an "
                  f"upper bound. Cross-check: torch.sum over 512 MiB of float32 with {args.threads} "
                  f"threads reads {fmt(torch_bw) or '(not run)'} GB/s.\n")
    else:
        md.append(f"Roofline: not measured (kvlab not run). {n_params:,} parameters x 4 bytes = "
                  f"{bytes_per_token / 1e6:.1f} MB per batch-1 token.\n")
    md.append(f"- device: {device}; threads: {args.threads} (torch.set_num_threads, llama.cpp n_threads and "
              f"n_threads_batch, RAYON_NUM_THREADS); logical CPUs: {os.cpu_count()}")
    if other_cpus is not None:
        md.append(f"- other processes on the machine during the run: {other_cpus:.2f} CPUs on average "
                  f"(1-minute load average before it: {fmt(load_start)}); near 0 means a quiet machine, "
                  f"anything comparable to the thread count means contended timings")
    if hf_versions:
        attns = [e.split("-", 1)[1] for e in engines if e in HF_ENGINES]
        md.append(f"- HF: torch {hf_versions.get('torch')}, transformers {hf_versions.get('transformers')}, "
                  f"python {hf_versions.get('python')}; attn_implementation {' and '.join(attns)}, DynamicCache, "
                  f"weights dequantized by the gguf package")
    if llama_json is not None:
        fa = llama_json.get("flash_attn")
        fa_res = llama_json.get("flash_attn_resolved")
        check = (f32_copy or {}).get("vs_gguf_py_dequantize") or llama_json.get("weights_vs_gguf_py") or {}
        same = ("bit-identical to the gguf package's dequantization (what HF loads)"
                if check.get("checked") and check.get("max_abs_diff") == 0.0
                else f"vs the gguf package's dequantization: max |diff| {check.get('max_abs_diff')}"
                if check.get("checked") else "not compared with the gguf package's dequantization")
        md.append(f"- llama.cpp: llama-cpp-python {llama_json.get('versions', {}).get('llama_cpp_python')}, "
                  f"weights `{llama_json.get('weights')}` written by llama_model_quantize (ftype ALL_F32) from the "
                  f"same GGUF, {same}; KV cache {llama_json.get('kv_type')}, flash attention {fa}"
                  f"{' -> ' + fa_res if fa_res and fa_res != fa else ''}, n_threads {llama_json.get('n_threads')}, "
                  f"n_threads_batch {llama_json.get('n_threads_batch')}; "
                  + "; ".join(f"batch {b}: n_seq_max {j.get('n_seq_max')}, n_ctx {j.get('n_ctx')}, n_batch "
                              f"{j.get('n_batch')}, n_ubatch {j.get('n_ubatch')}" for b, j in llama_by_batch)
                  + "; one llama_batch per step carries every row (sequence r = row r), one KV stream per sequence")
    if use_kv:
        md.append(f"- kvlab: backend {kv_backend}, {kv_attention} attention, static KV cache, binary `{display_path(runner)}`, "
                  f"git {git_describe() or 'unknown'}")
    md.append("- raw per-process JSON: `peer_raw.jsonl`; chart: `peer.png` / `peer.svg`\n")
    md.append("Rerun:\n")
    md.append("```sh\n" + rerun + "\n```")
    with open(os.path.join(args.out, "peer.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(md) + "\n")

    print("\n".join(md[table_start:]).split("\nRoofline:")[0].rstrip())
    log(f"wrote {csv_path}, peer.md, peer.png, peer.svg, peer_raw.jsonl in {args.out}")
    if torch_bw is not None and bw is not None and torch_bw > 1.15 * bw:
        log(f"warning: torch.sum read {torch_bw:.2f} GB/s but `runner bandwidth` {bw:.2f} GB/s: the roofline "
            "is probably too low and the roofline fractions too high (a dev-profile runner compiles the "
            "probe at opt-level 1; try run.sh --release)")
    if other_cpus is not None and other_cpus > 0.25:
        log(f"warning: other processes used {other_cpus:.2f} CPUs on average during the run; "
            "timings are contended (rerun on a quiet machine)")
    for s in summaries:
        for e, d in s["divergences"].items():
            if d is not None:
                log(f"warning: batch {s['batch']} {e}: tokens diverge from {s['ref_engine']}'s at token "
                    f"{d['token']} (row {d['row']}, run {d['run']})")


if __name__ == "__main__":
    main()
