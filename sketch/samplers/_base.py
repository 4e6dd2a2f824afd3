"""Shared machinery of the feedback samplers: validation, seeding, fixed-length iteration, replica slicing,
the record of recent weights, feedback cleaning and checkpoints.

Every sampler in `sketch.samplers` subclasses `FeedbackSampler` and supplies only how one global batch is
drawn (`_draw`), what happens at the start of an epoch (`_start_epoch`), what feedback does (`_update`) and
the distribution it draws from (`probabilities`):

    class MySampler(FeedbackSampler):
        cost = "what one step costs"
        def _draw(self, g):            # -> (indices LongTensor [G], weights Tensor [G]), G = batch_size * num_replicas
            ...
        def probabilities(self, indices=None):   # -> float [N] (or at indices): P[next single draw picks i]
            ...

Determinism contract (all samplers): the batches of epoch `e` come from a local `torch.Generator` on the
sampler's device, seeded from `(seed, e)` when the epoch's iteration starts; no global RNG is used. Same
seed, epoch, device type and feedback (the same `update` calls in the same order) give the same index
stream; different seeds or epochs give different ones. CPU and CUDA generators give different streams.
"""
from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch.utils.data import Sampler

from .._checks import Check, check_options, check_positive_int, check_tensor

__all__ = ["FeedbackSampler", "epoch_seed", "resolve_device"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def epoch_seed(seed: int, epoch: int) -> int:
    """Return the 63-bit generator seed of `(seed, epoch)`: distinct pairs give unrelated seeds."""
    return _splitmix64(_splitmix64(seed) ^ epoch) >> 1


def resolve_device(device: Any) -> torch.device:
    """Return `device` as a `torch.device` with an explicit CUDA index; raise if it is not usable here."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {device!r} ({type(device).__name__})")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device is {device!r} but CUDA is not available; use device='cpu'")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
    return dev


class FeedbackSampler(Sampler[torch.Tensor]):
    """Base of the batch samplers with feedback: yields `len(self)` LongTensor batches per epoch.

    Args:
        num_samples: N, the size of the training set; indices are drawn from [0, N).
        batch_size: B, indices per yielded batch (per rank). `batch_size * num_replicas` must be <= N.
        steps_per_epoch: batches per epoch; default ceil(N / (B * num_replicas)), one pass over the data.
        seed: non-negative integer; with the epoch it seeds the local generator.
        device: where every tensor of the sampler lives (indices, weights, scores, sketch).
        num_replicas, rank: data-parallel layout. Every rank draws the same global batch of
            B * num_replicas indices (same generator stream) and yields the slice `rank::num_replicas`.
            `update` must then be called on every rank with the all-gathered indices and losses of the
            global batch, so that all ranks hold the same scores and keep drawing the same global batches.

    Use: `set_epoch(e)`, iterate, `weights(idx)` for each yielded batch, `update(idx, losses)` after the step;
    `probabilities()` says what the next draw would pick (for probes: compare it with the true losses).

    Determinism: each epoch's iteration reseeds a local `torch.Generator` (on `device`) from (seed, epoch);
    no global RNG is touched. The same seed, epoch, device type and feedback (the same `update` calls, in
    the same order, between the same batches) give the same batches and weights; another seed or epoch
    gives another stream. Iterating the same epoch twice without feedback repeats it. CPU and CUDA
    streams differ. On CUDA, samplers whose state is summed by atomics (the NWS sketch) are bit-exact only
    under `torch.use_deterministic_algorithms(True)`.

    Checkpoints: `state_dict()` taken between two batches and loaded into a sampler built with the same
    arguments makes its next iteration yield exactly the batches (and weights) the original had left in
    that epoch; `set_epoch` with the saved epoch keeps that position, another epoch discards it.
    """

    cost: ClassVar[str] = "abstract"
    # Set by `sketch.samplers.register`: the registry name and the runtime inputs the constructor takes.
    registry_name: ClassVar[str | None] = None
    inputs: ClassVar[tuple[str, ...]] = ()
    remembered_batches: ClassVar[int] = 16  # how many recent batches `weights` can answer for
    # The sampler's own keyword options (what a config file may set), each with the one check that decides its
    # allowed values. The constructor applies these checks; `check_options` applies them without building.
    option_checks: ClassVar[Mapping[str, Check]] = {}

    @classmethod
    def check_options(cls, **options: Any) -> dict[str, Any]:
        """Return `options` checked and normalized by the checks the constructor applies (names that are not
        options pass unchanged); the first bad value raises a ValueError/TypeError whose message starts with
        its name. Lets a harness validate a whole sweep of settings before building anything."""
        return check_options(cls.option_checks, options)

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        *,
        steps_per_epoch: int | None = None,
        seed: int = 0,
        device: str | torch.device = "cpu",
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        super().__init__()
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.num_replicas = check_positive_int("num_replicas", num_replicas)
        self.rank = check_positive_int("rank", rank, minimum=0)
        if self.rank >= self.num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas={num_replicas}), got {rank}")
        if self.global_batch_size > self.num_samples:
            raise ValueError(
                f"batch_size must be <= num_samples / num_replicas = {self.num_samples // self.num_replicas}, "
                f"got batch_size={batch_size} (num_samples={num_samples}, num_replicas={num_replicas})"
            )
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(self.num_samples / self.global_batch_size)
        self.steps_per_epoch = check_positive_int("steps_per_epoch", steps_per_epoch)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self.device = resolve_device(device)
        self.epoch = 0
        self.skipped_nonfinite = 0
        self._step = 0  # batches yielded so far in the current epoch
        self._drawing_epoch: int | None = None  # the epoch whose stream `_generator` is drawing
        self._generator: torch.Generator | None = None
        self._resume = False  # set by load_state_dict: the next iteration continues the saved epoch
        self._recent: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=self.remembered_batches)
        self._warned_nonfinite = False

    @property
    def global_batch_size(self) -> int:
        """Indices drawn per step across all ranks: batch_size * num_replicas."""
        return self.batch_size * self.num_replicas

    @property
    def step(self) -> int:
        """Batches yielded so far in the current epoch (runs ahead of training under a prefetching loader)."""
        return self._step

    def __len__(self) -> int:
        return self.steps_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose stream the next iteration yields (a restored mid-epoch position is kept
        when `epoch` is the saved one)."""
        epoch = check_positive_int("epoch", epoch, minimum=0)
        if epoch != self.epoch:
            self._resume = False
        self.epoch = epoch

    # -- iteration --------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._resume:
            self._resume = False
        else:
            self._generator = torch.Generator(device=self.device).manual_seed(epoch_seed(self.seed, self.epoch))
            self._step = 0
            self._drawing_epoch = self.epoch
            self._start_epoch(self._generator)
        g = self._generator
        while self._step < self.steps_per_epoch:
            indices, weights = self._draw(g)
            if self.num_replicas > 1:
                indices = indices[self.rank :: self.num_replicas].contiguous()
                weights = weights[self.rank :: self.num_replicas].contiguous()
            self._step += 1
            self._recent.append((indices, weights))
            yield indices

    def _start_epoch(self, generator: torch.Generator) -> None:
        """Hook: prepare a fresh epoch (draw a permutation, prune, reset caches)."""

    def _epoch_in_progress(self) -> bool:
        """Whether the next draw continues the epoch under way (some but not all of its batches yielded, and no
        `set_epoch` to another epoch since) rather than starting `self.epoch` afresh."""
        return (self._generator is not None and self._drawing_epoch == self.epoch
                and 0 < self._step < self.steps_per_epoch)

    # -- the distribution drawn from --------------------------------------------------------------
    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the probability that the next single draw picks each sample: float [N], or only at `indices`
        (LongTensor [m] in [0, N)). It sums to 1 over [0, N) and reflects exactly what is drawn (each sampler
        documents its caveats, e.g. without-replacement epochs or candidate pools). No generator is advanced
        and no state changes. Each sampler defines its own: there is no default that is right for all."""
        raise NotImplementedError(f"{type(self).__name__} does not define probabilities()")

    def _checked_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Return `indices` (1-D integer tensor in [0, N)) as a LongTensor on the device, else raise naming it."""
        check_tensor("indices", indices, ndim=1, floating=False)
        idx = indices.to(self.device, torch.long)
        if idx.numel():
            low, high = (int(v) for v in idx.aminmax())
            if low < 0 or high >= self.num_samples:
                raise ValueError(f"indices must lie in [0, num_samples={self.num_samples}), got values in [{low}, {high}]")
        return idx

    def _probabilities_at(self, p: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
        """`p` [N] itself (indices None) or at the checked `indices`."""
        return p if indices is None else p.index_select(0, self._checked_indices(indices))

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """Return one global batch: indices LongTensor [G] and their weights float [G], on self.device."""
        raise NotImplementedError

    # -- weights ----------------------------------------------------------------------------------
    def weights(self, indices: torch.Tensor) -> torch.Tensor:
        """Return the importance weights 1/(N p_i) (float [b], on self.device) of a batch yielded recently.

        `(weights * per_sample_loss).mean()` is then unbiased for the full-data mean loss. The sampler
        remembers its last `remembered_batches` batches (newest first wins), so a loader that prefetches
        a few batches still works; asking for any other tensor raises ValueError.
        """
        check_tensor("indices", indices, ndim=1, floating=False)
        idx = indices.to(self.device)
        for seen, w in reversed(self._recent):  # the yielded tensor itself: no comparison (no CUDA sync)
            if seen is idx:
                return w.clone()
        for seen, w in reversed(self._recent):  # a copy of it (e.g. collated by a DataLoader)
            if seen.shape == idx.shape and torch.equal(seen, idx):
                return w.clone()
        raise ValueError(
            f"indices (a batch of {idx.numel()}) is not one of the last {len(self._recent)} batches this "
            f"{type(self).__name__} yielded; call weights() with a batch from `for idx in sampler` before "
            f"{self.remembered_batches} more batches are drawn"
        )

    # -- feedback ---------------------------------------------------------------------------------
    def update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Feed back the per-sample losses of the samples just trained on.

        `indices` LongTensor [b] and `losses` [b] (any device; detached here). Neither argument is
        modified. Non-finite losses are dropped and counted in `self.skipped_nonfinite` (one warning the
        first time). With num_replicas > 1 pass the all-gathered indices and losses of the global batch.
        Costs one host sync (bounds and finiteness check) plus the sampler's batched tensor update.
        """
        idx, values = self._clean_feedback(indices, losses)
        if idx.numel() > 0:
            self._update(idx, values)

    def _update(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Hook: absorb clean feedback (finite losses, long indices in range, both on self.device)."""

    def _clean_feedback(self, indices: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_tensor("indices", indices, ndim=1, floating=False)
        check_tensor("losses", losses, ndim=1, size={0: indices.shape[0]})
        idx = indices.to(self.device, torch.long)
        values = losses.detach().to(self.device)
        if not values.is_floating_point():
            values = values.float()
        if idx.numel() == 0:
            return idx, values
        finite = torch.isfinite(values)
        bad, low, high = torch.stack([(~finite).sum(), idx.min(), idx.max()]).tolist()
        if low < 0 or high >= self.num_samples:
            raise ValueError(f"indices must lie in [0, num_samples={self.num_samples}), got values in [{low}, {high}]")
        if bad:
            self._count_nonfinite(bad, "losses passed to update()")
            idx, values = idx[finite], values[finite]
        return idx, values

    def _count_nonfinite(self, count: int, where: str) -> None:
        self.skipped_nonfinite += count
        if not self._warned_nonfinite:
            self._warned_nonfinite = True
            warnings.warn(
                f"{type(self).__name__}: skipped {count} non-finite (NaN/inf) value(s) in {where}; further ones "
                f"are skipped silently and counted in .skipped_nonfinite",
                RuntimeWarning,
                stacklevel=3,
            )

    # -- checkpoints ------------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "num_samples": self.num_samples,
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
        }

    def state_dict(self) -> dict[str, Any]:
        """Epoch, step within it, generator state and the sampler's own state (CPU tensors).

        The rank is not saved: rank 0's state can restore every rank. The record behind `weights` is not
        saved either: batches yielded before the checkpoint cannot be weighted after restoring.
        """
        return {
            "config": self._config(),
            "epoch": self.epoch,
            "step": self._step,
            "generator": None if self._generator is None else self._generator.get_state(),
            "skipped_nonfinite": self.skipped_nonfinite,
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict` output; if it was taken mid-epoch, the next iteration yields exactly the
        batches the saved sampler had left in that epoch."""
        if state.get("config") != self._config():
            raise ValueError(f"state_dict is for sampler {state.get('config')}, this sampler is {self._config()}")
        self.epoch, self._step = int(state["epoch"]), int(state["step"])
        self._drawing_epoch = self.epoch
        self.skipped_nonfinite = int(state["skipped_nonfinite"])
        self._generator = None
        if state["generator"] is not None:
            self._generator = torch.Generator(device=self.device)
            self._generator.set_state(state["generator"])
        self._load_extra_state(state["extra"])
        self._resume = self._generator is not None and 0 < self._step < self.steps_per_epoch
        self._recent.clear()

    def _extra_state(self) -> dict[str, Any]:
        """Hook: the subclass's own state (scores, sketch, epoch plan) as CPU tensors and plain values."""
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Hook: inverse of `_extra_state`."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch}, seed={self.seed}, device={self.device}, "
            f"num_replicas={self.num_replicas}, rank={self.rank})"
        )
