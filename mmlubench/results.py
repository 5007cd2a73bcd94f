"""Builds the result document of a run (typed sections of `document`) from what the runner
measured, and writes it and the per-question predictions (predictions.jsonl).

`assemble` is the seam: the runner hands over each pass's PassResult, the memory reports, the
timings and the environment; every key of result.json is made here (and declared in
`document`). Keys carry their units (`_s`, `_bytes`, `_tok_per_s`). Both files are written
atomically (temp file, rename).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, astuple, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from mmlubench import document as doc
from mmlubench import hub, logit_sample, safefile
from mmlubench.metrics import ModelShape, mfu, resolve_peak, throughput, work_flops
from mmlubench.mfu import checked_mfu
from mmlubench.prompts import choice_token_ids, json_line, prompt_bos
from mmlubench.scoring import Decoder, accuracy, choices_letter, reference_letter, token_letter

if TYPE_CHECKING:
    from mmlubench.config import Config
    from mmlubench.memory import MemoryReport
    from mmlubench.model import ModelInfo
    from mmlubench.passes import PassResult
    from mmlubench.prompts import Prompt


def _max(values) -> int | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def letters(p: PassResult, decode: Decoder, choice_ids: Sequence[int]) -> dict[str, list[str]]:
    """Each question's predicted letter under each answer rule (scoring.RULES)."""
    return {
        "reference": [reference_letter(int(i), decode) for i in p.top_ids],
        "choices": [choices_letter(row.tolist()) for row in p.choice_logits],
        "token": [token_letter(int(i), choice_ids) for i in p.top_ids],
    }


def pass_section(p: PassResult, shape: ModelShape, peak: float | None, devices: int,
                 fpt: float | None, subjects: Sequence[str], answers: Sequence[str],
                 predicted: Mapping[str, list[str]], energy: Mapping | None = None) -> doc.Pass:
    """One pass's section; `energy`: its figures from energy.pass_energy (null: unmeasured)."""
    flops = work_flops(shape, *astuple(p.work)[:3], window_pairs=p.work.window_pairs)
    return checked_mfu(p.name, peak, doc.Pass(
        engine=doc.Engine(p.engine["name"], p.engine["options"]),
        questions=len(p.top_ids),
        batches=p.batches,
        prompt_tokens=p.prompt_tokens,
        whole_time_s=p.whole_time_s,
        core_time_s=p.core_time_s,
        compile_time_s=p.compile_time_s,
        plan_time_s=p.plan_time_s,
        whole_tok_per_s=throughput(p.prompt_tokens, p.whole_time_s),
        core_tok_per_s=throughput(p.prompt_tokens, p.core_time_s),
        # The reference's formula on the tokens the engine computed: for engines that run every
        # prompt whole (the reference) this is flops_per_token x p_core / peak; an engine that
        # shares prefixes computes fewer tokens than it answers for, and MFU stays <= 100%.
        mfu=mfu(fpt, throughput(p.work.tokens, p.core_time_s), peak, devices),
        computed_tokens=p.work.tokens,
        padded_tokens=p.work.padded_tokens,
        attention_pairs=p.work.attention_pairs,
        logit_rows=p.work.logit_rows,
        computed_tok_per_s=throughput(p.work.tokens, p.core_time_s),
        executed_flops=flops,
        mfu_computed=(flops / p.core_time_s / (peak * devices))
        if peak and p.core_time_s > 0 else None,
        torch_peak_allocated_bytes=p.torch_peak_allocated_bytes,
        accuracy={rule: doc.Accuracy(**asdict(accuracy(subjects, answers, predicted[rule])))
                  for rule in predicted},
        timeline=p.timeline,
        per_rank=p.per_rank,
        # Batches that ran out of device memory and were retried split (see passes.back_off).
        oom_backoff_count=len(p.oom_backoffs),
        oom_backoffs=p.oom_backoffs,
        **(energy or {}),
    ))


def _agreement(passes: Mapping[str, PassResult],
               predicted: Mapping[str, Mapping[str, list[str]]]) -> doc.Agreement | None:
    """How often val and infer agree, when both ran."""
    if "val" not in passes:
        return None

    def same(rule: str) -> float:
        pairs = zip(predicted["val"][rule], predicted["infer"][rule], strict=True)
        return float(np.mean([x == y for x, y in pairs]))

    letters = logit_sample.mean_max(logit_sample.row_ratios(passes["val"].choice_logits,
                                                             passes["infer"].choice_logits))
    whole = logit_sample.rel_l2(passes["val"].sample_logits, passes["infer"].sample_logits)
    return doc.Agreement(
        same_top_token=float(np.mean(passes["val"].top_ids == passes["infer"].top_ids)),
        same_letter_reference=same("reference"), same_letter_choices=same("choices"),
        same_letter_token=same("token"),
        letter_logits_rel_l2_mean=letters[0], letter_logits_rel_l2_max=letters[1],
        logits_rel_l2_mean=whole[0], logits_rel_l2_max=whole[1], logits_sample_questions=whole[2])


def _metrics(cfg: Config, sections: Mapping[str, doc.Pass], memory: Sequence[MemoryReport],
             prompts: Sequence[Prompt], e2e_s: float, fpt: float | None, peak: float | None,
             peak_source: str | None, devices: int) -> doc.Metrics:
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


def _warnings(cfg: Config, env: dict, passes: Mapping[str, PassResult], peak: float | None,
              resume: dict | None) -> list[str]:
    out = []
    if peak is None:
        out.append(f"no peak FLOP/s known for device {env.get('device_name')!r} in "
                   f"{cfg.precision}: MFU is null (give --peak-flops to set it)")
    if cfg.random_weights:
        out.append("RANDOM WEIGHTS: the model was built from config.json with random "
                   "weights; speed figures are real, accuracy is meaningless")
    if resume:
        out.append(f"RESUMED: this run was interrupted and resumed ({len(resume['sessions'])} "
                   "sessions); times are sums over the sessions (see resume.timing_rule)")
    for name, p in passes.items():
        if p.oom_backoffs:
            out.append(f"{name} pass: {len(p.oom_backoffs)} batch(es) ran out of device memory "
                       f"and were retried in smaller batches (see passes.{name}.oom_backoffs)")
    return out


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
    subjects = [p.subject for p in prompts]
    answers = [p.answer for p in prompts]
    shape = ModelShape(**model_info.flop_shape) if model_info.flop_shape else ModelShape(
        model_info.num_hidden_layers, model_info.hidden_size, model_info.intermediate_size,
        model_info.num_attention_heads, model_info.num_key_value_heads, model_info.vocab_size)
    peak, peak_source = resolve_peak(cfg.peak_flops, cfg.precision, env.get("device_name"))
    choice_ids = choice_token_ids(tokenizer)
    predicted = {name: letters(p, decode, choice_ids) for name, p in passes.items()}
    sections = {name: pass_section(p, shape, peak, devices, flops_per_token, subjects, answers,
                                   predicted[name], (energy or {}).get(name))
                for name, p in passes.items()}
    model = replace(model_info, config_sha256=config_sha256(model_info.path),
                    prompt_bos_id=prompt_bos(prompts, tokenizer), **hub.provenance(model_info.path))
    return doc.Result(
        schema=doc.SCHEMA,
        case=cfg.case,
        random_weights=cfg.random_weights,
        accuracy_meaningful=not cfg.random_weights and cfg.case != "demo",  # demo: random
        warnings=[*warnings, *_warnings(cfg, env, passes, peak, resume), *[
            f"{n} pass: MFU {s.mfu:.0%} is above 100%: flops_per_token counts more than the "
            "engine computes (a small model's embeddings, say); mfu_computed counts what ran"
            for n, s in sections.items() if s.mfu and s.mfu > 1]],
        resume=resume,
        metrics=_metrics(cfg, sections, memory, prompts, e2e_s, flops_per_token, peak,
                         peak_source, devices),
        accuracy=doc.AccuracySummary(cfg.scoring, _agreement(passes, predicted)),
        passes=sections,
        timings=dict(timings),
        model=model,
        memory=_memory(memory),
        environment=doc.Environment.from_json(env),
        config=doc.RunConfig.from_json(cfg.to_dict()),
    )


def write_text_atomic(path: Path, write: Callable[[IO[str]], object]) -> None:
    """Call `write` on a temporary file beside `path`, sync it, then rename it to `path`: a crash
    or an exception never leaves a truncated `path`; never written through a link."""
    safefile.write_atomic(path, write)


def write_json_atomic(path: Path, data: dict) -> None:
    """One JSON document, written atomically (NaN/Infinity refused: not JSON)."""

    def write(f: IO[str]) -> None:
        json.dump(data, f, indent=2, ensure_ascii=False, allow_nan=False)
        f.write("\n")

    write_text_atomic(path, write)


def write_predictions(path: Path, prompts: Sequence[Prompt], passes: Mapping[str, PassResult],
                      tokenizer) -> None:
    """One line per question: subject, index, gold, and each pass's prediction (atomically)."""
    write_text_atomic(path, lambda f: _predictions(f, prompts, passes, tokenizer))


def _predictions(f: IO[str], prompts: Sequence[Prompt], passes: Mapping[str, PassResult],
                 tokenizer) -> None:
    decode = Decoder(tokenizer)
    choice_ids = choice_token_ids(tokenizer)
    for i, p in enumerate(prompts):
        row = {"subject": p.subject, "index": p.index, "gold": p.answer,
               "n_tokens": len(p.ids)}
        for name, r in passes.items():
            tid = int(r.top_ids[i])
            row[name] = {
                "top_id": tid,
                "top_token": decode(tid),
                "reference": reference_letter(tid, decode),
                "choices": choices_letter(r.choice_logits[i].tolist()),
                "token": token_letter(tid, choice_ids),
                # log-softmax over the vocabulary of " A".." D" (null: not recorded)
                "loglikelihoods": None if np.isnan(r.logsumexp[i]) else
                [float(x) for x in r.choice_logits[i] - r.logsumexp[i]]}
        f.write(json_line(row))
