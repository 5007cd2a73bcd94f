"""The shared-prefix engine's attention alone, on real packs: FlexAttention with the engine's
block mask against the split varlen form (bench/varlen_split.py) on each backend.

Plans the full test split as the engine does (real tokenizer), takes every `--every`th pack,
and for each draws random q/k/v of the model's head shape; checks that every method gives
FlexAttention's output (max abs difference and relative L2 on the real tokens) and times one
layer's attention per pack with CUDA events. Prints a table; `--out` writes JSON.

    python bench/attn_split.py --model-dir /tmp/ds --mmlu-dir /tmp/mmlu --out attn.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.engines.base import Request
from mmlubench.engines.packing import plan_packs

sys.path.insert(0, str(Path(__file__).parent))
import varlen_split as varlen


def timed(fn, reps: int) -> float:
    """Mean seconds per call of fn() after one warm call."""
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / reps


def measure(p, bm, flex, split, shape: tuple[int, int, int], args, errors: dict) -> dict:
    """One pack: every method's agreement with FlexAttention and its time per layer."""
    H, Hk, D = shape
    T, C, dev = args.pack_tokens, args.carry_tokens, "cuda"
    fill = int(p.last.max()) + 1
    q = torch.randn(T, H, D, device=dev, dtype=torch.float16)
    ka = torch.randn(C + T, Hk, D, device=dev, dtype=torch.float16)
    va = torch.randn(C + T, Hk, D, device=dev, dtype=torch.float16)
    qf, kf, vf = (a.transpose(0, 1)[None].contiguous() for a in (q, ka, va))

    def run_flex():
        return flex(qf, kf, vf, block_mask=bm, enable_gqa=Hk != H)[0].transpose(0, 1)

    t0 = time.perf_counter()
    L = varlen.layout(p.seg_start, p.pre_start, p.pre_end, fill, args.prefix_keys)
    layout_s = time.perf_counter() - t0
    lt = [
        torch.from_numpy(a).to(dev) for a in (L.cu_own, L.cu_q, L.cu_k, L.prefix_idx, L.has_prefix)
    ]
    lens = torch.from_numpy(L.lens)
    pairs = int(
        (
            (np.arange(T)[:fill] + C + 1 - p.seg_start[:fill])
            + (p.pre_end[:fill] - p.pre_start[:fill])
        ).sum()
    )
    ref = run_flex()
    # FlexAttention right after a large GEMM, as in the engine (a clock that drops under load
    # would show here): the pair's time less the GEMM's alone
    xg = torch.randn(T, 4096, device=dev, dtype=torch.float16)
    wg = torch.randn(22016, 4096, device=dev, dtype=torch.float16) * 0.02
    gemm_ms = timed(lambda: xg @ wg.t(), args.reps) * 1e3
    pair_ms = timed(lambda: (xg @ wg.t(), run_flex()), args.reps) * 1e3
    row = {
        "fill": fill,
        "lens": L.lens.tolist(),
        "layout_ms": layout_s * 1e3,
        "useful_gflop": 4 * pairs * H * D / 1e9,
        "flex_ms": timed(run_flex, args.reps) * 1e3,
        "flex_after_gemm_ms": pair_ms - gemm_ms,
    }
    for backend in varlen.BACKENDS:
        for mode, fn in (("eager", varlen.split_attention), ("compiled", split)):
            key = f"{backend}_{mode}"
            try:

                def go(fn=fn, backend=backend):
                    return fn(q, ka, va, C, *lt, lens, backend)

                d = go()[:fill].float() - ref[:fill].float()
                row[key + "_maxabs"] = d.abs().max().item()
                row[key + "_rel_l2"] = (d.norm() / ref[:fill].float().norm()).item()
                row[key + "_ms"] = timed(go, args.reps) * 1e3
            except Exception as e:  # record and go on: a backend may be missing here
                errors[key] = f"{type(e).__name__}: {e}"[:400]
        try:  # the two calls alone (no gather, no merge)
            kp, vp = ka.index_select(0, lt[3]), va.index_select(0, lt[3])
            row[f"{backend}_own_ms"] = (
                timed(
                    lambda b=backend: varlen.varlen_attention(
                        q, ka[C:], va[C:], lt[0], lt[0], lens[:3], True, b
                    ),
                    args.reps,
                )
                * 1e3
            )
            row[f"{backend}_prefix_ms"] = (
                timed(
                    lambda b=backend, k=kp, v=vp: varlen.varlen_attention(
                        q, k, v, lt[1], lt[2], lens[3:], False, b
                    ),
                    args.reps,
                )
                * 1e3
            )
        except Exception as e:
            errors[backend + "_calls"] = f"{type(e).__name__}: {e}"[:400]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--mmlu-dir", required=True)
    ap.add_argument("--every", type=int, default=8)
    ap.add_argument(
        "--every-subject",
        type=int,
        default=1,
        help="plan only every Nth subject (bench/kernel_profile.py's sample: 8)",
    )
    ap.add_argument("--first", type=int, default=0, help="first pack taken")
    ap.add_argument("--count", type=int, default=1000, help="most packs taken")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--pack-tokens", type=int, default=32768)
    ap.add_argument("--carry-tokens", type=int, default=2048)
    ap.add_argument("--prefix-keys", type=int, default=8192)
    ap.add_argument("--out")
    args = ap.parse_args()
    from torch.nn.attention.flex_attention import BlockMask, flex_attention

    with open(f"{args.model_dir}/config.json") as f:
        cfg = json.load(f)
    H = cfg["num_attention_heads"]
    Hk = cfg.get("num_key_value_heads") or H
    D = cfg["hidden_size"] // H
    data = load_mmlu(args.mmlu_dir, "test")
    keep = set(data.subjects[:: args.every_subject])
    prompts = [
        p
        for p in build_prompts(data, load_tokenizer(args.model_dir), "reference", 5, 2048)
        if p.subject in keep
    ]
    reqs = [Request(p.ids, p.prefix_len) for p in prompts]
    T, C = args.pack_tokens, args.carry_tokens
    packs = [b.payload for b in plan_packs(reqs, T, 1024, True, carry_tokens=C)]
    chosen = packs[args.first :: args.every][: args.count]
    dev = "cuda"
    seg = torch.zeros(T, dtype=torch.int32, device=dev)
    ps, pe = torch.zeros_like(seg), torch.zeros_like(seg)

    def mask_mod(b, h, q_idx, kv_idx):
        own = (kv_idx >= seg[q_idx]) & (kv_idx <= q_idx + C)
        return own | ((kv_idx >= ps[q_idx]) & (kv_idx < pe[q_idx]))

    flex = torch.compile(flex_attention, dynamic=False)
    split = torch.compile(varlen.split_attention, dynamic=False, fullgraph=True)
    rows: list[dict] = []
    errors: dict[str, str] = {}
    torch.manual_seed(0)
    for n, p in enumerate(chosen):
        seg.copy_(torch.from_numpy(p.seg_start))
        ps.copy_(torch.from_numpy(p.pre_start))
        pe.copy_(torch.from_numpy(p.pre_end))
        bm = BlockMask.from_kv_blocks(
            *[torch.from_numpy(a).to(dev)[None, None] for a in p.blocks],
            BLOCK_SIZE=128,
            mask_mod=mask_mod,
        )
        row = {"pack": args.first + n * args.every}
        row.update(measure(p, bm, flex, split, (H, Hk, D), args, errors))
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k.endswith("_ms") and k != "layout_ms"]
    total = {k: sum(r.get(k, float("nan")) for r in rows) for k in keys}
    gflop = sum(r["useful_gflop"] for r in rows)
    print(
        f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {len(rows)} packs, "
        f"H={H} Hkv={Hk} D={D}; one layer's attention per pack"
    )
    print(f"{'method':24} {'ms/pack':>9} {'vs flex':>8} {'useful TFLOP/s':>15}")
    for k in keys:
        ms = total[k] / len(rows)
        print(f"{k:24} {ms:9.3f} {total['flex_ms'] / total[k]:8.2f}x {gflop / total[k]:15.1f}")
    for k, e in errors.items():
        print("error", k, e)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "device": torch.cuda.get_device_name(),
                    "torch": torch.__version__,
                    "rows": rows,
                    "errors": errors,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
