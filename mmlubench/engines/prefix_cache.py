"""The eager engine's `prefix-cache` method: the plain HF model, called with HF's own cache.

Each distinct shared prefix (the first `prefix_len` ids, identical byte for byte) is computed
once with `use_cache=True`; HF returns its keys and values in a DynamicCache. Then the prefix's
questions run in length-sorted batches of suffixes against that cache, expanded per row (a
stride-0 view: no copy until HF concatenates the suffix's keys to it). Each row's suffix is
left-padded, the attention mask covers prefix + suffix (padding masked out), position ids
continue from the end of the prefix, and only the last position's logits are computed. The
model code is HF's own, unmodified: the numbers are those of the whole prompt, as a causal model
computes each position from the ids before it.

With `kv_store` (the default) the cache's layers are engines/prefix_kv.py's: buffers kept from
batch to batch that hold the prefix once per row, the suffixes written in place after it,
instead of HF's concatenation of the whole prefix into every row at every batch.

The prefix is computed inside the first `forward` that needs it (so its time counts as core
time) and kept until a batch of another prefix comes; batches are planned prefix by prefix.
"""

from __future__ import annotations

from typing import Any

import torch


class PrefixStore:
    """The keys and values of the last prefix computed, and the suffix call against them."""

    def __init__(
        self,
        model: torch.nn.Module,
        kv_store: bool = False,
        store_positions: int = 0,
        free_between: bool = True,
    ):
        import inspect

        self.model = model
        self.free_between = free_between
        self.stores = None
        if kv_store:
            from mmlubench.engines.prefix_kv import KVStore

            layers = model.config.num_hidden_layers
            self.stores = [KVStore(store_positions) for _ in range(layers)]
        # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns).
        params = inspect.signature(model.forward).parameters
        self.cache_arg = "cache" if "cache" in params else "past_key_values"
        self.key: bytes | None = None
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    def compute(self, key: bytes, prefix: torch.Tensor) -> None:
        """Run the prefix once through the HF model with use_cache=True; keep its cache."""
        from mmlubench.device import accel

        self.key, self.kv = None, []  # free the previous prefix first
        # Each prefix's batches allocate KV caches of other shapes; without handing the
        # cached blocks back, the allocator kept ~135 GiB reserved on an H200 over the full
        # split (torch peak allocated: 37 GiB), which the device-wide memory figure counts.
        if self.free_between:
            accel.empty_cache(prefix.device)
        out = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or out.past_key_values  # renamed in 5.24
        self.kv = [(layer.keys, layer.values) for layer in cache.layers]
        self.key = key

    def cache_for(self, rows: int, width: int):
        """A DynamicCache holding the prefix for `rows` rows followed by `width` suffix
        positions: the kept buffers (`kv_store`), or stride-0 views of one copy."""
        from transformers import DynamicCache

        if self.stores is not None:
            from mmlubench.engines.prefix_kv import PrefixLayer

            cache = DynamicCache()
            cache.layers = [
                PrefixLayer(store, kv, self.key, rows, width)
                for store, kv in zip(self.stores, self.kv, strict=True)
            ]
            return cache
        cache = DynamicCache(ddp_cache_data=self.kv)
        for layer in cache.layers:
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
        return cache

    def forward(self, inputs: dict[str, Any]) -> torch.Tensor:
        """Last-position logits of every suffix of the batch, [rows, vocab]."""
        if inputs["key"] != self.key:
            self.compute(inputs["key"], inputs["prefix"])
        ids = inputs["input_ids"]
        out = self.model(
            input_ids=ids,
            attention_mask=inputs["attention_mask"],
            position_ids=inputs["position_ids"],
            use_cache=True,
            logits_to_keep=1,
            **{self.cache_arg: self.cache_for(*ids.shape)},
        )
        return out.logits[:, -1, :]
