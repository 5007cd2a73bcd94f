"""What a run imports before its model, checked in fresh processes: reading and tokenizing the
questions imports neither transformers nor torch, the environment's versions need no import of
transformers, and transformers' model code imported in a thread (model/imports.py) leaves the
prompts as they are and the modules the model needs imported.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MMLU_DIR, TOKENIZER_DIR

from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.model import imports

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("transformers", "torch", "sklearn")
SUBJECTS = ["abstract_algebra", "nutrition"]


def fresh_python(code: str) -> dict:
    """Run `code` in a new interpreter on this checkout; the JSON it prints last."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def loaded(prefixes: tuple[str, ...] = HEAVY) -> str:
    """Code that prints which of the top-level packages `prefixes` are imported."""
    return (
        "import sys, json; print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} "
        f"& set({list(prefixes)!r}))))"
    )


def test_questions_are_read_and_tokenized_without_transformers_or_torch():
    code = f"""
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
dataset = load_mmlu({str(MMLU_DIR)!r}, "test", {SUBJECTS!r}, 3, 5)
assert len(build_prompts(dataset, load_tokenizer({str(TOKENIZER_DIR)!r}))) == 6
{loaded()}
"""
    assert fresh_python(code) == []


def test_environment_versions_are_the_installed_packages_without_importing_transformers():
    code = """
from mmlubench.device.environment import collect
from mmlubench.device.vendors import open_vendor
env = collect("cpu", open_vendor("cpu", None))
import sys, json
mods = sorted({m.split('.')[0] for m in sys.modules} & {"transformers", "sklearn"})
print(json.dumps([env["transformers"], env["tokenizers"], mods]))
"""
    transformers_v, tokenizers_v, mods = fresh_python(code)
    assert mods == []
    assert transformers_v == importlib.metadata.version("transformers")
    assert tokenizers_v == importlib.metadata.version("tokenizers")


def test_model_code_imported_in_a_thread_leaves_the_prompts_as_they_are(tiny_model_dir):
    """The thread runs while the prompts are tokenized, as in a run; afterwards the auto
    classes and the model's own modeling module are imported, and the ids are those built
    here without it."""
    code = f"""
from mmlubench.data.mmlu import load_mmlu
from mmlubench.data.prompts import build_prompts, load_tokenizer
from mmlubench.model.imports import ModelImports
dataset = load_mmlu({str(MMLU_DIR)!r}, "test", {SUBJECTS!r}, 3, 5)
tok = load_tokenizer({str(TOKENIZER_DIR)!r})
imports = ModelImports({str(tiny_model_dir)!r}, background=True)
imports.start()
prompts = build_prompts(dataset, tok)
imports.wait()
import sys, json
mods = ["transformers.models.auto.modeling_auto", "transformers.models.llama.modeling_llama"]
print(json.dumps([[p.ids.tolist() for p in prompts], [m in sys.modules for m in mods],
                  imports._thread is not None]))
"""
    ids, present, threaded = fresh_python(code)
    dataset = load_mmlu(MMLU_DIR, "test", SUBJECTS, 3, 5)
    assert ids == [p.ids.tolist() for p in build_prompts(dataset, load_tokenizer(TOKENIZER_DIR))]
    assert present == [True, True] and threaded


def test_the_thread_starts_only_where_it_can_run_beside_tokenizing(monkeypatch, tmp_path):
    monkeypatch.setattr(imports, "usable_cores", lambda: 1)
    assert not imports.ModelImports(tmp_path).background  # one core: in `wait` itself
    monkeypatch.setattr(imports, "usable_cores", lambda: 16)
    monkeypatch.setitem(sys.modules, "transformers", sys.modules.get("transformers", object()))
    # transformers imported already (a tokenizer of its own): no thread beside it
    assert not imports.ModelImports(tmp_path).background
    monkeypatch.delitem(sys.modules, "transformers")
    assert imports.ModelImports(tmp_path).background


@pytest.mark.parametrize("background", [True, False])
def test_a_failed_import_is_left_to_the_model_check(monkeypatch, tmp_path, background):
    """`wait` never raises: check_model imports the same modules and reports what fails."""

    def broken(weight_dir):
        raise ImportError("no module named transformers.models.auto")

    monkeypatch.setattr(imports, "import_model_code", broken)
    job = imports.ModelImports(tmp_path, background=background)
    job.start()
    job.wait()


def test_model_type_is_read_from_config_json(tmp_path):
    assert imports.model_type(tmp_path) is None  # no config.json
    (tmp_path / "config.json").write_text("[1]", encoding="utf-8")
    assert imports.model_type(tmp_path) is None
    (tmp_path / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    assert imports.model_type(tmp_path) == "llama"
