#!/usr/bin/env python3
"""Check the GGUF Q/K permutation and the RoPE convention with a from-scratch NumPy forward pass.

llama.cpp's converter permutes the rows of attn_q / attn_k of llama-arch models so that its
interleaved ("normal", pairs (2i, 2i+1)) RoPE gives the same attention as HF's rotate_half RoPE
(pairs (i, i + head_dim/2)) on the original weights. transformers' GGUF loader undoes it
(LlamaTensorProcessor._reverse_permute_weights in transformers/modeling_gguf_pytorch_utils.py):

    # w: dequantized GGUF tensor as NumPy sees it, shape [n_out_rows, n_in] = [n_heads*head_dim, hidden]
    # n = n_head for attn_q, n_head_kv for attn_k
    w.reshape(n, head_dim // 2, 2, n_in).swapaxes(1, 2).reshape(n * head_dim, n_in)

i.e. HF row  h*head_dim + j*(head_dim/2) + i  <-  GGUF row  h*head_dim + 2*i + j   (j in {0,1}).

This script
  1. checks that transformers' loaded q_proj / k_proj weights equal that formula applied to the
     gguf-dequantized tensors (bit-exact), and that v / o / mlp weights are untouched;
  2. runs a float64 NumPy forward over the fixture's 64 logit ids in two ways:
       A: un-permuted Q/K weights + HF rotate_half RoPE,
       B: raw GGUF Q/K weights (no un-permute) + interleaved RoPE (llama.cpp style),
     and compares both with each other and with the transformers float32 logits / fixture top-k.

Usage: python check_rope_permutation.py --gguf PATH [--fixture PATH]
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    rows, n_in = w.shape
    head_dim = rows // n_head
    return w.reshape(n_head, head_dim // 2, 2, n_in).swapaxes(1, 2).reshape(rows, n_in)


def load_gguf(path: str):
    from gguf import GGUFReader, dequantize

    reader = GGUFReader(path)
    f = reader.fields
    cfg = {
        "n_layer": int(f["llama.block_count"].contents()),
        "n_embd": int(f["llama.embedding_length"].contents()),
        "n_head": int(f["llama.attention.head_count"].contents()),
        "n_head_kv": int(f["llama.attention.head_count_kv"].contents()),
        "eps": float(f["llama.attention.layer_norm_rms_epsilon"].contents()),
        "theta": float(f["llama.rope.freq_base"].contents()),
    }
    tensors = {}
    for t in reader.tensors:
        tensors[t.name] = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(
            tuple(int(x) for x in reversed(t.shape))
        )
    return cfg, tensors


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope_cos_sin(T, head_dim, theta):
    inv = theta ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)  # [hd/2]
    ang = np.arange(T, dtype=np.float64)[:, None] * inv[None, :]  # [T, hd/2]
    return np.cos(ang), np.sin(ang)


def rope_half(x, cos, sin):
    """HF rotate_half: pairs (i, i + hd/2). x: [H, T, hd]."""
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def rope_interleaved(x, cos, sin):
    """llama.cpp normal RoPE: pairs (2i, 2i+1). x: [H, T, hd]."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * cos - x1 * sin
    out[..., 1::2] = x1 * cos + x0 * sin
    return out


def forward(cfg, W, ids, mode: str):
    D, H, Hk = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"]
    hd = D // H
    T = len(ids)
    cos, sin = rope_cos_sin(T, hd, cfg["theta"])
    f64 = lambda a: a.astype(np.float64)  # noqa: E731
    emb = f64(W["token_embd.weight"])  # [vocab, D]
    x = emb[ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(cfg["n_layer"]):
        p = f"blk.{l}."
        h = rms_norm(x, f64(W[p + "attn_norm.weight"]), cfg["eps"])
        wq, wk = f64(W[p + "attn_q.weight"]), f64(W[p + "attn_k.weight"])
        if mode == "A":
            wq, wk, rope = unpermute(wq, H), unpermute(wk, Hk), rope_half
        else:
            rope = rope_interleaved
        q = (h @ wq.T).reshape(T, H, hd).transpose(1, 0, 2)
        k = (h @ wk.T).reshape(T, Hk, hd).transpose(1, 0, 2)
        v = (h @ f64(W[p + "attn_v.weight"]).T).reshape(T, Hk, hd).transpose(1, 0, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        rep = H // Hk  # q head h uses kv head h // rep (HF repeat_kv)
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, D)
        x = x + o @ f64(W[p + "attn_output.weight"]).T
        h = rms_norm(x, f64(W[p + "ffn_norm.weight"]), cfg["eps"])
        g = h @ f64(W[p + "ffn_gate.weight"]).T
        u = h @ f64(W[p + "ffn_up.weight"]).T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ f64(W[p + "ffn_down.weight"]).T
    x = rms_norm(x, f64(W["output_norm.weight"]), cfg["eps"])
    out_w = W.get("output.weight", W["token_embd.weight"])  # tied in this file
    return x @ f64(out_w).T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument(
        "--fixture",
        default=os.path.join(
            os.path.dirname(__file__), "..", "..", "crates", "model", "tests", "fixtures", "smollm2_reference.json"
        ),
    )
    ap.add_argument("--no-hf", action="store_true", help="skip loading the model with transformers")
    args = ap.parse_args()

    cfg, W = load_gguf(args.gguf)
    print("gguf config:", cfg)
    with open(args.fixture, encoding="utf-8") as f:
        fx = json.load(f)
    ids = fx["logits"]["ids"]

    la = forward(cfg, W, ids, "A")
    lb = forward(cfg, W, ids, "B")
    print(f"A (unpermute + rotate_half) vs B (raw gguf + interleaved): max|diff| = {np.abs(la - lb).max():.3e}")

    # vs fixture top-k (transformers float32)
    worst, top1_ok = 0.0, 0
    for t, pos in enumerate(fx["logits"]["positions"]):
        tk = pos["top_k"]
        top1_ok += int(np.argmax(la[t]) == tk[0][0])
        for i, v in tk:
            worst = max(worst, abs(la[t, i] - v))
    print(f"A vs fixture top-10 logits: max|diff| = {worst:.3e}; top-1 agree {top1_ok}/{len(ids)}")

    if not args.no_hf:
        import torch
        from transformers import AutoModelForCausalLM

        d, n = os.path.split(os.path.abspath(args.gguf))
        model = AutoModelForCausalLM.from_pretrained(d, gguf_file=n, dtype=torch.float32, attn_implementation="eager")
        sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        H, Hk = cfg["n_head"], cfg["n_head_kv"]
        exact = True
        for l in range(cfg["n_layer"]):
            p, q = f"blk.{l}.", f"model.layers.{l}."
            exact &= np.array_equal(sd[q + "self_attn.q_proj.weight"], unpermute(W[p + "attn_q.weight"], H))
            exact &= np.array_equal(sd[q + "self_attn.k_proj.weight"], unpermute(W[p + "attn_k.weight"], Hk))
            exact &= np.array_equal(sd[q + "self_attn.v_proj.weight"], W[p + "attn_v.weight"])
            exact &= np.array_equal(sd[q + "self_attn.o_proj.weight"], W[p + "attn_output.weight"])
            exact &= np.array_equal(sd[q + "mlp.down_proj.weight"], W[p + "ffn_down.weight"])
        exact &= np.array_equal(sd["model.embed_tokens.weight"], W["token_embd.weight"])
        print(f"transformers q/k == unpermute(gguf), v/o/down/embed == gguf (bit-exact, all layers): {bool(exact)}")
        differs = not np.array_equal(sd["model.layers.0.self_attn.q_proj.weight"], W["blk.0.attn_q.weight"])
        print(f"(and q_proj differs from the raw gguf attn_q: {differs})")
        with torch.no_grad():
            lh = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].double().numpy()
        print(f"A vs transformers float32 logits (all {lh.shape[0]}x{lh.shape[1]}): max|diff| = {np.abs(la - lh).max():.3e}")


if __name__ == "__main__":
    main()
