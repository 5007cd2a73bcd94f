"""mmlubench: how fast and how well an accelerator runs an LLM on 5-shot MMLU."""

__version__ = "0.1.0"
