"""Model folder checks with download instructions, random weights from config.json, and a tiny
checkpoint loaded back through load_model in the asked precision."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from conftest import TINY_PARAMS

from mmlubench.data.prompts import load_tokenizer
from mmlubench.errors import ModelError
from mmlubench.model.load import load_model


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
    assert (
        info.num_hidden_layers,
        info.hidden_size,
        info.intermediate_size,
        info.num_attention_heads,
        info.num_key_value_heads,
        info.vocab_size,
    ) == (2, 32, 64, 4, 4, 102400)
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


# ---- no code from the folder, no silent random layers, no bars when asked --------


def test_remote_code_refused_even_for_random_weights(tmp_path, tiny_model_dir):
    doc = json.loads((tiny_model_dir / "config.json").read_text())
    doc.update(model_type="custom_llama", auto_map={"AutoConfig": "conf.C"})
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="needs Python code from its own folder"):
        load_model(tmp_path, "fp32", "cpu", random_weights=True)


def test_auto_map_of_a_native_model_runs_no_code(tmp_path, tiny_model_dir):
    """A known model_type with an auto_map loads transformers' own class; the folder's code is
    never imported (trust_remote_code=False)."""
    doc = json.loads((tiny_model_dir / "config.json").read_text())
    doc["auto_map"] = {"AutoConfig": "conf.C", "AutoModelForCausalLM": "conf.M"}
    (tmp_path / "config.json").write_text(json.dumps(doc))
    (tmp_path / "conf.py").write_text(f"open({str(tmp_path / 'RAN')!r}, 'w').close()\n")
    model, _ = load_model(tmp_path, "fp32", "cpu", random_weights=True)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not (tmp_path / "RAN").exists()


def test_loading_info_names_every_kind_of_mismatch(tmp_path):
    from mmlubench.model.load import check_loading_info

    check_loading_info(
        tmp_path,
        {
            "missing_keys": set(),
            "unexpected_keys": set(),
            "mismatched_keys": set(),
            "error_msgs": [],
        },
    )
    info = {
        "missing_keys": {f"m{i}" for i in range(6)},
        "unexpected_keys": {"u"},
        "mismatched_keys": {("w", torch.Size([3]), torch.Size([2]))},
    }
    with pytest.raises(ModelError) as e:
        check_loading_info(tmp_path, info)
    assert str(e.value) == (
        f"{tmp_path}: the weights do not match config.json: 6 tensor(s) "
        "missing: m0, m1, m2, m3 and 2 more; 1 unexpected: u; 1 of another "
        "shape: w [3] in the checkpoint, [2] in the model (an incomplete "
        "download, or files of another model?)"
    )


@pytest.mark.parametrize("progress", [True, False])
def test_loading_bar_follows_progress(tmp_path, tiny_model, capfd, progress):
    tiny_model.save_pretrained(str(tmp_path))
    capfd.readouterr()
    load_model(tmp_path, "fp32", "cpu", progress=progress)
    assert ("Loading weights" in capfd.readouterr().err) == progress
