"""What the peer bench's scripts share: where kvlab's cache keeps the GGUF, and the prompt ids."""

from __future__ import annotations

import os
import re
import sys

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def kvlab_cache_dir() -> str:
    """kvlab's cache dir: $KVLAB_CACHE_DIR, else $XDG_CACHE_HOME/kvlab, else ~/.cache/kvlab."""
    if os.environ.get("KVLAB_CACHE_DIR"):
        return os.environ["KVLAB_CACHE_DIR"]
    if os.environ.get("XDG_CACHE_HOME"):
        return os.path.join(os.environ["XDG_CACHE_HOME"], "kvlab")
    return os.path.join(os.path.expanduser("~"), ".cache", "kvlab")


def default_gguf_path() -> str:
    return os.path.join(kvlab_cache_dir(), "models", GGUF_NAME)


def read_ids(path: str, who: str) -> list[int]:
    """Comma/whitespace-separated token ids; exits naming `who` and the file when there are none."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    ids = [int(tok) for tok in re.split(r"[\s,]+", text) if tok]
    if not ids:
        sys.exit(f"{who}: {path}: no token ids")
    return ids


def timed_repeats(generate_once, warmup: int, repeat: int, batch: int, new_tokens: int, log):
    """Runs `generate_once() -> (tokens, prefill_s, decode_s)` `warmup` times untimed, then
    `repeat` times; returns the last repeat's tokens (as kvlab reports them) and the per-repeat
    prefill seconds, decode seconds and decode tok/s (`batch * (new_tokens - 1) / decode_s`)."""
    prefill_s, decode_s, rates = [], [], []
    tokens = None
    for i in range(warmup):
        generate_once()
        log(f"warmup {i + 1}/{warmup} done")
    for i in range(repeat):
        toks, pf, dc = generate_once()
        if tokens is not None and toks != tokens:
            log(f"warning: repeat {i} generated different tokens than repeat {i - 1}")
        tokens = toks
        prefill_s.append(pf)
        decode_s.append(dc)
        rates.append(batch * (new_tokens - 1) / dc)
        log(f"repeat {i + 1}/{repeat}: prefill {pf:.3f}s, decode {dc:.3f}s, {rates[-1]:.2f} tok/s")
    return tokens, prefill_s, decode_s, rates
