#!/usr/bin/env python3
"""Hugging Face transformers peer of `runner generate --json` (same CLI, same JSON schema).

SmolLM2-135M-Instruct is loaded from the same Q4_1 GGUF file kvlab uses; the gguf package
dequantizes every tensor to float32 and the model runs in float32 on the CPU with eager
attention (`--attn eager`, the default here) or PyTorch's scaled_dot_product_attention
(`--attn sdpa`, transformers' own default) and a DynamicCache. Decoding is greedy and written
out by hand (no `generate()`):

* prefill: one forward over the prompt (B identical rows), argmax of the last position;
* decode: N-1 single-token forwards with `past_key_values`, argmax each step.

Prefill and decode are timed separately (time.perf_counter, under torch.inference_mode), so
`decode_s` covers exactly the N-1 decode steps after the prefill step, like kvlab's.
`decode_tok_per_s = batch * (N-1) / decode_s`.

Prints one JSON object on stdout; progress and warnings go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

from peer_common import GGUF_NAME, default_gguf_path, read_ids, timed_repeats


def log(msg: str) -> None:
    print(f"[hf_decode] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ids-file", required=True, help="comma/whitespace-separated prompt token ids")
    ap.add_argument("--new-tokens", type=int, default=128, help="tokens generated per row (N)")
    ap.add_argument("--batch", type=int, default=1, help="rows, each a copy of the prompt (B)")
    ap.add_argument("--repeat", type=int, default=1, help="timed generations (R)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed generations before those (W)")
    ap.add_argument("--json", action="store_true", help="accepted for CLI parity; output is always JSON")
    ap.add_argument("--gguf", default=None, help=f"path to {GGUF_NAME} (default: kvlab's cache)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--attn", choices=("eager", "sdpa"), default="eager",
                    help="attn_implementation: eager (default) or sdpa (transformers' default)")
    args = ap.parse_args()
    if args.new_tokens < 2 or args.batch < 1 or args.repeat < 1 or args.warmup < 0:
        sys.exit("hf_decode: need --new-tokens >= 2, --batch >= 1, --repeat >= 1, --warmup >= 0")

    gguf_path = args.gguf or default_gguf_path()
    if not os.path.isfile(gguf_path):
        sys.exit(
            f"hf_decode: {gguf_path} not found; run `cargo run -p runner -- generate --prompt hi` "
            "once to fetch it, or pass --gguf"
        )

    import torch  # imported late so `--help` is fast

    torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM, DynamicCache

    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()

    prompt = read_ids(args.ids_file, "hf_decode")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(gguf_path)),
        gguf_file=os.path.basename(gguf_path),
        dtype=torch.float32,
        attn_implementation=args.attn,
    )
    model.eval()
    model.to(torch.float32)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, (name, p.dtype)
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once
    attn_used = getattr(model.config, "_attn_implementation", args.attn)
    if attn_used != args.attn:
        sys.exit(f"hf_decode: asked for attn_implementation={args.attn!r}, model uses {attn_used!r}")
    log(f"loaded {gguf_path} ({attn_used} attention) in {time.perf_counter() - t0:.1f}s ({n_params:,} parameters)")

    input_ids = torch.tensor([prompt] * args.batch, dtype=torch.long)

    def generate_once():
        """Returns (tokens [B][N], prefill_s, decode_s)."""
        cache = DynamicCache(config=model.config)
        t_start = time.perf_counter()
        out = model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)  # [B, 1]
        steps = [nxt]
        t_prefill = time.perf_counter()
        for _ in range(args.new_tokens - 1):
            out = model(input_ids=nxt, past_key_values=out.past_key_values, use_cache=True)
            nxt = out.logits[:, -1, :].argmax(dim=-1, keepdim=True)
            steps.append(nxt)
        t_end = time.perf_counter()
        tokens = torch.cat(steps, dim=1).tolist()
        return tokens, t_prefill - t_start, t_end - t_prefill

    with torch.inference_mode():
        tokens, prefill_s, decode_s, rates = timed_repeats(
            generate_once, args.warmup, args.repeat, args.batch, args.new_tokens, log
        )

    result = {
        "engine": f"hf-transformers-{args.attn}",
        "backend": f"torch-cpu-{args.attn}",
        "batch": args.batch,
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "tokens": tokens,
        "prefill_s": prefill_s,
        "decode_s": decode_s,
        "decode_tok_per_s": rates,
        "threads": torch.get_num_threads(),
        "parameters": n_params,
        "cache": "DynamicCache",
        "attn_implementation": attn_used,
        "dtype": "float32",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
