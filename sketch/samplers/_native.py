"""The sketch-native draw behind `NWSSampler(proposal="sketch")`: sample straight from the sketch's buckets.

The sketch already partitions the training items: in row r item i sits in bucket b = b_r(i), whose estimate
is mu_rb = S_rb / C_rb, clamped at >= 0 (where C_rb = 0, nothing observed yet, the sketch's fallback: the
running mean of all inserted values by default). With n_rb the number of training items hashed to (r, b)
and Z_r = sum_b n_rb mu_rb, one draw is

    with probability mix: an item uniformly from [0, N);
    otherwise:            a row r uniformly, a bucket b with probability n_rb mu_rb / Z_r, and an item
                          uniformly among the n_rb items of that bucket;

so that p(i) = mix / N + (1 - mix) (1/L) sum_r mu_{r, b_r(i)} / Z_r, computed in O(L) per item; the weights
1 / (N p(i)) keep the loss unbiased. Degenerate rows: where Z_r = 0 (every bucket of row r estimates 0) the
row draws an item uniformly, i.e. bucket b with probability n_rb / N, and its term in the sum is 1/N. An
empty sketch, or one holding only zero losses, therefore samples uniformly. p is exact up to float32
rounding of the bucket masses (relative error ~1e-7).

Data structures (built once from the slots; the only memory on top of the slots):
  - a per-row index of the items sorted by bucket: one int32 permutation of [0, N) per row ([L, N], the size
    of the int32 slots) plus each bucket's start and size (int32, or int64 starts when L * N >= 2**31);
  - the bucket state, float32 [3, L * W']: mu (or -1 where empty), the mass n * mu (0 where empty) and the
    unseen count n (where empty, else 0), W' = W rounded up to a multiple of the block size s. The mass of
    an empty bucket is fallback * n, so the fallback may change at every step without touching the state.
The state is a pure function of the sketch's stored table. The sampler's own updates are recorded (`defer`)
and the next `sync` (when the next distribution is built) recomputes only the k * B * L buckets they touched
(O(k B L), no pass over all L W buckets); any other change of the table (reduce=, merge, a lazy-decay
rescale, load_state_dict) shows in `NWSketch.version` and `sync` recomputes all of it (O(L W)). Until that
sync the state stays as it was when the cached distribution was built, so its p stays exact. A checkpoint
therefore restores the live state bit for bit without saving it.

A `Distribution` freezes what one or more draws use: the fallback, the per-row cumulative block masses and
Z. Draws and p(i) read only it and the state, so a distribution cached for k steps (while the sketch keeps
learning, `refresh_every=k`) still gives the exact p of what it draws, provided the state is not synced
in between (the sampler skips `absorb` then).

Cost: a distribution is one O(L W) streaming sum of the state into blocks of s buckets (a matrix-vector
product) and an O(L W / s) cumulative sum; a draw of G items is one binary search over the blocks, an O(s)
search inside the block, an O(1) pick inside the bucket per item and O(G L) gathers for p(i): no host sync,
no loop over items or rows, the same code on CPU and CUDA.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["SketchProposal", "Distribution", "block_size"]

_EMPTY = -1.0  # mu marker of a bucket with no observation (real mu are clamped at >= 0)
_ITEM_CHUNK = 1 << 16  # items per chunk when computing p(i) for all N (bounds the [chunk, L] temporaries)
_INT32_MAX = 2**31 - 1
_SEARCH_CHUNK = 192  # values per searchsorted call on the CPU: below torch's parallel grain (200)


def block_size(depth: int, width: int, draws: int) -> int:
    """Return the block size s (a power of two) that balances the work of a step: the L W / s block masses
    summed and searched against the draws * s bucket masses read inside the chosen blocks, s ~ sqrt(L W /
    draws), within [8, 64] and not above the width rounded up to a power of two. (Measured on a 2-core CPU at
    N = 1e6: s from 8 to 32 within 5% of each other for 16 x 1024 and 32 x 4096; 64 is 10-15% slower.)"""
    s = 2 ** round(math.log2(max(1.0, math.sqrt(depth * width / max(1, draws)))))
    return int(min(max(s, 8), 64, 2 ** math.ceil(math.log2(width))))


@dataclass
class Distribution:
    """What a draw from the sketch reads besides the bucket state (all on the device, float64 unless said).

    fallback: 0-dim float32, the mu of empty buckets (>= 0). cdf: [L * W' / s], row r's normalized cumulative
    block masses shifted by r. z: [L], Z_r. inverse_z: float32 [L], 1 / Z_r (0 where Z_r = 0). uniform_share:
    [L], the probability that a draw which picked row r takes a uniform item (mix, or 1 where Z_r = 0).
    base, scale: p(i) = base + scale * sum_r mu_{r, b_r(i)} inverse_z_r (0-dim each).
    """

    fallback: torch.Tensor
    cdf: torch.Tensor
    z: torch.Tensor
    inverse_z: torch.Tensor
    uniform_share: torch.Tensor
    base: torch.Tensor
    scale: float

    def state_dict(self) -> dict[str, Any]:
        return {"fallback": self.fallback.cpu().clone()}


class SketchProposal:
    """Draw items from an `NWSketch`'s buckets and give their exact probabilities (see the module docstring).

    Args:
        slots: int [N, L] flat slots (bucket + row * width) of the N training items, on the device used.
        width: the sketch's buckets per row W.
        draws: the usual number of items per draw (only sizes the blocks).
        block: block size s override (a power of two); default `block_size(L, W, draws)`.
    """

    def __init__(self, slots: torch.Tensor, width: int, draws: int, block: int | None = None) -> None:
        n, depth = slots.shape
        self.num_samples, self.depth, self.width = n, depth, width
        self.block = block if block is not None else block_size(depth, width, draws)
        self.padded_width = math.ceil(width / self.block) * self.block
        self.device = slots.device
        self._slots = slots
        self.slots = slots  # the slots the index was built from (read-only: p and the draw depend on them)
        rows = torch.arange(depth, device=self.device)
        self._pad = None if self.padded_width == width else rows * (self.padded_width - width)  # slot -> padded
        self._order, self._starts, sizes = _bucket_index(slots, width, self.padded_width)
        self._sizes = sizes.to(torch.int32)  # items per padded bucket
        self._counts = sizes.float()  # the same as float32, for the masses n * mu
        self._row_offsets = rows.double().unsqueeze(1)  # [L, 1]
        self._block_ones = torch.ones(self.block, device=self.device)
        self._within_block = torch.arange(self.block, device=self.device)
        self._state = torch.empty(3, depth * self.padded_width, device=self.device)
        self._version: int | None = None  # the sketch version `_state` was computed from
        self._pending: list[torch.Tensor] = []  # slots of the own updates since then, not yet in the state (`defer`)
        # (items, their in-place version counter, their slots) of the last draw: the sampler's update reuses the
        # slots when it is fed that very tensor, unmodified
        self.last_draw: tuple[torch.Tensor, int, torch.Tensor] | None = None

    def memory_bytes(self) -> int:
        """Bytes held on top of the slots: the per-row item order plus the per-bucket arrays."""
        tensors = (self._order, self._starts, self._sizes, self._counts, self._state)
        return sum(t.numel() * t.element_size() for t in tensors)

    # -- the bucket state: a function of the sketch's stored table -----------------------------------------
    def _padded(self, slots: torch.Tensor) -> torch.Tensor:
        """Padded flat indices (long, same shape) of flat sketch slots."""
        slots = slots.long()
        return slots if self._pad is None else slots + self._pad

    def sync(self, sketch: Any) -> None:
        """Bring the bucket state up to date with `sketch`: from the deferred batches (`defer`) when they are all
        that changed the table since the state was computed (O(k B L)), else from the whole table (O(L W))."""
        pending, self._pending = self._pending, []
        if sketch.version == self._version:
            return
        if pending and self._version is not None and sketch.version == self._version + len(pending):
            self._absorb(sketch, torch.cat(pending) if len(pending) > 1 else pending[0])
            self._version = sketch.version
            return
        self._recompute(sketch)

    def _recompute(self, sketch: Any) -> None:
        sums, counts = sketch.table[:, 0], sketch.table[:, 1]
        filled = counts > 0
        mu = torch.where(filled, (sums / counts).clamp_min(0.0), _EMPTY).float()
        n = self._counts.view(self.depth, self.padded_width)[:, : self.width].reshape(-1)
        state = self._state.view(3, self.depth, self.padded_width)
        state.zero_()
        state[0].fill_(_EMPTY)
        state[0, :, : self.width] = mu.view(self.depth, self.width)
        state[1, :, : self.width] = torch.where(filled, mu * n, 0.0).view(self.depth, self.width)
        state[2, :, : self.width] = torch.where(filled, 0.0, n).view(self.depth, self.width)
        self._version = sketch.version

    def defer(self, sketch: Any, batch_slots: torch.Tensor) -> None:
        """Record that the sampler's own update just inserted `batch_slots` [B, L] into `sketch`: the next `sync`
        recomputes only the touched buckets (unless the table changed otherwise too, or more was deferred than a
        whole recompute costs). The state itself is left as it is, so a cached distribution stays exact."""
        if self._version is None or sketch.version != self._version + len(self._pending) + 1:
            self._pending, self._version = [], None  # something else changed the table: recompute all at sync
            return
        self._pending.append(batch_slots)
        if sum(t.numel() for t in self._pending) > self._state.shape[1]:
            self._pending, self._version = [], None  # a whole recompute is cheaper now

    def absorb(self, sketch: Any, batch_slots: torch.Tensor) -> None:
        """Bring the state up to date right after `sketch.update_slots(batch_slots, ...)` (the sampler's own update):
        only the touched buckets change, unless the sketch changed otherwise too (then all of it)."""
        self.defer(sketch, batch_slots)
        self.sync(sketch)

    def _absorb(self, sketch: Any, batch_slots: torch.Tensor) -> None:
        flat = batch_slots.reshape(-1).long()
        sums = sketch.table[:, 0].index_select(0, flat)  # two column gathers: ~2x faster than one of rows
        counts = sketch.table[:, 1].index_select(0, flat)  # > 0: every touched bucket was counted
        mu = (sums / counts).clamp_min(0.0).float()  # the same operations as _recompute's, hence the same values
        padded = flat if self._pad is None else self._padded(batch_slots).reshape(-1)
        fresh = torch.stack([mu, mu * self._counts.index_select(0, padded), torch.zeros_like(mu)])
        self._state.index_copy_(1, padded, fresh)  # duplicate indices carry equal values: deterministic

    # -- distributions and draws ---------------------------------------------------------------------------
    def distribution(self, sketch: Any, mix: float) -> Distribution:
        """Return the distribution of the next draws from `sketch`'s current contents (the state synced first)."""
        self.sync(sketch)
        fallback = sketch.fallback_estimate().clamp_min(0.0).float()
        return self._distribution(fallback, mix)

    def _distribution(self, fallback: torch.Tensor, mix: float) -> Distribution:
        blocks = (self._state[1:].reshape(-1, self.block) @ self._block_ones).view(2, -1)
        mass = torch.addcmul(blocks[0], blocks[1], fallback).view(self.depth, -1)  # n mu; fallback * n if empty
        cumulative = mass.cumsum(1, dtype=torch.float64)
        z = cumulative[:, -1].clone()  # cumulative is normalized in place below
        positive = z > 0
        safe_z = z.clamp_min(torch.finfo(torch.float64).tiny)  # a row with Z_r = 0 has a cumulative sum of 0
        cdf = cumulative.div_(safe_z.unsqueeze(1)).add_(self._row_offsets).view(-1)
        scale = (1.0 - mix) / self.depth
        n = self.num_samples
        return Distribution(
            fallback=fallback,
            cdf=cdf,
            z=z,
            inverse_z=(positive / safe_z).float(),
            uniform_share=torch.where(positive, mix, 1.0),
            base=positive.sum().mul(-scale / n).add(mix / n + scale * self.depth / n),  # rows with Z_r = 0 add 1/N
            scale=scale,
        )

    def draw(self, dist: Distribution, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `count` iid draws from `dist`: items (LongTensor [count]) and p(i) (float32 [count])."""
        u = torch.rand(5, count, generator=generator, device=self.device, dtype=torch.float64)
        # torch's float64 uniforms are < 1 - 2**-53, so floor(u * m) < m for every m < 2**53: no clamps needed
        target = u[0] * self.depth  # the row floor(target); its fraction picks a block by the row's CDF
        blocks = _searchsorted(dist.cdf, target).clamp_max(dist.cdf.numel() - 1)
        columns = torch.add(self._within_block, blocks.unsqueeze(1), alpha=self.block)  # [count, s] padded slots
        state = self._state[1:].index_select(1, columns.view(-1)).view(2, count, self.block)
        inside = torch.addcmul(state[0], state[1], dist.fallback).cumsum(1, dtype=torch.float64)
        threshold = (u[1] * inside[:, -1]).unsqueeze(1)
        pick = _searchsorted(inside, threshold).view(-1).clamp_max(self.block - 1)
        bucket = torch.add(pick, blocks, alpha=self.block)
        offset = (u[2] * self._sizes.index_select(0, bucket)).long()
        items = self._order.index_select(0, self._starts.index_select(0, bucket) + offset)  # int32
        uniform = (u[3] * self.num_samples).long()
        take_uniform = u[4] < dist.uniform_share.index_select(0, target.long())
        items = torch.where(take_uniform, uniform, items)  # int64
        slots = self._slots.index_select(0, items)
        self.last_draw = (items, items._version, slots)
        return items, self._probabilities(slots, dist)

    # -- exact probabilities -------------------------------------------------------------------------------
    def _probabilities(self, item_slots: torch.Tensor, dist: Distribution) -> torch.Tensor:
        """p(i) = mix/N + (1 - mix)/L sum_r (mu_{r,b_r(i)} / Z_r, or 1/N where Z_r = 0) for slots [m, L]."""
        m = item_slots.shape[0]
        index = item_slots if self._pad is None else self._padded(item_slots)  # int32 indices are fine here
        mu = self._state[0].index_select(0, index.reshape(-1)).view(m, self.depth)
        mu = torch.where(mu < 0, dist.fallback, mu)
        # a row-wise sum (not a mat-vec, whose rounding depends on m): p of an item is the same bits whether
        # it is computed for a drawn batch, at given indices or for all N
        return torch.add(dist.base, (mu * dist.inverse_z).sum(1), alpha=dist.scale)

    def probabilities(self, dist: Distribution, items: torch.Tensor | None = None) -> torch.Tensor:
        """Return p(i) (float32) under `dist` for `items` (LongTensor [m], checked by the caller) or all N."""
        if items is not None:
            return self._probabilities(self._slots.index_select(0, items), dist)
        return torch.cat([self._probabilities(self._slots[i : i + _ITEM_CHUNK], dist)
                          for i in range(0, self.num_samples, _ITEM_CHUNK)])  # a loop over chunks, not items

    # -- checkpoints of a cached distribution ---------------------------------------------------------------
    def state_dict(self, dist: Distribution) -> dict[str, Any]:
        """The bucket state and fallback behind `dist` (CPU copies): enough to rebuild it after later updates."""
        return {"state": self._state.cpu().clone(), **dist.state_dict()}

    def load_state_dict(self, state: dict[str, Any], mix: float) -> Distribution:
        """Restore the bucket state saved with a cached distribution and return that distribution. The state
        no longer matches the sketch's table, so the next `sync` recomputes it."""
        if tuple(state["state"].shape) != tuple(self._state.shape):
            raise ValueError(f"state_dict holds a bucket state of shape {tuple(state['state'].shape)}, this "
                             f"sampler's is {tuple(self._state.shape)}")
        self._state.copy_(state["state"])
        self._version, self._pending = None, []
        return self._distribution(state["fallback"].to(self.device), mix)


def _searchsorted(boundaries: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """`torch.searchsorted(boundaries, values, right=True)` in pieces of at most `_SEARCH_CHUNK` values (rows, when
    batched) on the CPU: above torch's grain of 200 values it runs in a parallel region, which on a busy shared
    CPU waited ~16 ms for the second thread (measured: a draw of 256 items 16 ms, of 128 0.4 ms)."""
    if values.device.type != "cpu" or values.shape[0] <= _SEARCH_CHUNK:
        return torch.searchsorted(boundaries, values, right=True)
    if boundaries.dim() == 1:
        return torch.cat([torch.searchsorted(boundaries, v, right=True) for v in values.split(_SEARCH_CHUNK)])
    return torch.cat([torch.searchsorted(b, v, right=True)  # a loop over a few chunks of rows, not over items
                      for b, v in zip(boundaries.split(_SEARCH_CHUNK), values.split(_SEARCH_CHUNK))])


def _bucket_index(slots: torch.Tensor, width: int, padded_width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (order int32 [L * N]: per row, the items sorted by bucket (stable); starts [L * W']: where each
    padded bucket's items begin in `order` (int32 when L * N < 2**31, kept in range for empty buckets);
    sizes int64 [L * W']: items per bucket)."""
    n, depth = slots.shape
    order = torch.empty(depth, n, dtype=torch.int32, device=slots.device)
    sizes = torch.zeros(depth, padded_width, dtype=torch.int64, device=slots.device)
    starts = torch.zeros(depth, padded_width, dtype=torch.int64, device=slots.device)
    for r in range(depth):  # once, at construction: one stable sort of N per row keeps the peak memory at O(N)
        buckets, perm = torch.sort(slots[:, r].long() - r * width, stable=True)
        order[r] = perm.to(torch.int32)
        edges = torch.searchsorted(buckets, torch.arange(width + 1, device=slots.device))
        sizes[r, :width] = edges.diff()
        starts[r, :width] = edges[:-1] + r * n
        starts[r, width:] = r * n  # padding: empty, but a valid position
    starts = starts.clamp_max(depth * n - 1)  # an empty last bucket starts past the end: keep it in range
    if depth * n <= _INT32_MAX:
        starts = starts.to(torch.int32)
    return order.view(-1), starts.view(-1), sizes.view(-1)
