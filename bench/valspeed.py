"""Core throughput of engine settings on a sample of real prompts (one GPU, random weights).

Sample: every question of every `--every-subject`-th subject (whole subjects, so prefix
sharing is as in the full split). Each `--try` is one setting, `engine:opt=v,opt=v`; settings
run one after another until `--budget-s` is spent (the rest are reported as skipped). Prints
prompt tok/s over core time (synchronized engine calls), computed tok/s and the torch peak.

    python bench/valspeed.py --model-dir DIR --mmlu-dir DIR \\
        --try eager:method=prefix-cache --try eager:method=prefix-cache,batch_size=128
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request, Work
from mmlubench.model.load import load_model


def parse_try(text: str) -> tuple[str, dict]:
    """`engine:opt=v,opt=v`; a value may be a YAML flow mapping or list with its own commas,
    e.g. `shared-prefix:attention_kernel_options={BLOCK_M: 64, BLOCK_N: 64},block_size=64`."""
    name, _, rest = text.partition(":")
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(rest + ","):
        depth += (ch in "{[") - (ch in "}]")
        if ch == "," and depth == 0:
            parts.append(rest[start:i])
            start = i + 1
    opts = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in parts if kv)}
    return name, opts


def measure(engine, requests, device: str) -> dict:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # reserved memory of the previous setting is not this one's
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    core, work = 0.0, Work()
    with torch.inference_mode():
        batches = engine.plan(requests)
        plan_s = time.perf_counter() - t0
        t = time.perf_counter()
        engine.warmup(batches)
        sync()
        compile_s = time.perf_counter() - t
        for batch in batches:
            inputs = engine.load(batch)
            sync()
            t = time.perf_counter()
            engine.forward(inputs)
            sync()
            core += time.perf_counter() - t
            work += batch.work
    prompt = sum(len(r.ids) for r in requests)
    cuda = device.startswith("cuda")
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    reserved = torch.cuda.max_memory_reserved() / 2**30 if cuda else None
    return {
        "batches": len(batches),
        "prompt_tokens": prompt,
        "computed_tokens": work.tokens,
        "padded_tokens": work.padded_tokens,
        "core_s": core,
        "plan_s": plan_s,
        "compile_s": compile_s,
        "whole_s": time.perf_counter() - t0,
        "prompt_tok_per_s": prompt / core,
        "computed_tok_per_s": work.tokens / core,
        "torch_peak_gib": peak,
        "torch_peak_reserved_gib": reserved,
    }


def model_args(doc: str | None) -> argparse.ArgumentParser:
    """The bench scripts' parser with what they all take: the model config and tokenizer
    folder, the MMLU folder, precision and device."""
    ap = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--mmlu-dir", required=True)
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--device", default="cuda")
    return ap


def main() -> None:
    ap = model_args(__doc__)
    ap.add_argument("--every-subject", type=int, default=4)
    ap.add_argument("--try", dest="tries", action="append", required=True)
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    t_start = time.perf_counter()
    tok = load_tokenizer(args.model_dir)
    data = load_mmlu(args.mmlu_dir, "test")
    keep = set(data.subjects[:: args.every_subject])
    prompts = [p for p in build_prompts(data, tok) if p.subject in keep]
    reqs = [Request(p.ids, p.prefix_len) for p in prompts]
    model, _ = load_model(args.model_dir, args.precision, args.device, random_weights=True)
    rows = []
    for text in args.tries:
        if time.perf_counter() - t_start > args.budget_s:
            rows.append({"try": text, "skipped": "budget spent"})
            continue
        name, opts = parse_try(text)
        torch._dynamo.reset()  # each setting compiles afresh: its compile time is its own
        engine = engine_class(name)(model, engine_options(name, opts), args.device)
        try:
            r = measure(engine, reqs, args.device)
        except torch.OutOfMemoryError:
            r = {"error": "out of memory"}
        except Exception as e:  # a setting the compiler rejects is a result, not the end
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
        del engine
        torch.cuda.empty_cache() if args.device.startswith("cuda") else None
        rows.append({"try": text, **r})
        print(json.dumps(rows[-1]), flush=True)
    doc = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "questions": len(reqs),
        "subjects": len(keep),
        "rows": rows,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
