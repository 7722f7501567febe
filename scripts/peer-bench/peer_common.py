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
