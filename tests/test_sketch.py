"""Tests of the Nadaraya-Watson sketch (sketch._sketch.NWSketch), its sizing helpers and the fidelity script.

One test per property, each narrated in the DataSketches manner: merge equals update on the union; a
state_dict round trip gives equal estimates; the estimate converges to the exact Nadaraya-Watson estimator
with the family's collision kernel as rows grow (the paper's theorem); decay weighs a value inserted t
updates ago by decay**t; bad input fails at once with a one-line error naming the argument.
"""
from __future__ import annotations

import importlib.util
import io
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sketch import (NWSketch, PStableHash, SRPHash, feature_keys, nadaraya_watson, suggest_bits, suggest_depth,
                    suggest_width)
from conftest import saved_and_loaded

DIM = 6
ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


def _data(n: int, seed: int = 0, dim: int = DIM) -> tuple[torch.Tensor, torch.Tensor]:
    """n points and a smooth value of them plus a little noise (a stand-in for per-sample losses)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = torch.sin(2 * x[:, 0]) + x[:, 1] ** 2 + 0.1 * torch.randn(n, generator=g)
    return x, y


def _srp_sketch(rows: int = 16, bits: int = 3, width: int = 8, seed: int = 0, **kw) -> NWSketch:
    # 2**bits <= width: codes map to buckets one to one (the "direct" layout, no aliasing).
    return NWSketch(SRPHash(dim=DIM, depth=rows, bits=bits, seed=seed), width=width, **kw)


def _pstable_sketch(rows: int = 16, bits: int = 2, width: int = 64, seed: int = 0, **kw) -> NWSketch:
    # Unbounded codes: a universal hash maps them to `width` buckets (the "hashed" layout).
    return NWSketch(PStableHash(dim=DIM, depth=rows, bits=bits, bandwidth=2.0, seed=seed), width=width, **kw)


SKETCHES = {"srp": _srp_sketch, "pstable": _pstable_sketch}


# -- linearity: merge ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", SKETCHES)
def test_merge_equals_update_on_the_union(family):
    # Split the data between two sketches with the same hash and width, merge one into the other: the tables,
    # the count n and every estimate equal those of one sketch fed everything (the sketch is linear).
    x, y = _data(300)
    left, right, whole = (SKETCHES[family](dtype=torch.float64) for _ in range(3))
    left.update(x[:120], y[:120])
    right.update(x[120:], y[120:])
    whole.update(x, y)
    merged = left.merge(right)
    assert merged is left
    assert torch.allclose(merged.table, whole.table)
    assert merged.n == pytest.approx(300)
    q, _ = _data(50, seed=1)
    assert torch.allclose(merged.estimate(q), whole.estimate(q))
    assert torch.allclose(merged.estimate(x), whole.estimate(x))


@pytest.mark.parametrize("family", SKETCHES)
def test_merge_with_decay_equals_update_of_the_combined_batches(family):
    # Data parallelism with forgetting: two workers each update their own sketch with their half of every
    # global batch; merging them equals one sketch updated with the whole global batch at every step
    # (both halves of step t are decayed t times in both cases).
    x, y = _data(400)
    a, b, whole = (SKETCHES[family](decay=0.7, dtype=torch.float64) for _ in range(3))
    for step in range(5):
        batch = slice(80 * step, 80 * (step + 1))
        xs, ys = x[batch], y[batch]
        a.update(xs[:40], ys[:40])
        b.update(xs[40:], ys[40:])
        whole.update(xs, ys)
    a.merge(b)
    assert a.n == pytest.approx(whole.n)
    q, _ = _data(50, seed=1)
    assert torch.allclose(a.estimate(q), whole.estimate(q))


def test_merge_refuses_another_hash_or_width():
    # Only sketches with the same hash functions and width are summable; anything else is refused.
    sk = _srp_sketch()
    with pytest.raises(ValueError, match="^other must use the same hash and width"):
        sk.merge(_srp_sketch(seed=1))
    with pytest.raises(ValueError, match="^other must use the same hash and width"):
        sk.merge(_srp_sketch(width=16))
    with pytest.raises(TypeError, match="^other must be an NWSketch"):
        sk.merge(sk.table)


# -- persistence ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", SKETCHES)
@pytest.mark.parametrize("decay", [1.0, 0.8])
def test_state_dict_round_trip_gives_equal_estimates(family, decay):
    # Save a sketch (through torch.save, as a checkpoint would), load it into a fresh sketch with the same
    # hash and width, or rebuild it with NWSketch.from_state_dict: estimates and n are equal, and the
    # rebuilt sketches keep updating exactly like the original (the lazy decay factor is folded in).
    x, y = _data(200)
    src = SKETCHES[family](decay=decay, fallback=0.5)
    for chunk in range(4):
        src.update(x[50 * chunk : 50 * (chunk + 1)], y[50 * chunk : 50 * (chunk + 1)])
    buf = io.BytesIO()
    torch.save(src.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf)

    loaded = SKETCHES[family]()  # decay and fallback come from the state
    loaded.load_state_dict(state)
    rebuilt = NWSketch.from_state_dict(state)
    q, qy = _data(60, seed=1)
    for sk in (loaded, rebuilt):
        assert sk.decay == decay and sk.fallback == 0.5 and sk.width == src.width
        assert sk.n == pytest.approx(src.n, rel=1e-6)
        assert torch.allclose(sk.estimate(q), src.estimate(q), rtol=1e-5, atol=1e-6)
    for sk in (src, loaded, rebuilt):
        sk.update(q, qy)
    assert torch.allclose(loaded.estimate(x), src.estimate(x), rtol=1e-5, atol=1e-6)
    assert torch.allclose(rebuilt.estimate(x), src.estimate(x), rtol=1e-5, atol=1e-6)


def test_load_state_dict_into_another_width_or_hash_fails_clearly():
    # A state saved from one configuration does not load into another: the error names what differs.
    state = _srp_sketch(width=8).state_dict()
    with pytest.raises(ValueError, match="width=8.*width=16"):
        _srp_sketch(width=16).load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict is for hash"):
        _srp_sketch(seed=3).load_state_dict(state)
    with pytest.raises(ValueError, match="state_dict is for hash"):
        _pstable_sketch(width=8).load_state_dict(state)


def test_state_dict_is_on_cpu_and_a_copy():
    # The saved table is a CPU copy: mutating it leaves the sketch alone.
    sk = _srp_sketch()
    sk.update(*_data(20))
    state = sk.state_dict()
    assert state["table"].device.type == "cpu"
    state["table"].zero_()
    assert sk.n == pytest.approx(20)


def test_state_dict_saved_with_the_old_rows_name_still_loads():
    # Checkpoints written before `depth` replaced `rows` say "rows" in the hash config: load_state_dict and
    # from_state_dict normalize it, and the estimates are those of the saved sketch.
    src = _pstable_sketch()
    src.update(*_data(100))
    state = src.state_dict()
    state["hash"]["config"] = {("rows" if k == "depth" else k): v for k, v in state["hash"]["config"].items()}
    state = saved_and_loaded(state)
    q = _data(20, seed=1)[0]
    loaded = _pstable_sketch()
    loaded.load_state_dict(state)
    for sk in (loaded, NWSketch.from_state_dict(state)):
        assert sk.depth == src.depth and torch.equal(sk.estimate(q), src.estimate(q))




def test_version_counts_every_change_of_the_stored_table():
    # Caches derived from the table (the native sampler's bucket state) compare `version`: every update, delta
    # application, merge, reset, load, and a lazy-decay rescale bumps it; estimating does not.
    sk = _srp_sketch(bits=2, width=4, decay=0.5)
    x, y = _data(8)
    versions = [sk.version]
    sk.update(x, y)
    sk.estimate(x)
    versions.append(sk.version)
    sk.apply_delta(sk.delta(sk.slots(x), y))
    versions.append(sk.version)
    sk.merge(_srp_sketch(bits=2, width=4))
    versions.append(sk.version)
    sk.load_state_dict(sk.state_dict())
    versions.append(sk.version)
    sk.reset()
    versions.append(sk.version)
    assert all(b > a for a, b in zip(versions, versions[1:]))
    before, rescaled = sk.version, False
    for _ in range(400):  # decay 0.5: the lazy factor is folded into the table within a few hundred updates
        scale = sk._scale
        sk.update(x, y)
        rescaled |= sk._scale > scale
    assert rescaled and sk.version > before + 400


def test_fallback_estimate_is_the_mean_of_inserted_values_or_the_given_number():
    sk = _srp_sketch()
    assert float(sk.fallback_estimate()) == 0.0
    sk.update(_opposite_points()[0], torch.tensor([1.0, 2.0, 6.0]))
    assert float(sk.fallback_estimate()) == pytest.approx(3.0)
    assert float(_srp_sketch(fallback=-1.5).fallback_estimate()) == -1.5


# -- groups: label-conditioned buckets ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", SKETCHES)
def test_groups_none_or_all_zero_give_the_ungrouped_slots_bit_for_bit(family):
    sk = SKETCHES[family]()
    x = _data(60)[0]
    plain = sk.slots(x)
    assert torch.equal(sk.slots(x, None), plain)
    assert torch.equal(sk.slots(x, torch.zeros(60, dtype=torch.long)), plain)


@pytest.mark.parametrize("family, width", [("srp", 80), ("pstable", 1 << 20)])
def test_equal_features_in_different_groups_never_share_a_bucket(family, width):
    # Ten copies of the same points, one per group: within a group they share every bucket (same code), across
    # groups none. SRP with 2**bits * groups <= width gives each group its own block (exact); p-stable folds the
    # group into the code before the universal hash, so with 2**20 buckets a shared bucket is vanishingly rare.
    sk = SKETCHES[family](width=width)
    x = _data(7)[0].repeat(10, 1)
    groups = torch.arange(10).repeat_interleave(7)
    slots = sk.slots(x, groups).view(10, 7, sk.depth)
    for g in range(10):
        for h in range(g + 1, 10):
            assert not bool((slots[g] == slots[h]).any()), (g, h)
    assert torch.equal(sk.slots(x[:7], groups[:7] + 3), slots[3])  # a slot does not depend on the batch


def test_groups_beyond_the_direct_blocks_are_hashed_consistently():
    # SRP 3 bits, width 16: groups 0 and 1 get direct blocks; group 5 is mixed by the universal hash, lands in
    # [0, 16) of each row, and the same item always gets the same slots whatever batch it comes in.
    sk = _srp_sketch(bits=3, width=16)
    x = _data(40)[0]
    g = torch.full((40,), 5)
    slots = sk.slots(x, g)
    rows = torch.arange(sk.depth)
    assert bool((slots >= rows * 16).all() and (slots < (rows + 1) * 16).all())
    assert torch.equal(sk.slots(x[10:20], g[10:20]), slots[10:20])
    assert torch.equal(sk.slots(x, torch.ones(40, dtype=torch.long)), sk.hash.codes(x) + 8 + rows * 16)


def test_grouped_sketch_estimates_each_group_from_its_own_values():
    # Group 0 values 1.0, group 1 values 5.0, same inputs: each group's estimate is its own value exactly.
    sk = _srp_sketch(bits=3, width=16)
    x = _data(30)[0]
    for g, v in ((0, 1.0), (1, 5.0)):
        sk.update(x, torch.full((30,), v), groups=torch.full((30,), g))
    assert torch.allclose(sk.estimate(x, groups=torch.zeros(30, dtype=torch.long)), torch.ones(30))
    assert torch.allclose(sk.estimate(x, groups=torch.ones(30, dtype=torch.long)), torch.full((30,), 5.0))


@pytest.mark.parametrize("groups, error", [
    (torch.tensor([0, -1, 0, 0, 0]), ValueError),
    (torch.full((5,), 2**31 - 1), ValueError),
    (torch.zeros(4, dtype=torch.long), ValueError),
    (torch.zeros(5), TypeError),
    (torch.zeros(5, 1, dtype=torch.long), ValueError),
    (torch.zeros(5, dtype=torch.long, device="meta"), ValueError),
], ids=["negative", "too large", "wrong length", "float", "2-D", "wrong device"])
def test_bad_groups_raise_naming_groups(groups, error):
    with pytest.raises(error, match="^groups ") as info:
        _srp_sketch().slots(_X, groups)
    assert "\n" not in str(info.value)


# -- the paper's theorem: convergence to the exact NW estimator ------------------------------------------------


@pytest.mark.parametrize("family", SKETCHES)
def test_estimate_converges_to_exact_nadaraya_watson_as_rows_grow(family):
    # Each row's count at q is an unbiased estimate of the kernel mass sum_i k(x_i, q) with k the family's
    # collision probability (plus ~1/W aliasing in the hashed layout, accounted for in the reference);
    # likewise for the value sum. The ratio of row sums therefore tends to the exact NW estimator with that
    # kernel: the mean error falls steadily with the rows (like 1/sqrt(L)) and is far smaller at L=1024 than at 4.
    x, y = _data(400)
    q, _ = _data(100, seed=1)
    if family == "srp":
        make = lambda rows: NWSketch(SRPHash(DIM, rows, bits=4, seed=2), width=16, dtype=torch.float64)
    else:
        make = lambda rows: NWSketch(PStableHash(DIM, rows, bits=2, bandwidth=3.0, seed=2), width=4096,
                                     dtype=torch.float64)
    width, k = make(1).width, make(1).hash.collision_probability
    # A code other than q's lands in q's bucket w.p. ~1/W: the sketch's kernel is k + (1 - k)/W (exactly k when direct).
    kernel = k if family == "srp" else (lambda a, b: k(a, b) + (1 - k(a, b)) / width)
    exact = nadaraya_watson(q, x, y, kernel=kernel)
    errors = []
    for rows in (4, 16, 64, 256, 1024):
        sk = make(rows)
        sk.update(x, y)
        errors.append(float((sk.estimate(q) - exact).abs().mean()))
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[-1] < errors[0] / 8, errors
    assert errors[-1] < 0.05 * float(y.std())


# -- the slot API ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", SKETCHES)
def test_update_and_estimate_equal_their_slot_versions(family):
    # update(x, y) is update_slots(slots(x), y) and estimate(x) is estimate_slots(slots(x)); slots cached as
    # int32 (to halve memory) work the same.
    x, y = _data(200)
    a, b, c = (SKETCHES[family]() for _ in range(3))
    a.update(x, y)
    slots = b.slots(x)
    assert slots.dtype == torch.int64 and slots.shape == (200, b.depth)
    b.update_slots(slots, y)
    c.update_slots(slots.to(torch.int32), y)
    assert torch.equal(a.table, b.table) and torch.equal(a.table, c.table)
    q, _ = _data(30, seed=1)
    assert torch.equal(a.estimate(q), b.estimate_slots(b.slots(q)))
    assert torch.equal(a.estimate(q), b.estimate_slots(b.slots(q).to(torch.int32)))


@pytest.mark.parametrize("family", SKETCHES)
def test_slots_are_flat_bucket_indices_row_by_row(family):
    # A slot is bucket + row * width: row r's slot lies in [r*W, (r+1)*W).
    sk = SKETCHES[family]()
    slots = sk.slots(_data(100)[0])
    rows = torch.arange(sk.depth)
    assert bool((slots >= rows * sk.width).all() and (slots < (rows + 1) * sk.width).all())


def test_direct_layout_slots_are_the_codes_plus_row_offsets():
    # When a row has at most `width` codes (SRP, 2**bits <= width), the bucket is the code itself.
    sk = _srp_sketch(bits=3, width=8)
    x = _data(50)[0]
    assert torch.equal(sk.slots(x), sk.hash.codes(x) + torch.arange(sk.depth) * 8)


def test_estimate_is_ratio_of_row_sums():
    # The estimate is sum_r S[r, b_r(q)] / sum_r C[r, b_r(q)] (a ratio of sums, not a mean of per-row ratios).
    sk = _pstable_sketch(width=8)
    x, y = _data(100)
    sk.update(x, y)
    q = _data(10, seed=1)[0]
    cells = sk.table[sk.slots(q)]  # [m, L, 2]
    expected = cells[..., 0].sum(1) / cells[..., 1].sum(1)
    assert torch.allclose(sk.estimate(q), expected, rtol=1e-5)


# -- empty buckets ----------------------------------------------------------------------------------------------


def _opposite_points() -> tuple[torch.Tensor, torch.Tensor]:
    # Positive multiples of one direction share every SRP code; the opposite direction flips every sign bit, so
    # its buckets are empty in every row when only the former were inserted.
    u = torch.tensor([[1.0, -2.0, 0.5, 3.0, -1.0, 0.25]])
    return u * torch.tensor([[1.0], [2.0], [0.5]]), -u


def test_empty_buckets_fall_back_to_the_mean_of_inserted_values():
    x, q = _opposite_points()
    sk = _srp_sketch()
    sk.update(x, torch.tensor([1.0, 2.0, 6.0]))
    assert float(sk.estimate(x[:1])) == pytest.approx(3.0)  # all three share every bucket
    assert float(sk.estimate(q)) == pytest.approx(3.0)  # empty everywhere: the mean of 1, 2, 6


def test_empty_buckets_fall_back_to_a_given_number():
    x, q = _opposite_points()
    sk = _srp_sketch(fallback=-7.5)
    sk.update(x, torch.tensor([1.0, 2.0, 6.0]))
    assert float(sk.estimate(q)) == -7.5
    assert float(sk.estimate(x[:1])) == pytest.approx(3.0)


def test_empty_sketch_estimates_zero_with_mean_fallback():
    sk = _pstable_sketch()
    q = _data(5)[0]
    assert torch.equal(sk.estimate(q), torch.zeros(5))
    assert torch.equal(_pstable_sketch(fallback=2).estimate(q), torch.full((5,), 2.0))


# -- non-finite values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("decay", [1.0, 0.9])
def test_non_finite_values_are_rejected_and_tables_untouched(bad, decay):
    # A NaN/inf anywhere in y raises ValueError naming y before anything is written: the tables, n and the
    # lazy decay factor are unchanged (a rejected batch does not count as an update).
    x, y = _data(40)
    sk = _pstable_sketch(decay=decay)
    sk.update(x[:20], y[:20])
    table, scale, n = sk.table.clone(), sk._scale, sk.n
    y_bad = y[20:].clone()
    y_bad[7] = bad
    with pytest.raises(ValueError, match=r"^y holds 1 non-finite"):
        sk.update(x[20:], y_bad)
    with pytest.raises(ValueError, match=r"^y holds 1 non-finite"):
        sk.update_slots(sk.slots(x[20:]), y_bad)
    assert torch.equal(sk.table, table) and sk._scale == scale and sk.n == n


# -- decay ------------------------------------------------------------------------------------------------------


def test_decay_weighs_a_value_inserted_t_updates_ago_by_decay_to_the_t():
    # Updates: (x0, 1.0), then (-x0, 7.0), then (x0, 5.0). -x0 shares no SRP bucket with x0. The first value is
    # two updates old (weight g^2), the second one (g), the last fresh (1), so by hand:
    #   estimate(x0) = (g^2 * 1 + 5) / (g^2 + 1),   estimate(-x0) = 7,   n = g^2 + g + 1.
    g = 0.6
    x0 = _opposite_points()[0][:1]
    sk = _srp_sketch(decay=g, dtype=torch.float64)
    sk.update(x0, torch.tensor([1.0]))
    sk.update(-x0, torch.tensor([7.0]))
    sk.update(x0, torch.tensor([5.0]))
    assert float(sk.estimate(x0)) == pytest.approx((g**2 * 1 + 5) / (g**2 + 1))
    assert float(sk.estimate(-x0)) == pytest.approx(7.0)
    assert sk.n == pytest.approx(g**2 + g + 1)
    # The true table (stored cells times the lazy factor) holds the decayed counts: x0's bucket in row 0 has g^2 + 1.
    slot = int(sk.slots(x0)[0, 0])
    state = sk.state_dict()
    assert float(state["table"][slot, 1]) * state.get("scale", 1.0) == pytest.approx(g**2 + 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_lazy_rescale_survives_many_updates_with_small_decay(dtype):
    # With g = 0.5 the running factor g**t would underflow to 0 after ~1075 updates and 1/factor overflows the
    # table's dtype long before: the sketch folds the factor into the table in time, so after 1200 updates
    # everything is finite, n is the geometric sum 1/(1-g) of the per-update counts, and a constant value is
    # estimated exactly.
    g, batch = 0.5, 8
    sk = _srp_sketch(bits=2, width=4, decay=g, dtype=dtype)
    x = _data(batch)[0]
    for _ in range(1200):
        sk.update(x, torch.full((batch,), 3.0))
    assert bool(torch.isfinite(sk.table).all()) and 0.0 < sk._scale <= 1.0
    assert sk.n == pytest.approx(batch / (1 - g), rel=1e-2)
    assert torch.allclose(sk.estimate(x).float(), torch.full((batch,), 3.0), rtol=1e-2)


def test_lazy_rescale_does_not_overflow_with_large_values():
    # float32 tables, decay 0.5, one sign bit per row (two buckets), 512 items per update, values 1e6 (a
    # regression loss on unscaled targets): the stored cells are value / factor, so the factor must be folded
    # in while 1/factor is still far from float32's max (3.4e38), not only once it is below 1e-30.
    sk = NWSketch(SRPHash(dim=DIM, depth=4, bits=1, seed=0), width=2, decay=0.5)
    x = _data(512)[0]
    for _ in range(300):
        sk.update(x, torch.full((512,), 1e6))
    assert bool(torch.isfinite(sk.table).all())
    assert torch.allclose(sk.estimate(x), torch.full((512,), 1e6), rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_tables_count_correctly_or_are_refused(dtype):
    # A half-precision table must not silently give wrong estimates: either the constructor refuses the dtype
    # (an error naming it), or the sketch counts correctly. bfloat16 holds integers exactly only up to 256 and
    # float16 up to 2048, so a bucket that receives one item per update stops counting there: 3000 single-item
    # updates, 1500 with value 0.3 then 1500 with value 3.0, must give n = 3000 and estimate 1.65; and with
    # decay 0.5 the lazy factor must not overflow the dtype (float16's max is 65504).
    x = _opposite_points()[0][:1]
    try:
        sk = _srp_sketch(dtype=dtype)
    except (TypeError, ValueError) as err:
        assert str(err).startswith("dtype ")
        return
    for i in range(3000):
        sk.update(x, torch.tensor([0.3 if i < 1500 else 3.0]))
    assert sk.n == pytest.approx(3000, rel=0.01)
    assert float(sk.estimate(x)) == pytest.approx(1.65, rel=0.02)
    decayed = _srp_sketch(decay=0.5, dtype=dtype)
    for _ in range(2000):
        decayed.update(x, torch.tensor([3.0]))
    assert bool(torch.isfinite(decayed.table).all())
    assert float(decayed.estimate(x)) == pytest.approx(3.0, rel=0.01)


def test_decay_one_keeps_everything():
    # The default decay 1.0 never rescales: after 50 updates n counts every item and the factor stays 1.
    sk = _pstable_sketch()
    x, y = _data(500)
    for chunk in range(50):
        sk.update(x[10 * chunk : 10 * (chunk + 1)], y[10 * chunk : 10 * (chunk + 1)])
    assert sk._scale == 1.0 and sk.n == 500
    whole = _pstable_sketch()
    whole.update(x, y)
    assert torch.allclose(sk.table, whole.table, atol=1e-5)


# -- argument checks -------------------------------------------------------------------------------------------

_X, _Y = _data(5)
_META = torch.device("meta")

BAD_CALLS = [
    # (description, call on a fresh sketch (rows 16, dim 6, width 8), exception, the message starts with)
    ("hash not a family", lambda sk: NWSketch("srp", width=8), TypeError, "hash"),
    ("width 0", lambda sk: NWSketch(sk.hash, width=0), ValueError, "width"),
    ("width float", lambda sk: NWSketch(sk.hash, width=8.0), TypeError, "width"),
    ("decay 0", lambda sk: NWSketch(sk.hash, width=8, decay=0.0), ValueError, "decay"),
    ("decay > 1", lambda sk: NWSketch(sk.hash, width=8, decay=1.5), ValueError, "decay"),
    ("decay nan", lambda sk: NWSketch(sk.hash, width=8, decay=float("nan")), ValueError, "decay"),
    ("fallback name", lambda sk: NWSketch(sk.hash, width=8, fallback="median"), ValueError, "fallback"),
    ("fallback bool", lambda sk: NWSketch(sk.hash, width=8, fallback=True), ValueError, "fallback"),
    ("dtype int", lambda sk: NWSketch(sk.hash, width=8, dtype=torch.int32), TypeError, "dtype"),
    ("x wrong dim", lambda sk: sk.update(torch.randn(5, DIM + 1), _Y), ValueError, "x"),
    ("x 1-D", lambda sk: sk.update(_X[0], _Y[:1]), ValueError, "x"),
    ("x integer", lambda sk: sk.update(_X.long(), _Y), TypeError, "x"),
    ("x wrong device", lambda sk: sk.update(_X.to(_META), _Y), ValueError, "x"),
    ("x not a tensor", lambda sk: sk.update(_X.tolist(), _Y), TypeError, "x"),
    ("y 2-D", lambda sk: sk.update(_X, _Y[:, None]), ValueError, "y"),
    ("y wrong length", lambda sk: sk.update(_X, _Y[:4]), ValueError, "y"),
    ("y wrong device", lambda sk: sk.update(_X, _Y.to(_META)), ValueError, "y"),
    ("y not a tensor", lambda sk: sk.update(_X, _Y.tolist()), TypeError, "y"),
    ("slots float", lambda sk: sk.update_slots(sk.slots(_X).float(), _Y), TypeError, "slots"),
    ("slots wrong depth", lambda sk: sk.update_slots(sk.slots(_X)[:, :3], _Y), ValueError, "slots"),
    ("slots 1-D", lambda sk: sk.update_slots(sk.slots(_X)[0], _Y[:1]), ValueError, "slots"),
    ("slots wrong device", lambda sk: sk.update_slots(sk.slots(_X).to(_META), _Y), ValueError, "slots"),
    ("estimate x wrong dim", lambda sk: sk.estimate(torch.randn(5, 2)), ValueError, "x"),
    ("estimate x integer", lambda sk: sk.estimate(_X.int()), TypeError, "x"),
    ("estimate slots float", lambda sk: sk.estimate_slots(sk.slots(_X).double()), TypeError, "slots"),
    ("estimate slots wrong depth", lambda sk: sk.estimate_slots(sk.slots(_X)[:, 1:]), ValueError, "slots"),
    ("estimate slots wrong device", lambda sk: sk.estimate_slots(sk.slots(_X).to(_META)), ValueError, "slots"),
]


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_bad_arguments_give_one_line_errors_naming_the_argument(case):
    _, call, exc, name = case
    sk = _srp_sketch()
    before = sk.table.clone()
    with pytest.raises(exc, match=rf"^{name} ") as info:
        call(sk)
    assert "\n" not in str(info.value)
    assert torch.equal(sk.table, before)


# -- bookkeeping -------------------------------------------------------------------------------------------------


def test_n_counts_inserted_items():
    sk = _pstable_sketch()
    assert sk.n == 0
    x, y = _data(70)
    sk.update(x[:30], y[:30])
    sk.update(x[30:], y[30:])
    assert sk.n == 70
    sk.update(x[:0], y[:0])  # an empty batch inserts nothing
    assert sk.n == 70
    sk.reset()
    assert sk.n == 0 and torch.equal(sk.estimate(x[:3]), torch.zeros(3))


def test_repr_names_width_and_depth():
    r = repr(NWSketch(SRPHash(dim=DIM, depth=12, bits=2, seed=0), width=32, decay=0.9))
    assert r.startswith("NWSketch(SRPHash(") and "depth=12" in r and "width=32" in r and "decay=0.9" in r


@pytest.mark.parametrize("dtype, size", [(torch.float32, 4), (torch.float64, 8)], ids=str)
def test_memory_bytes_is_two_cells_per_bucket(dtype, size):
    # Sums and counts side by side: L * W * 2 cells.
    sk = NWSketch(SRPHash(dim=DIM, depth=16, bits=3, seed=0), width=1024, dtype=dtype)
    assert sk.depth == 16 and sk.table.shape == (16 * 1024, 2)
    assert sk.memory_bytes() == 16 * 1024 * 2 * size


# -- sizing helpers --------------------------------------------------------------------------------------------


def test_suggest_depth_and_width_are_monotone():
    # Tighter error or higher confidence needs more rows; tighter error or a smaller kernel needs more buckets.
    eps = [0.5, 0.2, 0.1, 0.05, 0.01]
    depths = [suggest_depth(e, 0.95) for e in eps]
    assert depths == sorted(depths) and depths[0] < depths[-1]
    by_conf = [suggest_depth(0.1, c) for c in (0.5, 0.9, 0.99, 0.999)]
    assert by_conf == sorted(by_conf) and by_conf[0] < by_conf[-1]
    widths = [suggest_width(e, 1 / 16) for e in eps]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    by_kernel = [suggest_width(0.1, k) for k in (0.5, 0.1, 0.01, 0.001)]
    assert by_kernel == sorted(by_kernel) and by_kernel[0] < by_kernel[-1]
    # The closed forms.
    assert suggest_depth(0.1, 0.95) == math.ceil(math.log(2 / 0.05) / (2 * 0.01))
    assert suggest_width(0.1, 0.25) == math.ceil(0.75 / (0.1 * 0.25))


def test_suggest_bits_aims_at_items_per_bucket():
    # ceil(log2(N / items_per_bucket)): 12 bits for MNIST's 60,000 at 16 per bucket; more data, more bits; at
    # least 1, at most 62; 2**bits codes then hold at most items_per_bucket items each on average.
    assert suggest_bits(60_000) == 12
    assert suggest_bits(10**6) == 16 and suggest_bits(10**7) == 20
    assert suggest_bits(10) == 1 and suggest_bits(2**70, 1) == 62
    for n in (1000, 54_321, 10**6):
        bits = suggest_bits(n, items_per_bucket=8)
        assert n / 2**bits <= 8 < n / 2 ** (bits - 1)


def test_suggest_width_from_the_data_size_grows_with_n():
    # With num_samples the mean kernel is items_per_bucket / N: the width grows linearly with N and equals the
    # kernel form with that mean kernel.
    widths = [suggest_width(0.1, num_samples=n) for n in (10**4, 10**5, 10**6)]
    assert widths[0] < widths[1] < widths[2] and widths[2] == pytest.approx(10 * widths[1], rel=0.01)
    assert suggest_width(0.1, num_samples=10**5, items_per_bucket=16) == suggest_width(0.1, 16 / 10**5)
    assert suggest_width(0.1, num_samples=8) == 1  # fewer items than a bucket holds: one bucket, no aliasing


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: suggest_bits(0), "num_samples"),
        (lambda: suggest_bits(1.5), "num_samples"),
        (lambda: suggest_bits(100, items_per_bucket=0), "items_per_bucket"),
        (lambda: suggest_width(0.1), "mean_kernel"),
        (lambda: suggest_width(0.1, 0.5, num_samples=100), "mean_kernel"),
        (lambda: suggest_width(0.1, num_samples=-3), "num_samples"),
        (lambda: suggest_depth(0.0), "relative_error"),
        (lambda: suggest_depth(1.0), "relative_error"),
        (lambda: suggest_depth(float("nan")), "relative_error"),
        (lambda: suggest_depth(0.1, 1.0), "confidence"),
        (lambda: suggest_depth(0.1, 0.0), "confidence"),
        (lambda: suggest_depth(0.1, -0.5), "confidence"),
        (lambda: suggest_width(-0.1, 0.5), "relative_error"),
        (lambda: suggest_width(0.1, 0.0), "mean_kernel"),
        (lambda: suggest_width(0.1, 1.5), "mean_kernel"),
        (lambda: suggest_width(0.1, "0.5"), "mean_kernel"),
    ],
)
def test_sizing_helpers_validate_their_arguments(call, name):
    with pytest.raises((ValueError, TypeError), match=rf"^{name} "):
        call()


@pytest.mark.parametrize("family", ["srp", "pstable"])
def test_sketch_sized_by_suggest_depth_meets_the_kernel_error_bound(family):
    # suggest_depth(eps, c) rows make each kernel value the sketch uses within eps w.p. >= c (Hoeffding). With
    # one item x inserted, the count at q's buckets divided by L is the sketch's estimate of k(x, q): the row
    # average of collision indicators. Over many pairs (x, q) at spread-out distances, at least a fraction c
    # of them must be within eps of the closed-form kernel (the bound is conservative: most are far closer).
    eps, confidence = 0.1, 0.9
    rows = suggest_depth(eps, confidence)
    if family == "srp":
        hash_ = SRPHash(dim=DIM, depth=rows, bits=2, seed=0)
        width = 4  # direct: no aliasing
    else:
        hash_ = PStableHash(dim=DIM, depth=rows, bits=1, bandwidth=2.0, seed=0)
        width = 1 << 12  # aliasing ~2e-4, negligible against eps
    sk = NWSketch(hash_, width=width, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(300, DIM, generator=g)
    q = x + torch.randn(300, DIM, generator=g) * torch.rand(300, 1, generator=g) * 3  # near to far
    k = hash_.collision_probability(x, q).diagonal()
    k_hat = (sk.slots(x) == sk.slots(q)).double().mean(1)
    # That row average is exactly the count the sketch reads at q after inserting x alone:
    sk.update(x[:1], torch.zeros(1))
    assert float(F.embedding_bag(sk.slots(q[:1]), sk.table, mode="sum")[0, 1]) / rows == pytest.approx(float(k_hat[0]))
    assert float(k.min()) < 0.2 and float(k.max()) > 0.8  # the pairs span the kernel's range
    assert float(((k_hat - k).abs() <= eps).double().mean()) >= confidence


# -- hash keys from raw features ------------------------------------------------------------------------------


def test_feature_keys_centre_or_standardize_by_the_reference_columns():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 4, generator=g) * torch.tensor([1.0, 10.0, 0.1, 0.0]) + torch.tensor([5.0, -3.0, 100.0, 7.0])
    centred = feature_keys(x)
    assert torch.allclose(centred.mean(0), torch.zeros(4), atol=1e-4) and torch.allclose(centred, x - x.mean(0))
    scaled = feature_keys(x, "standardize")
    assert torch.allclose(scaled.std(0, correction=0)[:3], torch.ones(3), atol=1e-4)
    assert torch.equal(scaled[:, 3], torch.zeros(500))  # a constant column stays 0, not NaN
    plain = feature_keys(x, "none")
    assert torch.equal(plain, x) and plain.data_ptr() != x.data_ptr()
    queries = x[:10] + 1.0
    assert torch.allclose(feature_keys(queries, reference=x), queries - x.mean(0))  # training statistics, fixed
    half = feature_keys(x.double())
    assert half.dtype == torch.float64


def test_centred_keys_spread_srp_codes_that_uncentred_ones_collapse():
    # All-positive features (raw pixels, counts) sit in one cone: SRP codes barely vary and rows use a couple of
    # buckets; centred, the same data use most of the 2**bits codes.
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2000, 16, generator=g) + 2.0
    h = SRPHash(dim=16, depth=8, bits=6, seed=0)
    raw_codes = [h.codes(x)[:, r].unique().numel() for r in range(8)]
    centred_codes = [h.codes(feature_keys(x))[:, r].unique().numel() for r in range(8)]
    assert max(raw_codes) <= 8 and min(centred_codes) >= 40


@pytest.mark.parametrize("call, error, name", [
    (lambda: feature_keys(torch.zeros(3, 2), "whiten"), ValueError, "mode"),
    (lambda: feature_keys(torch.zeros(3, 2, dtype=torch.long)), TypeError, "features"),
    (lambda: feature_keys(torch.zeros(3)), ValueError, "features"),
    (lambda: feature_keys(torch.zeros(0, 2)), ValueError, "features"),
    (lambda: feature_keys(torch.zeros(3, 2), reference=torch.zeros(3, 5)), ValueError, "reference"),
])
def test_feature_keys_validate_their_arguments(call, error, name):
    with pytest.raises(error, match=rf"^{name} "):
        call()


# -- the fidelity script's computing function -------------------------------------------------------------------


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fidelity_table_on_tiny_sizes():
    # scripts/sketch_fidelity.py's fidelity_table is importable and, even on 200 digits, shows the sketch's error
    # against exact NW falling with depth (fixed width) and with width (fixed depth) for both families.
    fidelity = _load_script("sketch_fidelity")
    rows = fidelity.fidelity_table(n=200, depths=(2, 64), widths=(4, 512), fixed_width=512, fixed_depth=32, seeds=(0,))
    assert len(rows) == 2 * (2 + 2)
    for family in ("srp", "pstable"):
        for sweep, key in (("depth", "depth"), ("width", "width")):
            sel = sorted((r for r in rows if r["family"] == family and r["sweep"] == sweep), key=lambda r: r[key])
            assert len(sel) == 2
            assert all(math.isfinite(r["mae"]) and r["mae"] >= 0 for r in sel)
            assert sel[1]["mae"] < sel[0]["mae"], (family, sweep, sel)
