"""Tests of sketch.samplers: the shared contract (fixed-length epochs, determinism, unbiased weights, feedback
hygiene, checkpoints, data parallel slicing, validation) for every sampler, then NWS specifics.

Everything runs on tiny synthetic problems (N ~ 50) so the file stays fast on a 2-core CPU.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import pytest
import torch

from sketch import NWSketch, SRPHash, feature_keys
from sketch.samplers import (
    SAMPLERS,
    FeedbackSampler,
    HistorySampler,
    InfoBatchSampler,
    LossSampler,
    NWSBase,
    NWSFullSampler,
    NWSSampler,
    StaticSampler,
    UniformSampler,
    build_sampler,
)
from sketch.samplers._proportional import inverse_cdf_draw, mix_probabilities
from conftest import saved_and_loaded

N, D = 50, 6


def _problem(n: int = N, seed: int = 0, noise: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features in two angular clusters and non-negative per-sample losses that differ between them."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(D)[:2] * 4.0
    cluster = torch.arange(n) % 5 == 0  # a fifth of the samples form the high-loss cluster
    x = centers[cluster.long()] + noise * torch.randn(n, D, generator=g)
    loss = torch.where(cluster, 3.0, 0.3) * (0.5 + torch.rand(n, generator=g))
    return x, loss


FEATURES, LOSSES = _problem()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


def make(name: str, n: int = N, batch_size: int = 10, **kw: Any) -> FeedbackSampler:
    """Build sampler variant `name` on the toy problem of size n (features and losses truncated/rebuilt)."""
    x, loss = (FEATURES, LOSSES) if n == N else _problem(n)
    if name == "uniform":
        return UniformSampler(n, batch_size, **kw)
    if name == "static":
        return StaticSampler(loss, batch_size, mix=0.2, **kw)
    if name == "loss":
        return LossSampler(n, batch_size, score_fn=lambda pool: loss.to(pool.device)[pool], **kw)
    if name == "loss_full":
        return LossSampler(n, batch_size, score_fn=lambda pool: loss.to(pool.device)[pool], pool_size=None, **kw)
    if name == "history":
        return HistorySampler(n, batch_size, mix=0.2, **kw)
    if name == "infobatch":
        return InfoBatchSampler(n, batch_size, num_epochs=10_000, **kw)
    opts = {"nws": {}, "nws_pool": {"pool_size": min(n, 30)}, "nws_refresh": {"refresh_every": 3},
            "nws_decay": {"refresh_every": 2, "pool_size": n // 2, "decay": 0.9},
            "nws_sketch": {"refresh_every": 1}, "nws_sketch_refresh": {"refresh_every": 3, "decay": 0.9},
            }[name]
    cls = NWSSampler if name.startswith("nws_sketch") else NWSFullSampler
    return cls.from_features(x, batch_size, depth=8, bits=3, width=64, mix=0.2, **opts, **kw)


ALL = ["uniform", "static", "loss", "loss_full", "history", "infobatch", "nws", "nws_pool", "nws_refresh", "nws_decay",
       "nws_sketch", "nws_sketch_refresh"]
ADAPTIVE = ["history", "infobatch", "nws", "nws_pool", "nws_refresh", "nws_decay", "nws_sketch",
            "nws_sketch_refresh"]  # those that learn from update


def feed(sampler: FeedbackSampler, loss: torch.Tensor = LOSSES, fraction: float = 0.6) -> None:
    """Give the sampler feedback for the first `fraction` of the samples (so some stay unseen)."""
    idx = torch.arange(int(fraction * loss.numel()), device=sampler.device)
    sampler.update(idx, loss.to(sampler.device)[idx])


def run_epoch(sampler: FeedbackSampler, epoch: int, loss: torch.Tensor = LOSSES, learn: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate one epoch, recording (indices, weights) and feeding back the toy losses."""
    sampler.set_epoch(epoch)
    out = []
    for idx in sampler:
        out.append((idx.clone(), sampler.weights(idx)))
        if learn:
            sampler.update(idx, loss.to(idx.device)[idx])
    return out


# -- fixed-length epochs ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n,batch_size,steps", [(50, 7, None), (50, 10, None), (33, 32, 5), (20, 3, 17)])
def test_every_sampler_yields_len_batches_of_valid_indices(name: str, n: int, batch_size: int, steps: int | None) -> None:
    # Whatever N, B (dividing N or not) and steps, an epoch is exactly len(sampler) LongTensor [B] batches
    # of indices in [0, N), with positive finite weights; the default length is one pass, ceil(N / B).
    sampler = make(name, n=n, batch_size=batch_size, steps_per_epoch=steps)
    assert len(sampler) == (steps if steps is not None else math.ceil(n / batch_size))
    for epoch in range(2):
        batches = run_epoch(sampler, epoch, loss=_problem(n)[1])
        assert len(batches) == len(sampler)
        for idx, w in batches:
            assert idx.dtype == torch.long and idx.shape == (batch_size,)
            assert int(idx.min()) >= 0 and int(idx.max()) < n
            assert w.shape == (batch_size,) and w.is_floating_point()
            assert bool(torch.isfinite(w).all()) and bool((w > 0).all())


def test_uniform_sampler_covers_every_sample_once_per_pass() -> None:
    # Without replacement: when B divides N, one epoch is a permutation of range(N).
    batches = run_epoch(UniformSampler(50, 10), 0)
    assert sorted(torch.cat([b for b, _ in batches]).tolist()) == list(range(50))


# -- determinism ----------------------------------------------------------------------------------
def _stream(name: str, seed: int, epochs: tuple[int, ...] = (0, 1)) -> list[torch.Tensor]:
    sampler = make(name, seed=seed)
    feed(sampler)
    return [idx for e in epochs for idx, _ in run_epoch(sampler, e)]


@pytest.mark.parametrize("name", ALL)
def test_same_seed_and_feedback_give_identical_stream_and_other_seeds_differ(name: str) -> None:
    # Two samplers built alike and given the same feedback yield the same indices; another seed does not.
    a, b, c = _stream(name, seed=3), _stream(name, seed=3), _stream(name, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("name", ALL)
def test_set_epoch_changes_the_stream_and_reiterating_an_epoch_repeats_it(name: str) -> None:
    # The generator is reseeded from (seed, epoch) at the start of each iteration (no feedback here, so
    # the distribution is fixed): another epoch gives another stream, the same epoch the same one.
    sampler = make(name)
    feed(sampler)
    e0 = [i for i, _ in run_epoch(sampler, 0, learn=False)]
    e1 = [i for i, _ in run_epoch(sampler, 1, learn=False)]
    e0_again = [i for i, _ in run_epoch(sampler, 0, learn=False)]
    assert not all(torch.equal(x, y) for x, y in zip(e0, e1))
    assert all(torch.equal(x, y) for x, y in zip(e0, e0_again))


def test_no_global_rng_is_touched() -> None:
    # Iterating and updating leaves torch's global generator where it was.
    before = torch.get_rng_state()
    for name in ALL:
        sampler = make(name)
        feed(sampler)
        run_epoch(sampler, 0)
    assert torch.equal(before, torch.get_rng_state())


# -- unbiasedness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_weighted_batch_loss_is_unbiased_for_full_mean(name: str) -> None:
    # Monte Carlo over many epochs (epochs are independent given fixed feedback): the mean of
    # (weights * loss).mean() equals the full-data mean loss within 4.5 standard errors. Per-epoch
    # averages are the independent units (batches within an epoch are correlated for permutations).
    sampler = make(name, steps_per_epoch=5)
    feed(sampler)
    per_epoch, all_weights = [], []
    for epoch in range(400):
        batches = run_epoch(sampler, epoch, learn=False)
        per_epoch.append(torch.stack([(w * LOSSES[i]).mean() for i, w in batches]).mean())
        all_weights.append(torch.cat([w for _, w in batches]))
    est = torch.stack(per_epoch).double()
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - float(LOSSES.mean())) <= 4.5 * se + 1e-5
    if name != "uniform":  # the test only means something if sampling was non-uniform
        assert float(torch.cat(all_weights).std()) > 0.05


def test_inverse_cdf_draw_matches_the_distribution() -> None:
    # The fallback for more than 2**24 categories draws each category with probability q (q = 0 never).
    q = torch.tensor([0.5, 0.0, 0.2, 0.3])
    draws = inverse_cdf_draw(q, 40_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).double() / draws.numel()
    assert freq[1] == 0
    assert torch.allclose(freq, q.double(), atol=0.015)


# -- feedback hygiene -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_update_never_mutates_its_arguments(name: str) -> None:
    # update() may filter, cast and move its inputs, but only ever on copies.
    sampler = make(name)
    idx = torch.arange(0, 20, dtype=torch.int32)
    losses = LOSSES[:20].clone().requires_grad_(True)
    with torch.no_grad():
        losses[3] = float("nan")
    idx_before, losses_before = idx.clone(), losses.detach().clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sampler.update(idx, losses)
    assert torch.equal(idx, idx_before) and idx.dtype == torch.int32
    assert torch.allclose(losses.detach(), losses_before, equal_nan=True) and losses.requires_grad


@pytest.mark.parametrize("name", ALL)
def test_nonfinite_losses_are_skipped_counted_and_warned_once(name: str) -> None:
    # NaN and inf are dropped before they reach any score table or the sketch, counted, warned about once.
    sampler = make(name)
    idx = torch.tensor([0, 1, 2, 3])
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sampler.update(idx, torch.tensor([1.0, float("nan"), float("inf"), -float("inf")]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second batch with NaN must not warn again
        sampler.update(idx, torch.tensor([float("nan"), 2.0, 2.0, 2.0]))
    assert sampler.skipped_nonfinite == 4
    if isinstance(sampler, (HistorySampler, InfoBatchSampler)):
        assert bool(torch.isfinite(sampler.table.values).all())
        assert sampler.table.seen[:4].tolist() == [True, True, True, True]
        assert sampler.table.values[:4].tolist() == [1.0, 2.0, 2.0, 2.0]
    if isinstance(sampler, NWSBase):
        assert bool(torch.isfinite(sampler.sketch.table).all())
        g = sampler.sketch.decay  # 1 finite item, decayed once, then 3 finite items
        assert sampler.sketch.n == pytest.approx(1.0 * g + 3.0)
        assert bool(torch.isfinite(sampler.estimates()).all())


def test_loss_sampler_scores_nonfinite_pool_losses_as_zero_and_counts_them() -> None:
    # A diverging model may return NaN losses from score_fn: those samples keep only the mix floor.
    bad = LOSSES.clone()
    bad[:10] = float("nan")
    sampler = LossSampler(N, 10, score_fn=lambda pool: bad[pool], pool_size=None, mix=0.2)
    with pytest.warns(RuntimeWarning, match="score_fn"):
        idx = next(iter(sampler))
    assert sampler.skipped_nonfinite == 10
    assert bool(torch.isfinite(sampler.weights(idx)).all())


@pytest.mark.parametrize("name", ["history", "nws", "nws_pool", "static"])
def test_zero_or_negative_scores_still_give_a_valid_distribution(name: str) -> None:
    # Negative losses (or all-zero scores) clamp to 0; the mix floor (or uniform fallback) keeps p valid.
    negative = -torch.ones(N)
    sampler = StaticSampler(torch.zeros(N), 10, mix=0.0) if name == "static" else make(name)
    feed(sampler, loss=negative, fraction=1.0)
    if not isinstance(sampler, NWSFullSampler) or sampler.pool_size is None:
        p = sampler.probabilities()
        assert torch.allclose(p, torch.full((N,), 1.0 / N))  # nothing positive: uniform
    for idx, w in run_epoch(sampler, 0, loss=negative):
        assert bool(torch.isfinite(w).all()) and bool((w > 0).all())


def test_mix_probabilities_floor_and_uniform_fallback() -> None:
    # q sums to 1, every entry >= mix / M; all-zero, negative or NaN scores give the uniform distribution.
    q = mix_probabilities(torch.tensor([0.0, 1.0, 3.0, -2.0]), 0.2)
    assert float(q.sum()) == pytest.approx(1.0) and bool((q >= 0.2 / 4 - 1e-7).all())
    for bad in (torch.zeros(4), -torch.ones(4), torch.full((4,), float("nan"))):
        assert torch.allclose(mix_probabilities(bad, 0.0), torch.full((4,), 0.25))


# -- probabilities ----------------------------------------------------------------------------------
# pool proposals -> the pool-free sampler they approximate (name, options)
POOLED = {"loss": ("loss_full", {}), "nws_pool": ("nws", {}), "nws_decay": ("nws", {"decay": 0.9})}


def _chi_square(counts: torch.Tensor, p: torch.Tensor) -> float:
    expected = counts.sum() * p.double()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("name", [n for n in ALL if n not in POOLED])
def test_probabilities_match_the_empirical_draw_frequencies(name: str) -> None:
    # After feedback, with the distribution then fixed (no more feedback), 250 batches of 10 from N = 50 have
    # frequencies that match probabilities(): the chi-square statistic stays below mean + 5 sd of its law
    # (without-replacement epochs are even closer to uniform). It sums to 1 and agrees at given indices.
    sampler = make(name, steps_per_epoch=250)
    feed(sampler)
    sampler.set_epoch(0)
    p = sampler.probabilities()
    assert p.shape == (N,) and float(p.double().sum()) == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(sampler.probabilities(torch.tensor([4, 0, 4])), p[torch.tensor([4, 0, 4])])
    drawn = torch.cat([idx for idx, _ in run_epoch(sampler, 0, learn=False)])
    counts = torch.bincount(drawn, minlength=N).double()
    keep = p > 0  # InfoBatch: pruned samples have p = 0 and are never drawn
    assert float(counts[~keep].sum()) == 0
    df = int(keep.sum()) - 1
    assert _chi_square(counts[keep], p[keep]) < df + 5 * math.sqrt(2 * df)
    if name not in ("uniform",):  # a wrong p (uniform over all N) is rejected by the same test
        assert _chi_square(counts, torch.full((N,), 1.0 / N)) > df + 5 * math.sqrt(2 * df)


@pytest.mark.parametrize("pooled", POOLED)
def test_pool_samplers_report_the_pool_free_distribution(pooled: str) -> None:
    # With a candidate pool no fixed q over N describes one draw: probabilities() is the pool-free q over the
    # same scores, i.e. what the same sampler without a pool reports.
    reference, options = POOLED[pooled]
    a, b = make(pooled), make(reference, **options)
    feed(a)
    feed(b)
    assert torch.allclose(a.probabilities(), b.probabilities())


def test_probabilities_follow_the_cached_distribution_while_it_serves_the_epoch() -> None:
    # nws with refresh_every=3: between refreshes the draws use the cached q; probabilities() reports it (and the
    # weights are 1/(N q)) even after feedback has changed the sketch; once the next draw refreshes it reports
    # the current q.
    sampler = make("nws_refresh", steps_per_epoch=6)
    it = iter(sampler)
    idx = next(it)
    q = sampler.probabilities()
    assert torch.allclose(sampler.weights(idx), 1.0 / (N * q[idx]))
    sampler.update(torch.arange(N), LOSSES)
    assert torch.equal(sampler.probabilities(), q)  # still the cached q (uniform: the sketch was empty)
    next(it), next(it)  # step 3 refreshes next
    assert not torch.allclose(sampler.probabilities(), q)


def test_infobatch_probabilities_are_uniform_over_the_kept_set_of_the_epoch() -> None:
    # Before iterating, probabilities() is the plan the epoch's iteration will draw (same generator seed); during
    # the epoch it is that epoch's kept set.
    sampler = InfoBatchSampler(N, 10, num_epochs=10, prune_ratio=0.9, delta=0.5, steps_per_epoch=8)
    sampler.update(torch.arange(30), torch.cat([torch.full((20,), 0.1), torch.full((10,), 5.0)]))
    before = sampler.probabilities()
    it = iter(sampler)
    next(it)
    during = sampler.probabilities()
    assert torch.equal(before, during)
    kept = during > 0
    assert int(kept.sum()) == sampler.kept < N and torch.allclose(during[kept], torch.full((sampler.kept,), 1.0 / sampler.kept))


def test_loss_probabilities_score_all_samples_in_chunks_without_counting_nonfinite() -> None:
    # LossSampler.probabilities scores all N with score_fn, pool_size at a time, under no_grad; non-finite scores
    # count as 0 but a probe does not add to skipped_nonfinite.
    bad = LOSSES.clone().requires_grad_(True)
    calls = []

    def score_fn(pool: torch.Tensor) -> torch.Tensor:
        calls.append(pool.numel())
        assert not torch.is_grad_enabled()
        out = bad[pool] * 1.0
        return torch.where(pool == 0, float("nan"), out)

    sampler = LossSampler(N, 5, score_fn=score_fn, pool_size=20, mix=0.0)
    p = sampler.probabilities()
    assert calls == [20, 20, 10] and sampler.skipped_nonfinite == 0
    expected = torch.where(torch.arange(N) == 0, 0.0, LOSSES)
    assert torch.allclose(p, expected / expected.sum())


def test_probabilities_reject_bad_indices_and_are_required_of_every_sampler() -> None:
    with pytest.raises(ValueError, match="^indices must lie in"):
        make("history").probabilities(torch.tensor([N]))
    with pytest.raises(TypeError, match="^indices "):
        make("uniform").probabilities(torch.tensor([0.5]))
    for cls in SAMPLERS.values():
        assert cls.probabilities is not FeedbackSampler.probabilities

    class Bare(FeedbackSampler):
        pass

    with pytest.raises(NotImplementedError, match="Bare does not define probabilities"):
        Bare(10, 2).probabilities()


# -- weights record -------------------------------------------------------------------------------
def test_weights_answers_for_recent_batches_and_refuses_others() -> None:
    # A prefetching loader may ask for a batch yielded a few batches ago; a batch never yielded is an error.
    sampler = make("history", steps_per_epoch=40)
    feed(sampler)
    it = iter(sampler)
    batches = [next(it) for _ in range(4)]
    w_first = sampler.weights(batches[0])
    assert w_first.shape == (10,)
    with pytest.raises(ValueError, match="not one of the last"):
        sampler.weights(torch.arange(10) + 1000)
    for _ in range(FeedbackSampler.remembered_batches):
        next(it)
    with pytest.raises(ValueError, match="not one of the last"):
        sampler.weights(batches[0])


def test_sampler_works_as_a_dataloader_batch_sampler() -> None:
    # With DataLoader(batch_sampler=sampler) the loop sees collated copies of the indices: weights() still
    # recognizes them by content.
    class Indexed(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return N

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
            return FEATURES[i], LOSSES[i], int(i)

    sampler = make("nws")
    feed(sampler)
    loader = torch.utils.data.DataLoader(Indexed(), batch_sampler=sampler)
    batches = 0
    for x, loss, idx in loader:
        w = sampler.weights(idx)
        assert x.shape == (10, D) and w.shape == (10,)
        sampler.update(idx, loss)
        batches += 1
    assert batches == len(sampler)


# -- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_state_dict_mid_epoch_resumes_bit_identical_batches_and_weights(name: str) -> None:
    # Run 2 epochs with feedback, checkpoint 4 steps into epoch 2, restore into a fresh sampler: the
    # remaining batches and weights of the epoch, and the next epoch, are bit-identical to the original's.
    original = make(name, steps_per_epoch=9)
    feed(original)
    run_epoch(original, 0)
    original.set_epoch(1)
    it = iter(original)
    for _ in range(4):
        idx = next(it)
        original.update(idx, LOSSES[idx])
    state = saved_and_loaded(original.state_dict())
    expected = []
    for idx in it:
        expected.append((idx.clone(), original.weights(idx)))
        original.update(idx, LOSSES[idx])
    expected += run_epoch(original, 2)

    restored = make(name, steps_per_epoch=9)
    restored.load_state_dict(state)
    restored.set_epoch(1)  # the usual loop calls set_epoch(saved epoch) again: the position is kept
    got = run_epoch(restored, 1) + run_epoch(restored, 2)
    assert len(got) == len(expected) == 5 + 9
    for (i1, w1), (i2, w2) in zip(expected, got):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)


def test_load_state_dict_rejects_a_different_sampler() -> None:
    state = make("uniform").state_dict()
    with pytest.raises(ValueError, match="state_dict is for sampler"):
        make("uniform", batch_size=5).load_state_dict(state)


# -- data parallel --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL)
def test_two_replicas_yield_disjoint_slices_of_the_same_global_batch(name: str) -> None:
    # Every rank draws the global batch of B * 2 with the same stream and keeps rank::2; interleaving the
    # ranks' batches rebuilds the batch a single-replica sampler with batch 2B draws. As the harness does,
    # every rank (and the single sampler) is updated with the all-gathered global batch, so they stay in sync.
    ranks = [make(name, batch_size=5, num_replicas=2, rank=r, steps_per_epoch=4) for r in range(2)]
    single = make(name, batch_size=10, steps_per_epoch=4)
    for epoch in range(2):
        for s in ranks + [single]:
            s.set_epoch(epoch)
        for i0, i1, ig in zip(*ranks, single):
            assert torch.equal(i0, ig[0::2]) and torch.equal(i1, ig[1::2])
            assert torch.equal(ranks[0].weights(i0), single.weights(ig)[0::2])
            assert torch.equal(ranks[1].weights(i1), single.weights(ig)[1::2])
            if name == "uniform":
                assert not set(i0.tolist()) & set(i1.tolist())  # without replacement: no shared sample
            gathered = torch.stack([i0, i1], dim=1).reshape(-1)  # all_gather + interleave
            for s in ranks + [single]:
                s.update(gathered, LOSSES[gathered])


# -- validation -----------------------------------------------------------------------------------
def _sketch() -> NWSketch:
    return NWSketch(SRPHash(dim=D, depth=4, bits=2, seed=0), width=16)


BAD_ARGS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("batch_size zero", lambda: UniformSampler(10, 0), ValueError, "batch_size"),
    ("batch_size > N", lambda: UniformSampler(10, 11), ValueError, "batch_size"),
    ("global batch > N", lambda: UniformSampler(10, 6, num_replicas=2), ValueError, "batch_size"),
    ("num_samples float", lambda: UniformSampler(10.0, 2), TypeError, "num_samples"),
    ("steps_per_epoch zero", lambda: UniformSampler(10, 2, steps_per_epoch=0), ValueError, "steps_per_epoch"),
    ("negative seed", lambda: UniformSampler(10, 2, seed=-1), ValueError, "seed"),
    ("rank out of range", lambda: UniformSampler(10, 2, num_replicas=2, rank=2), ValueError, "rank"),
    ("num_replicas bool", lambda: UniformSampler(10, 2, num_replicas=True), TypeError, "num_replicas"),
    ("device int", lambda: UniformSampler(10, 2, device=0), TypeError, "device"),
    ("device bogus", lambda: UniformSampler(10, 2, device="tpu9"), ValueError, "device"),
    ("negative scores", lambda: StaticSampler(torch.tensor([1.0, -1.0]), 1), ValueError, "scores"),
    ("nan scores", lambda: StaticSampler(torch.tensor([1.0, float("nan")]), 1), ValueError, "scores"),
    ("2-d scores", lambda: StaticSampler(torch.ones(2, 2), 1), ValueError, "scores"),
    ("mix > 1", lambda: StaticSampler(torch.ones(4), 1, mix=1.5), ValueError, "mix"),
    ("num_samples mismatch", lambda: StaticSampler(torch.ones(4), 1, num_samples=5), ValueError, "num_samples"),
    ("score_fn not callable", lambda: LossSampler(10, 2, score_fn=3), TypeError, "score_fn"),
    ("pool_size > N", lambda: LossSampler(10, 2, score_fn=abs, pool_size=11), ValueError, "pool_size"),
    ("pool_size string", lambda: LossSampler(10, 2, score_fn=abs, pool_size="big"), ValueError, "pool_size"),
    ("mix negative", lambda: HistorySampler(10, 2, mix=-0.1), ValueError, "mix"),
    ("num_epochs zero", lambda: InfoBatchSampler(10, 2, num_epochs=0), ValueError, "num_epochs"),
    ("prune_ratio one", lambda: InfoBatchSampler(10, 2, num_epochs=5, prune_ratio=1.0), ValueError, "prune_ratio"),
    ("delta > 1", lambda: InfoBatchSampler(10, 2, num_epochs=5, delta=2), ValueError, "delta"),
    ("sketch wrong type", lambda: NWSSampler("sk", torch.zeros(10, 4, dtype=torch.long), 2), TypeError, "sketch"),
    ("slots float", lambda: NWSSampler(_sketch(), torch.zeros(10, 4), 2), TypeError, "slots"),
    ("slots wrong depth", lambda: NWSSampler(_sketch(), torch.zeros(10, 3, dtype=torch.long), 2), ValueError, "slots"),
    ("refresh_every zero", lambda: NWSSampler(_sketch(), torch.zeros(10, 4, dtype=torch.long), 2, refresh_every=0),
     ValueError, "refresh_every"),
    ("pool_size zero", lambda: NWSFullSampler(_sketch(), torch.zeros(10, 4, dtype=torch.long), 2, pool_size=0),
     ValueError, "pool_size"),
    ("pool_size on the native draw", lambda: NWSSampler(_sketch(), torch.zeros(10, 4, dtype=torch.long), 2, pool_size=5),
     ValueError, "pool_size"),
    ("proposal retired", lambda: NWSSampler(_sketch(), torch.zeros(10, 4, dtype=torch.long), 2, proposal="full"),
     ValueError, "proposal"),
    ("family unknown", lambda: NWSSampler.from_features(FEATURES, 2, family="minhash"), ValueError, "family"),
    ("depth zero", lambda: NWSSampler.from_features(FEATURES, 2, depth=0), ValueError, "depth"),
    ("features int", lambda: NWSSampler.from_features(torch.zeros(5, 2, dtype=torch.long), 2), TypeError, "features"),
    ("unknown sampler", lambda: build_sampler("bogus", num_samples=10, batch_size=2), ValueError, "infobatch"),
]


@pytest.mark.parametrize("case,factory,error,argument", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_constructor_arguments_raise_naming_the_argument(case: str, factory: Callable[[], Any], error: type[Exception], argument: str) -> None:
    with pytest.raises(error, match=argument):
        factory()


def test_bad_update_arguments_raise_naming_the_argument() -> None:
    sampler = make("history")
    with pytest.raises(ValueError, match="indices"):
        sampler.update(torch.tensor([0, N]), torch.ones(2))
    with pytest.raises(ValueError, match="losses"):
        sampler.update(torch.tensor([0, 1]), torch.ones(3))
    with pytest.raises(TypeError, match="indices"):
        sampler.update(torch.tensor([0.0, 1.0]), torch.ones(2))


# -- registry -------------------------------------------------------------------------------------
def test_registry_builds_every_sampler_by_name() -> None:
    assert set(SAMPLERS) == {"uniform", "static", "loss", "history", "infobatch", "nws", "nws_full", "stream_filter",
                             "selective_backprop"}
    common = {"batch_size": 10, "seed": 1}
    built = {
        "uniform": build_sampler("uniform", num_samples=N, **common),
        "static": build_sampler("static", scores=LOSSES, num_samples=N, **common),
        "loss": build_sampler("loss", num_samples=N, score_fn=lambda p: LOSSES[p], **common),
        "history": build_sampler("history", num_samples=N, **common),
        "infobatch": build_sampler("infobatch", num_samples=N, num_epochs=3, **common),
        "nws": build_sampler("nws", features=FEATURES, num_samples=N, depth=4, bits=2, width=16, **common),
        "nws_full": build_sampler("nws_full", features=FEATURES, num_samples=N, depth=4, bits=2, width=16, **common),
    }
    for name, sampler in built.items():
        assert isinstance(sampler, SAMPLERS[name]) and len(sampler) == 5
        assert isinstance(type(sampler).cost, str) and type(sampler).cost != FeedbackSampler.cost


# -- sampler specifics ----------------------------------------------------------------------------
def test_history_sampler_is_uniform_before_feedback_and_fills_unseen_with_observed_mean() -> None:
    sampler = HistorySampler(N, 10, mix=0.0)
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1.0 / N))
    sampler.update(torch.tensor([0, 1]), torch.tensor([1.0, 3.0]))
    filled = sampler.table.filled()
    assert filled[:2].tolist() == [1.0, 3.0] and bool((filled[2:] == 2.0).all())


def test_infobatch_prunes_only_seen_well_learned_samples_and_anneals() -> None:
    # Samples 0..19 are seen with low loss (below the mean), 20..29 with high loss, 30.. unseen. With
    # prune_ratio 1-eps nearly all of the low ones are pruned, never the high or unseen ones; in the
    # annealing epochs (>= delta * num_epochs) every sample is back and weights are 1.
    sampler = InfoBatchSampler(N, 10, num_epochs=10, prune_ratio=0.999, delta=0.5, steps_per_epoch=20)
    sampler.update(torch.arange(30), torch.cat([torch.full((20,), 0.1), torch.full((10,), 5.0)]))
    drawn = torch.cat([i for i, _ in run_epoch(sampler, 0, learn=False)])
    assert set(range(20, N)) <= set(drawn.tolist())  # 200 draws from ~30 kept: every kept one shows up
    assert (drawn < 20).float().mean() < 0.1
    assert sampler.kept < N
    late = run_epoch(sampler, 5, learn=False)
    assert sampler.kept == N and all(bool((w == 1).all()) for _, w in late)


def test_nws_sampler_oversamples_the_high_loss_cluster() -> None:
    # A fifth of the samples (one angular cluster) have 10x the loss. After one pass of feedback the
    # sketch's estimates make that cluster's sampling frequency far exceed its 20% share.
    x, loss = _problem(400, seed=1, noise=0.5)
    cluster = torch.arange(400) % 5 == 0
    for cls, opts in ((NWSFullSampler, {}), (NWSFullSampler, {"pool_size": 100}), (NWSFullSampler, {"refresh_every": 4}),
                      (NWSSampler, {})):
        sampler = cls.from_features(x, 20, depth=16, bits=4, width=64, mix=0.1, seed=2, **opts)
        sampler.update(torch.arange(400), loss)
        drawn = torch.cat([i for i, _ in run_epoch(sampler, 0, loss=loss, learn=False)])
        share = float(cluster[drawn].float().mean())
        assert share > 0.45, f"{opts}: high-loss cluster drawn {share:.2f} of the time"


def test_from_features_centres_keys_by_default_and_accepts_the_old_rows_keyword() -> None:
    # Uncentred features (all far from the origin in one direction) share nearly every SRP sign bit: hashed as
    # given they fill few buckets; centred (the default) they spread over many. rows= still works, with a
    # DeprecationWarning that names depth; a bad keys value is an error naming keys.
    x = FEATURES + 50.0
    plain = NWSSampler.from_features(x, 5, depth=8, bits=4, width=16, keys="none")
    centred = NWSSampler.from_features(x, 5, depth=8, bits=4, width=16)
    assert centred.slots.unique().numel() > 2 * plain.slots.unique().numel()
    with pytest.warns(DeprecationWarning, match="depth"):
        old = NWSSampler.from_features(x, 5, rows=8, bits=4, width=16)
    assert torch.equal(old.slots, centred.slots) and old.sketch.depth == 8
    with pytest.raises(ValueError, match="^keys must be one of"):
        NWSSampler.from_features(x, 5, keys="whiten")


def test_from_features_with_groups_folds_them_into_the_slots() -> None:
    groups = torch.arange(N) % 2
    sampler = NWSSampler.from_features(FEATURES, 5, depth=4, bits=2, width=16, groups=groups)
    expected = sampler.sketch.slots(feature_keys(FEATURES), groups).int()
    assert torch.equal(sampler.slots, expected)
    with pytest.raises(ValueError, match="^groups "):
        NWSSampler.from_features(FEATURES, 5, groups=groups[:-1])


def test_nws_sampler_is_uniform_while_the_sketch_is_empty() -> None:
    sampler = make("nws")
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1.0 / N))
    assert all(torch.allclose(w, torch.ones_like(w)) for _, w in run_epoch(sampler, 0, learn=False))


def test_nws_update_inserts_into_the_sketch_like_direct_update_slots() -> None:
    # update(idx, losses) is sketch.update_slots(slots[idx], losses): same tables either way (from_features
    # hashes the centred features, feature_keys' default).
    sampler = make("nws")
    reference = NWSketch(SRPHash(dim=D, depth=8, bits=3, seed=0), width=64)
    idx = torch.tensor([3, 7, 7, 11])
    sampler.update(idx, LOSSES[idx])
    reference.update(feature_keys(FEATURES)[idx], LOSSES[idx])
    assert sampler.slots.dtype == torch.int32
    assert torch.equal(sampler.sketch.table, reference.table)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nws_sampler_runs_on_cuda() -> None:
    # All tensors live on the GPU; a fixed seed gives a repeatable stream; the round trip is exact.
    for cls, opts in ((NWSSampler, {}), (NWSFullSampler, {"pool_size": 20, "refresh_every": 2})):
        sampler = cls.from_features(FEATURES, 10, depth=8, bits=3, width=64, device="cuda", **opts)
        assert sampler.slots.is_cuda and sampler.sketch.table.is_cuda
        batches = [run_epoch(sampler, e, loss=LOSSES.cuda()) for e in range(3)]
        for idx, w in batches[-1]:
            assert idx.is_cuda and w.is_cuda and idx.shape == (10,) and bool((w > 0).all())
        again = cls.from_features(FEATURES, 10, depth=8, bits=3, width=64, device="cuda", **opts)
        again.load_state_dict(saved_and_loaded(sampler.state_dict()))
        assert torch.equal(again.estimates(), sampler.estimates())
    for name in ("uniform", "history", "infobatch", "loss"):
        s = make(name, device="cuda")
        feed(s)
        assert all(i.is_cuda and w.is_cuda for i, w in run_epoch(s, 0, loss=LOSSES.cuda()))
