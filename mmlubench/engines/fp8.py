"""FP8 (e4m3) linear layers for the shared-prefix engine: what `--precision fp8` runs.

A generic transformation of the HF model: every `nn.Linear` of the decoder layers (attention
projections and MLP, whatever the architecture names them) is swapped for an `FP8Linear` while
the engine runs (`linear_swaps`, `swapped`); the fp16 modules stay for the val pass. MoE experts
that are stacked weight tensors rather than nn.Linear modules are refused, not left in fp16.

The recipe (RECIPE, recorded in result.json):
- The weights of the decoder's linear layers are stored in float8_e4m3fn with one fp32 scale
  per output channel, computed once at engine set-up from the fp16 weights:
  scale = amax(|row|) / 448, so every row's largest weight becomes +-448.
- Activations are quantized the same way per token (row), dynamically, inside the compiled
  decoder layer, so that Inductor can fuse the amax, the division and the cast into the kernel
  that produces the activation (RMSNorm, SiLU(gate) * up, the attention output's re-layout)
  instead of adding a pass over memory; bench/fp8_smoke.py lists the kernels fp8 adds.
- `torch._scaled_mm` with row-wise scales multiplies on the FP8 tensor cores (fast
  accumulation, see FAST_ACCUM) and applies both scales in its epilogue:
  y = (x_q * s_x) @ (w_q * s_w)^T.
- Attention (FlexAttention), norms, RoPE, embeddings and the LM head stay fp16; so does the
  residual stream.

`fp8_linear_reference` computes the same quantization in fp32 with an ordinary matmul (the
dequantized operands): the CPU tests check the recipe with it; the FP8 kernel itself is
checked on the device by bench/parity.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from mmlubench.errors import RunError

E4M3 = torch.float8_e4m3fn
E4M3_MAX = torch.finfo(E4M3).max  # 448.0
# A row whose largest magnitude is below this is scaled as if it were this: a row of zeros
# quantizes to zeros instead of 0/0.
MIN_AMAX = 1e-12
# Hopper's FP8 tensor cores accumulate in reduced precision unless the sum is promoted to fp32
# periodically; fast accumulation skips the promotion (as TensorRT-LLM's and torchao's FP8
# inference do). Its accuracy cost is part of what bench/parity.py measures.
FAST_ACCUM = True
RECIPE = {
    "format": "float8_e4m3fn (max 448)",
    "layers": "every nn.Linear of the decoder layers (attention projections and MLP)",
    "weights": "one fp32 scale per output channel (amax/448), computed once from fp16 weights",
    "activations": "one fp32 scale per token (amax/448), dynamic, computed in the compiled layer",
    "matmul": "torch._scaled_mm, row-wise scales, "
    + ("fast accumulation" if FAST_ACCUM else "fp32 accumulation")
    + ", fp16 result (written as bf16 and cast where the torch build's row-wise "
    "kernel writes only bf16)",
    "fp16": "attention, norms, RoPE, embeddings, LM head, residual stream; the val pass",
}


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] -> (x_q [M, K] e4m3, scale [M, 1] fp32), x ~ x_q * scale, row by row.

    Each row's largest magnitude maps to exactly +-448; the clamp only catches the rounding of
    x / scale just above 448, which the cast would turn into NaN (e4m3fn has no infinity)."""
    xf = x.float()
    scale = xf.abs().amax(dim=-1, keepdim=True).clamp(min=MIN_AMAX) / E4M3_MAX
    return (xf / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3), scale


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A [N, K] linear weight -> (w_q [N, K] e4m3, scale [1, N] fp32), one scale per output
    channel, shaped as torch._scaled_mm takes the scale of its second operand."""
    w_q, scale = quantize_rows(w)
    return w_q, scale.reshape(1, -1).contiguous()


def fp8_linear(
    x: torch.Tensor,
    w_q: torch.Tensor,
    w_scale: torch.Tensor,
    out_dtype: torch.dtype = torch.float16,
) -> torch.Tensor:
    """x @ w^T on the FP8 tensor cores: x [M, K] (quantized here, per token), w_q [N, K] e4m3
    (row-major, so w_q.t() is the column-major operand _scaled_mm requires), w_scale [1, N].

    `out_dtype` is what the kernel writes (fp16; bf16 where a torch build's row-wise kernel
    only writes bf16, see scaled_mm_out_dtype); the result is cast to x's dtype, which
    Inductor fuses into the consumer. K and N must be multiples of 16."""
    x_q, x_scale = quantize_rows(x)
    y = torch._scaled_mm(
        x_q,
        w_q.t(),
        scale_a=x_scale,
        scale_b=w_scale,
        out_dtype=out_dtype,
        use_fast_accum=FAST_ACCUM,
    )
    return y.to(x.dtype)


def fp8_linear_reference(
    x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor, out_dtype: torch.dtype | None = None
) -> torch.Tensor:
    """What fp8_linear computes, in fp32 with an ordinary matmul: quantize x per token the same
    way, dequantize both operands, multiply, cast to x's dtype (`out_dtype` is ignored)."""
    x_q, x_scale = quantize_rows(x)
    y = (x_q.float() * x_scale) @ (w_q.float() * w_scale.reshape(-1, 1)).t()
    return y.to(x.dtype)


def check_device(device: torch.device) -> None:
    """RunError on a CPU: torch can emulate _scaled_mm there, but has no FP8 units to run."""
    if device.type == "cpu":
        raise RunError(
            "precision fp8 needs FP8 matrix units (NVIDIA compute capability >= "
            "8.9: Ada, Hopper, Blackwell); device cpu has none: use --precision "
            "fp16 on a GPU, fp32 on CPU"
        )


def check_shape(name: str, w: torch.Tensor) -> None:
    """RunError unless both dimensions of a weight are multiples of 16 (_scaled_mm's rule)."""
    if w.shape[0] % 16 or w.shape[1] % 16:
        raise RunError(
            f"precision fp8: weight {name} has shape {list(w.shape)}; torch's FP8 "
            "matmul needs both dimensions to be multiples of 16"
        )


def scaled_mm_out_dtype(device: torch.device) -> torch.dtype:
    """What the row-wise FP8 matmul writes on `device`: fp16, or bf16 where this torch build's
    kernel writes only bf16 (fp8_linear then casts); RunError where it runs neither, i.e. the
    device has no FP8 matrix units torch can use (compute capability < 8.9, or a ROCm part
    whose FP8 is float8_e4m3fnuz). Asking the kernel itself is the test: no table to go stale."""
    a = torch.ones(16, 16, device=device).to(E4M3)
    one = torch.ones(16, 1, device=device)
    errors = []
    for out_dtype in (torch.float16, torch.bfloat16):
        try:
            torch._scaled_mm(
                a,
                a.t(),
                scale_a=one,
                scale_b=one.t().contiguous(),
                out_dtype=out_dtype,
                use_fast_accum=FAST_ACCUM,
            )
            return out_dtype
        except (RuntimeError, ValueError) as e:
            errors.append(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__)
    raise RunError(
        f"precision fp8: device {device} cannot run torch's row-wise FP8 matmul "
        f"(FP8 matrix units: NVIDIA compute capability >= 8.9); torch says: "
        f"{errors[-1]}: use --precision fp16"
    )


class FP8Linear(nn.Module):
    """An nn.Linear's product on the FP8 tensor cores: the weight quantized once, per output
    channel; the input per token, in the forward (fused by Inductor); the bias added in the
    input dtype."""

    def __init__(self, linear: nn.Linear, out_dtype: torch.dtype):
        super().__init__()
        w_q, scale = quantize_weight(linear.weight.detach())
        self.register_buffer("w_q", w_q, persistent=False)
        self.register_buffer("w_scale", scale, persistent=False)
        self.bias = linear.bias
        self.out_dtype = out_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = fp8_linear(x.reshape(-1, x.shape[-1]), self.w_q, self.w_scale, self.out_dtype)
        y = y.reshape(*x.shape[:-1], y.shape[-1])
        return y if self.bias is None else y + self.bias


Swap = tuple[nn.Module, str, nn.Module, nn.Module]  # (parent, name, fp16 module, fp8 module)


def linear_swaps(layers: Sequence[nn.Module], device: torch.device) -> list[Swap]:
    """FP8 replacements of every nn.Linear in the decoder layers. Refuses a device without FP8
    matrix units, weights _scaled_mm cannot take, and weights that are not nn.Linear modules
    (stacked MoE experts), which would otherwise stay fp16 unsaid."""
    check_device(device)
    out_dtype = scaled_mm_out_dtype(device)
    swaps: list[Swap] = []
    for i, layer in enumerate(layers):
        for pname, p in layer.named_parameters():
            if p.dim() > 2:
                raise RunError(
                    f"precision fp8: layer {i}'s {pname} is a stacked weight "
                    f"{list(p.shape)} (MoE experts), not an nn.Linear; fp8 covers "
                    "the nn.Linear layers of dense models: use --precision fp16"
                )
        for parent in layer.modules():
            for name, child in parent.named_children():
                if isinstance(child, nn.Linear):
                    check_shape(f"{name} of layer {i}", child.weight)
                    swaps.append((parent, name, child, FP8Linear(child, out_dtype)))
    return swaps


@contextlib.contextmanager
def swapped(swaps: Sequence[Swap]) -> Iterator[None]:
    """The swapped modules (fp8's, or fused projections') in place while the engine runs;
    the plain ones again afterwards."""
    for parent, name, _, new in swaps:
        setattr(parent, name, new)
    try:
        yield
    finally:
        for parent, name, old, _ in swaps:
            setattr(parent, name, old)
