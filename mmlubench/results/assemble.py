"""Builds the result document of a run (typed sections of `document`) from what the runner
measured.

`assemble` is the seam: the runner hands over each pass's PassResult, the memory reports, the
timings and the environment; every key of result.json is made here (pass sections:
pass_sections.py) and declared in `document`. Keys carry their units (`_s`, `_bytes`,
`_tok_per_s`). files.py writes the document and predictions.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mmlubench.config import hub
from mmlubench.data.prompts import choice_token_ids, prompt_bos
from mmlubench.data.scoring import Decoder
from mmlubench.results import document as doc
from mmlubench.results.metrics import ModelShape, resolve_peak
from mmlubench.results.pass_sections import agreement, letters, pass_section

if TYPE_CHECKING:
    from mmlubench.config.config import Config
    from mmlubench.data.prompts import Prompt
    from mmlubench.device.memory import MemoryReport
    from mmlubench.model.load import ModelInfo
    from mmlubench.run.pass_result import PassResult


def _max(values) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _metrics(
    cfg: Config,
    sections: Mapping[str, doc.Pass],
    memory: Sequence[MemoryReport],
    prompts: Sequence[Prompt],
    e2e_s: float,
    fpt: float | None,
    peak: float | None,
    peak_source: str | None,
    devices: int,
) -> doc.Metrics:
    """The reference table's row and what it was computed from."""
    val, infer = sections.get("val"), sections["infer"]
    rule = cfg.scoring
    return doc.Metrics(
        precision=cfg.precision,
        e2e_time_s=e2e_s,
        p_val_whole_tok_per_s=val.whole_tok_per_s if val else None,
        p_val_core_tok_per_s=val.core_tok_per_s if val else None,
        p_infer_whole_tok_per_s=infer.whole_tok_per_s,
        p_infer_core_tok_per_s=infer.core_tok_per_s,
        mfu=infer.mfu,
        mfu_computed=infer.mfu_computed,
        computed_tokens=infer.computed_tokens,
        acc_infer=infer.accuracy[rule].micro,
        acc_val=val.accuracy[rule].micro if val else None,
        mem_peak_used_bytes=_max(m.peak_used_bytes for m in memory),
        mem_total_bytes=_max(m.total_bytes for m in memory),
        torch_peak_allocated_bytes=_max(m.torch_peak_allocated_bytes for m in memory),
        flops_per_token=fpt,
        peak_flops_per_s=peak,
        peak_flops_source=peak_source,
        devices=devices,
        questions=len(prompts),
        prompt_tokens=sum(len(p.ids) for p in prompts),
        truncated_prompts=sum(1 for p in prompts if p.dropped),
        shareable_prompts=sum(1 for p in prompts if p.prefix_len),
        mem_source=memory[0].source,
        # The infer pass's energy (each pass's own figures are in its section).
        energy_j=infer.energy_j,
        avg_power_w=infer.avg_power_w,
        tokens_per_joule=infer.tokens_per_joule,
        joules_per_question=infer.joules_per_question,
        precision_recipe=fp8_recipe() if cfg.precision == "fp8" else None,
    )


def fp8_recipe() -> dict[str, str]:
    from mmlubench.engines.fp8 import RECIPE  # torch is loaded in a run anyway

    return dict(RECIPE)


def _memory(memory: Sequence[MemoryReport]) -> doc.Memory:
    """One device's report; for several, the first device's with the peak over all of them
    and each device's report in `per_device`."""
    sections = [doc.Memory.from_json(m.to_json()) for m in memory]
    if len(sections) == 1:
        return sections[0]
    first = sections[0]
    first.peak_used_bytes = _max(m.peak_used_bytes for m in memory)
    first.per_device = [doc.Memory.from_json(m.to_json()) for m in memory]
    return first


def config_sha256(model_dir: str | Path) -> str | None:
    """sha256 of a model folder's config.json content (keys sorted): the same model gives the
    same hash wherever its folder is; None when the file cannot be read."""
    try:
        data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _warnings(
    cfg: Config,
    env: dict,
    passes: Mapping[str, PassResult],
    peak: float | None,
    resume: dict | None,
) -> list[str]:
    out = []
    if peak is None:
        out.append(
            f"no peak FLOP/s known for device {env.get('device_name')!r} in "
            f"{cfg.precision}: MFU is null (give --peak-flops to set it)"
        )
    if cfg.random_weights:
        out.append(
            "RANDOM WEIGHTS: the model was built from config.json with random "
            "weights; speed figures are real, accuracy is meaningless"
        )
    if resume:
        out.append(
            f"RESUMED: this run was interrupted and resumed ({len(resume['sessions'])} "
            "sessions); times are sums over the sessions (see resume.timing_rule)"
        )
    for name, p in passes.items():
        if p.oom_backoffs:
            out.append(
                f"{name} pass: {len(p.oom_backoffs)} batch(es) ran out of device memory "
                f"and were retried in smaller batches (see passes.{name}.oom_backoffs)"
            )
    return out


def _shape(model_info: ModelInfo) -> ModelShape:
    """The model's shape for FLOP accounting: the one loading recorded, else one built from
    the model section's sizes."""
    if model_info.flop_shape:
        return ModelShape(**model_info.flop_shape)
    return ModelShape(
        model_info.num_hidden_layers,
        model_info.hidden_size,
        model_info.intermediate_size,
        model_info.num_attention_heads,
        model_info.num_key_value_heads,
        model_info.vocab_size,
    )


def _mfu_warnings(sections: Mapping[str, doc.Pass]) -> list[str]:
    """A headline MFU above 100% is a warning: flops_per_token counts more than ran."""
    return [
        f"{n} pass: MFU {s.mfu:.0%} is above 100%: flops_per_token counts more than the "
        "engine computes (a small model's embeddings, say); mfu_computed counts what ran"
        for n, s in sections.items()
        if s.mfu and s.mfu > 1
    ]


def _model(model_info: ModelInfo, prompts: Sequence[Prompt], tokenizer) -> doc.Model:
    """The model section: what loading recorded, its config's hash, the prompts' BOS id and,
    for a Hub snapshot, its repo and commit."""
    return replace(
        model_info,
        config_sha256=config_sha256(model_info.path),
        prompt_bos_id=prompt_bos(prompts, tokenizer),
        **hub.provenance(model_info.path),
    )


def _pass_sections(
    passes: Mapping[str, PassResult],
    predicted: Mapping[str, Mapping[str, list[str]]],
    prompts: Sequence[Prompt],
    shape: ModelShape,
    peak: float | None,
    devices: int,
    fpt: float | None,
    energy: Mapping[str, Mapping] | None,
) -> dict[str, doc.Pass]:
    """Each pass's section (pass_sections.pass_section)."""
    subjects = [p.subject for p in prompts]
    answers = [p.answer for p in prompts]
    return {
        name: pass_section(
            p,
            shape,
            peak,
            devices,
            fpt,
            subjects,
            answers,
            predicted[name],
            (energy or {}).get(name),
        )
        for name, p in passes.items()
    }


def assemble(
    *,
    cfg: Config,
    env: dict,
    model_info: ModelInfo,
    prompts: Sequence[Prompt],
    passes: Mapping[str, PassResult],
    tokenizer,
    memory: Sequence[MemoryReport],
    e2e_s: float,
    timings: Mapping[str, float],
    flops_per_token: float | None,
    warnings: list[str],
    devices: int = 1,
    resume: dict | None = None,
    energy: Mapping[str, Mapping] | None = None,
) -> doc.Result:
    """Build the result document of a run. `memory` has one report per device (rank);
    `resume` describes the sessions of a resumed run and how their timings were combined;
    `energy` has each pass's energy figures (energy.pass_energy)."""
    decode = Decoder(tokenizer)
    shape = _shape(model_info)
    peak, peak_source = resolve_peak(cfg.peak_flops, cfg.precision, env.get("device_name"))
    choice_ids = choice_token_ids(tokenizer)
    predicted = {name: letters(p, decode, choice_ids) for name, p in passes.items()}
    sections = _pass_sections(
        passes, predicted, prompts, shape, peak, devices, flops_per_token, energy
    )
    model = _model(model_info, prompts, tokenizer)
    return doc.Result(
        schema=doc.SCHEMA,
        case=cfg.case,
        random_weights=cfg.random_weights,
        accuracy_meaningful=not cfg.random_weights and cfg.case != "demo",  # demo: random
        warnings=[
            *warnings,
            *_warnings(cfg, env, passes, peak, resume),
            *_mfu_warnings(sections),
        ],
        resume=resume,
        metrics=_metrics(
            cfg, sections, memory, prompts, e2e_s, flops_per_token, peak, peak_source, devices
        ),
        accuracy=doc.AccuracySummary(cfg.scoring, agreement(passes, predicted)),
        passes=sections,
        timings=dict(timings),
        model=model,
        memory=_memory(memory),
        environment=doc.Environment.from_json(env),
        config=doc.RunConfig.from_json(cfg.to_dict()),
    )
