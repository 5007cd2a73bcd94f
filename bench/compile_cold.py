"""Compile time of the shared-prefix engine, one setting per process (one GPU, random weights).

Each call builds the model from its config, plans the packs of a few subjects and times the
engine's warm-up (Dynamo tracing, Inductor, Triton) and the first timed pack after it (where
pointwise kernels autotune), with Inductor's and Triton's caches in `--cache-dir`: a new folder
measures a cold compile, the folder of an earlier call a warm one. `--pool ready` starts
Inductor's compile workers and waits until they are ready before compiling (what a run's val
pass gives them time for); `--pool late` leaves them to the first compile. Prints one JSON line.

    python bench/compile_cold.py --model-dir DIR --mmlu-dir DIR --cache-dir /tmp/c1 --pool ready
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from valspeed import model_args, parse_try

    ap = model_args(__doc__)
    ap.add_argument("--cache-dir", required=True, help="Inductor and Triton caches (new: cold)")
    ap.add_argument("--pool", choices=("ready", "late"), default="late")
    ap.add_argument(
        "--try",
        dest="setting",
        default="shared-prefix",
        help="engine:opt=v,... as bench/valspeed.py --try",
    )
    ap.add_argument("--subjects", type=int, default=3, help="first N subjects' questions")
    args = ap.parse_args()
    cache = Path(args.cache_dir)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(cache / "triton")
    cold = not cache.exists()
    t0 = time.perf_counter()
    import torch

    from mmlubench.data.mmlu import load_mmlu
    from mmlubench.data.prompts import build_prompts, load_tokenizer
    from mmlubench.engines import compile_pool, engine_class, engine_options
    from mmlubench.engines.base import Request
    from mmlubench.model.load import load_model

    pool_s = None
    if args.pool == "ready":
        t = time.perf_counter()
        compile_pool.start()
        compile_pool.wait_ready()
        pool_s = time.perf_counter() - t
    data = load_mmlu(args.mmlu_dir, "test")
    keep = set(data.subjects[: args.subjects])
    tok = load_tokenizer(args.model_dir)
    reqs = [
        Request(p.ids, p.prefix_len)
        for p in build_prompts(data, tok, progress=False)
        if p.subject in keep
    ]
    model, _ = load_model(args.model_dir, args.precision, args.device, random_weights=True)
    from mmlubench.device import accel

    def sync() -> None:
        accel.synchronize(args.device)

    name, opts = parse_try(args.setting)
    engine = engine_class(name)(model, engine_options(name, opts), args.device)
    with torch.inference_mode():
        batches = engine.plan(reqs)
        sync()
        t = time.perf_counter()
        engine.warmup(batches)
        sync()
        compile_s = time.perf_counter() - t
        first = []
        for batch in batches[:3]:
            inputs = engine.load(batch)
            sync()
            t = time.perf_counter()
            engine.forward(inputs)
            sync()
            first.append(time.perf_counter() - t)
    from torch._dynamo.utils import compile_times

    print(
        json.dumps(
            {
                "setting": args.setting,
                "pool": args.pool,
                "cache": "cold" if cold else "warm",
                "pool_ready_s": pool_s,
                "compile_s": compile_s,
                "first_packs_s": first,
                "process_s": time.perf_counter() - t0,
                "phases": compile_times(repr="str", aggregate=True),
            }
        )
    )


if __name__ == "__main__":
    main()
