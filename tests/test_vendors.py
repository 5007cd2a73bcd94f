"""Vendor plug-ins: a fake accelerator plug-in installed through the `mmlubench.vendors` entry
point drives a whole CPU run by its name, `--vendor fake` (its config, memory, power and energy
figures land in result.json, the energy arithmetic checked against its scripted counter, and
result.json has the shape of a plain CPU run's); `--vendor NAME` resolution and its errors; the
NVIDIA plug-in on a fake NVML; device strings torch does not know end in one clear line."""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import types
from pathlib import Path

import pytest
import torch

from mmlubench.cli.main import main
from mmlubench.config.config import CONFIG_DIR, load_config
from mmlubench.config.vendor_layer import vendor_layer
from mmlubench.device import accel, vendors
from mmlubench.device.energy import EnergyReading, pass_energy
from mmlubench.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The fake plug-in's energy counter, in joules, as it reads at each call: val pass start/end,
# infer pass start/end (the counter only moves while a pass runs).
COUNTER = [1000.0, 1250.0, 1300.0, 1420.0]
FAKE_PLUGIN = f'''
"""A fake accelerator plug-in: a CPU that reports device memory, power and an energy counter."""
from mmlubench.device.vendors.cpu import CpuVendor

COUNTER = {COUNTER!r}
GIB = 1024 ** 3


class FakeVendor(CpuVendor):
    name = "fake"
    device_types = ()
    reads = 0
    # What `--vendor fake` applies (the plug-in's vendor YAML, inline): `vendor: fake` implied.
    config = dict(device="cpu", precision="fp32", peak_flops=dict(fp32=2.0e12, fp16=8.0e12),
                  engines=dict(inductor=dict(mode=None, warmup_iters=1, warmup_times=1)))

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

    def sm_clock_mhz(self):
        return 1234.0

    def limits(self):
        return {{"power_limit_w": 300.0, "max_sm_clock_mhz": 2000.0}}

    def energy_j(self):
        value = COUNTER[min(FakeVendor.reads, len(COUNTER) - 1)]
        FakeVendor.reads += 1
        return value


class YamlVendor(FakeVendor):
    config = "yaml_vendor.yaml"  # beside this module


class BadVendor(FakeVendor):
    config = dict(precision="fp99")
'''


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch) -> Path:
    """Install the fake plug-in as a distribution with an entry point, on sys.path."""
    site = tmp_path / "site"
    (site / "fake_accel").mkdir(parents=True)
    (site / "fake_accel" / "__init__.py").write_text(FAKE_PLUGIN, encoding="utf-8")
    info = site / "fake_accel-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-accel\nVersion: 1.0\n", encoding="utf-8"
    )
    (site / "fake_accel" / "yaml_vendor.yaml").write_text(
        "device: cpu\nprecision: bf16\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[mmlubench.vendors]\nfake = fake_accel:FakeVendor\nfake-yaml = fake_accel:YamlVendor\n"
        "fake-bad = fake_accel:BadVendor\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("fake_accel", None)


def test_entry_point_plugin_is_found(fake_plugin):
    assert vendors.plugins()["fake"] == "fake_accel:FakeVendor"
    vendor = vendors.open_vendor("cpu", "fake")
    assert vendor.device_name() == "Fake Accelerator 9000"
    assert vendors.open_vendor("cpu").name == "cpu"  # not named: the device type's plug-in


def key_shape(doc, path="") -> set[str]:
    """Every key path of a JSON document (mappings in lists as `[]`); values and list lengths
    left out."""
    if isinstance(doc, dict):
        return {path} | {p for k, v in doc.items() for p in key_shape(v, f"{path}.{k}")}
    if isinstance(doc, list):
        return {path} | {p for v in doc if isinstance(v, dict) for p in key_shape(v, f"{path}[]")}
    return {path}


def data_keys_masked(keys: set[str]) -> set[str]:
    """Key paths without those below keys that name data: subjects, the case's engines,
    reference rows and peaks in the config echo, the engine's options, the vendor's versions."""
    data = re.compile(
        r"(\.per_subject(_total)?|^\.config\.(engines|reference|peak_flops|"
        r"model_config)|^\.model\.flop_shape|"
        r"\.engine\.options|^\.environment\.vendor_versions)\."
    )
    return {k for k in keys if not data.search(k)}


def run_case(vendor: str, out: Path, tiny_model_dir: Path, mmlu_dir: Path) -> tuple[dict, str]:
    """`mmlubench run --vendor VENDOR` on two subjects; (result.json, stdout)."""
    args = [
        "run",
        "--vendor",
        vendor,
        "--data-dir",
        str(tiny_model_dir.parent),
        "--weight-dir",
        tiny_model_dir.name,
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "abstract_algebra,global_facts",
        "--limit",
        "2",
        "--random-weights",
        "--engine",
        "inductor",
        "--set",
        "engines.inductor.warmup_iters=1",
        "--set",
        "engines.inductor.warmup_times=1",
        "--output-dir",
        str(out),
        "--no-progress",
        "--mem-sample-interval",
        "0.05",
        # the tiny model's own FLOPs: 2 x 7e9 per token would exceed the fake's peak
        "--flops-per-token",
        "2*params",
    ]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    (run_dir,) = out.iterdir()
    return json.loads((run_dir / "result.json").read_text(encoding="utf-8")), stdout.getvalue()


def test_fake_vendor_drives_a_run(fake_plugin, tmp_path, tiny_model_dir, mmlu_dir):
    result, stdout = run_case("fake", tmp_path / "runs", tiny_model_dir, mmlu_dir)
    run_dir = next((tmp_path / "runs").iterdir())
    # The plug-in's own config, found by its name: vendor (implied), device, precision, peak.
    assert result["config"]["vendor"] == "fake" and result["config"]["precision"] == "fp32"
    # A plain CPU run (the built-in plug-in, configs/vendors/cpu.yaml) has the same keys; only
    # the config echo differs, by the per-precision peak the fake's config gives.
    plain, _ = run_case("cpu", tmp_path / "plain", tiny_model_dir, mmlu_dir)
    assert plain["environment"]["vendor"] == "cpu" and plain["metrics"]["energy_j"] is None
    assert key_shape(result) - {".config.peak_flops.fp32", ".config.peak_flops.fp16"} == key_shape(
        plain
    )
    assert {".passes.infer.energy_j", ".memory.source", ".metrics.mfu"} <= key_shape(plain)
    # A GPU run through the NVIDIA plug-in (H200, bench/results/2026-11-28_h200x2_fp8, lists
    # cut to one item) has the same shape too, up to keys that are data: subject names, the
    # case's engines/reference/peaks in the config echo, the vendor's version entries.
    gpu = json.loads((FIXTURES / "h200_result.json").read_text(encoding="utf-8"))
    assert gpu["environment"]["vendor"] == "nvidia" and gpu["memory"]["source"] == "nvml"
    cpu_keys, gpu_keys = data_keys_masked(key_shape(result)), data_keys_masked(key_shape(gpu))
    assert gpu_keys - cpu_keys == set(), gpu_keys - cpu_keys
    # Keys result.json gained after that GPU run (commit 023e506): fp8's agreement figures,
    # the power limit and the compute clock.
    added = {
        f".accuracy.agreement_val_infer.{k}"
        for k in (
            "letter_logits_rel_l2_max",
            "letter_logits_rel_l2_mean",
            "logits_rel_l2_max",
            "logits_rel_l2_mean",
            "logits_sample_questions",
        )
    }
    added |= {
        ".environment.power_limit_w",
        ".environment.max_sm_clock_mhz",
        ".memory.sm_clock_samples",
        ".config.ceiling",
        ".model.prompt_bos_id",
    }
    added |= {
        f".passes.{p}.{k}"
        for p in ("val", "infer")
        for k in ("power_limit_w", "sm_clock_mhz_median")
    }
    # ... and then: FLOPs per architecture, --model, the case's model, per-subject counts.
    added |= {
        ".model.flop_shape",
        ".model.active_params",
        ".config.flops_per_token_set_by",
        ".config.model_config",
        ".config.model",
        ".config.revision",
        ".config.log_samples",
    }
    added |= {
        f".passes.{p}.accuracy.{rule}.per_subject_total"
        for p in ("val", "infer")
        for rule in ("reference", "choices", "token")
    }
    # ... and then every step of the run outside the passes timed (run/laps.py).
    added |= {
        f".timings.{k}"
        for k in (
            "startup_s",
            "early_start_s",
            "device_open_s",
            "model_import_s",
            "model_check_s",
            "run_log_s",
            "end_s",
        )
    }
    added |= {f".timings.{p}_{k}" for p in ("val", "infer") for k in ("setup_s", "finish_s")}
    assert cpu_keys - gpu_keys == added, (cpu_keys - gpu_keys) ^ added
    env, mem, m = result["environment"], result["memory"], result["metrics"]
    assert env["vendor"] == "fake" and env["device_name"] == "Fake Accelerator 9000"
    assert mem["source"] == "fake-counter" and mem["vendor"] == "fake"
    assert m["mem_peak_used_bytes"] == 3 * 1024**3 and m["mem_total_bytes"] == 16 * 1024**3
    assert m["mem_source"] == "fake-counter"
    assert mem["power_samples"] and {w for _, w in mem["power_samples"]} == {42.5}
    # What bounds the speed: the plug-in's limits, and its clock's median over each pass's
    # samples (the infer pass compiles for seconds: samples every 0.05 s fall inside it).
    assert mem["sm_clock_samples"] and {c for _, c in mem["sm_clock_samples"]} == {1234.0}
    assert env["power_limit_w"] == 300.0 and env["max_sm_clock_mhz"] == 2000.0
    assert result["passes"]["infer"]["power_limit_w"] == 300.0
    assert result["passes"]["infer"]["sm_clock_mhz_median"] == 1234.0
    assert "W average (limit 300 W), compute clock 1,234 MHz median" in stdout
    # MFU against the vendor file's fp32 peak: flops/token x computed tokens / core time / peak.
    infer = result["passes"]["infer"]
    assert m["peak_flops_per_s"] == 2.0e12
    assert m["mfu"] == pytest.approx(
        m["flops_per_token"] * infer["computed_tokens"] / infer["core_time_s"] / 2.0e12
    )
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
    assert "infer energy: 120 J, " in stdout
    # The HTML report charts power over time; compare lists each run's energy.
    from mmlubench.report import compare
    from mmlubench.report import html as html_report
    from mmlubench.results import document

    doc = document.load(run_dir)
    page = html_report.render(doc)
    assert 'alt="device power over time"' in page and "infer.energy_j" in page
    text = compare.format_compare([doc, doc], ["a", "b"])
    assert "energy (infer) b: 120 J (1.00x), " in text
    assert f"{(m['prompt_tokens'] / 120):,.1f} tok/J (1.00x)" in text


def test_vendor_names_resolve(fake_plugin):
    """--vendor NAME: a shipped YAML first, else the installed plug-in's config (a mapping, or
    a YAML file beside its module), `vendor: NAME` implied; a plug-in without one: just that."""
    folder = CONFIG_DIR / "vendors"
    source, data = vendor_layer("cpu", folder)
    assert source == str(folder / "cpu.yaml") and data["vendor"] == "cpu"
    source, data = vendor_layer("fake", folder)
    assert source == "vendor plug-in 'fake' (fake_accel:FakeVendor) config"
    assert data["vendor"] == "fake" and data["precision"] == "fp32"
    source, data = vendor_layer("fake-yaml", folder)
    assert source == str(fake_plugin / "fake_accel" / "yaml_vendor.yaml")
    assert data == {"device": "cpu", "precision": "bf16", "vendor": "fake-yaml"}
    assert vendor_layer("generic", folder) == (
        "vendor plug-in 'generic' (mmlubench.device.vendors.base:Vendor)",
        {"vendor": "generic"},
    )
    cfg = load_config(None, "fake-yaml", {"limit": 3})
    assert (cfg.vendor, cfg.precision, cfg.device, cfg.limit) == ("fake-yaml", "bf16", "cpu", 3)


def test_bad_value_in_a_plugin_config_names_the_plugin(fake_plugin):
    with pytest.raises(
        ConfigError,
        match=r"^vendor plug-in 'fake-bad' \(fake_accel:BadVendor\) "
        r"config: key 'precision': expected one of 'fp16'",
    ):
        load_config(None, "fake-bad")


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--vendor", "acme"],
            "command line: --vendor 'acme': no such file, and no vendor of that "
            "name (known: cpu, fake, fake-bad, fake-yaml, generic, nvidia; ",
        ),
        (
            ["--set", "vendor=acme"],
            "command line: key 'vendor': no vendor plug-in 'acme' (known: "
            "cpu, fake, fake-bad, fake-yaml, generic, nvidia; ",
        ),
        (["--vendor", "acme.yaml"], "acme.yaml: config file not found"),
    ],
)
def test_unknown_vendor_is_one_line(fake_plugin, args, message, capsys, tmp_path):
    rc = main(["run", *args, "--output-dir", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("mmlubench: error: " + message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()  # nothing written


def test_run_without_a_counter_has_null_energy(tmp_path, tiny_model_dir, mmlu_dir):
    out = tmp_path / "runs"
    args = [
        "run",
        "--data-dir",
        str(tiny_model_dir.parent),
        "--weight-dir",
        tiny_model_dir.name,
        "--mmlu-dir",
        str(mmlu_dir),
        "--subjects",
        "global_facts",
        "--limit",
        "1",
        "--device",
        "cpu",
        "--precision",
        "fp32",
        "--random-weights",
        "--engine",
        "null",
        "--no-validation",
        "--output-dir",
        str(out),
        "--no-progress",
    ]
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
    assert e["power_limit_w"] is None and e["sm_clock_mhz_median"] is None  # none given
    # Limits add up over devices like the power does; the clock is the devices' mean.
    clocked = [
        EnergyReading(300.0, 10.0, "nvml", 1400.0, 700.0),
        EnergyReading(500.0, 12.5, "nvml", 1500.0, 700.0),
    ]
    e = pass_energy(clocked, prompt_tokens=16000, questions=40)
    assert e["power_limit_w"] == 1400.0 and e["sm_clock_mhz_median"] == 1450.0
    e = pass_energy([clocked[0], readings[1]], prompt_tokens=16000, questions=40)
    assert e["power_limit_w"] is None and e["sm_clock_mhz_median"] is None
    # One device without a figure: the pass has none (no partial sum passed off as a total).
    assert pass_energy([readings[0], EnergyReading(None, 3.0, None)], 1, 1)["energy_j"] is None
    assert pass_energy([None], 1, 1)["energy_j"] is None


@pytest.mark.parametrize(
    "device,message",
    [
        (
            "npu",
            "command line: key 'device': torch .* does not know device type 'npu' .*; "
            "install torch_npu",
        ),
        ("musa:1", "does not know device type 'musa' .*; install torch_musa"),
        ("xpu", "'xpu' asked for, but torch sees no xpu device"),
        ("Cuda:x", "command line: key 'device': expected a torch device such as"),
    ],
)
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
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="0000-1111")
    )
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "NVIDIA H100 80GB HBM3")
    from mmlubench.device.vendors.nvidia import NvidiaVendor

    vendor = NvidiaVendor("cuda:0")
    assert vendor.memory_source == "nvml" and vendor.energy_source is not None
    assert vendor.memory_used() == (5 * 2**30, 80 * 2**30)
    assert vendor.energy_j() == 123_456.789  # millijoules -> joules
    assert vendor.power_w() == 312.25
    assert vendor.device_name() == "NVIDIA H100 80GB HBM3"
    assert vendor.versions()["driver"] == "575.51"


def test_nvidia_plugin_supplies_what_torch_accelerator_lacks(monkeypatch):
    """A torch whose accelerator API has no memory calls: opening the NVIDIA plug-in routes
    them to torch.cuda; the calls torch.accelerator has stay its own."""
    calls: list = []
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(uuid="0000-1111")
    )
    monkeypatch.setattr(
        torch,
        "accelerator",
        types.SimpleNamespace(
            is_available=lambda: True,
            current_accelerator=lambda: torch.device("cuda"),
            synchronize=lambda d: calls.append(("accelerator sync", d)),
            device_count=lambda: 1,
            set_device_index=lambda i: None,
            empty_cache=lambda: None,
        ),
    )
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: 111)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d: 222)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset", d)))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d: calls.append(("cuda sync", d)))
    monkeypatch.setattr(accel, "_REGISTERED", {})
    dev = torch.device("cuda:0")
    assert accel.peak_allocated_bytes(dev) is None  # before the plug-in: not counted
    vendor = vendors.open_vendor(dev)
    assert vendor.name == "nvidia"
    assert accel.peak_allocated_bytes(dev) == 111 and accel.peak_reserved_bytes(dev) == 222
    accel.reset_peak_memory(dev)
    accel.synchronize(dev)
    assert calls == [("reset", dev), ("accelerator sync", dev)]
    # A torch.accelerator with every call (torch >= 2.8): nothing registered.
    monkeypatch.setattr(
        torch,
        "accelerator",
        types.SimpleNamespace(
            is_available=lambda: True,
            current_accelerator=lambda: torch.device("cuda"),
            **{name: (lambda *a: 0) for name in accel.TORCH_CALLS.values()},
        ),
    )
    assert vendor.device_ops() is None
    vendors.open_vendor(dev)
    assert accel._REGISTERED == {}
