"""Parity of the fast paths against the plain eager model, on real prompts, on the GPU.

Sample: every `--every`-th test question plus every third prompt that needed truncation (longer
than max_seq_len before truncation). Reference: the HF model in eager mode, batch 1, no padding,
its ids only. Checked: the val methods `prefix-cache` (HF DynamicCache of each prefix, suffix
batches against it) and `padded`, and the infer engine `shared-prefix`; on request (`--only
...,fp8`) also `shared-prefix` with fp8 linear layers (engines/fp8.py) against the same fp16
reference: the accuracy cost of fp8 (needs a GPU with FP8 units). For each question: the
relative L2 error of the last-position logits (||x - ref|| / ||ref||, fp32), whether the argmax
token is the same, and whether the argmax over the four answer letters' logits (the choices
rule) is the same. Writes JSON; prints a short table.

    python bench/parity.py --model-dir DIR --mmlu-dir DIR --out parity.json
    python bench/parity.py --model-dir DIR --mmlu-dir DIR --out fp8.json --only fp8
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import transformers
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from valspeed import model_args  # a bench script beside this one

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.model.load import load_model

CHECKED = {  # name -> (engine, options)
    "eager_prefix_cache": ("eager", {"method": "prefix-cache"}),
    "eager_padded": ("eager", {"method": "padded", "batch_size": 32}),
    "shared_prefix": ("shared-prefix", {}),
    "fp8": ("shared-prefix", {"fp8": True}),  # not by default: needs FP8 units
}
DEFAULT = ["eager_prefix_cache", "eager_padded", "shared_prefix"]


def logits_of(engine, requests: Sequence[Request], device: str) -> tuple[torch.Tensor, float]:
    """Last-position logits [n, vocab] (fp32, host) in request order, and the core seconds."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    out = torch.empty(len(requests), engine.vocab_size)
    core = 0.0
    with torch.inference_mode():
        batches = engine.plan(requests)
        engine.warmup(batches)
        for batch in batches:
            inputs = engine.load(batch)
            sync()
            t = time.perf_counter()
            logits = engine.forward(inputs)
            sync()
            core += time.perf_counter() - t
            out[batch.rows] = logits.float().cpu()
    return out, core


def compare(ref: torch.Tensor, other: torch.Tensor, choice_ids: Sequence[int]) -> dict:
    rel = (other - ref).norm(dim=-1) / ref.norm(dim=-1)
    letters = list(choice_ids)
    return {
        "rel_l2_max": float(rel.max()),
        "rel_l2_mean": float(rel.mean()),
        "rel_l2_median": float(rel.median()),
        "same_argmax": float((other.argmax(-1) == ref.argmax(-1)).float().mean()),
        "same_choice": float(
            (other[:, letters].argmax(-1) == ref[:, letters].argmax(-1)).float().mean()
        ),
        "max_abs": float((other - ref).abs().max()),
    }


def main() -> None:
    ap = model_args(__doc__)
    ap.add_argument("--every", type=int, default=28)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--only",
        default=",".join(DEFAULT),
        help=f"comma-separated subset of {', '.join(CHECKED)}, run in that order "
        f"(default: {','.join(DEFAULT)})",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        help="shared-prefix option=value (for shared_prefix and fp8)",
    )
    ap.add_argument(
        "--real-weights",
        action="store_true",
        help="load the checkpoint in --model-dir (default: random weights of its config)",
    )
    ap.add_argument(
        "--speed-first",
        action="store_true",
        help="first time the default eager val over the whole split (valspeed.py)",
    )
    args = ap.parse_args()

    tok = load_tokenizer(args.model_dir)
    t = time.perf_counter()
    prompts = build_prompts(load_mmlu(args.mmlu_dir, "test"), tok)
    tokenize_s = time.perf_counter() - t
    truncated = [i for i, p in enumerate(prompts) if p.dropped]
    sample = sorted(set(range(0, len(prompts), args.every)) | set(truncated[::3]))
    reqs = [Request(prompts[i].ids, prompts[i].prefix_len) for i in sample]
    model, info = load_model(
        args.model_dir, args.precision, args.device, random_weights=not args.real_weights
    )

    def run(name: str, options: dict) -> tuple[torch.Tensor, float]:
        engine = engine_class(name)(model, engine_options(name, options), args.device)
        return logits_of(engine, reqs, args.device)

    checked = {k: CHECKED[k] for k in args.only.split(",") if k}
    sp_opts = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    for key in ("shared_prefix", "fp8"):
        if key in checked:
            checked[key] = ("shared-prefix", {**sp_opts, **CHECKED[key][1]})
    print(f"tokenized in {tokenize_s:.1f} s; {len(reqs)} questions; model ready", flush=True)
    speed = None
    if args.speed_first:
        from valspeed import measure  # bench/ is on sys.path when run as a script

        everything = [Request(p.ids, p.prefix_len) for p in prompts]
        engine = engine_class("eager")(model, engine_options("eager", {}), args.device)
        speed = {"options": engine.describe(), **measure(engine, everything, args.device)}
        del engine
        print("whole split, eager default:", json.dumps(speed), flush=True)
        with open(args.out, "w") as f:
            json.dump({"val_speed_whole_split": speed}, f, indent=2)
    ref, ref_s = run("eager", {"method": "padded", "batch_size": 1})
    print(f"eager batch 1: core {ref_s:.1f} s", flush=True)
    doc = {
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "precision": args.precision,
        "questions": len(sample),
        "truncated_in_sample": len(set(sample) & set(truncated)),
        "longest_prompt_tokens": max(len(r.ids) for r in reqs),
        "tokenize_full_test_s": tokenize_s,
        "core_s": {"eager_b1": ref_s},
        "options": {k: v[1] for k, v in checked.items()},
        "model": info.to_json(),
        "random_weights": not args.real_weights,
        "val_speed_whole_split": speed,
    }
    for key, (name, options) in checked.items():
        logits, core_s = run(name, options)
        doc["core_s"][key] = core_s
        doc[f"{key}_vs_eager"] = c = compare(ref, logits, choice_token_ids(tok))
        print(
            f"  {key} vs eager b1: rel L2 max {c['rel_l2_max']:.2e} mean "
            f"{c['rel_l2_mean']:.2e}, same argmax {100 * c['same_argmax']:.2f}%, same "
            f"letter {100 * c['same_choice']:.2f}%, core {core_s:.2f} s",
            flush=True,
        )
        with open(args.out, "w") as f:  # after every engine: a time-out keeps what was done
            json.dump(doc, f, indent=2)
    print(
        f"parity on {doc['device_name']}, {len(sample)} questions "
        f"({doc['truncated_in_sample']} truncated), {args.precision}"
    )


if __name__ == "__main__":
    main()
