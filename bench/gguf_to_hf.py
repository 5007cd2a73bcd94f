"""Convert a llama.cpp GGUF checkpoint into an HF model folder that `mmlubench run --weight-dir
DIR` loads with its real weights: any architecture transformers reads from GGUF (used for
SmolLM2-135M-Instruct Q4_1; Gemma-3-270M and Qwen2.5-Coder-1.5B Q4_K_M,
bench/real_weights.py).

transformers reads the GGUF itself (`from_pretrained(dir, gguf_file=name)`, which needs the
`gguf` package): it dequantizes every tensor to float and undoes llama.cpp's permutation of the
q/k projection rows. What it loaded is written by hand rather than with `save_pretrained`
(which raised on this GGUF-loaded model in transformers 5.24): config.json, one
model.safetensors (a tied LM head is left out: it is the embedding, and safetensors refuses
shared tensors), and the tokenizer.

Tokenizer: the checked-in fixture tests/fixtures/tokenizers/smollm2-135m (saved from the SmolLM2
GGUF; `--fixture` names another, `--fixture none` skips it) is copied when it encodes real MMLU
prompts to the same ids as the GGUF's own tokenizer and has the same BOS; otherwise the GGUF's
tokenizer is saved. `--verify N` then loads the written folder through mmlubench's own loader
(fp32, CPU) and compares last-position logits with the GGUF-loaded model on N real MMLU prompts
(it holds two copies of the model: leave it out for large ones).

    python bench/gguf_to_hf.py --gguf SmolLM2-135M-Instruct.Q4_1.gguf --out /tmp/smol-hf \\
        --mmlu-dir /work/shared/mmlu/data --verify 5
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch

FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/tokenizers/smollm2-135m"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
DTYPES = {"float16": torch.float16, "float32": torch.float32}
# Texts checked besides real prompts: newlines, digits, non-ASCII, the answer letters.
PROBES = (
    "Answer: A\n\nAnswer: B",
    "The capital of France is",
    "x² + 3x − 4 = 0, 1234567",
    "naïve café 東京 \u2028 tab\tend",
)


def load_gguf(gguf: Path):
    """(model in fp32 eval mode, tokenizer) as transformers reads the GGUF."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    return model.eval(), tok


def state_dict_to_save(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The model's tensors in `dtype`, contiguous, without the LM head when it is tied to the
    embedding (from_pretrained ties it again from config.json's tie_word_embeddings)."""
    sd = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    head, emb = sd.get("lm_head.weight"), sd.get("model.embed_tokens.weight")
    if tied and head is not None and emb is not None:
        if not torch.equal(head, emb):
            raise SystemExit(
                "gguf_to_hf: config says tie_word_embeddings but lm_head.weight "
                "differs from model.embed_tokens.weight"
            )
        del sd["lm_head.weight"]
    # A copy only where a tensor is not already stored alone in `dtype` (safetensors refuses
    # shared storage): a 1.5B model in fp32 is 6 GB, and a copy of every tensor doubles it.
    out, seen = {}, set()
    for k, v in sd.items():
        t = v.detach().to(dtype).contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen or t.untyped_storage().nbytes() != t.nbytes:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def config_dict(model, dtype: torch.dtype) -> dict:
    """The loaded model's config as a plain checkpoint's: without the GGUF quantization_config
    (the folder holds float weights, which transformers must not treat as GGUF), with the
    architecture and the stored dtype."""
    cfg = model.config.to_diff_dict()  # what save_pretrained writes
    for key in ("quantization_config", "_model_name_or_path"):
        cfg.pop(key, None)
    cfg["architectures"] = [type(model).__name__]
    cfg["dtype"] = str(dtype).removeprefix("torch.")
    return cfg


def write_model(model, out: Path, dtype: torch.dtype) -> int:
    """config.json and model.safetensors into `out`; returns the number of tensors written."""
    from safetensors.torch import save_file

    tensors = state_dict_to_save(model, dtype)
    (out / "config.json").write_text(
        json.dumps(config_dict(model, dtype), indent=2) + "\n", encoding="utf-8"
    )
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return len(tensors)


def sample_prompts(mmlu_dir: Path | None, n: int) -> list[str]:
    """Up to `n` real 5-shot MMLU test prompts (first question of evenly spaced subjects)."""
    if mmlu_dir is None or n <= 0:
        return []
    from mmlubench.data.mmlu import find_subjects, load_mmlu
    from mmlubench.data.prompts import few_shot_prefix, format_example

    subjects = find_subjects(mmlu_dir, "test")
    step = max(1, len(subjects) // n)
    data = load_mmlu(mmlu_dir, "test", subjects[::step][:n], limit=1)
    return [
        few_shot_prefix(q.subject, data.dev[q.subject], 5, "reference")
        + format_example(q, "reference", with_answer=False)
        for q in data.questions
    ]


def same_tokenizer(fixture_dir: Path, gguf_tok, texts: list[str]) -> str | None:
    """None if the fixture's tokenizer (loaded as mmlubench loads it) encodes every text to the
    GGUF tokenizer's ids and has its BOS; else what differs."""
    from mmlubench.data.tokenization import load_tokenizer

    fix = load_tokenizer(fixture_dir)
    if fix.bos_token_id != gguf_tok.bos_token_id:
        return f"bos_token_id {fix.bos_token_id} != GGUF's {gguf_tok.bos_token_id}"
    for text in [*PROBES, *texts]:
        a = fix(text, add_special_tokens=False)["input_ids"]
        b = gguf_tok(text, add_special_tokens=False)["input_ids"]
        if list(a) != list(b):
            return f"ids differ on {text[:40]!r}..."
    return None


def write_tokenizer(gguf_tok, out: Path, texts: list[str], fixture: Path | None = FIXTURE) -> str:
    """The fixture's files if they are the GGUF's tokenizer, else the GGUF's own; says which."""
    if fixture is None:
        gguf_tok.save_pretrained(str(out))
        return "saved the GGUF's tokenizer (--fixture none)"
    differs = same_tokenizer(fixture, gguf_tok, texts) if fixture.is_dir() else "no fixture"
    if differs is None:
        for name in TOKENIZER_FILES:
            shutil.copyfile(fixture / name, out / name)
        return f"copied {fixture} (same ids as the GGUF's on {len(texts) + len(PROBES)} texts)"
    gguf_tok.save_pretrained(str(out))
    return f"saved the GGUF's tokenizer ({differs} with the fixture)"


def verify(out: Path, gguf_model, texts: list[str]) -> float:
    """Max abs difference of last-position fp32 logits: folder via mmlubench vs GGUF model."""
    from mmlubench.data.tokenization import PromptTokenizer, load_tokenizer
    from mmlubench.model.load import load_model

    mine, _ = load_model(out, "fp32", "cpu", progress=False)
    pt = PromptTokenizer(load_tokenizer(out), "reference")
    worst = 0.0
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([pt.encode(text)])
            a = mine(ids).logits[0, -1]
            b = gguf_model(ids).logits[0, -1]
            worst = max(worst, float((a - b).abs().max()))
            print(
                f"  {ids.shape[1]} tokens: max |diff| {float((a - b).abs().max()):.2e}, "
                f"argmax {int(a.argmax())} vs {int(b.argmax())}",
                flush=True,
            )
    return worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--gguf", type=Path, required=True, help="the .gguf file")
    ap.add_argument("--out", type=Path, required=True, help="HF model folder to write")
    ap.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="dtype of model.safetensors (default float32: exactly what "
        "transformers dequantized; mmlubench casts to the run's precision)",
    )
    ap.add_argument(
        "--mmlu-dir",
        type=Path,
        help="MMLU data folder: real prompts for the tokenizer check and --verify",
    )
    ap.add_argument(
        "--check-prompts",
        type=int,
        default=20,
        help="real MMLU prompts for the tokenizer check (default 20)",
    )
    ap.add_argument(
        "--fixture",
        default=str(FIXTURE),
        metavar="DIR|none",
        help="tokenizer folder to copy when it encodes like the GGUF's (default: the "
        "SmolLM2-135M fixture); none: always save the GGUF's own tokenizer",
    )
    ap.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="N",
        help="compare logits on N real prompts after writing (needs --mmlu-dir)",
    )
    args = ap.parse_args(argv)
    if not args.gguf.is_file():
        print(f"gguf_to_hf: error: {args.gguf}: file not found", file=sys.stderr)
        return 2
    if args.verify and args.mmlu_dir is None:
        print("gguf_to_hf: error: --verify needs --mmlu-dir", file=sys.stderr)
        return 2
    t = time.perf_counter()
    model, tok = load_gguf(args.gguf)
    print(
        f"loaded {args.gguf.name}: {sum(p.numel() for p in model.parameters()):,} parameters "
        f"in {time.perf_counter() - t:.1f} s",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    n = write_model(model, args.out, DTYPES[args.dtype])
    print(f"wrote {n} tensors ({args.dtype}) and config.json to {args.out}")
    texts = sample_prompts(args.mmlu_dir, max(args.check_prompts, args.verify))
    fixture = None if args.fixture == "none" else Path(args.fixture)
    print("tokenizer:", write_tokenizer(tok, args.out, texts[: args.check_prompts], fixture))
    if args.verify:
        worst = verify(args.out, model, texts[: args.verify])
        print(
            json.dumps(
                {"verify_prompts": min(args.verify, len(texts)), "max_abs_logit_diff": worst}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
