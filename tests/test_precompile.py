"""The precompile helper (engines/precompile.py): it keeps one decoder layer of each kind,
compiles them without running them, and what it compiled is what the shared-prefix engine
then finds in Inductor's caches (the caches' own hit counters say so, in a fresh process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import pytest
from arch_helpers import tiny_model

from mmlubench.engines import packed_attention, precompile, precompile_helper
from mmlubench.engines.base import EarlyRun
from mmlubench.engines.packing import plan_packs
from mmlubench.engines.shared_prefix import SharedPrefixEngine
from mmlubench.engines.shared_prefix_options import SharedPrefixOptions

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = SharedPrefixOptions(pack_tokens=512, carry_tokens=128, block_size=128)


@pytest.mark.parametrize(
    ("arch", "overrides", "keep"),
    [
        ("llama", dict(num_hidden_layers=3), 1),
        ("gemma2", dict(num_hidden_layers=4), 2),  # sliding and full layers alternate
        ("qwen2", dict(num_hidden_layers=3), 2),  # full below max_window_layers, then sliding
        ("qwen3_moe", dict(num_hidden_layers=3, mlp_only_layers=[0]), 2),  # dense, then MoE
        ("qwen3_moe", dict(num_hidden_layers=4, decoder_sparse_step=3), 3),  # MoE from layer 2
    ],
)
def test_one_layer_of_each_kind_is_kept(arch, overrides, keep):
    model = tiny_model(arch, **overrides)
    layers = packed_attention.decoder_layers(model)
    windows = packed_attention.layer_windows(model.config, len(layers))
    assert precompile_helper.layers_to_cover(layers, windows) == keep


def test_the_synthetic_questions_fill_whole_packs():
    requests = precompile_helper.synthetic_requests(256, 4096)
    packs = plan_packs(requests, 4096, 1024, True, 128, carry_tokens=256)
    assert len(packs) >= 2
    assert all(len(r.ids) - r.prefix_len >= 128 and r.ids.max() < 256 for r in requests)
    assert len(packs[0].payload.ids) == 4096


def test_finish_without_a_helper_is_none():
    assert precompile.finish() is None


def test_a_helper_left_at_exit_is_stopped(monkeypatch):
    fd, report = tempfile.mkstemp()
    os.close(fd)
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(precompile, "_helper", precompile.Helper(slow, report))
    precompile._stop()  # what atexit calls
    assert slow.poll() is not None and not Path(report).exists()
    assert precompile._helper is None


def test_a_late_helper_is_stopped(monkeypatch):
    fd, report = tempfile.mkstemp()
    os.close(fd)
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    monkeypatch.setattr(precompile, "_helper", precompile.Helper(slow, report))
    out = precompile.finish(timeout_s=0.2)
    assert "stopped" in out["outcome"]
    assert slow.poll() is not None and not Path(report).exists()


def test_a_helper_is_started_only_behind_an_earlier_pass(monkeypatch):
    started = []
    monkeypatch.setattr(precompile, "start", lambda *a: started.append(a))
    options = SharedPrefixOptions(early_compile_workers=False)
    run = dict(device="cuda:0", model_dir="/m", dtype="bfloat16")
    SharedPrefixEngine.start_early(options, EarlyRun(**run, first_pass=True))
    SharedPrefixEngine.start_early(options, EarlyRun(**{**run, "device": "cpu"}, first_pass=False))
    no = SharedPrefixOptions(early_compile_workers=False, precompile=False)
    SharedPrefixEngine.start_early(no, EarlyRun(**run, first_pass=False))
    assert started == []
    SharedPrefixEngine.start_early(options, EarlyRun(**run, first_pass=False))
    assert started == [("/m", "cuda:0", "bfloat16", options)]


def test_the_engine_reports_what_the_helper_did(monkeypatch):
    monkeypatch.setattr(precompile, "finish", lambda: {"outcome": "compiled", "layers": 1})
    engine = SharedPrefixEngine(tiny_model("llama"), OPTIONS, "cpu")
    assert engine.describe()["options"]["precompiled"] == {"outcome": "compiled", "layers": 1}


ENGINE_COMPILE = """
import json, sys
import torch
from mmlubench.engines import compile_pool, precompile_helper
from mmlubench.engines.shared_prefix import SharedPrefixEngine
from mmlubench.engines.shared_prefix_options import SharedPrefixOptions
from mmlubench.model.load import load_model
options = SharedPrefixOptions(**json.loads(sys.argv[1]))
compile_pool.configure()  # as the run's early start does (early_compile_workers)
model, _ = load_model(sys.argv[2], "fp32", "cpu", random_weights=True)
engine = SharedPrefixEngine(model, options, "cpu")
with torch.inference_mode():  # as run/passes.py runs a pass
    engine.warmup(engine.plan(precompile_helper.synthetic_requests(256, options.pack_tokens)))
print(json.dumps(engine.describe()["options"]["compile_caches"]))
"""


def test_the_engine_compiles_from_what_the_helper_compiled(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    precompile.start(str(tiny_model_dir), "cpu", "float32", OPTIONS)
    report = precompile.finish(timeout_s=600)
    assert report["outcome"] == "compiled", report
    assert report["layers"] == 1 and report["graphs"] == 1
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_COMPILE, json.dumps(asdict(OPTIONS)), str(tiny_model_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    caches = json.loads(done.stdout.strip().splitlines()[-1])
    assert caches == {
        "graphs_traced": 1,
        "fxgraph_cache_hit": 1,
        "fxgraph_cache_miss": 0,
        "autograd_cache_hit": 1,
        "autograd_cache_miss": 0,
    }
