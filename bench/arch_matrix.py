"""The shared-prefix engine on many architectures: speed on real packs, parity with HF eager.

For each model folder (config.json + tokenizer; random weights, the run's precision on the
GPU): the full test split's prompts are planned into packs; the questions of the first
`--packs` packs (plus the one that compiles) run through the engine, timed as the runner times
them (core = synchronized engine calls, compile apart); then `--parity` evenly spread questions
run through the HF model itself (eager engine, method padded, batch 1: whole prompts, no
padding) and through the engine, and their last-position logits are compared (same top token,
relative L2). FLOPs are counted from the modules that ran, independently of mmlubench.metrics:
2 x in x out of every matrix of the decoder layers per token (MoE: stacked expert weights
x top-k / experts; the router in full), 4 x heads x head_dim per attended (query, key) pair and
layer (the windows' pairs in sliding-window layers), 2 x hidden x vocab per LM-head row.

    python bench/arch_matrix.py --mmlu-dir MMLU --out arch.json DIR [DIR ...]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.logits import KeepLogits
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, choice_token_ids, load_tokenizer
from mmlubench.device import accel
from mmlubench.engines import engine_class, engine_options
from mmlubench.engines.base import Request
from mmlubench.engines.packed_attention import decoder_layers, layer_windows
from mmlubench.model.load import load_model
from mmlubench.results.logit_sample import mean_max, row_ratios
from mmlubench.results.metrics import peak_flops
from mmlubench.run.passes import run_pass

DEVICE = "cuda"  # --device


def linear_flops_per_token(model: torch.nn.Module) -> float:
    """2 x weights touched per token in the decoder layers (see the module docstring)."""
    cfg = model.config
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    top_k = getattr(cfg, "num_experts_per_tok", None)
    total = 0.0
    for layer in decoder_layers(model):
        for p in layer.parameters():
            if p.dim() == 2:  # nn.Linear weights, and routers that call F.linear themselves
                total += 2 * p.numel()
            elif p.dim() == 3:  # stacked experts [E, out, in]: only top-k of E run per token
                total += 2 * p[0].numel() * top_k * p.shape[0] / experts
    return total


def attention_flops(model: torch.nn.Module, work) -> float:
    cfg = model.config
    layers = decoder_layers(model)
    attn = layers[0].self_attn
    head_dim = getattr(attn, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_pair = 4 * cfg.num_attention_heads * head_dim
    windows = layer_windows(cfg, len(layers))
    window_pairs = work.attention_pairs if work.window_pairs is None else work.window_pairs
    return per_pair * sum(window_pairs if w else work.attention_pairs for w in windows)


class Sampler:
    """SM clock (MHz) and board power (W) of GPU 0 every 0.1 s while running."""

    def __init__(self):
        import pynvml

        self.nv, self.h = pynvml, None
        try:
            pynvml.nvmlInit()
            self.h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except pynvml.NVMLError:  # no NVIDIA device (a CPU smoke run): no samples
            pass
        self.clock: list[float] = []
        self.power: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while self.h is not None and not self.stop.wait(0.1):
            self.clock.append(self.nv.nvmlDeviceGetClockInfo(self.h, self.nv.NVML_CLOCK_SM))
            self.power.append(self.nv.nvmlDeviceGetPowerUsage(self.h) / 1000)

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def medians(self) -> dict:
        def med(xs: list[float]) -> float | None:
            return statistics.median(xs) if xs else None

        return {"sm_clock_mhz_median": med(self.clock), "power_w_median": med(self.power)}


def device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE.startswith("cuda") else "cpu"


def pass_logits(model, name: str, options: dict, requests, tokenizer) -> tuple:
    engine = KeepLogits(
        engine_class(name)(model, engine_options(name, options), DEVICE), len(requests)
    )
    result = run_pass(name, engine, requests, choice_token_ids(tokenizer), progress=False)
    return result, engine.logits


def compile_phases() -> str:
    """Where compile time went, as Dynamo's own counters say (seconds per phase, summed)."""
    from torch._dynamo.utils import compile_times

    return compile_times(repr="str", aggregate=True)


def speed(model, requests, tokenizer, packs: int) -> dict:
    """The engine on the questions of the first `packs` + 1 packs (the first compiles)."""
    engine = engine_class("shared-prefix")(model, engine_options("shared-prefix", {}), DEVICE)
    planned = engine.plan(requests)
    rows = sorted(r for b in planned[: packs + 1] for r in b.rows)
    subset = [requests[r] for r in rows]
    accel.reset_peak_memory(DEVICE)
    with Sampler() as s:  # the same engine: built (and its projections fused) once
        result = run_pass("infer", engine, subset, choice_token_ids(tokenizer), progress=False)
    w = result.work
    flops = (
        w.tokens * linear_flops_per_token(model)
        + attention_flops(model, w)
        + w.logit_rows * 2 * model.config.hidden_size * model.config.vocab_size
    )
    peak = peak_flops(device_name(), "fp16")
    return {
        "packs_timed": result.batches,
        "questions": len(subset),
        "prompt_tokens": result.prompt_tokens,
        "computed_tokens": w.tokens,
        "compile_s": result.compile_time_s,
        "core_s": result.core_time_s,
        "p_infer_core_tok_s": result.prompt_tokens / result.core_time_s,
        "computed_tok_s": w.tokens / result.core_time_s,
        "executed_tflop": flops / 1e12,
        "mfu_computed": flops / result.core_time_s / peak if peak else None,
        "torch_peak_allocated_gib": (accel.peak_allocated_bytes(DEVICE) or 0) / 2**30,
        **s.medians(),
        "compile_phases": compile_phases(),
    }


def parity(model, requests, tokenizer, n: int) -> dict:
    pick = np.linspace(0, len(requests) - 1, n).round().astype(int)
    sample = [requests[i] for i in pick]
    ref, want = pass_logits(
        model, "eager", {"method": "padded", "batch_size": 1}, sample, tokenizer
    )
    got_r, got = pass_logits(model, "shared-prefix", {}, sample, tokenizer)
    ratios = row_ratios(want.numpy(), got.numpy())
    letters = choice_token_ids(tokenizer)
    same_letter = (want[:, letters].argmax(1) == got[:, letters].argmax(1)).float().mean()
    mean, worst = mean_max(ratios)
    return {
        "questions": n,
        "same_top_token": int((ref.top_ids == got_r.top_ids).sum()),
        "same_choice_letter": float(same_letter),
        "rel_l2_mean": mean,
        "rel_l2_max": worst,
    }


def one(model_dir: Path, mmlu_dir: Path, packs: int, n_parity: int) -> dict:
    t0 = time.perf_counter()
    tokenizer = load_tokenizer(model_dir)
    prompts = build_prompts(load_mmlu(mmlu_dir, "test"), tokenizer, progress=False)
    requests = [Request(p.ids, p.prefix_len) for p in prompts]
    precision = "fp16" if DEVICE.startswith("cuda") else "fp32"
    model, info = load_model(model_dir, precision, DEVICE, random_weights=True, progress=False)
    out = {
        "model": model_dir.name,
        "architecture": info.architecture,
        "params": info.n_params,
        "setup_s": time.perf_counter() - t0,
    }
    try:
        out["speed"] = speed(model, requests, tokenizer, packs)
        out["parity"] = parity(model, requests, tokenizer, n_parity)
    except Exception as e:  # one model's failure must not lose the others' figures
        out["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    out["memory_reserved_gib"] = (accel.peak_reserved_bytes(DEVICE) or 0) / 2**30
    del model
    gc.collect()
    accel.empty_cache(DEVICE)
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| model | p_infer_core | mfu_computed | compile s | peak GiB | clock MHz | "
        "same top | rel L2 mean/max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s, p = r.get("speed", {}), r.get("parity", {})
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error']} |||||||")
            continue
        lines.append(
            f"| {r['model']} | {s['p_infer_core_tok_s']:,.0f} | {s['mfu_computed'] or 0:.1%} | "
            f"{s['compile_s']:.1f} | {s['torch_peak_allocated_gib']:.1f} | "
            f"{s['sm_clock_mhz_median']} | {p['same_top_token']}/{p['questions']} | "
            f"{p['rel_l2_mean']:.1e}/{p['rel_l2_max']:.1e} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "model_dirs", nargs="+", type=Path, help="folders with config.json and a tokenizer"
    )
    ap.add_argument("--mmlu-dir", type=Path, required=True)
    ap.add_argument("--packs", type=int, default=8, help="packs timed per model")
    ap.add_argument("--parity", type=int, default=200, help="questions compared per model")
    ap.add_argument("--out", type=Path, required=True, help="JSON written after each model")
    ap.add_argument("--device", default="cuda", help="cuda (fp16) or cpu (fp32, a smoke run)")
    ap.add_argument(
        "--deadline", type=float, default=1e9, help="seconds: no new model is started after this"
    )
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    t0, rows = time.perf_counter(), []
    for d in args.model_dirs:
        if time.perf_counter() - t0 > args.deadline:
            rows.append({"model": d.name, "error": "not run: deadline"})
            continue
        rows.append(one(d, args.mmlu_dir, args.packs, args.parity))
        args.out.write_text(
            json.dumps(
                {"device": device_name(), "torch": torch.__version__, "rows": rows}, indent=1
            )
        )
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
