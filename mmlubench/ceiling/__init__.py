"""The device's measured ceiling: GEMM, attention and copy rates at the model's own shapes,
measured after a run's passes (outside e2e_time) or by `mmlubench ceiling`."""
