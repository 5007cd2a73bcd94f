"""`shared-prefix`: the reference's numbers with far less work.

All questions of a subject share their few-shot prefix (~540 of ~710 tokens). This engine packs
one copy of a prefix and many question suffixes into one fixed-length sequence and runs it with
a FlexAttention block mask: each suffix sees its prefix and itself, causally, and its positions
continue from the end of the prefix, so every question's last-position logits are those of its
whole prompt. Why it is fast:
- No padding inside a pack and no per-question prefix: ~5-6x fewer tokens through the model.
- One pack length (`pack_tokens`) means one compiled shape: Inductor compiles the decoder layer
  once (weights are arguments, so all layers share the graph) and never recompiles. The block
  mask is rebuilt per pack from metadata buffers that keep their identity, so its mask function
  never changes either.
- Fused q/k/v and gate/up projections: one large GEMM instead of three or two.
- The LM head runs only on the last position of each question, never on [tokens x vocab].
CUDA graphs are not used: a pack of 32k tokens runs ~0.7 s against ~2 ms of launches.
The block sparsity of each pack's mask is computed on the host while planning.
The embedding, RoPE tables, final norm and LM head are the HF model's own modules.

Exactness: a request's first `prefix_len` ids are shared only with requests whose first ids are
byte-identical (the prompt builder sets prefix_len only when the full prompt's tokens start with
the prefix's own tokens); prefix_len 0 makes a request its own segment with no sharing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmlubench.engines.base import Batch, Engine, Request, Work, causal_pairs, renumber
from mmlubench.errors import RunError


@dataclass
class SharedPrefixOptions:
    # Tokens per packed forward; every pack has exactly this length (one compiled shape).
    pack_tokens: int = 32768
    # Most questions per pack.
    max_questions: int = 1024
    # Share few-shot prefixes; false computes every prompt whole (for comparison).
    share_prefix: bool = True
    # torch.compile the decoder layer (FlexAttention needs it to be fast).
    compile: bool = True
    compile_mode: str | None = None
    # Fuse q/k/v and gate/up weights into one tensor each; the HF modules then hold views of
    # them, so memory does not grow and the HF model computes exactly as before.
    fuse_weights: bool = True
    # FlexAttention block size (tokens per mask block).
    block_size: int = 128

    def check(self) -> None:
        if self.block_size < 16 or self.pack_tokens % self.block_size:
            raise ValueError(f"pack_tokens ({self.pack_tokens}) must be a multiple of "
                             f"block_size ({self.block_size}), which must be >= 16")
        if self.max_questions < 1:
            raise ValueError(f"max_questions must be >= 1, got {self.max_questions}")


@dataclass
class Pack:
    """Host-side description of one packed sequence."""

    ids: np.ndarray  # [T] token ids (padding 0)
    pos: np.ndarray  # [T] position ids
    seg_start: np.ndarray  # [T] start of each token's own segment (prefix or suffix)
    pre_start: np.ndarray  # [T] start of the prefix a suffix token also sees
    pre_end: np.ndarray  # [T] end (exclusive) of that prefix; == pre_start when none
    last: np.ndarray  # [q] index of each question's last token
    blocks: tuple[np.ndarray, ...] = ()  # block_layout(): the FlexAttention block sparsity


def block_layout(seg: np.ndarray, ps: np.ndarray, pe: np.ndarray, block: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Which key blocks each query block touches, for BlockMask.from_kv_blocks.

    Token t may see keys [seg[t], t] (its own segment, causally) and [ps[t], pe[t]) (its
    prefix). A key block is "full" for a query block when every pair in it is allowed by one of
    the two ranges, "partial" when some are (the mask function decides those elementwise).
    Computed on the host while planning, so no device time or compiled mask builder is spent.
    Returns (partial count [nq], partial indices [nq, nk], full count, full indices), int32.
    """
    T = len(seg)
    nb = T // block
    t = np.arange(T)[:, None]
    lo = (np.arange(nb) * block)[None]  # key block j covers [lo, hi]
    hi = lo + block - 1
    seg, ps, pe = seg[:, None], ps[:, None], pe[:, None]
    touched = ((lo <= t) & (hi >= seg)) | ((lo < pe) & (hi >= ps) & (pe > ps))
    covered = ((lo >= seg) & (hi <= t)) | ((lo >= ps) & (hi < pe))
    touched = touched.reshape(nb, block, nb).any(1)
    full = covered.reshape(nb, block, nb).all(1)
    partial = touched & ~full

    def indices(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(~m, axis=1, kind="stable").astype(np.int32)  # True columns first
        return m.sum(1).astype(np.int32), order

    return (*indices(partial), *indices(full))


def plan_packs(requests: Sequence[Request], pack_tokens: int, max_questions: int,
               share_prefix: bool, block_size: int = 128) -> list[Batch]:
    """Greedy packing in request order: a group's prefix is (re)placed once per pack that holds
    any of its questions; a pack closes when the next segment does not fit."""
    groups: dict[bytes, list[int]] = {}
    order: list[bytes] = []
    for i, r in enumerate(requests):
        p = r.prefix_len if share_prefix else 0
        # Unshared requests are groups of one with an empty prefix.
        key = r.ids[:p].tobytes() if p else b"solo:%d" % i
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(i)

    batches: list[Batch] = []
    T = pack_tokens
    state: dict[str, Any] = {}

    def open_pack() -> None:
        state.update(
            ids=np.zeros(T, np.int64), pos=np.zeros(T, np.int64),
            seg=np.arange(T, dtype=np.int32), ps=np.zeros(T, np.int32),
            pe=np.zeros(T, np.int32), last=[], rows=[], fill=0, group=None,
            prompt_tokens=0, work=Work(padded_tokens=T),
        )

    def close_pack() -> None:
        if state["rows"]:
            pack = Pack(state["ids"], state["pos"], state["seg"], state["ps"], state["pe"],
                        np.asarray(state["last"], np.int64),
                        block_layout(state["seg"], state["ps"], state["pe"], block_size))
            state["work"].logit_rows = len(state["rows"])
            batches.append(Batch(rows=state["rows"], prompt_tokens=state["prompt_tokens"],
                                 work=state["work"], payload=pack))
        open_pack()

    open_pack()
    for key in order:
        members = groups[key]
        p = 0 if key.startswith(b"solo:") else requests[members[0]].prefix_len
        prefix = requests[members[0]].ids[:p]
        for i in members:
            ids = requests[i].ids
            n = len(ids) - p
            if p + n > T:
                raise RunError(f"a prompt of {len(ids)} tokens does not fit in pack_tokens={T}; "
                               "raise engines.shared-prefix.pack_tokens")
            need = n + (p if state["group"] != key else 0)
            if state["fill"] + need > T or len(state["rows"]) >= max_questions:
                close_pack()
            f = state["fill"]
            if state["group"] != key:  # place the prefix in this pack
                state["ids"][f : f + p] = prefix
                state["pos"][f : f + p] = np.arange(p)
                state["seg"][f : f + p] = f
                state["pre_here"] = (f, f + p)
                state["work"].tokens += p
                state["work"].attention_pairs += causal_pairs(p)
                state["group"] = key
                f += p
            ps, pe = state["pre_here"]
            state["ids"][f : f + n] = ids[p:]
            state["pos"][f : f + n] = np.arange(p, p + n)
            state["seg"][f : f + n] = f
            state["ps"][f : f + n] = ps
            state["pe"][f : f + n] = pe
            state["last"].append(f + n - 1)
            state["rows"].append(i)
            state["prompt_tokens"] += len(ids)
            state["work"].tokens += n
            state["work"].attention_pairs += causal_pairs(n, context=p)
            state["fill"] = f + n
    close_pack()
    return batches


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """As HF LlamaRMSNorm: statistics in fp32, scale in the input dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def decoder_layer(x, w_in, w_qkv, w_o, w_post, w_gu, w_down, cos, sin, block_mask,
                  eps: float, heads: int, kv_heads: int, head_dim: int):
    """One Llama decoder layer on a packed sequence x [T, D] (the compiled hot function)."""
    from torch.nn.attention.flex_attention import flex_attention

    T = x.shape[0]
    h = rms_norm(x, w_in, eps)
    qkv = h @ w_qkv.t()
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
    o = flex_attention(q, k, v, block_mask=block_mask, enable_gqa=kv_heads != heads)
    o = o[0].transpose(0, 1).reshape(T, heads * head_dim)
    x = x + o @ w_o.t()
    h = rms_norm(x, w_post, eps)
    g, u = (h @ w_gu.t()).chunk(2, dim=-1)
    return x + (F.silu(g) * u) @ w_down.t()


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
        T = options.pack_tokens
        dev = self.device
        # Mask metadata lives in buffers that keep their identity across packs, so the mask
        # function below is one object and nothing recompiles when a new pack comes.
        self.seg_start = torch.zeros(T, dtype=torch.int32, device=dev)
        self.pre_start = torch.zeros(T, dtype=torch.int32, device=dev)
        self.pre_end = torch.zeros(T, dtype=torch.int32, device=dev)
        seg, ps, pe = self.seg_start, self.pre_start, self.pre_end

        def mask_mod(b, h, q_idx, kv_idx):
            own = (kv_idx >= seg[q_idx]) & (kv_idx <= q_idx)
            prefix = (kv_idx >= ps[q_idx]) & (kv_idx < pe[q_idx])
            return own | prefix

        self._mask_mod = mask_mod
        self._from_kv_blocks = BlockMask.from_kv_blocks
        self.layer_fn = decoder_layer
        if options.compile:
            self.layer_fn = torch.compile(decoder_layer, dynamic=False, fullgraph=True,
                                          mode=options.compile_mode)

    def plan(self, requests: Sequence[Request]) -> list[Batch]:
        self._requests = requests
        o = self.options
        return plan_packs(requests, o.pack_tokens, o.max_questions, o.share_prefix,
                          o.block_size)

    def split(self, batch: Batch) -> list[Batch] | None:
        """Re-pack the rows with at most half as many questions per pack. The pack length is
        the compiled shape and stays `pack_tokens`: a smaller pack holds fewer questions (less
        attention work and fewer LM-head rows), not fewer positions."""
        rows = batch.rows
        if len(rows) < 2:
            return None
        o = self.options
        sub = [self._requests[i] for i in rows]
        return renumber(plan_packs(sub, o.pack_tokens, (len(rows) + 1) // 2, o.share_prefix,
                                   o.block_size), rows)

    def warmup(self, batches: Sequence[Batch]) -> None:
        # Compile on the first pack; a second call checks that nothing recompiles.
        for batch in batches[:1]:
            inputs = self.load(batch)
            for _ in range(2):
                self.forward(inputs)

    def load(self, batch: Batch) -> dict[str, Any]:
        pack: Pack = batch.payload
        dev = self.device

        def put(a: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(a).to(dev, non_blocking=True)

        return {"ids": put(pack.ids), "pos": put(pack.pos), "seg": put(pack.seg_start),
                "ps": put(pack.pre_start), "pe": put(pack.pre_end), "last": put(pack.last),
                "blocks": [put(a)[None, None] for a in pack.blocks]}

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        self.seg_start.copy_(inputs["seg"])
        self.pre_start.copy_(inputs["ps"])
        self.pre_end.copy_(inputs["pe"])
        block_mask = self._from_kv_blocks(*inputs["blocks"], BLOCK_SIZE=self.options.block_size,
                                          mask_mod=self._mask_mod)
        base = self.model.model
        x = base.embed_tokens(inputs["ids"])
        cos, sin = base.rotary_emb(x[None], inputs["pos"][None])  # [1, T, head_dim], x dtype
        cos, sin = cos[:, None], sin[:, None]  # broadcast over heads: [1, 1, T, head_dim]
        for weights in self.layers:
            x = self.layer_fn(x, *weights, cos, sin, block_mask, self.eps, self.heads,
                              self.kv_heads, self.head_dim)
        h = base.norm(x[inputs["last"]])
        return self.model.lm_head(h)
