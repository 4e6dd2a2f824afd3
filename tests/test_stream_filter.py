"""Tests of StreamFilterSampler, the lineage's one-pass stream filter: warm-up, the keep rule (always-kept
classes, estimates >= tau, the rest thinned to rate q with weight 1/q), unbiasedness over the stream, tau,
fixed-size re-batching, determinism, exact resume, data-parallel slicing and argument checks.

Most tests use an "identity" sketch: every item has its own bucket in each row, so an item's estimate is
exactly the mean of the losses inserted for it, and the filter's decisions are known in advance.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import pytest
import torch

from sketch import NWSketch, SRPHash
from sketch.samplers._stream_filter import StreamFilterSampler
from conftest import saved_and_loaded

N, D, DEPTH = 50, 6, 2
_g = torch.Generator().manual_seed(0)
LOSSES = 0.1 + 4.9 * torch.rand(N, generator=_g)  # distinct
LABELS = torch.zeros(N, dtype=torch.long)
LABELS[LOSSES.argsort()[:10]] = 1  # the positives have the lowest losses: only the class rule keeps them

pytestmark = pytest.mark.usefixtures("one_thread")


def identity_sketch(n: int = N) -> tuple[NWSketch, torch.Tensor]:
    """A sketch of width n and slots [n, DEPTH] that give item i the bucket i in every row."""
    sketch = NWSketch(SRPHash(D, DEPTH, 2, seed=0), width=n)  # positional: robust to the rows/depth rename
    return sketch, torch.arange(DEPTH) * n + torch.arange(n)[:, None]


def make(batch_size: int = 10, prefill: bool = False, **kw: Any) -> StreamFilterSampler:
    """The filter on the toy problem; prefill=True inserts every loss first (use with warmup=0)."""
    sketch, slots = identity_sketch()
    if prefill:
        sketch.update_slots(slots, LOSSES)
    return StreamFilterSampler(sketch, slots, batch_size, labels=LABELS, **kw)


def run_epoch(sampler: StreamFilterSampler, epoch: int, learn: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    sampler.set_epoch(epoch)
    out = []
    for idx in sampler:
        out.append((idx.clone(), sampler.weights(idx)))
        if learn:
            sampler.update(idx, LOSSES[idx])
    return out


def carried(sampler: StreamFilterSampler) -> tuple[torch.Tensor, torch.Tensor]:
    """The kept items (and weights) waiting for the next step, read from the checkpoint."""
    return sampler.state_dict()["extra"]["buffer"]


def inserted_items(sampler: StreamFilterSampler) -> set[int]:
    """Items whose own bucket holds a count (identity sketch): those whose loss was inserted."""
    return set(torch.nonzero(sampler.sketch.table[:N, 1] > 0).squeeze(1).tolist())


# -- warm-up --------------------------------------------------------------------------------------
def test_warmup_keeps_the_first_stream_items_and_inserts_exactly_their_losses() -> None:
    # warmup=25, B=10: batches 1-2 and the first 5 items of batch 3 are the warm-up (weights 1, distinct);
    # feedback for any other item, before or after, is not inserted.
    sampler = make(warmup=25)
    sampler.update(torch.arange(N), LOSSES)  # no warm-up item drawn yet: ignored
    assert sampler.sketch.n == 0
    batches = run_epoch(sampler, 0)
    warm = torch.cat([batches[0][0], batches[1][0], batches[2][0][:5]])
    assert len(set(warm.tolist())) == 25
    assert all(bool((w == 1).all()) for _, w in batches[:2])
    assert inserted_items(sampler) == set(warm.tolist()) and sampler.sketch.n == 25
    assert torch.equal(sampler.estimates()[warm], LOSSES[warm])


def test_warmup_is_capped_at_one_pass_over_the_data() -> None:
    assert make().warmup == N  # default 10,000 > N
    assert make(warmup=7).warmup == 7


def test_sketch_is_frozen_after_the_warmup_by_default() -> None:
    # The lineage: only the warm-up losses are inserted, so the tables and tau stop changing.
    sampler = make(warmup=N)
    run_epoch(sampler, 0)  # 5 batches of 10: exactly the warm-up
    run_epoch(sampler, 1)
    table, tau = sampler.sketch.table.clone(), sampler.tau
    assert sampler.sketch.n == N and tau is not None
    for epoch in (2, 3):
        run_epoch(sampler, epoch)
    assert torch.equal(sampler.sketch.table, table) and sampler.tau == tau


def test_keep_learning_inserts_every_update_and_recomputes_tau_each_epoch() -> None:
    sampler = make(warmup=N, keep_learning=True)
    run_epoch(sampler, 0)
    run_epoch(sampler, 1)
    n, tau = sampler.sketch.n, sampler.tau
    sampler.update(torch.arange(N), 3.0 * LOSSES)  # the losses move: the estimates and tau follow
    run_epoch(sampler, 2, learn=False)
    assert sampler.sketch.n == n + N
    assert sampler.tau is not None and sampler.tau > tau


def test_nonfinite_warmup_losses_are_skipped_and_the_item_stays_due() -> None:
    sampler = make(warmup=10)
    idx = next(iter(sampler))
    bad = LOSSES[idx].clone()
    bad[0] = float("nan")
    with pytest.warns(RuntimeWarning, match="non-finite"):
        sampler.update(idx, bad)
    assert sampler.skipped_nonfinite == 1 and sampler.sketch.n == 9
    sampler.update(idx[:1], LOSSES[idx[:1]])  # its finite loss, arriving later, is still inserted
    assert sampler.sketch.n == 10 and bool(torch.isfinite(sampler.sketch.table).all())


# -- the keep rule ----------------------------------------------------------------------------------
def test_keep_probability_is_one_for_positives_and_estimates_at_or_above_tau_and_q_otherwise() -> None:
    sampler = make(prefill=True, warmup=0, q=0.2)
    next(iter(sampler))
    est, keep = sampler.estimates(), sampler.keep_probabilities()
    sure = (LABELS == 1) | (est >= sampler.tau)
    assert bool((keep[sure] == 1).all()) and torch.allclose(keep[~sure], torch.tensor(0.2))
    assert int((LABELS == 1).sum()) == 10 and bool((est[LABELS == 1] < sampler.tau).all())  # the class rule matters


def test_tau_is_the_lower_quantile_of_the_estimates_of_items_not_always_kept() -> None:
    sampler = make(prefill=True, warmup=0, tau_quantile=0.7)
    next(iter(sampler))
    negatives = torch.sort(sampler.estimates()[LABELS == 0]).values  # 40 values
    assert sampler.tau == float(negatives[math.floor(0.7 * 39)])
    assert int((negatives >= sampler.tau).sum()) == 40 - 27


def test_a_fixed_threshold_replaces_the_quantile_and_quantile_zero_keeps_everything() -> None:
    fixed = make(prefill=True, warmup=0, threshold=2.5)
    next(iter(fixed))
    assert fixed.tau == 2.5
    keep_all = make(prefill=True, warmup=0, tau_quantile=0.0)
    batches = run_epoch(keep_all, 0, learn=False)
    assert keep_all.kept == keep_all.examined and all(bool((w == 1).all()) for _, w in batches)


def test_binary_labels_keep_class_one_by_default_multiclass_none_and_a_list_wins() -> None:
    sketch, slots = identity_sketch()
    build = lambda labels, **kw: StreamFilterSampler(sketch, slots, 10, labels=labels, **kw)  # noqa: E731
    assert build(LABELS).keep_classes == [1]
    assert build(LABELS.float()).keep_classes == [1]  # 0./1. targets count as binary
    multiclass = torch.arange(N) % 3
    assert build(multiclass).keep_classes == []
    chosen = build(multiclass, keep_classes=[2, 0])
    assert chosen.keep_classes == [0, 2] and torch.equal(chosen._always, multiclass != 1)
    assert build(LABELS, keep_classes=[]).keep_classes == []
    assert StreamFilterSampler(sketch, slots, 10).keep_classes == []  # no labels: no class


def test_the_stream_keeps_sure_items_in_every_pass_and_the_rest_at_rate_q_with_weight_one_over_q() -> None:
    # Monte Carlo over ~70 passes of the stream: each item is examined once per pass (P or P+1 times), so a
    # sure item is kept P-1..P+1 times (one may wait in the carry-over), a thinned one Binomial(~P, q) times.
    q = 0.2
    sampler = make(prefill=True, warmup=0, q=q, steps_per_epoch=200)
    batches = run_epoch(sampler, 0, learn=False)
    wait_idx, wait_w = carried(sampler)
    idx = torch.cat([b for b, _ in batches] + [wait_idx])
    w = torch.cat([w for _, w in batches] + [wait_w])
    sure = sampler.keep_probabilities() == 1
    assert bool((w[sure[idx]] == 1).all()) and torch.allclose(w[~sure[idx]], torch.tensor(1 / q))
    counts = torch.bincount(idx, minlength=N)
    passes = sampler.examined // N
    assert passes > 60
    assert int(counts[sure].min()) >= passes - 1 and int(counts[sure].max()) <= passes + 1
    thinned = int((~sure).sum())
    low, high = thinned * passes, thinned * (passes + 1)  # trials of the thinned items
    se = math.sqrt(high * q * (1 - q))
    assert low * q - 4.5 * se <= int(counts[~sure].sum()) <= high * q + 4.5 * se


def test_weighted_loss_over_kept_items_is_unbiased_for_the_stream_mean() -> None:
    # E[keep * w] = 1 per examined item, so sum(w * loss) / examined estimates the mean loss. Per-epoch
    # ratios (independent streams) give the standard error; the same sum with weights 1 is far off.
    sampler = make(prefill=True, warmup=0, q=0.2, steps_per_epoch=40)
    ratios, unweighted = [], []
    for epoch in range(40):
        before = sampler.examined
        batches = run_epoch(sampler, epoch, learn=False)
        wait_idx, wait_w = carried(sampler)
        idx = torch.cat([b for b, _ in batches] + [wait_idx])
        w = torch.cat([w for _, w in batches] + [wait_w])
        ratios.append(float((w * LOSSES[idx]).sum()) / (sampler.examined - before))
        unweighted.append(float(LOSSES[idx].sum()) / (sampler.examined - before))
    est = torch.tensor(ratios, dtype=torch.float64)
    se = float(est.std()) / math.sqrt(est.numel())
    mean = float(LOSSES.mean())
    assert abs(float(est.mean()) - mean) <= 4.5 * se + 0.01 * mean
    assert abs(sum(unweighted) / len(unweighted) - mean) > 10 * se


def test_probabilities_are_uniform_in_the_warmup_then_proportional_to_the_keep_probability() -> None:
    sampler = make(warmup=N, q=0.25)
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1 / N))
    run_epoch(sampler, 0)
    keep = sampler.keep_probabilities()
    p = sampler.probabilities()
    assert bool((keep < 1).any()) and float(p.sum()) == pytest.approx(1.0)
    assert torch.allclose(p, keep / keep.sum())
    at = torch.tensor([3, 0, 3])
    assert torch.equal(sampler.probabilities(at), p[at])


# -- fixed length, determinism, resume, data parallel -----------------------------------------------
@pytest.mark.parametrize("batch_size,steps,warmup", [(10, None, 25), (7, 9, 13), (3, 20, 0)])
def test_every_batch_has_the_batch_size_and_an_epoch_has_steps_per_epoch_batches(batch_size: int, steps: int | None, warmup: int) -> None:
    # Across the end of the warm-up too (warmup=0: the sketch is filled beforehand).
    sampler = make(batch_size=batch_size, steps_per_epoch=steps, warmup=warmup, q=0.1, prefill=warmup == 0)
    for epoch in range(3):
        batches = run_epoch(sampler, epoch)
        assert len(batches) == len(sampler) == (steps or math.ceil(N / batch_size))
        for idx, w in batches:
            assert idx.shape == w.shape == (batch_size,) and idx.dtype == torch.long
            assert 0 <= int(idx.min()) and int(idx.max()) < N and bool((w >= 1).all())
    assert sampler.examined > sampler.kept >= 3 * len(sampler) * batch_size  # thinning walked past N per epoch


def test_same_seed_and_feedback_repeat_the_stream_and_another_seed_does_not() -> None:
    def stream(seed: int) -> list[torch.Tensor]:
        sampler = make(warmup=20, seed=seed)
        return [torch.cat([i, w]) for e in range(3) for i, w in run_epoch(sampler, e)]

    a, b, c = stream(3), stream(3), stream(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_no_global_rng_is_touched() -> None:
    before = torch.get_rng_state()
    run_epoch(make(warmup=20), 0)
    assert torch.equal(before, torch.get_rng_state())




@pytest.mark.parametrize("stop", [1, 4], ids=["mid-warm-up", "mid-filter"])
def test_state_dict_resumes_bit_identical_batches_weights_and_sketch(stop: int) -> None:
    # warmup=25 with B=10 ends during step 3; a checkpoint after `stop` steps of epoch 0 (with items carried
    # over after step 4) restores the rest of the epoch and the next one exactly, sketch and counters too.
    original = make(warmup=25, q=0.3, steps_per_epoch=9)
    original.set_epoch(0)
    it = iter(original)
    for _ in range(stop):
        idx = next(it)
        original.update(idx, LOSSES[idx])
    if stop == 4:
        assert carried(original)[0].numel() > 0  # the carry-over is part of what must be restored
    state = saved_and_loaded(original.state_dict())
    expected = []
    for idx in it:
        expected.append((idx.clone(), original.weights(idx)))
        original.update(idx, LOSSES[idx])
    expected += run_epoch(original, 1)

    restored = make(warmup=25, q=0.3, steps_per_epoch=9)
    restored.load_state_dict(state)
    got = run_epoch(restored, 0) + run_epoch(restored, 1)
    assert len(got) == len(expected) == 9 - stop + 9
    for (i1, w1), (i2, w2) in zip(expected, got):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)
    assert torch.equal(restored.sketch.table, original.sketch.table)
    assert (restored.examined, restored.kept, restored.tau) == (original.examined, original.kept, original.tau)


def test_two_replicas_yield_disjoint_slices_of_the_same_global_batch() -> None:
    ranks = [make(batch_size=5, warmup=15, num_replicas=2, rank=r, steps_per_epoch=4) for r in range(2)]
    single = make(batch_size=10, warmup=15, steps_per_epoch=4)
    for epoch in range(2):
        for s in ranks + [single]:
            s.set_epoch(epoch)
        for i0, i1, ig in zip(*ranks, single):
            assert torch.equal(i0, ig[0::2]) and torch.equal(i1, ig[1::2])
            assert torch.equal(ranks[1].weights(i1), single.weights(ig)[1::2])
            gathered = torch.stack([i0, i1], dim=1).reshape(-1)
            for s in ranks + [single]:
                s.update(gathered, LOSSES[gathered])
    assert torch.equal(ranks[0].sketch.table, single.sketch.table)


def test_update_never_mutates_its_arguments() -> None:
    sampler = make(warmup=N)
    idx = next(iter(sampler)).to(torch.int32)
    losses = LOSSES[idx.long()].clone().requires_grad_(True)
    before = losses.detach().clone()
    sampler.update(idx, losses)
    assert idx.dtype == torch.int32 and torch.equal(losses.detach(), before) and losses.requires_grad


# -- validation -----------------------------------------------------------------------------------
def _build(**kw: Any) -> StreamFilterSampler:
    sketch, slots = identity_sketch()
    args = {"sketch": sketch, "slots": slots, "batch_size": 10, "labels": LABELS, **kw}
    return StreamFilterSampler(**args)


BAD_ARGS: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    ("q zero", lambda: _build(q=0.0), ValueError, "q"),
    ("q above one", lambda: _build(q=1.5), ValueError, "q"),
    ("tau_quantile above one", lambda: _build(tau_quantile=1.5), ValueError, "tau_quantile"),
    ("threshold nan", lambda: _build(threshold=float("nan")), ValueError, "threshold"),
    ("threshold string", lambda: _build(threshold="high"), TypeError, "threshold"),
    ("warmup negative", lambda: _build(warmup=-1), ValueError, "warmup"),
    ("keep_learning string", lambda: _build(keep_learning="yes"), TypeError, "keep_learning"),
    ("keep_classes string", lambda: _build(keep_classes="1"), TypeError, "keep_classes"),
    ("keep_classes float", lambda: _build(keep_classes=[1.5]), TypeError, "keep_classes"),
    ("keep_classes without labels", lambda: _build(labels=None, keep_classes=[1]), ValueError, "keep_classes"),
    ("labels too short", lambda: _build(labels=LABELS[:-1]), ValueError, "labels"),
    ("labels 2-d", lambda: _build(labels=LABELS[:, None]), ValueError, "labels"),
    ("sketch wrong type", lambda: _build(sketch="sketch"), TypeError, "sketch"),
    ("slots float", lambda: _build(slots=torch.zeros(N, DEPTH)), TypeError, "slots"),
    ("slots wrong depth", lambda: _build(slots=torch.zeros(N, DEPTH + 1, dtype=torch.long)), ValueError, "slots"),
    ("slots out of range", lambda: _build(slots=torch.full((N, DEPTH), DEPTH * N)), ValueError, "slots"),
    ("num_samples mismatch", lambda: _build(num_samples=N + 1), ValueError, "num_samples"),
    ("batch_size > N", lambda: _build(batch_size=N + 1), ValueError, "batch_size"),
]


@pytest.mark.parametrize("case,factory,error,argument", BAD_ARGS, ids=[c[0] for c in BAD_ARGS])
def test_bad_arguments_raise_naming_the_argument(case: str, factory: Callable[[], Any], error: type[Exception], argument: str) -> None:
    with pytest.raises(error, match=f"^{argument}"):
        factory()


def test_check_options_validates_a_config_without_building() -> None:
    ok = StreamFilterSampler.check_options(q=1, keep_classes=(3, 1, 3), threshold=None, warmup=0)
    assert ok == {"q": 1.0, "keep_classes": [1, 3], "threshold": None, "warmup": 0}
    with pytest.raises(ValueError, match="^tau_quantile"):
        StreamFilterSampler.check_options(tau_quantile=-0.1)
    with pytest.raises(ValueError, match="^indices"):
        make().probabilities(torch.tensor([N]))
