"""Load the checkpoint in the target precision directly on the device, or build random weights.

Unlike the reference (fp32 load on the GPU, then `.half()`), weights are loaded in the target
dtype straight onto the device, so peak memory is the model's own size.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from mmlubench.device import accel
from mmlubench.errors import ModelError
from mmlubench.results.provenance import Model

# fp8 loads fp16 weights: only the infer engine quantizes its linear layers (engines/fp8.py).
DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
    "fp8": torch.float16,
}
HF_REPO = "deepseek-ai/deepseek-llm-7b-base"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")


def download_hint(path: Path) -> str:
    return (
        f"put all files of the HF repo {HF_REPO} in {path} (`mmlubench download --weights "
        f"--data-dir DATA_DIR`, or `hf download {HF_REPO} --local-dir {path}`), give "
        "--model ORG/NAME for a Hub model, or pass --random-weights to measure speed with "
        "random weights built from config.json"
    )


# What was loaded is the result document's `model` section itself (one declaration of its
# fields); config_sha256 is filled in when the document is built.
ModelInfo = Model


def check_model_dir(path: Path, random_weights: bool) -> None:
    """Fail early, naming the folder or file and what is wrong, with download instructions."""
    if not path.is_dir():
        raise ModelError(f"{path}: model folder not found; {download_hint(path)}")
    cfg = path / "config.json"
    if not cfg.is_file():
        raise ModelError(f"{cfg}: file not found; {download_hint(path)}")
    try:
        doc = json.loads(cfg.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{cfg}: not valid JSON: {e}") from None
    except OSError as e:
        raise ModelError(f"{cfg}: cannot read: {e}") from None
    if not isinstance(doc, dict):
        raise ModelError(
            f"{cfg}: expected a JSON object (the model's config), got {type(doc).__name__}"
        )
    check_no_remote_code(cfg, doc)
    if random_weights:
        return
    if not any(any(path.glob(p)) for p in WEIGHT_FILES):
        raise ModelError(f"{path}: no weight files (*.safetensors, *.bin); {download_hint(path)}")
    for file in sorted(path.glob("*.safetensors")):
        check_safetensors(file)


def check_no_remote_code(cfg: Path, doc: dict) -> None:
    """Refuse a model that only loads by running Python code from its own folder.

    transformers would ask "run the custom code? [y/N]" on a terminal; mmlubench never runs
    code from a data folder (trust_remote_code=False everywhere), so this is an error.
    """
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    model_type = doc.get("model_type")
    if "auto_map" in doc and model_type not in CONFIG_MAPPING_NAMES:
        raise ModelError(
            f"{cfg}: model_type {model_type!r} is not built into transformers and config.json "
            "has an auto_map: this model needs Python code from its own folder, which mmlubench "
            "never runs (trust_remote_code=False); use a model transformers supports natively"
        )


def check_safetensors(file: Path) -> None:
    """A truncated or corrupt .safetensors file, named, before transformers fails on it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt"):  # reads the header, checks the file's size
            pass
    except (SafetensorError, OSError) as e:
        raise ModelError(
            f"{file}: not a complete safetensors file ({e}; "
            f"{file.stat().st_size} bytes); download it again"
        ) from None


def _some(names: Iterable[str], n: int = 4) -> str:
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def check_loading_info(path: Path, info: dict) -> None:
    """Missing, unexpected or reshaped tensors mean the checkpoint is not the model of
    config.json: transformers would initialise the missing ones at random and run on."""
    missing, unexpected = info.get("missing_keys") or (), info.get("unexpected_keys") or ()
    mismatched = info.get("mismatched_keys") or ()
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing: {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_some(unexpected)}")
    if mismatched:
        shapes = [
            f"{k} {list(ckpt)} in the checkpoint, {list(want)} in the model"
            for k, ckpt, want in mismatched
        ]
        problems.append(f"{len(mismatched)} of another shape: {_some(shapes, 2)}")
    if problems:
        raise ModelError(
            f"{path}: the weights do not match config.json: "
            f"{'; '.join(problems)} (an incomplete download, or files of "
            "another model?)"
        )


@contextlib.contextmanager
def transformers_bars(enabled: bool) -> Iterator[None]:
    """transformers' own progress bars ("Loading weights") on or off, restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if not enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


@contextlib.contextmanager
def quiet_transformers(progress: bool) -> Iterator[None]:
    """No LOAD REPORT table on the console (its content becomes our one-line error), and no
    "Loading weights" bar when progress bars are off."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with transformers_bars(progress), warnings.catch_warnings():
            # torch's note on the protocol of a pickle it refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)


def pickle_error(path: Path, e: Exception) -> ModelError:
    """torch.load(weights_only=True) refused a pickle that asks to run code: name the file."""
    import zipfile

    for file in sorted(path.glob("*.bin")) + sorted(path.glob("*.pt")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.load(
                    file, map_location="meta", weights_only=True, mmap=zipfile.is_zipfile(file)
                )
        except Exception:  # any failure names this file
            return ModelError(
                f"{file}: refused: this pickle asks for more than plain tensors "
                "(torch.load weights_only; nothing in it was executed); use the "
                "repo's .safetensors files"
            )
    return ModelError(f"{path}: cannot unpickle the weights: {str(e).splitlines()[0]}")


def _info(
    model, path: Path, dtype: torch.dtype, device: str, random_weights: bool, seconds: float
) -> ModelInfo:
    from dataclasses import asdict

    from mmlubench.results.metrics import ModelShape

    c = model.config
    shape = ModelShape.from_config(c)
    n_params = sum(p.numel() for p in model.parameters())
    return ModelInfo(
        path=str(path),
        architecture=type(model).__name__,
        n_params=n_params,
        dtype=str(dtype).replace("torch.", ""),
        device=device,
        random_weights=random_weights,
        num_hidden_layers=c.num_hidden_layers,
        hidden_size=c.hidden_size,
        intermediate_size=c.intermediate_size,
        num_attention_heads=c.num_attention_heads,
        num_key_value_heads=getattr(c, "num_key_value_heads", c.num_attention_heads),
        vocab_size=c.vocab_size,
        load_time_s=seconds,
        flop_shape=asdict(shape),
        active_params=n_params - shape.idle_expert_params,
    )


def load_model(
    path: str | Path,
    precision: str = "fp16",
    device: str = "cuda",
    random_weights: bool = False,
    seed: int = 0,
    progress: bool = True,
):
    """Return (model in eval mode on `device`, ModelInfo). Never runs code from the folder."""
    import time

    from safetensors import SafetensorError
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    check_model_dir(path, random_weights)
    dtype = DTYPES[precision]
    t0 = time.perf_counter()
    try:
        with quiet_transformers(progress):
            if random_weights:
                config = AutoConfig.from_pretrained(str(path), trust_remote_code=False)
                torch.manual_seed(seed)
                # Built and initialised on the device itself: seconds for 7B on a GPU.
                with torch.device(device):
                    model = AutoModelForCausalLM.from_config(
                        config, dtype=dtype, trust_remote_code=False
                    )
            else:
                model, loading = AutoModelForCausalLM.from_pretrained(
                    str(path),
                    dtype=dtype,
                    device_map={"": torch.device(device)},
                    trust_remote_code=False,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # reported by check_loading_info instead
                )
                check_loading_info(path, loading)
    except pickle.UnpicklingError as e:
        raise pickle_error(path, e) from None
    except SafetensorError as e:
        raise ModelError(f"{path}: a safetensors file is corrupt: {e}") from None
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelError(f"{path}: cannot load the model: {type(e).__name__}: {first}") from None
    model.eval()
    model.requires_grad_(False)
    accel.synchronize(device)  # the copies to the device are done: load time is complete
    return model, _info(model, path, dtype, device, random_weights, time.perf_counter() - t0)
