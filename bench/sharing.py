"""How much prefix sharing saves, on the host only: computed tokens per prompt token.

Builds the prompts of the whole test split with a tokenizer folder (and the prompt rule of a
case config), then plans them as the shared-prefix infer engine (packs, with and without
carrying prefixes across packs) and the eager val's prefix-cache method (suffix batches)
would, and prints the tokens each computes per prompt token. No model, no device. `--verify`
also tokenizes every whole prompt and checks that the spliced ids are identical.

    python bench/sharing.py --model-dir ../shared/llama-3-8b --mmlu-dir ../shared/mmlu/data
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import PromptTokenizer, build_prompts, few_shot_prefix, load_tokenizer
from mmlubench.engines.base import Request
from mmlubench.engines.batching import plan_prefix_cache
from mmlubench.engines.packing import plan_packs


def verify(prompts, tokenizer, style: str) -> int:
    """Number of prompts whose ids differ from the whole prompt tokenized at once."""
    pt = PromptTokenizer(tokenizer, style)
    whole = pt.encode_many([p.text for p in prompts])
    return sum(p.ids.tolist() != w for p, w in zip(prompts, whole, strict=True))


def prefix_tokens_alone(dataset, pt: PromptTokenizer, few_shots: int, style: str) -> int:
    """Tokens of the untruncated few-shot prefixes, each tokenized on its own (with BOS)."""
    return sum(
        len(pt.encode(few_shot_prefix(s, dataset.dev[s], few_shots, style)))
        for s in dataset.subjects
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", required=True, help="folder with tokenizer.json")
    ap.add_argument("--mmlu-dir", required=True)
    ap.add_argument("--config", help="case YAML: prompt_style, few_shots, max_seq_len from it")
    ap.add_argument("--style", default="reference")
    ap.add_argument("--few-shots", type=int, default=5)
    ap.add_argument("--max-seq-len", type=int, default=2048)
    ap.add_argument("--pack-tokens", type=int, default=32768)
    ap.add_argument(
        "--carry-tokens",
        type=int,
        default=2048,
        help="the engine's carry_tokens (the packs are also planned with 0)",
    )
    ap.add_argument("--verify", action="store_true", help="check ids against whole prompts")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    if args.config:
        from mmlubench.config.config import load_config

        cfg = load_config(args.config)
        args.style, args.few_shots = cfg.prompt_style, cfg.few_shots
        args.max_seq_len = cfg.max_seq_len

    tok = load_tokenizer(args.model_dir)
    dataset = load_mmlu(args.mmlu_dir, "test")
    t = time.perf_counter()
    prompts = build_prompts(dataset, tok, args.style, args.few_shots, args.max_seq_len)
    tokenize_s = time.perf_counter() - t
    reqs = [Request(p.ids, p.prefix_len) for p in prompts]
    t = time.perf_counter()
    packs = plan_packs(reqs, args.pack_tokens, 1024, True, carry_tokens=args.carry_tokens)
    plan_s = time.perf_counter() - t
    uncarried = sum(b.work.tokens for b in plan_packs(reqs, args.pack_tokens, 1024, True))
    suffix_batches = plan_prefix_cache(reqs, 64, 32768)
    prompt_tokens = sum(len(r.ids) for r in reqs)
    packed = sum(b.work.tokens for b in packs)
    cached = sum(b.work.tokens for b in suffix_batches)
    alone = prefix_tokens_alone(
        dataset, PromptTokenizer(tok, args.style), args.few_shots, args.style
    )
    shared = {p.ids[: p.prefix_len].tobytes(): p.prefix_len for p in prompts if p.prefix_len}
    doc = {
        "tokenizer": os.path.abspath(args.model_dir),
        "style": args.style,
        "questions": len(prompts),
        "prompt_tokens": prompt_tokens,
        "truncated": sum(1 for p in prompts if p.dropped),
        "unshared_prompts": sum(1 for p in prompts if not p.prefix_len),
        "distinct_prefixes": len(shared),
        "untruncated_prefix_tokens_alone": alone,
        "median_shared_prefix_tokens": float(np.median([p.prefix_len for p in prompts])),
        "longest_shared_prefix_tokens": max(shared.values(), default=0),
        "prefixes_longer_than_carry": sum(1 for n in shared.values() if n > args.carry_tokens),
        "carry_tokens": args.carry_tokens,
        "packs": len(packs),
        "packed_computed_tokens": packed,
        "packed_computed_per_prompt_token": packed / prompt_tokens,
        "packed_no_carry_computed_tokens": uncarried,
        "packed_no_carry_computed_per_prompt_token": uncarried / prompt_tokens,
        "prefix_cache_computed_tokens": cached,
        "prefix_cache_computed_per_prompt_token": cached / prompt_tokens,
        "tokenize_s": tokenize_s,
        "plan_packs_s": plan_s,
        "cpus": os.cpu_count(),
    }
    if args.verify:
        doc["ids_differing_from_whole_prompts"] = verify(prompts, tok, args.style)
    print(json.dumps(doc, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
