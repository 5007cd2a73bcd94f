"""Inductor's compile workers, started at the beginning of a run that will compile.

Inductor compiles Triton kernels in a pool of worker processes, but only once the pool reports
ready: until then it compiles them one by one in the main process (torch's
`AsyncCompile.use_process_pool` returns False while the pool's first job is pending). A pool
started at the first compile is not ready in time (each worker imports torch), so a cold
compile ran its kernels serially. Started at the beginning of the run, the workers are ready
long before the infer pass compiles (they start while the data, the model and the val pass
run), and the kernels compile in parallel. Inductor stops idle workers after
`quiesce_async_compile_time` (60 s) and restarts them at the next job; a val pass is longer
than that, so the pool started here keeps them for IDLE_S.
"""

from __future__ import annotations

IDLE_S = 900  # how long idle workers are kept (a val pass runs before the infer pass compiles)


def configure() -> None:
    """Inductor's settings for a pool kept through a val pass (also the precompile helper's:
    its caches' keys are the run's)."""
    import torch._inductor.config as inductor_config

    # Read when the pool is made (its quiesce timer), so set before warm_pool makes it.
    inductor_config.quiesce_async_compile_time = max(
        inductor_config.quiesce_async_compile_time, IDLE_S
    )


def start() -> None:
    """Start the pool and its workers without waiting for them (nothing where Inductor
    compiles in the main process anyway: one compile thread, or no process pool allowed)."""
    from torch._inductor.async_compile import AsyncCompile

    configure()
    AsyncCompile.warm_pool()
    # The pool's workers start with its first job; this submits the job that marks them ready.
    AsyncCompile.use_process_pool()


def wait_ready(timeout_s: float = 120.0) -> None:
    """Block until the workers are ready (bench: a compile measured with a ready pool)."""
    from torch._inductor.async_compile import AsyncCompile

    AsyncCompile.wait_pool_ready(timeout_s)
