"""Load the checkpoint in the target precision directly on the device, or build random weights.

Unlike the reference (fp32 load on the GPU, then `.half()`), weights are loaded in the target
dtype straight onto the device, so peak memory is the model's own size.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from mmlubench.errors import ModelError

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
HF_REPO = "deepseek-ai/deepseek-llm-7b-base"
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt")


def download_hint(path: Path) -> str:
    return (
        f"put all files of the HF repo {HF_REPO} in {path} (`mmlubench download --weights "
        "--data-dir DATA_DIR`, or huggingface-cli download), or pass --random-weights to "
        "measure speed with random weights built from config.json"
    )


@dataclass
class ModelInfo:
    """What was loaded; stored in result.json."""

    path: str
    architecture: str
    n_params: int
    dtype: str
    device: str
    random_weights: bool
    num_hidden_layers: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    load_time_s: float

    def to_json(self) -> dict:
        return asdict(self)


def check_model_dir(path: Path, random_weights: bool) -> None:
    """Fail early, naming the folder and what is missing, with download instructions."""
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
        raise ModelError(f"{cfg}: expected a JSON object (the model's config), "
                         f"got {type(doc).__name__}")
    if not random_weights and not any(any(path.glob(p)) for p in WEIGHT_FILES):
        raise ModelError(f"{path}: no weight files (*.safetensors, *.bin); {download_hint(path)}")


def _info(model, path: Path, dtype: torch.dtype, device: str, random_weights: bool,
          seconds: float) -> ModelInfo:
    c = model.config
    return ModelInfo(
        path=str(path),
        architecture=type(model).__name__,
        n_params=sum(p.numel() for p in model.parameters()),
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
    )


def load_model(
    path: str | Path,
    precision: str = "fp16",
    device: str = "cuda",
    random_weights: bool = False,
    seed: int = 0,
):
    """Return (model in eval mode on `device`, ModelInfo)."""
    import time

    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    check_model_dir(path, random_weights)
    dtype = DTYPES[precision]
    t0 = time.perf_counter()
    try:
        if random_weights:
            config = AutoConfig.from_pretrained(str(path))
            torch.manual_seed(seed)
            # Built and initialised on the device itself: seconds for 7B on a GPU.
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(path), dtype=dtype, device_map={"": torch.device(device)}
            )
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelError(f"{path}: cannot load the model: {type(e).__name__}: {e}") from None
    model.eval()
    model.requires_grad_(False)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return model, _info(model, path, dtype, device, random_weights, time.perf_counter() - t0)
