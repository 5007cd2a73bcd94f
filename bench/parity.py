"""Parity of the fast paths against the plain eager model, on real prompts, on the GPU.

Sample: every `--every`-th test question plus every third prompt that needed truncation (longer
than max_seq_len before truncation). Reference: the HF model in eager mode, batch 1, no padding.
Checked: the shared-prefix engine, and the batched/padded eager val. For each question the
relative L2 error of the last-position logits (||x - ref|| / ||ref||, fp32) and whether the
argmax token is the same. Writes JSON; prints a short table.

    python bench/parity.py --model-dir DIR --mmlu-dir DIR --out parity.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import transformers
import yaml

from mmlubench.data import load_mmlu
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.model import load_model
from mmlubench.passes import run_pass
from mmlubench.prompts import build_prompts, choice_token_ids, load_tokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logits import KeepLogits


def compare(ref: torch.Tensor, other: torch.Tensor) -> dict:
    rel = (other - ref).norm(dim=-1) / ref.norm(dim=-1)
    return {
        "rel_l2_max": float(rel.max()),
        "rel_l2_mean": float(rel.mean()),
        "same_argmax": float((other.argmax(-1) == ref.argmax(-1)).float().mean()),
        "max_abs": float((other - ref).abs().max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--mmlu-dir", required=True)
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--every", type=int, default=28)
    ap.add_argument("--out", required=True)
    ap.add_argument("--set", action="append", default=[], help="shared-prefix option=value")
    args = ap.parse_args()

    tok = load_tokenizer(args.model_dir)
    t = time.perf_counter()
    prompts = build_prompts(load_mmlu(args.mmlu_dir, "test"), tok)
    tokenize_s = time.perf_counter() - t
    truncated = [i for i, p in enumerate(prompts) if p.dropped]
    sample = sorted(set(range(0, len(prompts), args.every)) | set(truncated[::3]))
    reqs = [Request(prompts[i].ids, prompts[i].prefix_len) for i in sample]
    model, info = load_model(args.model_dir, args.precision, args.device, random_weights=True)
    cids = choice_token_ids(tok)

    def run(name: str, **options) -> tuple[torch.Tensor, float]:
        engine = KeepLogits(engine_class(name)(model, engine_options(name, options), args.device),
                            len(reqs))
        r = run_pass(name, engine, reqs, cids, progress=False)
        return engine.logits, r.core_time_s

    sp_opts = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    ref, ref_s = run("eager", batch_size=1, full_logits=False)
    padded, padded_s = run("eager", batch_size=32, batch_tokens=32768)
    shared, shared_s = run("shared-prefix", **sp_opts)
    doc = {
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "precision": args.precision,
        "questions": len(sample),
        "truncated_in_sample": len(set(sample) & set(truncated)),
        "longest_prompt_tokens": max(len(r.ids) for r in reqs),
        "tokenize_full_test_s": tokenize_s,
        "core_s": {"eager_b1": ref_s, "eager_padded": padded_s, "shared_prefix": shared_s},
        "shared_prefix_vs_eager": compare(ref, shared),
        "eager_padded_vs_eager": compare(ref, padded),
        "shared_prefix_options": sp_opts,
        "model": info.to_json(),
    }
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
    print(f"parity on {doc['device_name']}, {len(sample)} questions "
          f"({doc['truncated_in_sample']} truncated), {args.precision}")
    for key in ("shared_prefix_vs_eager", "eager_padded_vs_eager"):
        c = doc[key]
        print(f"  {key}: rel L2 max {c['rel_l2_max']:.2e} mean {c['rel_l2_mean']:.2e}, "
              f"same argmax {100 * c['same_argmax']:.2f}%")


if __name__ == "__main__":
    main()
