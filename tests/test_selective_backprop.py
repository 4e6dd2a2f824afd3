"""Tests of SelectiveBackpropSampler (Jiang et al. 2019): the percentile rule P = percentile(loss) ** beta
against a bounded history of recent losses, fixed-size batches from a scored stream, determinism, exact
resume, data-parallel slicing, non-finite scores and argument checks.

The score function is a fixed loss per item, so the model's drift plays no part. With chunk_size = history
= N every chunk is one full pass of the stream and the history is exactly the N losses: item i then sits
at a known percentile, rank_i / N.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import pytest
import torch

from sketch.samplers._selective_backprop import SelectiveBackpropSampler
from conftest import saved_and_loaded

N = 200
_g = torch.Generator().manual_seed(0)
LOSSES = torch.randperm(N, generator=_g).float() / N + 0.01  # distinct; item i has rank RANK[i] (0 = lowest)
RANK = LOSSES.argsort().argsort()

pytestmark = pytest.mark.usefixtures("one_thread")


class Scorer:
    """score_fn over LOSSES that counts its calls and remembers what it returned."""

    def __init__(self, losses: torch.Tensor = LOSSES) -> None:
        self.losses, self.calls, self.returned = losses, 0, []

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.returned.append(self.losses[idx])
        return self.losses[idx]


def make(batch_size: int = 20, n: int = N, score_fn: Callable | None = None, **kw: Any) -> SelectiveBackpropSampler:
    return SelectiveBackpropSampler(n, batch_size, score_fn=score_fn or Scorer(LOSSES[:n]), **kw)


def run_epoch(sampler: SelectiveBackpropSampler, epoch: int) -> list[torch.Tensor]:
    sampler.set_epoch(epoch)
    out = []
    for idx in sampler:
        assert torch.equal(sampler.weights(idx), torch.ones(idx.numel()))  # no reweighting: biased by design
        out.append(idx.clone())
    return out


def all_kept(sampler: SelectiveBackpropSampler, batches: list[torch.Tensor]) -> torch.Tensor:
    """Every kept candidate: the yielded batches and those carried over to the next step."""
    return torch.cat(batches + [sampler.state_dict()["extra"]["buffer"]])


# -- the selection rule ----------------------------------------------------------------------------
@pytest.mark.parametrize("beta", [1.0, 2.0])
def test_candidates_are_kept_at_rate_percentile_to_the_beta(beta: float) -> None:
    # The history is the N losses, so item i is kept with probability (rank_i / N) ** beta in each pass.
    # Groups of 40 items by rank: kept count within 4.5 binomial standard errors; the lowest never kept.
    sampler = make(chunk_size=N, history=N, beta=beta, steps_per_epoch=100)
    kept = torch.bincount(all_kept(sampler, run_epoch(sampler, 0)), minlength=N).double()
    passes = sampler.examined // N
    assert sampler.examined == passes * N and passes >= 15
    p = (RANK.double() / N) ** beta
    for group in RANK.argsort().split(40):  # item ids, lowest losses first
        expected, var = passes * p[group].sum(), passes * (p[group] * (1 - p[group])).sum()
        assert abs(float(kept[group].sum() - expected)) <= 4.5 * math.sqrt(float(var)) + 1
    assert kept[RANK == 0].item() == 0


def test_beta_zero_keeps_every_candidate_in_stream_order() -> None:
    sampler = make(n=50, batch_size=10, beta=0.0)
    batches = run_epoch(sampler, 0)
    assert sampler.kept == sampler.examined == 50
    assert sorted(torch.cat(batches).tolist()) == list(range(50))  # one epoch = one permutation


def test_higher_beta_keeps_fewer_low_loss_items() -> None:
    # Share of the batches drawn from the lower half of the losses: 1/2, about 1/4 and about 1/16.
    shares = []
    for beta in (0.0, 1.0, 3.0):
        sampler = make(chunk_size=N, history=N, beta=beta, steps_per_epoch=50)
        drawn = torch.cat(run_epoch(sampler, 0))
        shares.append(float((RANK[drawn] < N // 2).double().mean()))
    assert shares[0] == pytest.approx(0.5, abs=0.03)
    assert shares[0] - 0.15 > shares[1] > shares[2] + 0.1 and shares[2] < 0.12


def test_percentiles_count_the_history_strictly_below_and_are_one_without_a_ranking() -> None:
    sampler = make(n=4, batch_size=1, score_fn=lambda idx: idx.float() + 1, chunk_size=4, history=4)
    assert torch.equal(sampler.percentiles(torch.tensor([0.0, 9.0])), torch.ones(2))  # empty history
    next(iter(sampler))  # the history is now {1, 2, 3, 4}
    got = sampler.percentiles(torch.tensor([0.0, 1.0, 2.5, 4.0, 5.0, float("nan"), float("inf")]))
    assert got.tolist() == [0.0, 0.0, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert sampler.keep_probabilities(torch.tensor([2.5])).item() == 0.5
    constant = make(n=4, batch_size=1, score_fn=lambda idx: torch.zeros(idx.numel()), chunk_size=4)
    next(iter(constant))
    assert torch.equal(constant.percentiles(torch.tensor([0.0, -1.0])), torch.ones(2))


def test_a_constant_loss_keeps_everything_instead_of_stalling() -> None:
    sampler = make(n=50, batch_size=10, beta=3.0, score_fn=lambda idx: torch.zeros(idx.numel()))
    run_epoch(sampler, 0)
    assert sampler.kept == sampler.examined == 50


def test_history_is_bounded_and_holds_the_most_recent_finite_losses() -> None:
    scorer = Scorer()
    sampler = make(batch_size=10, chunk_size=7, history=16, score_fn=scorer)
    it = iter(sampler)
    for _ in range(3):
        next(it)
        assert torch.equal(sampler.recent_losses, torch.cat(scorer.returned)[-16:])
    assert sampler.recent_losses.numel() == 16


def test_forward_passes_run_inside_next_one_per_chunk() -> None:
    scorer = Scorer()
    sampler = make(batch_size=10, chunk_size=8, score_fn=scorer)
    it = iter(sampler)
    assert scorer.calls == 0
    next(it)
    assert scorer.calls >= 2 and sampler.examined == 8 * scorer.calls  # 10 kept need 2+ chunks of 8


def test_probabilities_are_the_percentile_power_normalised_and_change_no_state() -> None:
    sampler = make(chunk_size=N, history=N, beta=2.0)
    next(iter(sampler))
    history, examined = sampler.recent_losses.clone(), sampler.examined
    p = sampler.probabilities()
    expected = (RANK.float() / N) ** 2
    assert torch.allclose(p, expected / expected.sum()) and float(p.sum()) == pytest.approx(1.0)
    assert torch.equal(sampler.recent_losses, history) and sampler.examined == examined
    at = torch.tensor([5, 5, 0])
    assert torch.equal(sampler.probabilities(at), p[at])
    with pytest.raises(ValueError, match="^indices"):
        sampler.probabilities(torch.tensor([-1]))


# -- non-finite scores -----------------------------------------------------------------------------
def test_nonfinite_scores_are_counted_warned_once_kept_and_left_out_of_the_history() -> None:
    losses = LOSSES.clone()
    losses[:5] = float("nan")
    losses[5] = float("inf")
    sampler = make(score_fn=Scorer(losses), chunk_size=N, history=N, steps_per_epoch=30)
    with pytest.warns(RuntimeWarning, match="score_fn") as record:
        batches = run_epoch(sampler, 0)
    assert len([w for w in record if "non-finite" in str(w.message)]) == 1
    passes = sampler.examined // N
    assert sampler.skipped_nonfinite == 6 * passes
    kept = torch.bincount(all_kept(sampler, batches), minlength=N)
    assert bool((kept[:6] == passes).all())  # kept in every pass
    assert bool(torch.isfinite(sampler.recent_losses).all()) and sampler.recent_losses.numel() == N


def test_a_diverged_model_still_fills_every_batch() -> None:
    sampler = make(n=50, batch_size=10, score_fn=lambda idx: torch.full((idx.numel(),), float("nan")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batches = run_epoch(sampler, 0)
    assert len(batches) == 5 and all(b.shape == (10,) for b in batches)


# -- fixed length, determinism, resume, data parallel -----------------------------------------------
@pytest.mark.parametrize("batch_size,steps,chunk", [(20, None, None), (7, 9, 3), (50, 4, 200)])
def test_every_batch_has_the_batch_size_and_an_epoch_has_steps_per_epoch_batches(batch_size: int, steps: int | None, chunk: int | None) -> None:
    sampler = make(batch_size=batch_size, steps_per_epoch=steps, chunk_size=chunk, history=64)
    for epoch in range(2):
        batches = run_epoch(sampler, epoch)
        assert len(batches) == len(sampler) == (steps or math.ceil(N / batch_size))
        for idx in batches:
            assert idx.shape == (batch_size,) and idx.dtype == torch.long
            assert 0 <= int(idx.min()) and int(idx.max()) < N
    assert sampler.examined > sampler.kept >= 2 * len(sampler) * batch_size


def test_same_seed_repeats_the_stream_and_another_seed_does_not() -> None:
    def stream(seed: int) -> list[torch.Tensor]:
        sampler = make(seed=seed, chunk_size=16, history=64)
        return [b for e in range(2) for b in run_epoch(sampler, e)]

    a, b, c = stream(3), stream(3), stream(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_no_global_rng_is_touched() -> None:
    before = torch.get_rng_state()
    run_epoch(make(chunk_size=16), 0)
    assert torch.equal(before, torch.get_rng_state())




def test_state_dict_mid_epoch_resumes_bit_identical_batches_and_history() -> None:
    # A checkpoint after 3 steps (with candidates carried over) restores the rest of the epoch and the
    # next one exactly: stream position, carry-over, history and counters.
    original = make(chunk_size=48, history=100, steps_per_epoch=8)
    original.set_epoch(0)
    it = iter(original)
    for _ in range(3):
        next(it)
    assert original.state_dict()["extra"]["buffer"].numel() > 0
    state = saved_and_loaded(original.state_dict())
    expected = [b.clone() for b in it] + run_epoch(original, 1)

    restored = make(chunk_size=48, history=100, steps_per_epoch=8)
    restored.load_state_dict(state)
    got = run_epoch(restored, 0) + run_epoch(restored, 1)
    assert len(got) == len(expected) == 5 + 8
    assert all(torch.equal(x, y) for x, y in zip(expected, got))
    assert torch.equal(restored.recent_losses, original.recent_losses)
    assert (restored.examined, restored.kept) == (original.examined, original.kept)


def test_load_state_dict_rejects_another_history_size() -> None:
    with pytest.raises(ValueError, match="state_dict is for sampler"):
        make(history=10).load_state_dict(make(history=20).state_dict())


def test_two_replicas_yield_disjoint_slices_of_the_same_global_batch() -> None:
    ranks = [make(batch_size=5, num_replicas=2, rank=r, steps_per_epoch=4, chunk_size=16) for r in range(2)]
    single = make(batch_size=10, steps_per_epoch=4, chunk_size=16)
    for epoch in range(2):
        for s in ranks + [single]:
            s.set_epoch(epoch)
        for i0, i1, ig in zip(*ranks, single):
            assert torch.equal(i0, ig[0::2]) and torch.equal(i1, ig[1::2])


def test_update_is_accepted_ignored_and_never_mutates_its_arguments() -> None:
    sampler = make()
    idx = next(iter(sampler)).to(torch.int32)
    losses = LOSSES[idx.long()].clone().requires_grad_(True)
    history = sampler.recent_losses.clone()
    sampler.update(idx, losses)
    assert idx.dtype == torch.int32 and losses.requires_grad and torch.equal(losses.detach(), LOSSES[idx.long()])
    assert torch.equal(sampler.recent_losses, history)


# -- validation -----------------------------------------------------------------------------------
BAD_ARGS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("score_fn not callable", lambda: SelectiveBackpropSampler(N, 10, score_fn=3), TypeError, "score_fn"),
    ("beta negative", lambda: make(beta=-1.0), ValueError, "beta"),
    ("beta nan", lambda: make(beta=float("nan")), ValueError, "beta"),
    ("beta string", lambda: make(beta="1"), TypeError, "beta"),
    ("history zero", lambda: make(history=0), ValueError, "history"),
    ("history float", lambda: make(history=10.0), TypeError, "history"),
    ("chunk_size zero", lambda: make(chunk_size=0), ValueError, "chunk_size"),
    ("batch_size > N", lambda: make(batch_size=N + 1), ValueError, "batch_size"),
    ("score_fn wrong shape", lambda: next(iter(make(score_fn=lambda idx: LOSSES[:3]))), ValueError, "score_fn"),
    ("score_fn not a tensor", lambda: next(iter(make(score_fn=lambda idx: idx.tolist()))), ValueError, "score_fn"),
]


@pytest.mark.parametrize("case,factory,error,argument", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(case: str, factory: Callable[[], Any], error: type[Exception], argument: str) -> None:
    with pytest.raises(error, match=f"^{argument}"):
        factory()


def test_check_options_validates_a_config_without_building() -> None:
    assert SelectiveBackpropSampler.check_options(beta=2, history=8, chunk_size=None) == {"beta": 2.0, "history": 8, "chunk_size": None}
    with pytest.raises(ValueError, match="^chunk_size"):
        SelectiveBackpropSampler.check_options(chunk_size=-3)
