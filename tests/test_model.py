"""Model folder checks with download instructions, random weights from config.json, and a tiny
checkpoint loaded back through load_model in the asked precision."""

from __future__ import annotations

import copy
import shutil

import pytest
import torch
from conftest import TINY_PARAMS

from mmlubench.errors import ModelError
from mmlubench.model import load_model
from mmlubench.prompts import load_tokenizer


def assert_download_hint(message: str) -> None:
    assert "mmlubench download" in message
    assert "--random-weights" in message
    assert "deepseek-ai/deepseek-llm-7b-base" in message


def test_missing_folder(tmp_path):
    with pytest.raises(ModelError) as e:
        load_model(tmp_path / "deepseek_7b_hf", "fp32", "cpu")
    assert str(e.value).startswith(f"{tmp_path / 'deepseek_7b_hf'}: model folder not found")
    assert_download_hint(str(e.value))


def test_missing_config_json(tmp_path):
    with pytest.raises(ModelError) as e:
        load_model(tmp_path, "fp32", "cpu", random_weights=True)
    assert str(e.value).startswith(f"{tmp_path / 'config.json'}: file not found")
    assert_download_hint(str(e.value))


def test_folder_without_weights(tmp_path, tiny_model_dir):
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")
    with pytest.raises(ModelError) as e:
        load_model(tmp_path, "fp32", "cpu")
    assert str(e.value).startswith(f"{tmp_path}: no weight files")
    assert_download_hint(str(e.value))


def test_config_json_not_json(tmp_path):
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match=r"config\.json: not valid JSON"):
        load_model(tmp_path, "fp32", "cpu", random_weights=True)


def test_random_weights_from_config_only(tmp_path, tiny_model_dir):
    shutil.copy(tiny_model_dir / "config.json", tmp_path / "config.json")  # nothing else
    model, info = load_model(tmp_path, "fp32", "cpu", random_weights=True, seed=3)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not model.training
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())
    assert info.n_params == TINY_PARAMS
    assert (info.num_hidden_layers, info.hidden_size, info.intermediate_size,
            info.num_attention_heads, info.num_key_value_heads, info.vocab_size) == (
        2, 32, 64, 4, 4, 102400)
    assert (info.random_weights, info.dtype, info.device) == (True, "float32", "cpu")
    same, _ = load_model(tmp_path, "fp32", "cpu", random_weights=True, seed=3)
    other, _ = load_model(tmp_path, "fp32", "cpu", random_weights=True, seed=4)
    w = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(model.state_dict()[w], same.state_dict()[w])
    assert not torch.equal(model.state_dict()[w], other.state_dict()[w])
    half, info16 = load_model(tmp_path, "bf16", "cpu", random_weights=True)
    assert info16.dtype == "bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())


@pytest.mark.parametrize("saved_dtype", [torch.float32, torch.bfloat16])
def test_checkpoint_loads_back_in_fp32(tmp_path, tiny_model, saved_dtype):
    saved = copy.deepcopy(tiny_model).to(saved_dtype)  # the session's model stays as it is
    saved.save_pretrained(str(tmp_path))
    expected = {k: v.float() for k, v in saved.state_dict().items()}
    model, info = load_model(tmp_path, "fp32", "cpu")
    assert (info.random_weights, info.dtype, info.n_params) == (False, "float32", TINY_PARAMS)
    got = model.state_dict()
    assert set(got) == set(expected)
    for name, tensor in got.items():
        assert tensor.dtype == torch.float32, name
        assert torch.equal(tensor, expected[name]), name
    # And the loaded model computes what the saved weights compute, in fp32.
    ids = torch.tensor([[100000, 549, 1893, 418, 4606]])
    with torch.inference_mode():
        ref = saved.float()(ids).logits
        torch.testing.assert_close(model(ids).logits, ref, rtol=1e-5, atol=1e-6)


def test_tokenizer_folder_errors(tmp_path):
    with pytest.raises(ModelError, match="tokenizer folder not found"):
        load_tokenizer(tmp_path / "missing")
    with pytest.raises(ModelError, match=r"no tokenizer\.json or tokenizer\.model"):
        load_tokenizer(tmp_path)
