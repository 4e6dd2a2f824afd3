"""Data-parallel feedback for the samplers: keep every rank's scores identical with one collective per step.

Under `torchrun` (PyTorch DDP) every rank builds the same sampler (same seed) with `num_replicas=world_size`,
`rank=rank`: all ranks draw the same global batch and each yields its slice `rank::world_size`, so the
ranks' batches never overlap and together make the global batch. For that to hold at the next step, every
rank must absorb the same feedback. `distributed_update` does it for each kind of sampler:

  nws                  the sketch is linear: each rank turns its own losses into a sketch update in table
                       form ([L*W, 2]) and one `all_reduce(SUM)` adds them up (L*W*2 floats per step,
                       whatever the batch size); every rank applies the sum;
  history, infobatch   (and any sampler with its own `_update`): all_gather of (indices, losses) in one
                       collective, then `sampler.update` with the global batch, in the order it was drawn;
  uniform, static, loss  no feedback: nothing is communicated.

In a DDP loop (each rank's `idx` and `losses` are its own slice; `update` runs on every rank, every step):

    import torch.distributed as dist
    from sketch.distributed import distributed_update, sync_check
    sampler = NWSSampler.from_features(feats, batch_size=B, seed=0, device=dev,
                                       num_replicas=dist.get_world_size(), rank=dist.get_rank())
    model = torch.nn.parallel.DistributedDataParallel(net)
    for idx in sampler:                                   # this rank's B indices
        losses = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
        (sampler.weights(idx) * losses).mean().backward(); opt.step(); opt.zero_grad()
        distributed_update(sampler, idx, losses.detach())  # collective: every rank calls it
    assert sync_check(sampler.sketch)                      # optional, e.g. at evaluations (2 collectives)

Without an initialized process group (or with one rank) `distributed_update` is `sampler.update`.
Exactness: the ranks hold bit-identical tables (all apply the same reduced tensor); against one process
fed the global batch the sums differ only by float rounding order (bit-equal when every partial sum is
exact, e.g. dyadic losses). Errors raised before the collective on one rank (bad indices) leave the other
ranks waiting in it until the process group's timeout. Pure torch; nothing from `bench`.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.distributed as dist

from ._sketch import NWSketch
from .samplers._base import FeedbackSampler
from .samplers._nws_base import NWSBase

__all__ = ["all_reduce_sketch_update", "distributed_update", "feedback_mode", "sync_check", "tensors_in_sync"]

Group = Optional[dist.ProcessGroup]


def _active(group: Group) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def _sum_over_ranks(group: Group):
    def reduce(delta: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(delta, op=dist.ReduceOp.SUM, group=group)
        return delta

    return reduce


def all_reduce_sketch_update(sketch: NWSketch, slots: torch.Tensor, values: torch.Tensor, group: Group = None) -> None:
    """Insert every rank's items into every rank's `sketch`: delta of the local (`slots` [n, L], finite
    `values` [n]) -> all_reduce(SUM) -> `apply_delta` (one decay step, then the summed update).

    A collective: call it on every rank of `group` (n may differ across ranks, 0 included). Non-finite
    values raise ValueError before communicating (filter them first, as `NWSSampler.update` does).
    """
    delta = sketch.delta(slots, values)
    if _active(group):
        dist.all_reduce(delta, op=dist.ReduceOp.SUM, group=group)
    sketch.apply_delta(delta)


def tensors_in_sync(tensor: torch.Tensor, group: Group = None) -> bool:
    """Return whether `tensor` holds the same values on every rank (a collective: elementwise all_reduce
    MAX and MIN of a float64 copy; exact, NaN never compares equal). True without a process group."""
    if not _active(group):
        return True
    flat = tensor.detach().reshape(-1).to(torch.float64)
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX, group=group)
    dist.all_reduce(low, op=dist.ReduceOp.MIN, group=group)
    return bool(torch.equal(high, low))


def sync_check(sketch: NWSketch, group: Group = None) -> bool:
    """Return whether all ranks hold identical sketch contents (stored table and lazy decay factor).

    Costs two all_reduces of the table's size; meant for tests and occasional checks, not every step."""
    scale = torch.tensor([sketch._scale], dtype=torch.float64, device=sketch.device)
    return tensors_in_sync(torch.cat([sketch.table.reshape(-1).to(torch.float64), scale]), group)


def feedback_mode(sampler: FeedbackSampler) -> str:
    """Return how `sampler`'s feedback is shared across ranks: "reduce" (NWS), "gather" (samplers that
    learn from `update`: history, infobatch) or "none" (uniform, static, loss)."""
    if isinstance(sampler, NWSBase):
        return "reduce"
    if type(sampler)._update is not FeedbackSampler._update:
        return "gather"
    return "none"


def _all_gather_batch(indices: torch.Tensor, losses: torch.Tensor, group: Group) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather every rank's (indices, losses) in one collective and interleave them back into the global
    batch's order (rank r yielded positions r::R). Packs both into float64: exact for indices < 2**53
    and for float16/bfloat16/float32 losses. Every rank must pass the same number of items."""
    packed = torch.stack([indices.detach().to(torch.float64), losses.detach().to(indices.device, torch.float64)], dim=1)
    parts = [torch.empty_like(packed) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, packed.contiguous(), group=group)
    merged = torch.stack(parts, dim=1).reshape(-1, 2)  # [b, R, 2] -> position i*R + r
    return merged[:, 0].long(), merged[:, 1].to(losses.dtype)


def distributed_update(sampler: FeedbackSampler, indices: torch.Tensor, losses: torch.Tensor, group: Group = None) -> None:
    """Feed this rank's `indices` [b] and per-sample `losses` [b] back so that every rank's sampler absorbs
    the whole global batch (see the module docstring). A collective for "reduce" and "gather" samplers:
    call it on every rank at every step. Arguments are not modified."""
    if not _active(group):
        sampler.update(indices, losses)
        return
    mode = feedback_mode(sampler)
    if mode == "reduce":
        sampler.update(indices, losses, reduce=_sum_over_ranks(group))
    elif mode == "gather":
        sampler.update(*_all_gather_batch(indices, losses, group))
    else:
        sampler.update(indices, losses)  # accepted and ignored; kept for samplers that validate arguments
