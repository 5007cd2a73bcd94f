"""Metric formulas of the reference, the peak-FLOPs table, and model FLOP accounting.

All throughputs are prompt tokens (BOS included) per second, summed over all questions:
- p_val_whole   = tokens / wall time of the whole val pass
- p_val_core    = tokens / sum of synchronized model-call times of the val pass
- p_infer_whole = tokens / wall time of the whole infer pass, compile and warm-up included
- p_infer_core  = tokens / sum of synchronized engine-call times, compile and warm-up excluded
- MFU           = flops_per_token * computed tokens / core time / (peak FLOP/s x devices);
  for the reference method (every prompt run whole) computed tokens are the prompt tokens, so
  this is the reference's flops_per_token * p_infer_core / peak. An engine that shares
  prefixes computes fewer tokens than it answers for: counting prompt tokens would give an
  MFU above 100%, so MFU always counts the tokens actually computed.
`mfu_computed` instead counts the FLOPs the engine really ran (see `work_flops`) over core time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Dense (no sparsity) peak tensor-core FLOP/s per device, from the vendors' datasheets (URL in
# the comment of each row). Keys: a model name found in the device name the vendor plug-in
# reports (torch.cuda.get_device_name() on NVIDIA and ROCm), checked in order, so that longer
# names ("H100 NVL") come before the names they contain ("H100") -> precision -> FLOP/s.
# "fp32" is the plain (non-TF32) FP32 rate, which is what fp32 matmuls use unless TF32 is on.
# "fp8" is the dense FP8 tensor rate (e4m3, FP32 accumulate), what --precision fp8's linear
# layers run on; a part without FP8 matrix units (A100, V100, MI250X, ...) has no fp8 entry.
# Datasheets quote "with sparsity" figures for recent NVIDIA parts: the dense rate is half.
# NV_TENSOR below: https://resources.nvidia.com/en-us-tensor-core/nvidia-tensor-core-gpu-datasheet
PEAK_FLOPS: list[tuple[str, dict[str, float]]] = [
    # H200 NVL: FP16/BF16 1,671 TFLOPS sparse -> 835.5 dense; FP8 3,341 -> 1,670.5; FP32 60.
    # https://www.nvidia.com/en-us/data-center/h200/
    ("H200 NVL", {"fp16": 835.5e12, "bf16": 835.5e12, "fp32": 60.0e12, "fp8": 1670.5e12}),
    # H200 SXM: same compute as H100 SXM: FP16/BF16 1,979 sparse -> 989.4 dense; FP8 3,958
    # sparse -> 1,979 dense; FP32 67. https://www.nvidia.com/en-us/data-center/h200/
    ("H200", {"fp16": 989.4e12, "bf16": 989.4e12, "fp32": 66.9e12, "fp8": 1978.9e12}),
    # GH200 (Grace Hopper): the H100 SXM's Hopper GPU: FP16/BF16 1,979 sparse -> 989.4 dense;
    # FP8 3,958 sparse -> 1,979 dense.
    # https://www.nvidia.com/en-us/data-center/grace-hopper-superchip/
    ("GH200", {"fp16": 989.4e12, "bf16": 989.4e12, "fp32": 66.9e12, "fp8": 1978.9e12}),
    # H100 NVL: FP16/BF16 1,671 TFLOPS sparse -> 835.5 dense; FP8 3,341 -> 1,670.5; FP32 60.
    # (NV_TENSOR)
    ("H100 NVL", {"fp16": 835.5e12, "bf16": 835.5e12, "fp32": 60.0e12, "fp8": 1670.5e12}),
    # H100 PCIe: FP16/BF16 1,513 TFLOPS sparse -> 756.5 dense; FP8 3,026 -> 1,513; FP32 51.
    # (NV_TENSOR)
    ("H100 PCIe", {"fp16": 756.5e12, "bf16": 756.5e12, "fp32": 51.2e12, "fp8": 1513e12}),
    # H100 SXM5, named "NVIDIA H100 80GB HBM3": 1,979 sparse -> 989.4 dense; FP8 3,958 sparse
    # -> 1,979 dense (3,957.8 in NVIDIA's Hopper whitepaper's table); FP32 67. (NV_TENSOR)
    ("H100", {"fp16": 989.4e12, "bf16": 989.4e12, "fp32": 66.9e12, "fp8": 1978.9e12}),
    # H20 product brief: FP16/BF16 148 TFLOPS dense, FP8 296 dense, FP32 44.
    # https://www.nvidia.com/en-us/data-center/h20/ (product brief, China market)
    ("H20", {"fp16": 148e12, "bf16": 148e12, "fp32": 44e12, "fp8": 296e12}),
    # B200 (HGX B200, per GPU, 1,000 W): FP16/BF16 4.5 PFLOPS sparse -> 2.25 dense; FP8 9
    # sparse -> 4.5 dense; FP32 75. https://www.nvidia.com/en-us/data-center/hgx/
    ("B200", {"fp16": 2250e12, "bf16": 2250e12, "fp32": 75e12, "fp8": 4500e12}),
    # A100 SXM4 / PCIe, 40 and 80 GB: FP16/BF16 312 TFLOPS dense; FP32 19.5 (TF32 156).
    # https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf
    ("A100", {"fp16": 312e12, "bf16": 312e12, "fp32": 19.5e12}),
    # A800 is the A100 with a reduced interconnect: same compute (A100 datasheet above).
    ("A800", {"fp16": 312e12, "bf16": 312e12, "fp32": 19.5e12}),
    # L40S: FP16/BF16 tensor 362.05 TFLOPS dense with FP32 accumulate; FP8 1,466 sparse -> 733
    # dense; FP32 91.6. https://resources.nvidia.com/en-us-l40s/l40s-datasheet-28413
    ("L40S", {"fp16": 362.05e12, "bf16": 362.05e12, "fp32": 91.6e12, "fp8": 733e12}),
    # L40: 181.05 TFLOPS dense FP16 tensor with FP32 accumulate; FP8 724 sparse -> 362 dense;
    # FP32 90.5. https://www.nvidia.com/en-us/data-center/l40/
    ("L40", {"fp16": 181.05e12, "bf16": 181.05e12, "fp32": 90.5e12, "fp8": 362e12}),
    # L4: FP16/BF16 242 TFLOPS sparse -> 121 dense; FP8 485 sparse -> 242.5 dense; FP32 30.3.
    # https://www.nvidia.com/en-us/data-center/l4/
    ("L4", {"fp16": 121e12, "bf16": 121e12, "fp32": 30.3e12, "fp8": 242.5e12}),
    # A10: FP16/BF16 125 TFLOPS dense; FP32 31.2. https://www.nvidia.com/en-us/data-center/products/a10-gpu/
    ("A10", {"fp16": 125e12, "bf16": 125e12, "fp32": 31.2e12}),
    # V100 PCIe: 112 TFLOPS tensor FP16; FP32 14. V100S is not in the table.
    # https://images.nvidia.com/content/technologies/volta/pdf/volta-v100-datasheet-update-us-1165301-r5.pdf
    ("V100-PCIE", {"fp16": 112e12, "fp32": 14e12}),
    # V100 SXM2: 125 TFLOPS tensor FP16; no BF16; FP32 15.7 (V100 datasheet above).
    ("V100", {"fp16": 125e12, "fp32": 15.7e12}),
    # AMD Instinct MI300X (ROCm names it "AMD Instinct MI300X"): FP16/BF16 matrix 1,307.4
    # TFLOPS dense (2,614.9 with sparsity); FP8 2,614.9 dense (5,229.8 with sparsity); FP32
    # matrix 163.4. https://www.amd.com/en/products/accelerators/instinct/mi300/mi300x.html
    ("MI300X", {"fp16": 1307.4e12, "bf16": 1307.4e12, "fp32": 163.4e12, "fp8": 2614.9e12}),
    # MI325X: the MI300X's compute with HBM3E: FP16/BF16 1,307.4 dense; FP8 2,614.9 dense;
    # FP32 matrix 163.4. https://www.amd.com/en/products/accelerators/instinct/mi300/mi325x.html
    ("MI325X", {"fp16": 1307.4e12, "bf16": 1307.4e12, "fp32": 163.4e12, "fp8": 2614.9e12}),
    # MI250X: FP16/BF16 383 TFLOPS; FP32 matrix 95.7.
    # https://www.amd.com/en/products/accelerators/instinct/mi200/mi250x.html
    ("MI250X", {"fp16": 383e12, "bf16": 383e12, "fp32": 95.7e12}),
    # MI210: FP16/BF16 181 TFLOPS; FP32 matrix 45.3.
    # https://www.amd.com/en/products/accelerators/instinct/mi200/mi210.html
    ("MI210", {"fp16": 181e12, "bf16": 181e12, "fp32": 45.3e12}),
    # GeForce RTX 4090: FP16/BF16 tensor with FP32 accumulate 165.2 TFLOPS dense (the rate
    # torch's fp16 matmuls use; 330.3 is with FP16 accumulate); FP8 with FP32 accumulate
    # (what torch._scaled_mm does) 330.3 dense (660.6 with FP16 accumulate); FP32 82.6.
    # https://images.nvidia.com/aem-dam/Solutions/geforce/ada/nvidia-ada-gpu-architecture.pdf
    ("RTX 4090", {"fp16": 165.2e12, "bf16": 165.2e12, "fp32": 82.6e12, "fp8": 330.3e12}),
]


def peak_flops(device_name: str | None, precision: str) -> float | None:
    """Dense peak FLOP/s of one device, or None if the device or precision is not in the table.

    A key matches as a whole model name, not inside a longer one: "A10" is not "A10G",
    "A100" is not "RTX A1000", "H200" is not "GH200" (those are unknown, hence None).
    """
    if not device_name:
        return None
    for key, table in PEAK_FLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])", device_name):
            return table.get(precision)
    return None


def resolve_peak(
    configured: float | dict[str, float] | None, precision: str, device_name: str | None
) -> tuple[float | None, str | None]:
    """(peak FLOP/s of one device, where it came from): the config's number ("config"), the
    config's per-precision mapping, e.g. from a vendor YAML ("config"), else the table
    ("table"); (None, None) when none knows this device and precision (MFU is then null)."""
    if isinstance(configured, dict):
        configured = configured.get(precision)
    if configured:
        return float(configured), "config"
    peak = peak_flops(device_name, precision)
    return peak, ("table" if peak else None)


def throughput(tokens: int, seconds: float) -> float | None:
    return tokens / seconds if seconds > 0 else None


def mfu(
    flops_per_token: float | None, tok_per_s: float | None, peak: float | None, devices: int = 1
) -> float | None:
    if flops_per_token is None or tok_per_s is None or not peak:
        return None
    return flops_per_token * tok_per_s / (peak * devices)


# Model types whose MLP is two matrices (up, activation, down) rather than a gated three
# (gate, up, down: SwiGLU in Llama/Qwen/Mistral/OLMo/Phi-3, GeGLU in Gemma: the same count).
UNGATED_MLP = frozenset(
    {"gpt_neox", "phi", "starcoder2", "gpt_bigcode", "gptj", "opt", "codegen", "bloom", "gpt2"}
)


@dataclass(frozen=True)
class ModelShape:
    """What a decoder-only transformer computes per token, read from its HF config.

    Counted: every weight matrix a token passes through (2 FLOPs per weight: one multiply, one
    add), attention's QK^T and AV per (query, key) pair, the LM head per logit row. Attention
    heads project to `heads x head_dim`, which is not `hidden` in Gemma or Qwen3 (head_dim 256
    and 128 given apart); GQA shrinks k and v to `kv_heads x head_dim` but not the pair work
    (each query head attends itself). A mixture-of-experts layer counts its router, the
    `experts_per_token` experts a token is sent to (not all `experts`) and its shared expert
    with its sigmoid gate where there is one (Qwen2-MoE); dense layers of a MoE model
    (Qwen-MoE's mlp_only_layers / decoder_sparse_step) count the dense MLP. Left out as
    negligible (< 0.1% at 7B): biases, norms, RoPE, activations, softmax, residual adds, the
    router's top-k and the embedding lookup (a gather, not a matmul).
    """

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    head_dim: int = 0  # 0: hidden // heads
    gated_mlp: bool = True  # gate, up, down (3 matrices); False: up, down (2)
    experts: int = 0  # routed experts of a MoE layer (0: dense model)
    experts_per_token: int = 0
    expert_intermediate: int = 0
    shared_expert_intermediate: int = 0  # 0: no shared expert
    moe_layers: int = 0  # how many of the layers are MoE layers
    sliding_layers: int = 0  # layers with a sliding window (Work.window_pairs counts theirs)

    def __post_init__(self) -> None:
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden // self.heads)

    @classmethod
    def from_config(cls, c) -> ModelShape:
        """From a transformers config (or anything with its attribute names)."""
        heads = c.num_attention_heads
        experts = getattr(c, "num_local_experts", None) or getattr(c, "num_experts", None) or 0
        intermediate = (
            getattr(c, "intermediate_size", None)
            or getattr(c, "n_inner", None)
            or 4 * c.hidden_size
        )
        moe = (
            dict(
                experts=experts,
                experts_per_token=getattr(c, "num_experts_per_tok", 0),
                expert_intermediate=getattr(c, "moe_intermediate_size", None) or intermediate,
                shared_expert_intermediate=getattr(c, "shared_expert_intermediate_size", None) or 0,
                moe_layers=_moe_layers(c),
            )
            if experts
            else {}
        )
        from mmlubench.engines.packed_attention import layer_windows

        sliding = sum(1 for w in layer_windows(c, c.num_hidden_layers) if w)
        return cls(
            c.num_hidden_layers,
            c.hidden_size,
            intermediate,
            heads,
            getattr(c, "num_key_value_heads", None) or heads,
            c.vocab_size,
            head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
            gated_mlp=getattr(c, "model_type", None) not in UNGATED_MLP,
            sliding_layers=sliding,
            **moe,
        )

    def _mlp(self, inner: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * inner

    @property
    def matmul_weights_per_token(self) -> int:
        """Weights a token passes through in the decoder layers (not the LM head)."""
        d, q, kv = self.hidden, self.heads * self.head_dim, self.kv_heads * self.head_dim
        attention = d * q + 2 * d * kv + q * d  # q, k, v, o
        moe = (
            d * self.experts
            + self.experts_per_token * 3 * d * self.expert_intermediate
            + (
                3 * d * self.shared_expert_intermediate + d
                if self.shared_expert_intermediate
                else 0
            )
        )
        return (
            self.layers * attention
            + (self.layers - self.moe_layers) * self._mlp(self.intermediate)
            + self.moe_layers * moe
        )

    @property
    def matmul_flops_per_token(self) -> int:
        """2 x the weights a token passes through in the decoder layers."""
        return 2 * self.matmul_weights_per_token

    @property
    def idle_expert_params(self) -> int:
        """Parameters of the experts a token is not routed to: n_params less this is the
        active parameter count of a MoE model (0 for a dense one)."""
        idle = max(self.experts - self.experts_per_token, 0)
        return self.moe_layers * idle * 3 * self.hidden * self.expert_intermediate

    @property
    def attention_flops_per_pair(self) -> int:
        """QK^T and AV for one (query, key) pair over all heads and layers."""
        return 4 * self.heads * self.head_dim * self.layers

    def attention_flops(self, pairs: int, window_pairs: int | None = None) -> int:
        """Attention FLOPs of `pairs` attended in every full layer and `window_pairs` (None:
        as many) in every sliding-window layer."""
        per_layer = 4 * self.heads * self.head_dim
        windowed = pairs if window_pairs is None else window_pairs
        return per_layer * (
            pairs * (self.layers - self.sliding_layers) + windowed * self.sliding_layers
        )

    @property
    def lm_head_flops_per_row(self) -> int:
        return 2 * self.hidden * self.vocab


def _moe_layers(c) -> int:
    """How many layers hold experts: all, unless the config names dense ones (Qwen-MoE's
    `mlp_only_layers` and `decoder_sparse_step`)."""
    step = getattr(c, "decoder_sparse_step", None) or 1
    dense = set(getattr(c, "mlp_only_layers", None) or [])
    return sum(1 for i in range(c.num_hidden_layers) if (i + 1) % step == 0 and i not in dense)


def work_flops(
    shape: ModelShape,
    tokens: int,
    attention_pairs: int,
    logit_rows: int,
    window_pairs: int | None = None,
) -> float:
    """FLOPs a pass really ran: decoder matmuls per token, attention per pair (sliding-window
    layers: per pair inside the window, where the engine skips the rest), LM head per row."""
    return float(
        tokens * shape.matmul_flops_per_token
        + shape.attention_flops(attention_pairs, window_pairs)
        + logit_rows * shape.lm_head_flops_per_row
    )
