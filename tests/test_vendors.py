"""Vendor plug-ins: a fake accelerator plug-in installed through the `mmlubench.vendors` entry
point drives a whole CPU run (its memory, power and energy figures land in result.json, the
energy arithmetic checked against its scripted counter); the NVIDIA plug-in on a fake NVML;
device strings torch does not know end in one clear line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from mmlubench import vendors
from mmlubench.cli import main
from mmlubench.energy import EnergyReading, pass_energy
from mmlubench.errors import ConfigError

# The fake plug-in's energy counter, in joules, as it reads at each call: val pass start/end,
# infer pass start/end (the counter only moves while a pass runs).
COUNTER = [1000.0, 1250.0, 1300.0, 1420.0]
FAKE_PLUGIN = f'''
"""A fake accelerator plug-in: a CPU that reports device memory, power and an energy counter."""
from mmlubench.vendors.cpu import CpuVendor

COUNTER = {COUNTER!r}
GIB = 1024 ** 3


class FakeVendor(CpuVendor):
    name = "fake"
    device_types = ()
    reads = 0

    def __init__(self, device="cpu"):
        super().__init__(device)
        self.memory_source = "fake-counter"
        self.energy_source = "fake-energy"

    def device_name(self):
        return "Fake Accelerator 9000"

    def memory_used(self):
        return 3 * GIB, 16 * GIB

    def power_w(self):
        return 42.5

    def energy_j(self):
        value = COUNTER[min(FakeVendor.reads, len(COUNTER) - 1)]
        FakeVendor.reads += 1
        return value
'''


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch) -> Path:
    """Install the fake plug-in as a distribution with an entry point, on sys.path."""
    site = tmp_path / "site"
    (site / "fake_accel").mkdir(parents=True)
    (site / "fake_accel" / "__init__.py").write_text(FAKE_PLUGIN, encoding="utf-8")
    info = site / "fake_accel-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-accel\nVersion: 1.0\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[mmlubench.vendors]\nfake = fake_accel:FakeVendor\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("fake_accel", None)


def test_entry_point_plugin_is_found(fake_plugin):
    assert vendors.plugins()["fake"] == "fake_accel:FakeVendor"
    vendor = vendors.open_vendor("cpu", "fake")
    assert vendor.device_name() == "Fake Accelerator 9000"
    assert vendors.open_vendor("cpu").name == "cpu"  # not named: the device type's plug-in


def test_fake_vendor_drives_a_run(fake_plugin, tmp_path, tiny_model_dir, mmlu_dir):
    vendor_yaml = tmp_path / "fake.yaml"
    vendor_yaml.write_text(textwrap.dedent("""\
        # A vendor file: its plug-in, device, precision, engine options, peak per precision.
        vendor: fake
        device: cpu
        precision: fp32
        peak_flops: {fp32: 2.0e12, fp16: 8.0e12}
        engines:
          inductor: {mode: null, warmup_iters: 1, warmup_times: 1}
        """), encoding="utf-8")
    out = tmp_path / "runs"
    args = ["run", "--vendor", str(vendor_yaml), "--data-dir", str(tiny_model_dir.parent),
            "--weight-dir", tiny_model_dir.name, "--mmlu-dir", str(mmlu_dir),
            "--subjects", "abstract_algebra,global_facts", "--limit", "2", "--random-weights",
            "--engine", "inductor", "--output-dir", str(out), "--no-progress",
            "--mem-sample-interval", "0.05"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    (run_dir,) = out.iterdir()
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    env, mem, m = result["environment"], result["memory"], result["metrics"]
    assert env["vendor"] == "fake" and env["device_name"] == "Fake Accelerator 9000"
    assert mem["source"] == "fake-counter" and mem["vendor"] == "fake"
    assert m["mem_peak_used_bytes"] == 3 * 1024**3 and m["mem_total_bytes"] == 16 * 1024**3
    assert m["mem_source"] == "fake-counter"
    assert mem["power_samples"] and {w for _, w in mem["power_samples"]} == {42.5}
    # MFU against the vendor file's fp32 peak: flops/token x computed tokens / core time / peak.
    infer = result["passes"]["infer"]
    assert m["peak_flops_per_s"] == 2.0e12
    assert m["mfu"] == pytest.approx(
        m["flops_per_token"] * infer["computed_tokens"] / infer["core_time_s"] / 2.0e12)
    # Energy: the counter's differences, computed here from COUNTER.
    for name, joules in (("val", COUNTER[1] - COUNTER[0]), ("infer", COUNTER[3] - COUNTER[2])):
        p = result["passes"][name]
        assert p["energy_j"] == joules
        assert p["energy_source"] == "fake-energy"
        assert p["tokens_per_joule"] == pytest.approx(p["prompt_tokens"] / joules)
        assert p["joules_per_question"] == pytest.approx(joules / p["questions"])
        assert p["avg_power_w"] == pytest.approx(joules / p["energy_window_s"])
        assert p["energy_window_s"] >= p["whole_time_s"]  # the window holds the whole pass
    assert m["energy_j"] == COUNTER[3] - COUNTER[2]  # the table's figures: the infer pass
    assert "infer energy: 120 J, " in stdout.getvalue()
    # The HTML report charts power over time; compare lists each run's energy.
    from mmlubench import compare, document, html_report

    doc = document.load(run_dir)
    page = html_report.render(doc)
    assert 'alt="device power over time"' in page and "infer.energy_j" in page
    text = compare.format_compare([doc, doc], ["a", "b"])
    assert "energy (infer) b: 120 J (1.00x), " in text
    assert f"{(m['prompt_tokens'] / 120):,.1f} tok/J (1.00x)" in text


def test_run_without_a_counter_has_null_energy(tmp_path, tiny_model_dir, mmlu_dir):
    out = tmp_path / "runs"
    args = ["run", "--data-dir", str(tiny_model_dir.parent), "--weight-dir",
            tiny_model_dir.name, "--mmlu-dir", str(mmlu_dir), "--subjects", "global_facts",
            "--limit", "1", "--device", "cpu", "--precision", "fp32", "--random-weights",
            "--engine", "null", "--no-validation", "--output-dir", str(out), "--no-progress"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    (run_dir,) = out.iterdir()
    result = json.loads((run_dir / "result.json").read_text(encoding="utf-8"))
    assert result["environment"]["vendor"] == "cpu"
    assert result["passes"]["infer"]["energy_j"] is None
    assert result["passes"]["infer"]["tokens_per_joule"] is None
    assert result["metrics"]["mem_source"] == "none"


def test_pass_energy_sums_devices():
    readings = [EnergyReading(300.0, 10.0, "nvml"), EnergyReading(500.0, 12.5, "nvml")]
    e = pass_energy(readings, prompt_tokens=16000, questions=40)
    assert e["energy_j"] == 800.0
    assert e["avg_power_w"] == 800.0 / 12.5  # all devices over the slowest one's window
    assert e["tokens_per_joule"] == 20.0
    assert e["joules_per_question"] == 20.0
    assert e["energy_per_device_j"] == [300.0, 500.0]
    # One device without a figure: the pass has none (no partial sum passed off as a total).
    assert pass_energy([readings[0], EnergyReading(None, 3.0, None)], 1, 1)["energy_j"] is None
    assert pass_energy([None], 1, 1)["energy_j"] is None


@pytest.mark.parametrize("device,message", [
    ("npu", "command line: key 'device': torch .* does not know device type 'npu' .*; "
            "install torch_npu"),
    ("musa:1", "does not know device type 'musa' .*; install torch_musa"),
    ("xpu", "'xpu' asked for, but torch sees no xpu device"),
    ("Cuda:x", "command line: key 'device': expected a torch device such as"),
])
def test_unknown_device_is_one_clear_line(device, message, capsys, tmp_path):
    if device == "xpu" and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    rc = main(["run", "--device", device, "--output-dir", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("mmlubench: error: ")
    assert re.search(message, err), err
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_plugin_is_named():
    with pytest.raises(ConfigError, match=r"no vendor plug-in 'acme' .*mmlubench\.vendors"):
        vendors.load_plugin("acme")


class FakeNvml(types.ModuleType):
    """pynvml's calls the NVIDIA plug-in makes, with fixed device figures."""

    class NVMLError(Exception):
        pass

    def __init__(self):
        super().__init__("pynvml")
        self.energy_mj = 123_456_789

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByUUID(self, uuid):
        assert uuid == "GPU-0000-1111"
        return "handle"

    def nvmlDeviceGetMemoryInfo(self, handle):
        return types.SimpleNamespace(used=5 * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.energy_mj

    def nvmlDeviceGetPowerUsage(self, handle):
        return 312_250  # milliwatts

    def nvmlSystemGetDriverVersion(self):
        return "575.51"


def test_nvidia_plugin_reads_nvml(monkeypatch):
    nvml = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(uuid="0000-1111"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    from mmlubench.vendors.nvidia import NvidiaVendor

    vendor = NvidiaVendor("cuda:0")
    assert vendor.memory_source == "nvml" and vendor.energy_source is not None
    assert vendor.memory_used() == (5 * 2**30, 80 * 2**30)
    assert vendor.energy_j() == 123_456.789  # millijoules -> joules
    assert vendor.power_w() == 312.25
    assert vendor.device_name() == "NVIDIA H100 80GB HBM3"
    assert vendor.versions()["driver"] == "575.51"
