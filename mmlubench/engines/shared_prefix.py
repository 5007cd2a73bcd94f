"""`shared-prefix`: the reference's numbers with far less work.

All questions of a subject share their few-shot prefix (~540 of ~710 tokens). This engine packs
one copy of a prefix and many question suffixes into one fixed-length sequence and runs it with
a FlexAttention block mask: each suffix sees its prefix and itself, causally, and its positions
continue from the end of the prefix, so every question's last-position logits are those of its
whole prompt. Why it is fast:
- No padding inside a pack and no per-question prefix: ~5-6x fewer tokens through the model.
- One pack length (`pack_tokens`): one compiled shape of the decoder layer (weights are
  arguments, so all layers share the graph), never recompiled. The block mask is rebuilt per
  pack from metadata buffers that keep their identity, so its mask function never changes.
- Fused q/k/v and gate/up projections: one large GEMM instead of three or two.
- The LM head runs only on the last position of each question, never on [tokens x vocab].
- Each subject's prefix is computed once: when a subject continues into the next pack, that
  pack takes the prefix's keys/values from a carry the previous pack left (`carry_tokens`
  keys ahead of the pack's own in every layer) instead of recomputing it.
CUDA graphs are not used: a pack of 32k tokens runs ~0.7 s against ~2 ms of launches. The mask's
block sparsity is computed on the host while planning. The embedding, RoPE tables, final norm
and LM head are the HF model's own modules.

Exactness: a request's first `prefix_len` ids are shared only with requests whose first ids are
byte-identical (the prompt builder sets prefix_len only when the full prompt's tokens start with
the prefix's own tokens); prefix_len 0 makes a request its own segment with no sharing. The
carry is named by its prefix's ids: a pack whose carry-in the engine does not hold (a resume, a
data-parallel share or a split that starts mid-subject) first reruns the pack that computed it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmlubench.engines import fp8
from mmlubench.engines.base import Batch, Engine, Request
from mmlubench.engines.packing import Pack, plan_packs
from mmlubench.errors import RunError


@dataclass
class SharedPrefixOptions:
    pack_tokens: int = field(default=32768, metadata={"help": (
        "tokens per packed forward; every pack has exactly this length (one compiled shape)")})
    max_questions: int = field(default=1024, metadata={"help": "most questions per pack"})
    share_prefix: bool = field(default=True, metadata={"help": (
        "share few-shot prefixes; false computes every prompt whole (for comparison)")})
    compile: bool = field(default=True, metadata={"help": "torch.compile the decoder layer"})
    compile_mode: str | None = field(default=None, metadata={"help": (
        "torch.compile mode of the decoder layer: null (default), max-autotune-no-cudagraphs, "
        "...")})
    compile_options: dict[str, Any] | None = field(default=None, metadata={"help": (
        "Inductor config for that compile, e.g. {prologue_fusion: false} (not with a mode)")})
    fuse_weights: bool = field(default=True, metadata={"help": (
        "fuse q/k/v and gate/up weights into one tensor each (the HF modules then hold views "
        "of them: memory does not grow, the HF model computes exactly as before)")})
    block_size: int = field(default=128, metadata={"help": "FlexAttention tokens per mask block"})
    attention_kernel_options: dict[str, Any] | None = field(default=None, metadata={"help": (
        "FlexAttention kernel_options, e.g. {BLOCK_M: 64, num_warps: 4}; null: Inductor's")})
    carry_tokens: int = field(default=2048, metadata={"help": (
        "keys carried from one pack to the next: a subject that continues into the next pack "
        "reuses its prefix from there instead of recomputing it (a multiple of block_size; "
        "0: no carry, each pack recomputes the prefixes it needs)")})
    fp8: bool = field(default=False, metadata={"help": (
        "linear layers in e4m3 with row-wise scales (engines/fp8.py); set by --precision fp8")})

    def check(self) -> None:
        if self.block_size < 16 or self.pack_tokens % self.block_size:
            raise ValueError(f"pack_tokens ({self.pack_tokens}) must be a multiple of "
                             f"block_size ({self.block_size}), which must be >= 16")
        if self.carry_tokens < 0 or self.carry_tokens % self.block_size:
            raise ValueError(f"carry_tokens ({self.carry_tokens}) must be 0 or a multiple of "
                             f"block_size ({self.block_size})")
        for key, value in (self.attention_kernel_options or {}).items():
            if not isinstance(value, (bool, int, float, str)):
                raise ValueError(f"attention_kernel_options: {key!r} must be a number, true/false "
                                 f"or text, got {value!r}")
        if self.compile_mode and self.compile_options:  # torch.compile takes one or the other
            raise ValueError("compile_mode and compile_options cannot both be set")
        if self.max_questions < 1:
            raise ValueError(f"max_questions must be >= 1, got {self.max_questions}")
        from mmlubench.engines.inductor_options import check_compile_options as allowed
        allowed(self.compile_options, self.compile_mode)  # no program or path from a config


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As HF LlamaRMSNorm: statistics in fp32, scale in the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def dense_linear(h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return h @ w.t()


def decoder_layer(x, w_in, w_qkv, w_o, w_post, w_gu, w_down, cos, sin, block_mask,
                  carry_k, carry_v, carry_idx, eps: float, heads: int, kv_heads: int,
                  head_dim: int, linear=dense_linear, kernel_options=None):
    """One Llama decoder layer on a packed sequence x [T, D] (the compiled hot function).

    Attention keys/values are [carry_k/v (C carried, post-RoPE)] + [the pack's T]; returns the
    new x and the next carry: the keys/values at `carry_idx` [C] of that key space.
    `linear(h, w)` is h @ w^T: dense_linear, or fp8's pair_linear with (e4m3 weight, scales)
    as the w_* (an engine always passes the same one: one compiled graph per precision);
    `kernel_options` go to FlexAttention's kernel (constants of the compiled graph)."""
    from torch.nn.attention.flex_attention import flex_attention

    T = x.shape[0]
    h = rms_norm(x, w_in, eps)
    qkv = linear(h, w_qkv)
    q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
    q = q.view(T, heads, head_dim).transpose(0, 1)[None]
    k = k.view(T, kv_heads, head_dim).transpose(0, 1)[None]
    v = v.view(T, kv_heads, head_dim).transpose(0, 1)[None]
    if x.device.type == "cpu":
        # Inductor's CPU FlexAttention template (torch 2.13) computed wrong results when q/k
        # were pointwise results of transposed views; contiguous heads-first inputs are right.
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    if carry_k.shape[2]:  # a static shape: with no carry (C = 0) nothing is copied
        k, v = torch.cat([carry_k, k], dim=2), torch.cat([carry_v, v], dim=2)
        carry_k, carry_v = k.index_select(2, carry_idx), v.index_select(2, carry_idx)
    o = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=kv_heads != heads,
                       kernel_options=kernel_options)
    o = o[0].transpose(0, 1).reshape(T, heads * head_dim)
    x = x + linear(o, w_o)
    h = rms_norm(x, w_post, eps)
    g, u = linear(h, w_gu).chunk(2, dim=-1)
    return x + linear(F.silu(g) * u, w_down), carry_k, carry_v


def fuse_rows(modules: Sequence[nn.Linear], fuse: bool) -> torch.Tensor:
    """One [sum(out), in] weight; with `fuse`, the modules' weights become views into it."""
    fused = torch.cat([m.weight.detach() for m in modules])
    if fuse:
        start = 0
        for m in modules:
            rows = m.weight.shape[0]
            m.weight = nn.Parameter(fused[start : start + rows], requires_grad=False)
            start += rows
    return fused


class SharedPrefixEngine(Engine):
    name = "shared-prefix"
    Options = SharedPrefixOptions

    def __init__(self, model: nn.Module, options: Any, device: str):
        super().__init__(model, options, device)
        from torch.nn.attention.flex_attention import BlockMask
        cfg = model.config
        base = model.model
        attn0 = base.layers[0].self_attn
        for flag in ("attention_bias", "mlp_bias"):
            if getattr(cfg, flag, False):
                raise RunError(f"engine shared-prefix supports Llama layers without biases; "
                               f"this model has {flag}=true")
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(attn0, "head_dim", cfg.hidden_size // self.heads)
        self.eps = base.layers[0].input_layernorm.variance_epsilon
        self.layers = []
        for layer in base.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append((
                layer.input_layernorm.weight,
                fuse_rows([a.q_proj, a.k_proj, a.v_proj], options.fuse_weights),
                a.o_proj.weight,
                layer.post_attention_layernorm.weight,
                fuse_rows([m.gate_proj, m.up_proj], options.fuse_weights),
                m.down_proj.weight,
            ))
        self.linear = dense_linear
        if options.fp8:  # quantized copies; the fp16 weights stay for the val pass
            self.layers, self.linear = fp8.quantize_layers(self.layers, self.device)
        T, C = options.pack_tokens, options.carry_tokens
        dev = self.device
        # Mask metadata lives in buffers that keep their identity across packs, so the mask
        # function below is one object and nothing recompiles when a new pack comes. They are
        # key indices: keys are [C carried] + [T pack tokens], query t is key C + t.
        self.seg_start = torch.zeros(T, dtype=torch.int32, device=dev)
        self.pre_start = torch.zeros(T, dtype=torch.int32, device=dev)
        self.pre_end = torch.zeros(T, dtype=torch.int32, device=dev)
        seg, ps, pe = self.seg_start, self.pre_start, self.pre_end

        def mask_mod(b, h, q_idx, kv_idx):
            own = (kv_idx >= seg[q_idx]) & (kv_idx <= q_idx + C)
            prefix = (kv_idx >= ps[q_idx]) & (kv_idx < pe[q_idx])
            return own | prefix

        self._mask_mod = mask_mod
        self._from_kv_blocks = BlockMask.from_kv_blocks
        # The carry: per layer, the keys/values of the prefix `self.held` names (None: nothing
        # known); made by the first pack (in its inference mode, or the graph would differ).
        self.carry: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.held: bytes | None = None
        layer_fn = decoder_layer
        if options.compile:
            layer_fn = torch.compile(decoder_layer, dynamic=False, fullgraph=True,
                                     mode=options.compile_mode, options=options.compile_options)
        self.layer_fn = functools.partial(layer_fn, linear=self.linear,
                                          kernel_options=options.attention_kernel_options)

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        o = self.options
        return plan_packs(requests, o.pack_tokens, o.max_questions, o.share_prefix,
                          o.block_size, carry_tokens=o.carry_tokens)

    def split(self, batch: Batch) -> list[Batch] | None:
        """Re-pack the rows with at most half as many questions per pack. The pack length is
        the compiled shape and stays `pack_tokens`: a smaller pack holds fewer questions (less
        attention work and fewer LM-head rows), not fewer positions. The parts are a chain of
        their own: the first one computes its prefix, later ones may carry it."""
        if len(batch.rows) < 2:
            return None
        o = self.options
        return plan_packs(batch.payload.requests, o.pack_tokens, (len(batch.rows) + 1) // 2,
                          o.share_prefix, o.block_size, rows=batch.rows,
                          carry_tokens=o.carry_tokens)

    def warmup(self, batches: Sequence[Batch]) -> None:
        # Compile on the first pack: every pack has its shape and the mask's buffers keep their
        # identity, so nothing recompiles later (a second call cost a pack in compile time).
        for batch in batches[:1]:
            self.forward(self.load(batch))

    def _put(self, pack: Pack) -> dict[str, Any]:
        dev = self.device

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(dev, non_blocking=True)

        out = np.zeros(0, np.int64) if pack.carry_out is None else pack.carry_out
        return {"ids": put(pack.ids), "pos": put(pack.pos), "seg": put(pack.seg_start),
                "ps": put(pack.pre_start), "pe": put(pack.pre_end), "last": put(pack.last),
                "blocks": [put(a)[None, None] for a in pack.blocks], "carry_idx": put(out),
                "carry_out_key": pack.carry_out_key, "pack": pack}

    def _recompute(self, pack: Pack) -> dict[str, Any]:
        """Inputs that rerun the pack which computed the prefix `pack` needs in its carry, as
        it ran then (the same positions in the same compiled shape: the same keys/values as a
        run that never broke the chain); its LM head does not run."""
        origin = pack.carry_origin
        return {**self._put(origin), "work": replace(origin.work, logit_rows=0)}

    def load(self, batch: Batch) -> dict[str, Any]:
        """The pack's device inputs. `batch.work` is reset to the pack's planned work here;
        `forward` adds to it the pack it reruns when the carry does not hold the prefix the
        pack needs (a chain broken by data-parallel dealing, a resume or a split)."""
        pack: Pack = batch.payload
        batch.work = replace(pack.work)
        inputs = self._put(pack)
        broken = pack.carry_in_key is not None and pack.carry_in_key != self.held
        inputs.update(batch=batch, recompute=self._recompute(pack) if broken else None)
        return inputs

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        pack: Pack = inputs["pack"]
        if pack.carry_in_key is not None and pack.carry_in_key != self.held:
            first = inputs["recompute"] or self._recompute(pack)
            self._layers(first)
            inputs["batch"].work += first["work"]
        h = self.model.model.norm(self._layers(inputs)[inputs["last"]])
        return self.model.lm_head(h)

    def _layers(self, inputs: dict[str, Any]) -> torch.Tensor:
        """The decoder layers on one pack; leaves its carry-out in `self.carry`."""
        self.seg_start.copy_(inputs["seg"])
        self.pre_start.copy_(inputs["ps"])
        self.pre_end.copy_(inputs["pe"])
        block_mask = self._from_kv_blocks(*inputs["blocks"], BLOCK_SIZE=self.options.block_size,
                                          mask_mod=self._mask_mod)
        base = self.model.model
        x = base.embed_tokens(inputs["ids"])
        cos, sin = base.rotary_emb(x[None], inputs["pos"][None])  # [1, T, head_dim], x dtype
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads: [1, 1, T, head_dim]
        self.held = None  # until every layer's carry is replaced (an OOM may stop half-way)
        if not self.carry:  # zeros, not empty: junk slots are masked, but 0 x NaN is NaN
            shape = (1, self.kv_heads, self.options.carry_tokens, self.head_dim)
            self.carry = [(x.new_zeros(shape), x.new_zeros(shape)) for _ in self.layers]
        for i, weights in enumerate(self.layers):
            x, k, v = self.layer_fn(x, *weights, cos, sin, block_mask, *self.carry[i],
                                    inputs["carry_idx"], self.eps, self.heads, self.kv_heads,
                                    self.head_dim)
            self.carry[i] = (k, v)
        self.held = inputs["carry_out_key"]
        return x
