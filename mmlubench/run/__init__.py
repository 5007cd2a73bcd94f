"""A run of the case step by step: the run folder and its lock, the questions, the passes (the
hot loop, out-of-memory back-off, data-parallel ranks), the resume log, then the result."""
