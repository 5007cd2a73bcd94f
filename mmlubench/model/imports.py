"""transformers' model code, imported while the prompts are tokenized.

The model folder's check and the model's load need transformers' auto classes and the model's
modeling module. Importing them imports torch.distributed's FSDP and DTensor and scikit-learn
(transformers 5.17, through its generation code) and registers custom ops: 7-10 s at the
start of a run on an H200 machine, where the first import also compiles the bytecode. The
questions need none of it where the tokenizer is the `tokenizers` library's
(data/tokenizer_json.py). `ModelImports.start` then begins these imports in a thread while the
prompts are tokenized, and `wait`, the run's step "importing the model code" (`model_import_s`),
joins it. The tokenizer's batches run in Rust threads that release the GIL, so the imports
run beside them on another core; on one core the two only take turns, and the imports run in
`wait` itself (MIN_CORES; docs/DESIGN.md, "Start-up", has the measurements).

While the thread runs, the main thread only tokenizes, which imports nothing (its modules and
tqdm are imported before), so neither thread waits for a module the other is importing. What
fails to import is left to `check_model` and `load_model`, which import the same modules again
and report it in their own words.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from pathlib import Path

MIN_CORES = 2


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity call on this OS
        return os.cpu_count() or 1


def model_type(weight_dir: str | Path) -> str | None:
    """config.json's model_type (None: no readable config.json or no such key)."""
    try:
        doc = json.loads((Path(weight_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = doc.get("model_type") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def import_model_code(weight_dir: str | Path) -> None:
    """Import AutoConfig, the causal-LM auto class and the modeling module of the folder's
    model_type (when transformers knows it as a causal LM)."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM  # noqa: F401 - imported for later
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type(weight_dir) or "")
    if isinstance(name, str):
        getattr(transformers, name)  # transformers' lazy module imports the class's module


def _quietly(weight_dir: str | Path) -> None:
    # What fails here, check_model and load_model import again and report in their own words.
    with contextlib.suppress(Exception):
        import_model_code(weight_dir)


class ModelImports:
    """The model code's imports: begun by `start` in a thread (where cores are free), done by
    `wait`."""

    def __init__(self, weight_dir: str | Path, background: bool | None = None) -> None:
        """`background`: import in a thread; None: where the process has MIN_CORES cores and
        transformers is not imported yet (a tokenizer of transformers' own calls into it while
        the prompts are tokenized, and may import more of it then)."""
        self.weight_dir = weight_dir
        if background is None:
            background = usable_cores() >= MIN_CORES and "transformers" not in sys.modules
        self.background = background
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.background and self._thread is None:
            # daemon: a run that fails before `wait` exits without waiting for the imports
            self._thread = threading.Thread(
                target=_quietly, args=(self.weight_dir,), name="model-imports", daemon=True
            )
            self._thread.start()

    def wait(self) -> None:
        """The imports done (never raises: see the module docstring)."""
        if self._thread is not None:
            self._thread.join()
        _quietly(self.weight_dir)  # all cached after the thread; everything without one
