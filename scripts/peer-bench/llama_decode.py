#!/usr/bin/env python3
"""llama.cpp peer of `runner generate --json` and hf_decode.py (same CLI, same JSON schema).

SmolLM2-135M-Instruct comes from the same Q4_1 GGUF file kvlab uses. llama.cpp's own quantize API
(`llama_model_quantize`, ftype LLAMA_FTYPE_ALL_F32, `pure`, `allow_requantize`) writes a float32
copy of it once: every quantized tensor is dequantized by ggml, the F32 tensors (norms) are copied.
The copy is cached outside the repository, by default in kvlab's cache dir under
`peer/<name>.<sha256 of the source, 12 hex>.F32.gguf`, with a `.json` sidecar that records the
source file and how far each tensor is from the `gguf` package's dequantization (what the HF peer
loads). The model then runs in float32 on the CPU through llama-cpp-python's low-level API:

* one context with `n_seq_max = B`, `n_ctx = B x (prompt + N, rounded up to 256)` (one KV stream
  per row), `n_batch = n_ubatch = B x prompt` (the prefill is one graph), `n_threads =
  n_threads_batch = --threads`, K and V cache in float32 (`--kv-type`), flash attention as
  `--flash-attn` (llama.cpp's default `auto`);
* prefill: one `llama_decode` of a batch holding the B copies of the prompt (row r = sequence r,
  positions 0..P-1, logits only for each row's last token), argmax (numpy) of each row's logits
  from `llama_get_logits_ith`;
* decode: N-1 `llama_decode` calls, each one batch of B tokens (row r's previous argmax at
  position P+i in sequence r), argmax per row;
* the KV cache is emptied (`llama_memory_clear`) before every generation, warm-ups included.

Prefill and decode are timed separately (time.perf_counter): `prefill_s` is the prompt batch's
decode plus the first argmax, `decode_s` the N-1 decode steps after it, like kvlab's and HF's.
`decode_tok_per_s = batch * (N-1) / decode_s`.

llama.cpp's log goes to a no-op callback that keeps the lines in memory (they are shown on stderr
when something fails); stdout is one JSON object, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import os
import platform
import re
import sys
import time

from peer_common import GGUF_NAME, default_gguf_path, kvlab_cache_dir, read_ids, timed_repeats

CTX_ALIGN = 256  # llama.cpp pads n_ctx to a multiple of 256 anyway


def log(msg: str) -> None:
    print(f"[llama_decode] {msg}", file=sys.stderr, flush=True)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# llama.cpp log: swallowed, kept for error messages
# ---------------------------------------------------------------------------------------------

LLAMA_LOG: list[str] = []
_LOG_CALLBACK = None  # the ctypes callback object must outlive every llama.cpp call


def silence_llama(llama_cpp) -> None:
    global _LOG_CALLBACK

    @llama_cpp.llama_log_callback
    def _sink(level, text, user_data):  # noqa: ARG001
        try:
            LLAMA_LOG.append(text.decode("utf-8", "replace"))
        except Exception:  # never raise into C
            pass
        if len(LLAMA_LOG) > 4000:
            del LLAMA_LOG[:2000]

    _LOG_CALLBACK = _sink
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def dump_llama_log(tail: int = 60) -> None:
    text = "".join(LLAMA_LOG).splitlines()[-tail:]
    if text:
        sys.stderr.write("[llama_decode] last llama.cpp log lines:\n" + "\n".join(text) + "\n")


def die(msg: str) -> None:
    dump_llama_log()
    sys.exit(f"llama_decode: {msg}")


# ---------------------------------------------------------------------------------------------
# the F32 copy
# ---------------------------------------------------------------------------------------------


def f32_copy_paths(src: str, explicit: str | None) -> tuple[str, str]:
    """(F32 gguf path, sidecar json path) for the source GGUF."""
    if explicit:
        path = os.path.abspath(explicit)
    else:
        stem = os.path.basename(src)
        if stem.endswith(".gguf"):
            stem = stem[: -len(".gguf")]
        stem = re.sub(r"\.Q\d\w*$", "", stem)  # SmolLM2-135M-Instruct.Q4_1 -> SmolLM2-135M-Instruct
        path = os.path.join(kvlab_cache_dir(), "peer", f"{stem}.{sha256_file(src)[:12]}.F32.gguf")
    return path, path + ".json"


def compare_with_gguf_py(src: str, dst: str) -> dict:
    """Max |llama.cpp's F32 value - gguf package's dequantized value| per tensor (what the HF peer
    loads is the latter). Returns a summary; empty if the gguf package is missing."""
    try:
        import numpy as np
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except ImportError as e:
        return {"checked": False, "why": f"gguf package not importable: {e}"}
    a = {t.name: t for t in GGUFReader(src).tensors}
    b = {t.name: t for t in GGUFReader(dst).tensors}
    if set(a) != set(b):
        return {"checked": True, "same_tensor_names": False,
                "only_in_source": sorted(set(a) - set(b))[:5], "only_in_f32": sorted(set(b) - set(a))[:5]}
    worst, worst_name, differing, not_f32 = 0.0, None, 0, []
    for name, ta in a.items():
        tb = b[name]
        if tb.tensor_type.name != "F32":
            not_f32.append(f"{name}:{tb.tensor_type.name}")
            continue
        va = dequantize(ta.data, ta.tensor_type).astype(np.float32).reshape(-1)
        vb = np.asarray(tb.data, dtype=np.float32).reshape(-1)
        if va.shape != vb.shape:
            return {"checked": True, "shape_mismatch": name}
        d = float(np.max(np.abs(va - vb))) if va.size else 0.0
        if d > 0:
            differing += 1
        if d > worst:
            worst, worst_name = d, name
    return {
        "checked": True,
        "tensors": len(a),
        "parameters": int(sum(int(t.n_elements) for t in b.values())),
        "not_f32": not_f32,
        "tensors_differing": differing,
        "max_abs_diff": worst,
        "max_abs_diff_tensor": worst_name,
        "source_types": sorted({t.tensor_type.name for t in a.values()}),
    }


def ensure_f32_copy(llama_cpp, src: str, explicit: str | None, threads: int) -> tuple[str, dict]:
    """Writes the F32 copy with llama_model_quantize unless it is already there; returns
    (path, sidecar dict)."""
    dst, meta_path = f32_copy_paths(src, explicit)
    if os.path.isfile(dst) and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            return dst, json.load(f)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp{os.getpid()}"
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32
    params.allow_requantize = True  # the inputs are Q4_1/Q8_0: "requantize" = dequantize here
    params.pure = True  # every tensor F32, no per-tensor type heuristics
    log(f"writing an F32 copy of {src} with llama_model_quantize (ftype ALL_F32) -> {dst}")
    t0 = time.perf_counter()
    rc = llama_cpp.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(params))
    if rc != 0 or not os.path.isfile(tmp):
        try:
            os.remove(tmp)
        except OSError:
            pass
        die(f"llama_model_quantize({src} -> F32) failed with status {rc}")
    took = time.perf_counter() - t0
    check = compare_with_gguf_py(src, tmp)
    if check.get("checked") and (check.get("not_f32") or not check.get("same_tensor_names", True)
                                 or check.get("shape_mismatch")):
        os.remove(tmp)
        die(f"the F32 copy does not match the source: {check}")
    meta = {
        "source": src,
        "source_sha256": sha256_file(src),
        "source_bytes": os.path.getsize(src),
        "f32_gguf": dst,
        "f32_bytes": os.path.getsize(tmp),
        "made_with": "llama_model_quantize(ftype=LLAMA_FTYPE_ALL_F32, pure=true, allow_requantize=true)",
        "llama_cpp_python": llama_cpp.__version__,
        "convert_s": took,
        "vs_gguf_py_dequantize": check,
    }
    os.replace(tmp, dst)
    with open(meta_path + f".tmp{os.getpid()}", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + f".tmp{os.getpid()}", meta_path)
    log(f"F32 copy written in {took:.1f}s ({meta['f32_bytes'] / 1e6:.1f} MB); vs the gguf package's "
        f"dequantization: {check}")
    return dst, meta


# ---------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids-file", help="comma/whitespace-separated prompt token ids (required unless --convert-only)")
    ap.add_argument("--new-tokens", type=int, default=128, help="tokens generated per row (N)")
    ap.add_argument("--batch", type=int, default=1, help="rows, each a copy of the prompt (B)")
    ap.add_argument("--repeat", type=int, default=1, help="timed generations (R)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations before those (W)")
    ap.add_argument("--json", action="store_true", help="accepted for CLI parity; output is always JSON")
    ap.add_argument("--gguf", default=None, help=f"path to {GGUF_NAME} (default: kvlab's cache)")
    ap.add_argument("--threads", type=int, default=2, help="n_threads and n_threads_batch (default 2)")
    ap.add_argument("--f32-gguf", default=None,
                    help="where the F32 copy lives/is written (default: <kvlab cache>/peer/<name>.<sha>.F32.gguf)")
    ap.add_argument("--kv-type", choices=("f32", "f16"), default="f32",
                    help="K and V cache type (default f32, like the fp32 peers; llama.cpp's own default is f16)")
    ap.add_argument("--flash-attn", choices=("auto", "on", "off"), default="auto",
                    help="flash_attn_type (default auto, llama.cpp's default)")
    ap.add_argument("--convert-only", action="store_true",
                    help="only make sure the F32 copy exists; print its sidecar JSON and exit")
    args = ap.parse_args()
    if not args.convert_only:
        if not args.ids_file:
            sys.exit("llama_decode: --ids-file is required")
        if args.new_tokens < 2 or args.batch < 1 or args.repeat < 1 or args.warmup < 0:
            sys.exit("llama_decode: need --new-tokens >= 2, --batch >= 1, --repeat >= 1, --warmup >= 0")

    gguf_path = os.path.abspath(args.gguf or default_gguf_path())
    if not os.path.isfile(gguf_path):
        sys.exit(
            f"llama_decode: {gguf_path} not found; run `cargo run -p runner -- generate --prompt hi` "
            "once to fetch it, or pass --gguf"
        )

    import numpy as np

    try:
        import llama_cpp
    except ImportError as e:
        sys.exit(f"llama_decode: the llama.cpp binding (llama-cpp-python) is not importable: {e}")
    silence_llama(llama_cpp)
    llama_cpp.llama_backend_init()

    f32_path, meta = ensure_f32_copy(llama_cpp, gguf_path, args.f32_gguf, args.threads)
    if args.convert_only:
        json.dump(meta, sys.stdout)
        sys.stdout.write("\n")
        return

    prompt = read_ids(args.ids_file, "llama_decode")
    B, P, N = args.batch, len(prompt), args.new_tokens

    t0 = time.perf_counter()
    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = 0  # CPU, like the peers
    model = llama_cpp.llama_model_load_from_file(f32_path.encode(), mparams)
    if not model:
        die(f"llama_model_load_from_file({f32_path}) failed")
    vocab = llama_cpp.llama_model_get_vocab(model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    n_params = int(llama_cpp.llama_model_n_params(model))

    kv_type = llama_cpp.GGML_TYPE_F32 if args.kv_type == "f32" else llama_cpp.GGML_TYPE_F16
    fa = {"auto": llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED,
          "off": llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED}[args.flash_attn]
    n_ctx_seq = -(-(P + N) // CTX_ALIGN) * CTX_ALIGN
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = B * n_ctx_seq
    cparams.n_batch = B * P
    cparams.n_ubatch = B * P  # the prefill is one graph, like one forward in the peers
    cparams.n_seq_max = B
    cparams.n_threads = args.threads
    cparams.n_threads_batch = args.threads
    cparams.type_k = kv_type
    cparams.type_v = kv_type
    cparams.flash_attn_type = fa
    cparams.offload_kqv = False
    cparams.embeddings = False
    cparams.no_perf = True
    n_log = len(LLAMA_LOG)
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        die("llama_init_from_model failed")
    ctx_log = "".join(LLAMA_LOG[n_log:])
    # llama.cpp logs what `auto` became ("Flash Attention enabled" / "... disabled")
    found = re.findall(r"Flash Attention (?:was )?(enabled|disabled)", ctx_log, flags=re.IGNORECASE)
    fa_resolved = found[-1].lower() if found else {"on": "enabled", "off": "disabled"}.get(args.flash_attn)
    if llama_cpp.llama_n_seq_max(ctx) < B:
        die(f"the context holds {llama_cpp.llama_n_seq_max(ctx)} sequences, need {B}")
    mem = llama_cpp.llama_get_memory(ctx)
    log(f"loaded {f32_path} in {time.perf_counter() - t0:.1f}s ({n_params:,} parameters, vocab {n_vocab}); "
        f"n_ctx {llama_cpp.llama_n_ctx(ctx)}, n_batch {llama_cpp.llama_n_batch(ctx)}, "
        f"n_ubatch {llama_cpp.llama_n_ubatch(ctx)}, n_seq_max {B}, kv {args.kv_type}, "
        f"flash_attn {args.flash_attn}{' -> ' + fa_resolved if fa_resolved else ''}")

    # the prompt batch never changes: fill it once, outside the timed region
    pbatch = llama_cpp.llama_batch_init(B * P, 0, 1)
    pbatch.n_tokens = B * P
    for r in range(B):
        for j, tok in enumerate(prompt):
            i = r * P + j
            pbatch.token[i] = tok
            pbatch.pos[i] = j
            pbatch.n_seq_id[i] = 1
            pbatch.seq_id[i][0] = r
            pbatch.logits[i] = 1 if j == P - 1 else 0
    sbatch = llama_cpp.llama_batch_init(B, 0, 1)
    sbatch.n_tokens = B
    for r in range(B):
        sbatch.n_seq_id[r] = 1
        sbatch.seq_id[r][0] = r
        sbatch.logits[r] = 1

    def argmax_row(i: int) -> int:
        ptr = llama_cpp.llama_get_logits_ith(ctx, i)
        if not ptr:
            die(f"llama_get_logits_ith({i}) returned NULL")
        return int(np.argmax(np.ctypeslib.as_array(ptr, shape=(n_vocab,))))

    def decode(batch, what: str) -> None:
        rc = llama_cpp.llama_decode(ctx, batch)
        if rc != 0:
            die(f"llama_decode ({what}) returned {rc}")

    def generate_once():
        """Returns (tokens [B][N], prefill_s, decode_s)."""
        llama_cpp.llama_memory_clear(mem, True)
        t_start = time.perf_counter()
        decode(pbatch, "prefill")
        nxt = [argmax_row(r * P + P - 1) for r in range(B)]
        t_prefill = time.perf_counter()
        steps = [nxt]
        for step in range(N - 1):
            pos = P + step
            for r in range(B):
                sbatch.token[r] = nxt[r]
                sbatch.pos[r] = pos
            decode(sbatch, f"step {step + 1}")
            nxt = [argmax_row(r) for r in range(B)]
            steps.append(nxt)
        t_end = time.perf_counter()
        tokens = [[steps[k][r] for k in range(N)] for r in range(B)]
        return tokens, t_prefill - t_start, t_end - t_prefill

    tokens, prefill_s, decode_s, rates = timed_repeats(generate_once, args.warmup, args.repeat, B, N, log)

    result = {
        "engine": "llama.cpp",
        "backend": "ggml-cpu",
        "batch": B,
        "prompt_tokens": P,
        "new_tokens": N,
        "tokens": tokens,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "decode_tok_per_s": rates,
        "threads": args.threads,
        "parameters": n_params,
        "cache": f"llama.cpp KV cache, {args.kv_type}, one stream per sequence (kv_unified off)",
        "kv_type": args.kv_type,
        "flash_attn": args.flash_attn,
        "flash_attn_resolved": fa_resolved,
        "n_ctx": int(llama_cpp.llama_n_ctx(ctx)),
        "n_batch": int(llama_cpp.llama_n_batch(ctx)),
        "n_ubatch": int(llama_cpp.llama_n_ubatch(ctx)),
        "n_seq_max": int(llama_cpp.llama_n_seq_max(ctx)),
        "n_threads": int(llama_cpp.llama_n_threads(ctx)),
        "n_threads_batch": int(llama_cpp.llama_n_threads_batch(ctx)),
        "dtype": "float32",
        "weights": os.path.basename(f32_path),
        "weights_source": gguf_path,
        "weights_vs_gguf_py": meta.get("vs_gguf_py_dequantize"),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "versions": {
            "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__,
            "numpy": np.__version__,
        },
    }
    llama_cpp.llama_batch_free(pbatch)
    llama_cpp.llama_batch_free(sbatch)
    llama_cpp.llama_free(ctx)
    llama_cpp.llama_model_free(model)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
