"""Each pass's section of the result document (timings, throughput, MFU, accuracy under each
answer rule) and how often the val and infer passes agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, astuple
from typing import TYPE_CHECKING

import numpy as np

from mmlubench.config.mfu import checked_mfu
from mmlubench.data.scoring import Decoder, accuracy, choices_letter, reference_letter, token_letter
from mmlubench.results import document as doc
from mmlubench.results import logit_sample
from mmlubench.results.metrics import ModelShape, mfu, throughput, work_flops

if TYPE_CHECKING:
    from mmlubench.run.pass_result import PassResult


def letters(p: PassResult, decode: Decoder, choice_ids: Sequence[int]) -> dict[str, list[str]]:
    """Each question's predicted letter under each answer rule (scoring.RULES)."""
    return {
        "reference": [reference_letter(int(i), decode) for i in p.top_ids],
        "choices": [choices_letter(row.tolist()) for row in p.choice_logits],
        "token": [token_letter(int(i), choice_ids) for i in p.top_ids],
    }


def pass_section(
    p: PassResult,
    shape: ModelShape,
    peak: float | None,
    devices: int,
    fpt: float | None,
    subjects: Sequence[str],
    answers: Sequence[str],
    predicted: Mapping[str, list[str]],
    energy: Mapping | None = None,
) -> doc.Pass:
    """One pass's section; `energy`: its figures from energy.pass_energy (null: unmeasured)."""
    flops = work_flops(shape, *astuple(p.work)[:3], window_pairs=p.work.window_pairs)
    return checked_mfu(
        p.name,
        peak,
        doc.Pass(
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
            if peak and p.core_time_s > 0
            else None,
            torch_peak_allocated_bytes=p.torch_peak_allocated_bytes,
            accuracy={
                rule: doc.Accuracy(**asdict(accuracy(subjects, answers, predicted[rule])))
                for rule in predicted
            },
            timeline=p.timeline,
            per_rank=p.per_rank,
            # Batches that ran out of device memory and were retried split (see run/backoff.py).
            oom_backoff_count=len(p.oom_backoffs),
            oom_backoffs=p.oom_backoffs,
            **(energy or {}),
        ),
    )


def agreement(
    passes: Mapping[str, PassResult], predicted: Mapping[str, Mapping[str, list[str]]]
) -> doc.Agreement | None:
    """How often val and infer agree, when both ran."""
    if "val" not in passes:
        return None

    def same(rule: str) -> float:
        pairs = zip(predicted["val"][rule], predicted["infer"][rule], strict=True)
        return float(np.mean([x == y for x, y in pairs]))

    letters = logit_sample.mean_max(
        logit_sample.row_ratios(passes["val"].choice_logits, passes["infer"].choice_logits)
    )
    whole = logit_sample.rel_l2(passes["val"].sample_logits, passes["infer"].sample_logits)
    return doc.Agreement(
        same_top_token=float(np.mean(passes["val"].top_ids == passes["infer"].top_ids)),
        same_letter_reference=same("reference"),
        same_letter_choices=same("choices"),
        same_letter_token=same("token"),
        letter_logits_rel_l2_mean=letters[0],
        letter_logits_rel_l2_max=letters[1],
        logits_rel_l2_mean=whole[0],
        logits_rel_l2_max=whole[1],
        logits_sample_questions=whole[2],
    )
