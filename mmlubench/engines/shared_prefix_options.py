"""The shared-prefix engine's options: pack length, compilation, the carry, fp8, their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SharedPrefixOptions:
    pack_tokens: int = field(
        default=32768,
        metadata={
            "help": (
                "tokens per packed forward; every pack has exactly this length (one compiled shape)"
            )
        },
    )
    max_questions: int = field(default=1024, metadata={"help": "most questions per pack"})
    share_prefix: bool = field(
        default=True,
        metadata={
            "help": ("share few-shot prefixes; false computes every prompt whole (for comparison)")
        },
    )
    compile: bool = field(
        default=True,
        metadata={
            "help": (
                "torch.compile each decoder layer (regional compilation: one graph per kind of "
                "layer)"
            )
        },
    )
    early_compile_workers: bool = field(
        default=True,
        metadata={
            "help": (
                "start Inductor's compile worker processes when the run begins, so that they are "
                "ready "
                "when the layers compile (engines/compile_pool.py); false: at the first compile, "
                "where Inductor compiles serially until they are up"
            )
        },
    )
    precompile: bool = field(
        default=True,
        metadata={
            "help": (
                "where a pass runs before this engine's (val), compile the decoder layers' "
                "kinds in a helper process meanwhile, without running them, so that this pass "
                "compiles from Inductor's filled caches (engines/precompile.py); not on a CPU"
            )
        },
    )
    compile_mode: str | None = field(
        default=None,
        metadata={
            "help": (
                "torch.compile mode of the decoder layers: null (default), "
                "max-autotune-no-cudagraphs, "
                "..."
            )
        },
    )
    compile_options: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": (
                "Inductor config for that compile, e.g. {prologue_fusion: false} (not with a mode)"
            )
        },
    )
    block_size: int = field(default=128, metadata={"help": "FlexAttention tokens per mask block"})
    attention_kernel_options: dict[str, Any] | None = field(
        default=None,
        metadata={
            "help": (
                "FlexAttention kernel_options, e.g. {BLOCK_M: 64, num_warps: 4}; null: Inductor's"
            )
        },
    )
    carry_tokens: int = field(
        default=2048,
        metadata={
            "help": (
                "keys carried from one pack to the next: a subject that continues into the next "
                "pack "
                "reuses its prefix from there instead of recomputing it (a multiple of block_size; "
                "0: no carry, each pack recomputes the prefixes it needs)"
            )
        },
    )
    fuse_projections: bool = field(
        default=True,
        metadata={
            "help": (
                "q/k/v and gate/up projections of one input as one GEMM each while the engine runs "
                "(engines/fused_projections.py; not with fp8)"
            )
        },
    )
    fp8: bool = field(
        default=False,
        metadata={
            "help": (
                "decoder linear layers in e4m3 with row-wise scales (engines/fp8.py); set by "
                "--precision fp8"
            )
        },
    )

    def check(self) -> None:
        if self.block_size < 16 or self.pack_tokens % self.block_size:
            raise ValueError(
                f"pack_tokens ({self.pack_tokens}) must be a multiple of "
                f"block_size ({self.block_size}), which must be >= 16"
            )
        if self.carry_tokens < 0 or self.carry_tokens % self.block_size:
            raise ValueError(
                f"carry_tokens ({self.carry_tokens}) must be 0 or a multiple of "
                f"block_size ({self.block_size})"
            )
        for key, value in (self.attention_kernel_options or {}).items():
            if not isinstance(value, (bool, int, float, str)):
                raise ValueError(
                    f"attention_kernel_options: {key!r} must be a number, true/false "
                    f"or text, got {value!r}"
                )
        if self.compile_mode and self.compile_options:  # torch.compile takes one or the other
            raise ValueError("compile_mode and compile_options cannot both be set")
        if self.max_questions < 1:
            raise ValueError(f"max_questions must be >= 1, got {self.max_questions}")
        from mmlubench.engines.inductor_options import check_compile_options as allowed

        allowed(self.compile_options, self.compile_mode)  # no program or path from a config
