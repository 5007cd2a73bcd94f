"""Keys and values of a shared prefix, copied once per row instead of once per batch and layer.

HF's DynamicLayer concatenates the cached keys to each call's new ones (`torch.cat`). Against a
prefix expanded per row (a stride-0 view) that copies the whole prefix into every row, in every
layer, for every batch: on an H200 that copy was 24% of the val pass's kernel time (deepseek-7B,
`CatArrayBatchedCopy`), and the cache's allocations of other shapes at every batch cost host
time in cudaMalloc/cudaFree.

`PrefixLayer` is an HF cache layer (a DynamicLayer whose `update` writes in place) over one
`KVStore` per decoder layer: a buffer allocated once, viewed as [rows, kv heads, length, head
dim] rows. A row receives the prefix once; each batch writes only its suffixes' keys and values
after it, and attention reads the view [:batch rows, :, :prefix + suffix width]. The layout
(rows x length) changes only when a batch needs more rows or a longer row than it holds; then
the prefix is copied again into the rows it uses. The model stays HF's own, uncompiled, with
its default attention; only the cache object passed to it differs.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class KVStore:
    """One decoder layer's key and value buffers and which prefix fills how many rows."""

    def __init__(self, positions: int):
        self.positions = positions  # capacity in rows x length, grown if a batch needs more
        self.flat: tuple[torch.Tensor, torch.Tensor] | None = None
        self.shape: tuple[int, int] = (0, 0)  # (rows, length) of the current layout
        self.prefix_id: bytes | None = None  # the ids of the prefix the filled rows hold
        self.filled = 0  # rows holding that prefix
        self.rows_filled = 0  # prefix rows copied so far, and layouts made (for tests, bench)
        self.layouts = 0

    def views(
        self, prefix: tuple[torch.Tensor, torch.Tensor], prefix_id: bytes, rows: int, width: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[rows, heads, length, dim] views of keys and values whose first `rows` rows hold
        the prefix and leave room for `width` suffix positions after it."""
        k, v = prefix
        p = k.shape[-2]
        length = self.shape[1]
        if rows > self.shape[0] or p + width > length:
            self.relayout(k, rows, p + width)
        elif prefix_id != self.prefix_id:
            self.filled = 0
        self.prefix_id = prefix_id
        shape = (self.shape[0], k.shape[1], self.shape[1], k.shape[-1])
        n = shape[0] * shape[1] * shape[2] * shape[3]
        keys, values = (t[:n].view(shape) for t in self.flat)
        if rows > self.filled:
            keys[self.filled : rows, :, :p].copy_(k.expand(rows - self.filled, -1, -1, -1))
            values[self.filled : rows, :, :p].copy_(v.expand(rows - self.filled, -1, -1, -1))
            self.rows_filled += rows - self.filled
            self.filled = rows
        return keys, values

    def relayout(self, k: torch.Tensor, rows: int, length: int) -> None:
        """Rows of `length` positions, as many as the capacity holds (at least `rows`)."""
        need = rows * length
        if self.flat is None or need > self.positions:
            self.positions = max(self.positions, need)
            size = self.positions * k.shape[1] * k.shape[-1]
            self.flat = None  # the old buffers go before the new ones are allocated
            self.flat = (k.new_empty(size), k.new_empty(size))
        self.shape = (self.positions // length, length)
        self.filled = 0
        self.layouts += 1


class PrefixLayer(DynamicLayer):
    """An HF cache layer holding the prefix for `rows` rows; `update` writes the suffixes'
    keys and values after it in place and returns the views attention reads."""

    def __init__(
        self,
        store: KVStore,
        prefix: tuple[torch.Tensor, torch.Tensor],
        prefix_id: bytes,
        rows: int,
        width: int,
    ):
        super().__init__()
        keys, values = store.views(prefix, prefix_id, rows, width)
        self.prefix_len = prefix[0].shape[-2]
        self.buffers = (keys[:rows], values[:rows])
        # What HF reads before the call: the cached length (the prefix) and dtype/device.
        self.keys, self.values = (b[:, :, : self.prefix_len] for b in self.buffers)
        self.dtype, self.device = prefix[0].dtype, prefix[0].device
        self.is_initialized = True

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass  # initialized from the store in __init__

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p, s = self.prefix_len, key_states.shape[-2]
        keys, values = self.buffers
        keys[:, :, p : p + s].copy_(key_states)
        values[:, :, p : p + s].copy_(value_states)
        self.keys, self.values = keys[:, :, : p + s], values[:, :, : p + s]
        return self.keys, self.values
