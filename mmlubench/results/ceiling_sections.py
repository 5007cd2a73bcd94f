"""The measured ceiling as typed sections of the result document, and its FLOP arithmetic.

`Ceiling` is result.json's `ceiling` section (and what `mmlubench ceiling --format json`
prints): what the device under test does at the model's own GEMM shapes, at a large square
GEMM, in the attention kernel on one real pack, and in a large copy, each with the compute clock
and power read while it ran. `AtCeiling` is a pass's time had it run at those rates; its
`ceiling_fraction` is that time over the pass's core time. Pure Python: no torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmlubench.results.sections import OMIT_IF_NONE, Section

# The decoder's projections, in layer order; the LM head runs once per logit row.
DECODER_GEMMS = ("q/k/v", "o", "gate/up", "down")


@dataclass(frozen=True)
class ModelDims:
    """The sizes that set a decoder's GEMM shapes and attention work (from an HF config)."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, c: Any) -> ModelDims:
        """From an HF config object or a parsed config.json (dict)."""
        get = c.get if isinstance(c, dict) else (lambda k, d=None: getattr(c, k, d))
        heads = get("num_attention_heads")
        return cls(
            get("num_hidden_layers"),
            get("hidden_size"),
            get("intermediate_size"),
            heads,
            get("num_key_value_heads") or heads,
            get("head_dim") or get("hidden_size") // heads,
            get("vocab_size"),
        )

    def decoder_gemms(self, tokens: int) -> dict[str, tuple[int, int, int]]:
        """(M, N, K) of each projection of one layer on `tokens` rows (fused q/k/v and
        gate/up, as the shared-prefix engine runs them): out [M, N] = in [M, K] @ W^T."""
        d, f, hd = self.hidden, self.intermediate, self.head_dim
        return {
            "q/k/v": (tokens, (self.heads + 2 * self.kv_heads) * hd, d),
            "o": (tokens, d, self.heads * hd),
            "gate/up": (tokens, 2 * f, d),
            "down": (tokens, d, f),
        }

    @property
    def decoder_flops_per_token(self) -> int:
        """2 x M x N x K of every projection of every layer, per token."""
        return self.layers * sum(2 * n * k for _, n, k in self.decoder_gemms(1).values())

    @property
    def lm_head_flops_per_row(self) -> int:
        return 2 * self.hidden * self.vocab

    @property
    def attention_flops_per_pair(self) -> int:
        """QK^T and AV for one attended (query, key) pair: 4 x head_dim x heads, per layer."""
        return 4 * self.head_dim * self.heads

    def to_json(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Reading(Section):
    """One timed kernel: its work per rep, the median over the timed reps (warm-up reps
    excluded), and the device's compute clock and power sampled while the timed reps ran."""

    name: str  # q/k/v, o, gate/up, down, lm_head, square, attention, copy
    dtype: str
    shape: list[int]  # GEMM [M, N, K]; attention [tokens, heads, kv_heads, head_dim]; copy [B]
    flops: float | None  # per rep
    moved_bytes: float | None  # per rep, read + written (the copy)
    reps: int
    warmup_reps: int
    median_time_s: float | None
    min_time_s: float | None
    flops_per_s: float | None
    bytes_per_s: float | None
    sm_clock_mhz_median: float | None
    power_w_median: float | None
    error: str | None = field(default=None, metadata=OMIT_IF_NONE)  # why it did not run


@dataclass
class AttentionPack(Section):
    """The pack the attention kernel ran on: built by the shared-prefix planner."""

    source: str  # where its prompts came from
    pack_tokens: int
    block_size: int
    questions: int
    computed_tokens: int
    attended_pairs: int  # (query, key) pairs the mask allows, padding's own pair included
    partial_blocks: int
    full_blocks: int


@dataclass
class PrecisionCeiling(Section):
    """The rates in one precision (fp8: the decoder's projections in e4m3, as the engine runs
    them; its LM head and attention in fp16)."""

    precision: str
    # Every model-shape GEMM of one pack as the model runs it: the projections x layers + LM head.
    gemm_model_flops_per_s: float | None
    gemm_decoder_flops_per_s: float | None
    gemm_lm_head_flops_per_s: float | None
    gemm_square_flops_per_s: float | None
    attention_flops_per_s: float | None
    readings: list[Reading]


@dataclass
class Ceiling(Section):
    """What this device does, measured on it (`mmlubench ceiling`, or in `run`)."""

    device: str
    device_name: str | None
    vendor: str | None
    timer: str  # "torch.Event" (device events) or "synchronize+perf_counter"
    model_source: str
    model: dict[str, int]  # ModelDims
    gemm_tokens: int  # rows of the model-shape GEMMs (the pack length)
    square: int  # the square GEMM's size
    pack: AttentionPack | None
    precisions: dict[str, PrecisionCeiling]
    bandwidth_bytes_per_s: float | None
    copy: Reading | None
    power_limit_w: float | None
    max_sm_clock_mhz: float | None
    attention_compile_s: float | None  # compiling the attention kernel, not in any reading
    time_s: float  # the whole step, outside e2e_time


@dataclass
class AtCeiling(Section):
    """A pass's executed FLOPs at the measured rates: GEMMs at the model-shape GEMM rates,
    attention at the measured attention rate (over the devices of the pass)."""

    gemm_flops: float
    attention_flops: float
    gemm_time_s: float
    attention_time_s: float
    time_s: float


def at_ceiling(
    dims: ModelDims,
    rates: PrecisionCeiling,
    tokens: int,
    attention_pairs: int,
    logit_rows: int,
    devices: int = 1,
) -> AtCeiling | None:
    """How long `tokens` through the decoder, `attention_pairs` attended pairs and
    `logit_rows` LM-head rows take at the measured rates; None when a rate is missing."""
    decoder = float(tokens * dims.decoder_flops_per_token)
    lm_head = float(logit_rows * dims.lm_head_flops_per_row)
    attention = float(attention_pairs * dims.attention_flops_per_pair * dims.layers)
    dec_rate, lm_rate = rates.gemm_decoder_flops_per_s, rates.gemm_lm_head_flops_per_s
    att_rate = rates.attention_flops_per_s
    if not (dec_rate and att_rate and (lm_rate or not lm_head)):
        return None
    gemm_s = (decoder / dec_rate + (lm_head / lm_rate if lm_head else 0.0)) / devices
    att_s = attention / att_rate / devices
    return AtCeiling(decoder + lm_head, attention, gemm_s, att_s, gemm_s + att_s)


def fraction(at: AtCeiling | None, core_time_s: float) -> float | None:
    """Time at the ceiling over core time (executed FLOP/s over what the ceiling predicts)."""
    return at.time_s / core_time_s if at is not None and core_time_s > 0 else None
