"""Tests of the sketch-native draw, `NWSSampler` (sketch.samplers._native).

The property under test: a draw picks item i with exactly
    p(i) = mix/N + (1 - mix)/L sum_r mu_{r, b_r(i)} / Z_r        (a row with Z_r = 0 contributes 1/N)
where mu_rb = S_rb / C_rb is bucket b's estimate in row r (clamped at >= 0; the sketch's fallback where the
bucket is empty) and Z_r = sum_b n_rb mu_rb over the n_rb training items in bucket b. So: `probabilities()`
equals that formula computed independently from the sketch's table; many draws have those frequencies (a
chi-square test that rejects a wrong p); the weights 1/(N p) make the weighted loss unbiased; the stream is a
function of the seed, epoch and feedback and survives a checkpoint bit for bit. Tiny problems (N <= 400).
"""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from sketch import NWSketch, SRPHash, feature_keys
from sketch.samplers import NWSFullSampler, NWSSampler
from sketch.samplers._native import block_size
from conftest import saved_and_loaded

N, D = 120, 5

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


def _problem(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features in three clusters, labels = cluster, and skewed non-negative losses (cluster 2 is hard)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.eye(D)[labels] * 3.0 + torch.randn(n, D, generator=g)
    loss = torch.tensor([0.2, 1.0, 4.0])[labels] * torch.rand(n, generator=g) ** 2
    return x, labels, loss


X, LABELS, LOSSES = _problem()


def make(n: int = N, batch_size: int = 8, **kw: Any) -> NWSSampler:
    x, _, _ = (X, LABELS, LOSSES) if n == N else _problem(n)
    opts = {"depth": 6, "bits": 3, "width": 8, "mix": 0.1, "refresh_every": 1, **kw}
    cls = NWSFullSampler if opts.pop("full", False) else NWSSampler
    return cls.from_features(x, batch_size, **opts)


def feed(sampler: NWSSampler, loss: torch.Tensor = LOSSES, fraction: float = 0.7) -> None:
    """Feedback for the first `fraction` of the items, in batches (some buckets stay empty)."""
    idx = torch.arange(int(fraction * loss.numel()))
    for chunk in idx.split(16):
        sampler.update(chunk, loss[chunk])


def reference_probabilities(sampler: NWSSampler) -> torch.Tensor:
    """p(i) from the formula, in float64, straight from the sketch's table and the slots (no sampler code)."""
    sk, slots = sampler.sketch, sampler.slots.long()
    sums, counts = sk.table[:, 0].double(), sk.table[:, 1].double()
    fallback = max(0.0, float(sk.fallback_estimate()))
    mu = torch.where(counts > 0, (sums / counts).clamp_min(0.0), torch.full_like(sums, fallback))
    n = torch.bincount(slots.reshape(-1), minlength=sk.depth * sk.width).double()
    z = (n * mu).view(sk.depth, sk.width).sum(1)
    terms = torch.where(z > 0, mu[slots] / torch.where(z > 0, z, 1.0), 1.0 / slots.shape[0])
    return sampler.mix / slots.shape[0] + (1 - sampler.mix) / sk.depth * terms.sum(1)


def draw_counts(sampler: NWSSampler, steps: int, epoch: int = 0) -> torch.Tensor:
    """How often each item was drawn in `steps` batches (no feedback: the distribution stays fixed)."""
    sampler.steps_per_epoch = steps
    sampler.set_epoch(epoch)
    return torch.bincount(torch.cat(list(sampler)), minlength=sampler.num_samples).double()


def chi_square(counts: torch.Tensor, p: torch.Tensor) -> float:
    expected = counts.sum() * p.double()
    return float(((counts - expected) ** 2 / expected).sum())


def chi_square_bound(categories: int) -> float:
    """Mean + 5 standard deviations of a chi-square with categories - 1 degrees of freedom."""
    df = categories - 1
    return df + 5.0 * math.sqrt(2.0 * df)




# -- the formula ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("opts", [
    {},
    {"decay": 0.5},  # the lazy decay factor gets folded into the table (a rescale the state must follow)
    {"family": "pstable", "bits": 2, "width": 37, "bandwidth": 2.0},  # hashed layout, width not a block multiple
    {"width": 64, "bits": 5, "mix": 0.0},
], ids=["srp", "decay", "pstable", "no-mix"])
def test_probabilities_equal_the_formula_computed_from_the_table(opts):
    # After feedback (some buckets empty, so the running-mean fallback matters) probabilities() equals the
    # formula evaluated independently in float64, to float32 rounding, and sums to 1.
    sampler = make(**opts)
    feed(sampler)
    p = sampler.probabilities()
    assert p.shape == (N,) and bool((p >= 0).all())
    assert torch.allclose(p.double(), reference_probabilities(sampler), rtol=2e-6, atol=0)
    assert float(p.double().sum()) == pytest.approx(1.0, abs=1e-5)
    at = torch.tensor([5, 0, 5, N - 1])
    assert torch.equal(sampler.probabilities(at), p[at])


def test_many_draws_have_the_stated_frequencies_and_a_wrong_p_is_rejected():
    # 40,000 draws over N = 120: the chi-square statistic against probabilities() stays below mean + 5 sd.
    # The same test rejects the uniform distribution and the "full" proposal's distribution (the ratio of
    # summed sketch values, a plausible but different p): the check has the power to catch a wrong formula.
    sampler = make(batch_size=N)
    feed(sampler)
    p = sampler.probabilities()
    counts = draw_counts(sampler, steps=333)
    bound = chi_square_bound(N)
    assert chi_square(counts, p) < bound
    assert chi_square(counts, torch.full((N,), 1.0 / N)) > 3 * bound
    full = NWSFullSampler(sampler.sketch, sampler.slots, N, mix=0.1).probabilities()
    assert chi_square(counts, full) > 2 * bound


def test_weights_are_one_over_n_p_of_the_drawn_items():
    sampler = make()
    feed(sampler)
    p = sampler.probabilities()
    for idx in sampler:
        assert torch.equal(sampler.weights(idx), 1.0 / (N * p[idx]))  # the same bits as probabilities()


def test_weighted_loss_is_unbiased_for_the_full_mean():
    # Monte Carlo over 300 epochs of 6 batches (fixed sketch): the mean of (w * loss).mean() is the mean loss
    # over all N within 4.5 standard errors, while the weights vary (sampling is far from uniform).
    sampler = make(steps_per_epoch=6)
    feed(sampler)
    estimates, weights = [], []
    for epoch in range(300):
        sampler.set_epoch(epoch)
        for idx in sampler:
            w = sampler.weights(idx)
            estimates.append(float((w * LOSSES[idx]).mean()))
            weights.append(w)
    est = torch.tensor(estimates, dtype=torch.float64)
    se = float(est.std()) / math.sqrt(est.numel())
    assert abs(float(est.mean()) - float(LOSSES.mean())) <= 4.5 * se
    assert float(torch.cat(weights).std()) > 0.2


# -- degenerate cases ------------------------------------------------------------------------------------------


def test_empty_sketch_samples_uniformly_with_unit_weights():
    sampler = make()
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1.0 / N))
    for idx in sampler:
        assert torch.allclose(sampler.weights(idx), torch.ones(idx.numel()))


@pytest.mark.parametrize("value", [0.0, -2.0])
def test_all_zero_or_negative_losses_sample_uniformly(value):
    # mu is clamped at 0, so every Z_r is 0: every row draws uniformly and p = 1/N exactly.
    sampler = make(mix=0.0)
    feed(sampler, loss=torch.full((N,), value), fraction=1.0)
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1.0 / N))
    counts = draw_counts(sampler, steps=20)
    assert chi_square(counts, torch.full((N,), 1.0 / N)) < chi_square_bound(N)


def test_a_row_whose_buckets_all_estimate_zero_draws_uniformly():
    # Zero the value sums of row 0 by hand (a change outside the sampler, seen through sketch.version): Z_0 = 0,
    # so row 0 contributes 1/N to every item while the other rows follow their estimates; draws match that.
    sampler = make(batch_size=N, mix=0.0)
    feed(sampler, fraction=1.0)
    sk = sampler.sketch
    sk.table[: sk.width, 0] = 0.0
    sk.version += 1
    z = sampler._native.distribution(sk, sampler.mix).z
    assert float(z[0]) == 0.0 and bool((z[1:] > 0).all())
    p = sampler.probabilities()
    assert torch.allclose(p.double(), reference_probabilities(sampler), rtol=2e-6)
    counts = draw_counts(sampler, steps=300)
    assert chi_square(counts, p) < chi_square_bound(N)


def test_a_numeric_fallback_is_the_estimate_of_empty_buckets():
    sk = NWSketch(SRPHash(dim=D, depth=6, bits=3, seed=0), width=8, fallback=2.5)
    sampler = NWSSampler(sk, sk.slots(feature_keys(X)).int(), 8, refresh_every=1)
    feed(sampler, fraction=0.3)
    assert torch.allclose(sampler.probabilities().double(), reference_probabilities(sampler), rtol=2e-6)


@pytest.mark.parametrize("decay", [1.0, 0.5])
def test_incremental_bucket_state_equals_a_full_recompute_bit_for_bit(decay):
    # After the sampler's own updates only the touched buckets are recomputed (the state then records the
    # sketch's version without a full pass); that state must equal one computed from scratch from the same
    # table, bit for bit: it is what makes a restored checkpoint draw exactly as the original.
    sampler = make(decay=decay, width=37, family="pstable", bits=2)
    fresh = make(decay=decay, width=37, family="pstable", bits=2)._native
    for step, chunk in enumerate(torch.arange(N).split(16)):
        sampler.update(chunk, LOSSES[chunk] - 0.1)  # some negative: clamped to 0
        if step == 0:
            sampler.probabilities()  # a first full sync; later updates are deferred, then absorbed at a sync
            continue
        assert len(sampler._native._pending) == 1  # deferred: the state is untouched until a sync
        sampler._native.sync(sampler.sketch)  # absorbs the deferred batch only (the version says so)
        assert sampler._native._version == sampler.sketch.version and not sampler._native._pending
    fresh.sync(sampler.sketch)
    assert torch.equal(sampler._native._state, fresh._state)


def test_the_batches_fed_back_during_a_cached_distribution_are_absorbed_together_at_the_refresh():
    # refresh_every=3: the feedback of the batches drawn from one distribution waits (the state stays as drawn,
    # so p stays exact) and the next refresh absorbs all of it at once, equal bit for bit to a full recompute.
    sampler = make(refresh_every=3, width=37, family="pstable", bits=2, steps_per_epoch=6)
    fresh = make(width=37, family="pstable", bits=2)._native
    feed(sampler, fraction=0.3)
    batches = iter(sampler)
    for _ in range(3):
        idx = next(batches)
        state = sampler._native._state.clone()
        sampler.update(idx, LOSSES[idx] + 0.5)
        assert torch.equal(sampler._native._state, state)  # untouched while the cached distribution serves
    assert len(sampler._native._pending) == 3
    next(batches)  # the refresh
    assert not sampler._native._pending and sampler._native._version == sampler.sketch.version
    fresh.sync(sampler.sketch)
    assert torch.equal(sampler._native._state, fresh._state)


def test_update_with_the_drawn_batch_modified_in_place_inserts_at_the_new_indices():
    # The update reuses the drawn batch's slots only for that very tensor, unmodified: after idx.add_(1) the
    # losses go to the buckets of the new indices, as sketch.update_slots(slots[idx]) would put them.
    sampler = make()
    reference = make()
    idx = next(iter(sampler))
    idx.add_(1).remainder_(N)
    sampler.update(idx, LOSSES[idx])
    reference.sketch.update_slots(reference.slots[idx], LOSSES[idx])
    assert torch.equal(sampler.sketch.table, reference.sketch.table)


def test_changes_to_the_sketch_outside_the_sampler_are_picked_up():
    # reset() and merge() change the table without the sampler's update: the next distribution follows them.
    sampler = make()
    feed(sampler)
    sampler.sketch.reset()
    assert torch.allclose(sampler.probabilities(), torch.full((N,), 1.0 / N))
    other = make()
    feed(other)
    sampler.sketch.merge(other.sketch)
    assert torch.allclose(sampler.probabilities(), other.probabilities())


# -- groups ------------------------------------------------------------------------------------------------------


def test_label_groups_keep_a_zero_loss_class_at_the_uniform_floor():
    # With groups = labels, class 0's buckets hold only class 0 items. Give class 0 loss 0 and the others a
    # positive loss: every class 0 item has p = mix/N exactly (no bucket of it has mass) and never comes out
    # of the sketch part of the draw; without groups it shares buckets with the others and gets more.
    loss = torch.where(LABELS == 0, 0.0, 1.0 + LABELS.float())
    grouped = make(groups=LABELS, width=32)
    plain = make(width=32)
    for sampler in (grouped, plain):
        feed(sampler, loss=loss, fraction=1.0)
    p, q = grouped.probabilities(), plain.probabilities()
    assert torch.allclose(p[LABELS == 0], torch.full(((LABELS == 0).sum(),), 0.1 / N))
    assert float(q[LABELS == 0].min()) > 0.1 / N * 1.5
    assert float(p.double().sum()) == pytest.approx(1.0, abs=1e-5)


# -- determinism, resume, refresh ---------------------------------------------------------------------------------


def _stream(seed: int, **kw: Any) -> list[torch.Tensor]:
    sampler = make(seed=seed, steps_per_epoch=5, **kw)
    feed(sampler)
    out = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for idx in sampler:
            out.append(torch.cat([idx.double(), sampler.weights(idx).double()]))
            sampler.update(idx, LOSSES[idx])
    return out


@pytest.mark.parametrize("refresh_every", [1, 3])
def test_same_seed_gives_the_same_stream_and_another_seed_another(refresh_every):
    a, b, c = (_stream(s, refresh_every=refresh_every) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("opts", [{}, {"refresh_every": 3}, {"decay": 0.5}, {"refresh_every": 4, "decay": 0.7}],
                         ids=["k1", "k3", "decay", "k4-decay"])
def test_checkpoint_mid_epoch_resumes_bit_identical_batches_and_weights(opts):
    # Checkpoint 4 steps into epoch 1 (mid refresh window for k > 1, after lazy-decay rescales for decay 0.5),
    # restore into a fresh sampler: the rest of the epoch and the next epoch are bit-identical.
    original = make(steps_per_epoch=9, **opts)
    feed(original)
    original.set_epoch(1)
    it = iter(original)
    for _ in range(4):
        idx = next(it)
        original.update(idx, LOSSES[idx])
    state = saved_and_loaded(original.state_dict())
    expected = []
    for epoch_iter, epoch in ((it, 1), (None, 2)):
        if epoch_iter is None:
            original.set_epoch(epoch)
            epoch_iter = iter(original)
        for idx in epoch_iter:
            expected.append((idx.clone(), original.weights(idx)))
            original.update(idx, LOSSES[idx])
    restored = make(steps_per_epoch=9, **opts)
    restored.load_state_dict(state)
    got = []
    for epoch in (1, 2):
        restored.set_epoch(epoch)
        for idx in restored:
            got.append((idx.clone(), restored.weights(idx)))
            restored.update(idx, LOSSES[idx])
    assert len(got) == len(expected) == 5 + 9
    for (i1, w1), (i2, w2) in zip(expected, got):
        assert torch.equal(i1, i2) and torch.equal(w1, w2)


def test_refresh_every_k_keeps_p_exact_for_what_was_drawn():
    # With refresh_every=3 the distribution is rebuilt at steps 0, 3, 6 only, while the sketch learns from every
    # update: probabilities() between refreshes is the cached distribution (the one the weights come from), so
    # it changes exactly at the refresh steps.
    sampler = make(refresh_every=3, steps_per_epoch=9)
    sampler.set_epoch(0)
    seen = []
    for step, idx in enumerate(sampler):
        p = sampler.probabilities() if step % 3 != 2 else None  # at step 2 the next draw refreshes
        if p is not None:
            assert torch.allclose(sampler.weights(idx), 1.0 / (N * p[idx]), rtol=1e-6)
        seen.append(p)
        sampler.update(idx, LOSSES[idx] + 1.0)
        after = sampler.probabilities()
        if step % 3 != 2:
            assert torch.equal(after, p)  # feedback does not move the cached distribution
    assert not torch.equal(seen[0], seen[3])  # refreshed at step 3


# -- data parallel ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("refresh_every", [1, 2])
def test_reduce_feedback_keeps_ranks_in_step_with_a_single_process(refresh_every):
    # Two ranks each feed back their half of the global batch through update(reduce=...), where reduce sums the
    # two ranks' table-form updates (what an all_reduce does); a single process is fed the whole global batch.
    # Losses are multiples of 1/8 so every sum is exact: all three draw the same global batches and weights.
    ranks = [make(batch_size=4, num_replicas=2, rank=r, steps_per_epoch=6, refresh_every=refresh_every) for r in (0, 1)]
    single = make(batch_size=8, steps_per_epoch=6, refresh_every=refresh_every)
    loss = torch.round(LOSSES * 8) / 8
    for epoch in range(2):
        for s in ranks + [single]:
            s.set_epoch(epoch)
        for i0, i1, ig in zip(*ranks, single):
            assert torch.equal(i0, ig[0::2]) and torch.equal(i1, ig[1::2])
            assert torch.equal(ranks[1].weights(i1), single.weights(ig)[1::2])
            deltas = [s.sketch.delta(s.slots.index_select(0, i), loss[i]) for s, i in zip(ranks, (i0, i1))]
            for s, i in zip(ranks, (i0, i1)):
                s.update(i, loss[i], reduce=lambda _: deltas[0] + deltas[1])
            single.update(ig, loss[ig])
    assert torch.equal(ranks[0].sketch.table, single.sketch.table)
    assert torch.equal(ranks[0].probabilities(), single.probabilities())


# -- construction, validation, memory --------------------------------------------------------------------------


def test_block_size_is_a_power_of_two_in_range():
    for depth, width, draws in ((1, 1, 512), (16, 1024, 512), (32, 4096, 512), (64, 2**20, 64), (4, 37, 8)):
        s = block_size(depth, width, draws)
        assert s & (s - 1) == 0 and 1 <= s <= 64 and s <= 2 ** math.ceil(math.log2(width))


def test_bucket_index_lists_every_item_of_every_bucket_once():
    # The per-row order, starts and sizes partition [0, N) by bucket in every row.
    sampler = make(width=13, bits=4, family="pstable")
    proposal = sampler._native
    slots = sampler.slots.long()
    order = proposal._order.view(proposal.depth, N).long()
    for r in range(proposal.depth):
        assert sorted(order[r].tolist()) == list(range(N))
        for b in range(proposal.width):
            padded = r * proposal.padded_width + b
            start, size = int(proposal._starts[padded]), int(proposal._sizes[padded])
            members = proposal._order[start : start + size].long()
            assert sorted(members.tolist()) == torch.nonzero(slots[:, r] == r * proposal.width + b).view(-1).tolist()


def test_memory_bytes_counts_one_int32_permutation_per_row():
    sampler = make()
    plain = make(full=True)
    extra = sampler.memory_bytes() - plain.memory_bytes()
    assert extra >= 4 * N * sampler.sketch.depth  # the per-row item order
    assert extra < 4 * N * sampler.sketch.depth + 64 * sampler.sketch.depth * sampler._native.padded_width


BAD = [
    ("proposal retired", {"proposal": "full"}, ValueError, "proposal"),
    ("pool_size with sketch", {"pool_size": 30}, ValueError, "pool_size"),
    ("refresh_every zero", {"refresh_every": 0}, ValueError, "refresh_every"),
    ("mix > 1", {"mix": 1.5}, ValueError, "mix"),
]


@pytest.mark.parametrize("case,opts,error,name", BAD, ids=[b[0] for b in BAD])
def test_bad_options_raise_one_line_errors_naming_the_option(case, opts, error, name):
    with pytest.raises(error, match=rf"^{name} ") as info:
        make(**opts)
    assert "\n" not in str(info.value)


def test_check_options_validates_without_building_and_the_two_classes_have_their_own_options():
    assert NWSSampler.check_options(refresh_every=4) == {"refresh_every": 4}
    with pytest.raises(ValueError, match="^refresh_every "):
        NWSSampler.check_options(refresh_every=0)
    assert set(NWSSampler.option_checks) == {"mix", "refresh_every"}
    assert set(NWSFullSampler.option_checks) == {"mix", "pool_size", "refresh_every"}


def test_probabilities_at_bad_indices_raise_naming_indices():
    sampler = make()
    with pytest.raises(ValueError, match="^indices must lie in"):
        sampler.probabilities(torch.tensor([0, N]))
    with pytest.raises(TypeError, match="^indices "):
        sampler.probabilities(torch.tensor([0.0]))


def test_probabilities_neither_draw_nor_change_the_stream():
    # Asking for p between batches changes nothing: the stream is the same as without asking.
    a, b = make(steps_per_epoch=6), make(steps_per_epoch=6)
    for s in (a, b):
        feed(s)
    for ia, ib in zip(a, b):
        a.probabilities()
        a.probabilities(ia)
        assert torch.equal(ia, ib)
        a.update(ia, LOSSES[ia])
        b.update(ib, LOSSES[ib])


def test_global_rng_is_untouched():
    before = torch.get_rng_state()
    sampler = make()
    feed(sampler)
    list(sampler)
    sampler.probabilities()
    assert torch.equal(before, torch.get_rng_state())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_native_draw_runs_on_cuda_and_matches_the_formula():
    for opts in ({}, {"refresh_every": 3, "decay": 0.8}):
        sampler = make(device="cuda", steps_per_epoch=20, **opts)
        loss = LOSSES.cuda()
        sampler.update(torch.arange(60, device="cuda"), loss[:60])
        assert torch.allclose(sampler.probabilities().double().cpu(), reference_probabilities(sampler).cpu(), rtol=2e-6)
        for idx in sampler:
            w = sampler.weights(idx)
            assert idx.is_cuda and w.is_cuda and bool((w > 0).all())
            sampler.update(idx, loss[idx])
        again = make(device="cuda", steps_per_epoch=20, **opts)
        again.load_state_dict(saved_and_loaded(sampler.state_dict()))
        assert torch.equal(again.probabilities(), sampler.probabilities())


def test_moved_items_are_fed_back_at_their_new_slots_and_drawn_from_them_from_the_next_epoch():
    # move(): the sketch keeps what it learned; the moved items' feedback goes to the new slots at once; p stays
    # exact for the index in force (the old one until the epoch ends, then the rebuilt one), and a checkpoint
    # taken with moves pending resumes bit for bit.
    sampler = make(refresh_every=2, steps_per_epoch=4)
    feed(sampler)
    other = make(seed=5)  # another hash: the "model features" of the items
    batches = iter(sampler)
    idx = next(batches)
    new = other.slots.index_select(0, idx)
    old_index = sampler._native.slots.clone()
    table = sampler.sketch.table.clone()
    sampler.move(idx, new)
    sampler.update(idx, LOSSES[idx])
    expected = table.clone()
    flat = new.reshape(-1).long()
    values = LOSSES[idx].repeat_interleave(new.shape[1])
    expected[:, 0].index_add_(0, flat, values)
    expected[:, 1].index_add_(0, flat, torch.ones_like(values))
    assert torch.equal(sampler.sketch.table, expected)  # inserted under the new slots
    assert torch.equal(sampler._native.slots, old_index) and torch.equal(sampler.slots[idx], new.to(sampler.slots.dtype))
    saved = sampler.state_dict()
    rest = [b.clone() for b in batches]
    restored = make(refresh_every=2, steps_per_epoch=4)
    restored.load_state_dict(saved_and_loaded(saved))
    assert all(torch.equal(a, b) for a, b in zip(rest, iter(restored)))  # the pending index travels with the state
    sampler.set_epoch(1)
    sampler.probabilities()
    next(iter(sampler))
    assert torch.equal(sampler._native.slots, sampler.slots)  # rebuilt at the epoch start
    assert torch.allclose(sampler.probabilities().double(), reference_probabilities(sampler), rtol=2e-6)
    counts = draw_counts(sampler, steps=300, epoch=2)
    assert chi_square(counts, sampler.probabilities()) < chi_square_bound(N)
