"""Selective-Backprop (Jiang et al. 2019, "Accelerating Deep Learning by Focusing on the Biggest Losers",
arXiv 1910.00762): forward every candidate, train only on those whose loss ranks high among recent losses.

    @torch.no_grad()
    def score_fn(idx):                           # LongTensor [C] -> current per-sample losses [C]
        return F.cross_entropy(model(X[idx]), Y[idx], reduction="none")

    sampler = SelectiveBackpropSampler(num_samples=N, batch_size=128, score_fn=score_fn, beta=1.0)
    for idx in sampler:                          # score_fn runs inside next(sampler)
        loss = F.cross_entropy(model(X[idx]), Y[idx], reduction="none")
        loss.mean().backward(); opt.step(); opt.zero_grad()      # weights are all ones

Each step walks a random-permutation stream (one permutation per pass, from the local generator) in
chunks of `chunk_size` candidates. For each chunk: score_fn gives the losses, the finite ones join the
history (the `history` most recent losses), then each candidate is kept with probability

    P(l) = percentile(l) ** beta,    percentile(l) = |{h in history : h < l}| / |history|

the fraction of the recent losses (the chunk's own included) strictly below l, as in the authors' released
implementation of the paper's CDF; the highest of |H| distinct losses gets (|H| - 1) / |H|. Where the
history is empty or constant it carries no ranking and every percentile is 1 (so a constant loss never
stalls the stream); beta = 0 keeps everything. For a steady loss distribution about 1 / (beta + 1) of the
candidates are kept. Chunks are scored until a global batch has been kept; surplus kept candidates carry
over to the next step (their losses are then one step old) and are discarded at the end of an epoch.

No reweighting: weights are 1. Selective-Backprop is biased by design (it trains on the hard examples).
Non-finite scores are counted in `skipped_nonfinite`, stay out of the history and are kept (percentile 1),
so a diverging model shows up in the training loss instead of stalling the sampler. `update` is accepted
and ignored. Like `LossSampler`, run it in the training process; with num_replicas > 1 every rank scores
the same global chunks. The history is advanced by iterating, so iterating an epoch again does not repeat
it; it is saved by `state_dict`.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from .._checks import check_positive_int, optional
from ._base import FeedbackSampler
from ._permutation import PermutationStream
from ._stream_filter import probabilities_at
from ._registry import register

__all__ = ["SelectiveBackpropSampler"]

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def check_non_negative(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number >= 0, else raise naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a finite number >= 0, got {value!r} ({type(value).__name__})")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


@register("selective_backprop", inputs=("score_fn",))
class SelectiveBackpropSampler(FeedbackSampler):
    """Selective-Backprop as a fixed-length batch sampler (see the module doc).

    Args:
        num_samples, batch_size: as in `FeedbackSampler`.
        score_fn: callable(LongTensor [C] on `device`) -> Tensor [C] of current per-sample losses (run
            under torch.no_grad).
        beta: exponent >= 0 of the percentile; larger keeps fewer low-loss candidates.
        history: how many of the most recent finite losses rank a candidate (R in the paper).
        chunk_size: candidates scored per score_fn call; None: the global batch size B * num_replicas.

    Attributes: `recent_losses` (float [<= history], oldest first), `examined` (candidates scored), `kept`
    (candidates selected), `kept_fraction`.
    """

    option_checks = {
        "beta": check_non_negative,
        "history": check_positive_int,
        "chunk_size": optional(check_positive_int),
    }
    cost = (
        "forward passes (score_fn) over about (beta + 1) * B * num_replicas candidates per step, in chunks of "
        "chunk_size; per chunk a sort of the history and a searchsorted, two host syncs"
    )

    def __init__(self, num_samples: int, batch_size: int, *, score_fn: ScoreFn, beta: float = 1.0, history: int = 1024,
                 chunk_size: int | None = None, **common: Any) -> None:
        if not callable(score_fn):
            raise TypeError(f"score_fn must be a callable LongTensor [C] -> Tensor [C], got {type(score_fn).__name__}")
        super().__init__(num_samples, batch_size, **common)
        o = self.check_options(beta=beta, history=history, chunk_size=chunk_size)
        self.beta, self.history_size = o["beta"], o["history"]
        self.chunk_size = o["chunk_size"] if o["chunk_size"] is not None else self.global_batch_size
        self.score_fn = score_fn
        self.recent_losses = torch.empty(0, dtype=torch.float32, device=self.device)  # oldest first
        self.examined = 0  # candidates scored
        self.kept = 0  # candidates selected (carried-over ones included)
        self._stream: PermutationStream | None = None
        self._buffer = torch.empty(0, dtype=torch.long, device=self.device)  # kept, carried to the next step

    @property
    def kept_fraction(self) -> float:
        """Fraction of the scored candidates that were selected (1.0 before any)."""
        return self.kept / self.examined if self.examined else 1.0

    # -- the selection rule -----------------------------------------------------------------------
    def percentiles(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the percentile in [0, 1] of each loss among the current history: the fraction strictly
        below it; 1 where the history is empty or constant, or the loss is not finite. Changes nothing."""
        losses = losses.to(self.device, torch.float32)
        if self.recent_losses.numel() == 0:
            return torch.ones_like(losses)
        ranked = torch.sort(self.recent_losses).values
        below = torch.searchsorted(ranked, losses.contiguous()).float() / ranked.numel()
        informative = (ranked[-1] > ranked[0]) & torch.isfinite(losses)
        return torch.where(informative, below, torch.ones_like(below))

    def keep_probabilities(self, losses: torch.Tensor) -> torch.Tensor:
        """Return the probability that candidates with these losses are kept now: percentiles(losses) ** beta."""
        return self.percentiles(losses).pow(self.beta)  # 0 ** 0 = 1: beta = 0 keeps everything

    def _score(self, idx: torch.Tensor) -> torch.Tensor:
        """Return score_fn(idx) checked and as float32 on the device (non-finite values left as they are)."""
        with torch.no_grad():
            out = self.score_fn(idx)
        if not isinstance(out, torch.Tensor) or out.shape != idx.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"score_fn must return a Tensor of shape [{idx.numel()}] (one loss per index), got {got}")
        return out.detach().to(self.device, torch.float32)

    def probabilities(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """Return the probability (float [N], or at `indices`) that one draw of the next batch picks each item:
        keep_probabilities(l) / its sum, l = score_fn over all N (in chunks), ranked against the current
        history (uniform if every probability is 0). Costs N forward passes; changes no state. Approximate
        in that it ignores carried-over candidates and the stream's without-replacement order."""
        all_idx = torch.arange(self.num_samples, device=self.device)
        losses = torch.cat([self._score(c) for c in all_idx.split(self.chunk_size)])
        keep = self.keep_probabilities(losses)
        total = keep.sum()
        p = torch.where(total > 0, keep / torch.where(total > 0, total, 1.0), 1.0 / self.num_samples)
        return probabilities_at(p, indices)

    # -- iteration --------------------------------------------------------------------------------
    def _start_epoch(self, generator: torch.Generator) -> None:
        self._stream = PermutationStream(None, self.num_samples, generator)
        self._buffer = self._buffer[:0]

    def _examine(self, generator: torch.Generator) -> torch.Tensor:
        """Score one chunk of the stream, add its finite losses to the history, return the kept candidates."""
        idx = self._stream.take(self.chunk_size, generator)
        losses = self._score(idx)
        finite = torch.isfinite(losses)
        bad = int((~finite).sum())  # host sync 1 of a chunk
        if bad:
            self._count_nonfinite(bad, "score_fn output (kept, left out of the history)")
        joining = losses[finite] if bad else losses
        self.recent_losses = torch.cat([self.recent_losses, joining])[-self.history_size :]
        keep = torch.rand(idx.numel(), generator=generator, device=self.device) < self.keep_probabilities(losses)
        kept = idx[keep]  # host sync 2: the number kept
        self.examined, self.kept = self.examined + idx.numel(), self.kept + kept.numel()
        return kept

    def _draw(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.global_batch_size
        idx = self._buffer
        while idx.numel() < g:  # a loop over chunks, about (beta + 1) * g / chunk_size per step
            idx = torch.cat([idx, self._examine(generator)])
        self._buffer = idx[g:]
        return idx[:g], torch.ones(g, device=self.device)

    # -- checkpoints ------------------------------------------------------------------------------
    def _extra_state(self) -> dict[str, Any]:
        return {
            "recent_losses": self.recent_losses.cpu().clone(),
            "stream": None if self._stream is None else self._stream.state_dict(),
            "buffer": self._buffer.cpu().clone(),
            "examined": self.examined,
            "kept": self.kept,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.recent_losses = state["recent_losses"].to(self.device)
        s = state["stream"]
        self._stream = None if s is None else PermutationStream.from_state_dict(s, self.device)
        self._buffer = state["buffer"].to(self.device)
        self.examined, self.kept = state["examined"], state["kept"]

    def _config(self) -> dict[str, Any]:
        return {**super()._config(), "history": self.history_size, "chunk_size": self.chunk_size}

    def __repr__(self) -> str:
        return (
            f"{super().__repr__()[:-1]}, beta={self.beta}, history={self.history_size}, "
            f"chunk_size={self.chunk_size}, examined={self.examined}, kept_fraction={self.kept_fraction:.3f})"
        )
