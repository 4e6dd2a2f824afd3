"""Tests of the LSH families (sketch._hashes): codes, their closed-form kernel, persistence and argument checks.

Each test states one property of a family. The central one: the empirical collision frequency of two
inputs over many independent rows matches `collision_probability`, the kernel the sketch approximates.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from sketch import LSHFamily, PStableHash, SRPHash, make_hash

DIM = 8

FAMILIES = {
    "srp": lambda **kw: SRPHash(**{"dim": DIM, "depth": 16, "bits": 4, "seed": 0, **kw}),
    "pstable": lambda **kw: PStableHash(**{"dim": DIM, "depth": 16, "bits": 2, "bandwidth": 1.5, "seed": 0, **kw}),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


def _points(n: int = 50, seed: int = 0, dim: int = DIM) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def _unit(dim: int, i: int) -> torch.Tensor:
    e = torch.zeros(dim)
    e[i] = 1.0
    return e


# -- codes: shape, dtype, determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_codes_are_long_with_one_code_per_row(family):
    # codes(x) for x [n, dim] is a LongTensor [n, depth].
    h = FAMILIES[family]()
    c = h.codes(_points(50))
    assert c.shape == (50, 16)
    assert c.dtype == torch.int64


@pytest.mark.parametrize("family", FAMILIES)
def test_codes_are_deterministic_by_seed_and_across_calls(family):
    # The hash functions are drawn from a local generator seeded with `seed`: two families built with the same
    # seed are equal and give the same codes, and calling codes twice gives the same answer.
    x = _points(40)
    a, b = FAMILIES[family](seed=7), FAMILIES[family](seed=7)
    assert a == b
    assert torch.equal(a.codes(x), b.codes(x))
    assert torch.equal(a.codes(x), a.codes(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_different_seeds_give_different_functions(family):
    # Another seed draws other hash functions: the parameters and the codes differ.
    x = _points(40)
    a, b = FAMILIES[family](seed=0), FAMILIES[family](seed=1)
    assert a != b
    assert not torch.equal(a.codes(x), b.codes(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_global_rng_is_neither_used_nor_disturbed(family):
    # Building a family and hashing leaves torch's global RNG where it was.
    state = torch.random.get_rng_state()
    FAMILIES[family](seed=3).codes(_points(5))
    assert torch.equal(state, torch.random.get_rng_state())


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_srp_codes_lie_in_zero_to_two_to_the_bits(bits):
    # SRP packs `bits` sign bits into one code per row: it lies in [0, 2**bits), and num_codes says so.
    h = SRPHash(dim=DIM, depth=64, bits=bits, seed=0)
    c = h.codes(_points(500))
    assert h.num_codes == 2**bits
    assert int(c.min()) >= 0 and int(c.max()) < 2**bits
    # With 500 spread-out points and few bits, every code is used somewhere.
    if bits <= 3:
        assert c.unique().numel() == 2**bits


def test_pstable_has_unbounded_codes():
    # p-stable codes are floors of real projections: no bound on the number of codes.
    assert FAMILIES["pstable"]().num_codes is None


def test_codes_of_one_point_do_not_depend_on_its_batch():
    # Hashing is row-wise: a point's codes are the same alone or inside a batch.
    for family in FAMILIES.values():
        h = family()
        x = _points(30)
        assert torch.equal(h.codes(x)[7:8], h.codes(x[7:8]))


# -- the kernel: empirical collision frequency vs closed form ----------------------------------------------------

ROWS_MC = 4000  # independent rows: each row of a family is an independent draw of the hash function


def _collision_frequency(h: LSHFamily, x: torch.Tensor, y: torch.Tensor) -> float:
    c = h.codes(torch.stack([x, y]))
    return float((c[0] == c[1]).double().mean())


def _mc_tolerance(p: float, n: int) -> float:
    # 4.5 binomial standard errors plus a floor for p near 0 or 1.
    return 4.5 * math.sqrt(p * (1 - p) / n) + 2e-3


@pytest.mark.parametrize("bits", [1, 2, 4])
@pytest.mark.parametrize("angle", [0.1, 0.5, 1.0, 2.0, 3.0])
def test_srp_collision_frequency_matches_closed_form(bits, angle):
    # Two inputs at angle theta agree on one sign bit w.p. 1 - theta/pi, so on a row of `bits` bits w.p.
    # (1 - theta/pi)**bits. Over ROWS_MC independent rows the frequency matches within MC error.
    h = SRPHash(dim=DIM, depth=ROWS_MC, bits=bits, seed=11)
    x = 2.0 * _unit(DIM, 0)
    y = 0.5 * (math.cos(angle) * _unit(DIM, 0) + math.sin(angle) * _unit(DIM, 1))  # norms don't matter
    p = float(h.collision_probability(x[None], y[None]))
    assert p == pytest.approx((1 - angle / math.pi) ** bits, rel=1e-5)
    assert abs(_collision_frequency(h, x, y) - p) <= _mc_tolerance(p, ROWS_MC)


@pytest.mark.parametrize("bits", [1, 3])
@pytest.mark.parametrize("distance_over_bandwidth", [0.2, 0.5, 1.0, 2.5])
def test_pstable_collision_frequency_matches_closed_form(bits, distance_over_bandwidth):
    # floor((a.x + b)/r) agrees for inputs at distance c w.p. p(c) of Datar et al.; a row concatenates `bits`
    # such hashes. Over ROWS_MC independent rows the frequency matches p(c)**bits within MC error.
    r = 2.0
    h = PStableHash(dim=DIM, depth=ROWS_MC, bits=bits, bandwidth=r, seed=5)
    x = torch.full((DIM,), 0.3)
    y = x + distance_over_bandwidth * r * (_unit(DIM, 2) + _unit(DIM, 5)) / math.sqrt(2)
    p = float(h.collision_probability(x[None], y[None]))
    assert 0.0 < p < 1.0
    assert abs(_collision_frequency(h, x, y) - p) <= _mc_tolerance(p, ROWS_MC)


def test_pstable_closed_form_value():
    # One hand-checked value: at c = r, p = 1 - 2 Phi(-1) - 2/sqrt(2 pi) (1 - e^{-1/2}) = 0.3687.
    h = PStableHash(dim=2, depth=1, bits=1, bandwidth=1.0)
    p = float(h.collision_probability(torch.tensor([[0.0, 0.0]]), torch.tensor([[0.6, 0.8]])))
    phi = 0.5 * (1 + math.erf(-1 / math.sqrt(2)))
    assert p == pytest.approx(1 - 2 * phi - 2 / math.sqrt(2 * math.pi) * (1 - math.exp(-0.5)), rel=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_collision_probability_is_one_at_equal_inputs(family):
    # k(x, x) = 1: a point always collides with itself (the diagonal of k(x, x) is 1).
    h = FAMILIES[family]()
    x = _points(20)
    k = h.collision_probability(x, x)
    assert k.shape == (20, 20)
    assert torch.allclose(k.diagonal(), torch.ones(20), atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_collision_probability_is_symmetric_and_in_unit_interval(family):
    # k(x, y) = k(y, x) and 0 <= k <= 1.
    h = FAMILIES[family]()
    x, y = _points(15, seed=1), _points(9, seed=2)
    k = h.collision_probability(x, y)
    assert k.shape == (15, 9)
    assert torch.allclose(k, h.collision_probability(y, x).T, atol=1e-7)
    assert bool((k >= 0).all() and (k <= 1).all())


def test_collision_probability_decreases_with_angle_and_distance():
    # SRP: k falls as the angle grows; p-stable: k falls as the L2 distance grows; more bits narrow both.
    angles = torch.linspace(0.0, math.pi, 50)
    e0, e1 = _unit(DIM, 0), _unit(DIM, 1)
    ys = torch.cos(angles)[:, None] * e0 + torch.sin(angles)[:, None] * e1
    for bits in (1, 4):
        k = SRPHash(dim=DIM, depth=1, bits=bits).collision_probability(e0[None], ys)[0]
        assert bool((k.diff() < 0).all())
    dists = torch.linspace(0.0, 10.0, 50)
    ys = dists[:, None] * e1
    k1 = PStableHash(dim=DIM, depth=1, bits=1, bandwidth=1.0).collision_probability(torch.zeros(1, DIM), ys)[0]
    k3 = PStableHash(dim=DIM, depth=1, bits=3, bandwidth=1.0).collision_probability(torch.zeros(1, DIM), ys)[0]
    wide = PStableHash(dim=DIM, depth=1, bits=1, bandwidth=4.0).collision_probability(torch.zeros(1, DIM), ys)[0]
    assert bool((k1.diff() < 0).all())
    assert bool((k3[1:] <= k1[1:]).all())  # more bits: narrower kernel
    assert bool((wide[1:] >= k1[1:]).all())  # wider bucket: wider kernel


def test_collision_probability_does_not_depend_on_seed_or_rows():
    # The kernel is a property of the family (bits, bandwidth), not of the drawn functions.
    x, y = _points(6, seed=1), _points(4, seed=2)
    a = SRPHash(dim=DIM, depth=1, bits=3, seed=0).collision_probability(x, y)
    b = SRPHash(dim=DIM, depth=32, bits=3, seed=9).collision_probability(x, y)
    assert torch.equal(a, b)


# -- persistence ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip_gives_equal_codes(family):
    # state_dict holds the config and the drawn parameters (on the CPU); loading it into a family with the same
    # config copies the parameters, so the codes are equal.
    src = FAMILIES[family](seed=4)
    src.params["projection"] = src.params["projection"] * -1.0  # parameters that a fresh seed would not redraw
    state = src.state_dict()
    assert state["config"]["family"] == family
    assert all(v.device.type == "cpu" for k, v in state.items() if k != "config")
    dst = FAMILIES[family](seed=4)
    dst.load_state_dict(state)
    assert dst == src
    x = _points(30)
    assert torch.equal(dst.codes(x), src.codes(x))


@pytest.mark.parametrize("family", FAMILIES)
def test_load_state_dict_of_another_config_fails(family):
    # A state from other hash functions (another seed, or other rows) is refused with a message naming both.
    state = FAMILIES[family](seed=4).state_dict()
    for other in (FAMILIES[family](seed=5), FAMILIES[family](depth=8, seed=4)):
        with pytest.raises(ValueError, match="state_dict is for hash"):
            other.load_state_dict(state)


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_saved_with_the_old_rows_name_still_loads(family):
    # Before `depth` replaced `rows`, the saved config said "rows": such a state loads into the same family.
    src = FAMILIES[family](seed=4)
    state = src.state_dict()
    state["config"] = {("rows" if k == "depth" else k): v for k, v in state["config"].items()}
    dst = FAMILIES[family](seed=4)
    dst.load_state_dict(state)
    assert dst == src
    with pytest.raises(ValueError, match="state_dict is for hash"):
        FAMILIES[family](depth=3, seed=4).load_state_dict(state)


# -- the rows -> depth rename ------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [
    lambda **kw: SRPHash(dim=DIM, bits=2, seed=1, **kw),
    lambda **kw: PStableHash(dim=DIM, bits=2, seed=1, **kw),
    lambda **kw: make_hash("srp", dim=DIM, bits=2, seed=1, **kw),
], ids=["srp", "pstable", "make_hash"])
def test_rows_keyword_still_works_with_a_deprecation_warning_naming_depth(build):
    # rows= builds the same family as depth= and warns that depth replaced it; both at once is an error.
    with pytest.warns(DeprecationWarning, match="depth= replaced it"):
        old = build(rows=5)
    assert old == build(depth=5) and old.depth == 5
    with pytest.raises(TypeError, match="^rows is the deprecated name of depth"):
        build(rows=5, depth=5)


def test_rows_attribute_is_a_deprecated_alias_of_depth():
    h = SRPHash(dim=DIM, depth=7, bits=2)
    with pytest.warns(DeprecationWarning, match="depth"):
        assert h.rows == 7
    assert h.config()["depth"] == 7 and "rows" not in h.config()


def test_depth_is_the_name_in_signatures_and_never_warns():
    import inspect

    for fn in (SRPHash.__init__, PStableHash.__init__, make_hash):
        params = inspect.signature(fn).parameters
        assert "depth" in params and "rows" not in params
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SRPHash(dim=DIM, depth=2, bits=2)


def test_state_dict_is_a_copy():
    # Mutating the saved state does not change the family.
    h = FAMILIES["srp"]()
    state = h.state_dict()
    state["projection"].zero_()
    assert not torch.equal(h.params["projection"], state["projection"])


def test_repr_names_the_configuration():
    r = repr(PStableHash(dim=3, depth=5, bits=2, bandwidth=0.5, seed=1))
    assert r.startswith("PStableHash(") and "depth=5" in r and "bits=2" in r and "bandwidth=0.5" in r


# -- argument checks: errors name the argument ---------------------------------------------------------------------

BAD_CONSTRUCTORS = [
    # (description, constructor, exception, the message starts with)
    ("dim 0", lambda: SRPHash(dim=0, depth=4, bits=2), ValueError, "dim"),
    ("dim float", lambda: SRPHash(dim=2.0, depth=4, bits=2), TypeError, "dim"),
    ("depth -1", lambda: SRPHash(dim=4, depth=-1, bits=2), ValueError, "depth"),
    ("depth bool", lambda: SRPHash(dim=4, depth=True, bits=2), TypeError, "depth"),
    ("bits 0", lambda: SRPHash(dim=4, depth=4, bits=0), ValueError, "bits"),
    ("srp bits 63", lambda: SRPHash(dim=4, depth=4, bits=63), ValueError, "bits"),
    ("seed float", lambda: SRPHash(dim=4, depth=4, bits=2, seed=1.5), TypeError, "seed"),
    ("pstable dim 0", lambda: PStableHash(dim=0, depth=4, bits=2), ValueError, "dim"),
    ("pstable depth -1", lambda: PStableHash(dim=4, depth=-1, bits=2), ValueError, "depth"),
    ("pstable bits 0", lambda: PStableHash(dim=4, depth=4, bits=0), ValueError, "bits"),
    ("bandwidth 0", lambda: PStableHash(dim=4, depth=4, bits=2, bandwidth=0.0), ValueError, "bandwidth"),
    ("bandwidth < 0", lambda: PStableHash(dim=4, depth=4, bits=2, bandwidth=-1.0), ValueError, "bandwidth"),
    ("bandwidth nan", lambda: PStableHash(dim=4, depth=4, bits=2, bandwidth=float("nan")), ValueError, "bandwidth"),
    ("bandwidth inf", lambda: PStableHash(dim=4, depth=4, bits=2, bandwidth=float("inf")), ValueError, "bandwidth"),
    ("bandwidth str", lambda: PStableHash(dim=4, depth=4, bits=2, bandwidth="1"), TypeError, "bandwidth"),
]


@pytest.mark.parametrize("case", BAD_CONSTRUCTORS, ids=[c[0] for c in BAD_CONSTRUCTORS])
def test_bad_constructor_arguments_raise_naming_the_argument(case):
    _, build, exc, name = case
    with pytest.raises(exc, match=rf"^{name} ") as info:
        build()
    assert "\n" not in str(info.value)


BAD_INPUTS = [
    # (description, input to codes/collision_probability, exception, named argument)
    ("wrong dim", lambda: torch.randn(5, DIM + 1), ValueError, "x"),
    ("1-D", lambda: torch.randn(DIM), ValueError, "x"),
    ("3-D", lambda: torch.randn(2, 3, DIM), ValueError, "x"),
    ("integer", lambda: torch.ones(5, DIM, dtype=torch.int64), TypeError, "x"),
    ("bool", lambda: torch.ones(5, DIM, dtype=torch.bool), TypeError, "x"),
    ("not a tensor", lambda: [[0.0] * DIM], TypeError, "x"),
    ("wrong device", lambda: torch.randn(5, DIM, device="meta"), ValueError, "x"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise_naming_the_argument(family, case):
    _, make, exc, name = case
    h = FAMILIES[family]()
    with pytest.raises(exc, match=rf"^{name} ") as info:
        h.codes(make())
    assert "\n" not in str(info.value)
    # collision_probability checks both of its arguments and names the bad one.
    with pytest.raises(exc, match=r"^y "):
        h.collision_probability(_points(3), make())
