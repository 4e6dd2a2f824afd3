"""The proxy-quality probe (bench.train.probe): its numbers on hand-made losses and distributions, and in a real run."""
from __future__ import annotations

import math

import pytest
import torch

from bench.train.probe import Probe, probe_numbers, spearman
from sketch.samplers import SAMPLERS
from bench.run import run

from test_run import tiny

LOSSES = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6, 3.2])


def test_uniform_probabilities_give_variance_ratio_one_and_no_rank_correlation():
    n = probe_numbers(LOSSES, torch.full((6,), 1 / 6))
    assert n["probe_vr"] == pytest.approx(1.0) and n["probe_spearman"] is None and n["probe_captured"] == pytest.approx(0.0)


def test_loss_proportional_probabilities_reach_the_ideal_ratio_and_capture_everything():
    n = probe_numbers(LOSSES, LOSSES / LOSSES.sum() * 0.37)  # any scale: the probe renormalises over its items
    ideal = float(LOSSES.mean()) ** 2 / float((LOSSES**2).mean())
    assert n["probe_vr"] == pytest.approx(ideal) and n["probe_vr_ideal"] == pytest.approx(ideal)
    assert n["probe_captured"] == pytest.approx(1.0) and n["probe_spearman"] == pytest.approx(1.0)


def test_variance_ratio_by_hand_and_an_inverted_distribution_is_worse_than_uniform():
    l, p = torch.tensor([1.0, 3.0]), torch.tensor([0.25, 0.75])
    # mean(l^2 / (M p)) / mean(l^2) = ((1 / 0.5) + (9 / 1.5)) / 2 / 5 = 0.8
    assert probe_numbers(l, p)["probe_vr"] == pytest.approx(0.8)
    inverted = probe_numbers(LOSSES, LOSSES.flip(0))
    assert inverted["probe_vr"] > 1.0 and inverted["probe_captured"] < 0 and inverted["probe_spearman"] == pytest.approx(-1.0)


def test_a_zero_probability_on_a_lossy_item_is_an_infinite_ratio():
    n = probe_numbers(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]))
    assert math.isinf(n["probe_vr"]) and n["probe_captured"] is None


def test_spearman_averages_tied_ranks():
    assert spearman(torch.tensor([1.0, 1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0])) == pytest.approx(0.8660254)
    assert spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([5.0, 5.0, 5.0])) is None


def test_the_probe_set_is_fixed_and_shared_across_seeds():
    class Data:
        num_train, y_train = 10_000, torch.zeros(10_000)

    a, b = Probe(Data(), size=100), Probe(Data(), size=100)
    assert torch.equal(a.indices, b.indices) and len(a.indices.unique()) == 100


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_has_probe_numbers_at_every_evaluation_and_a_separate_clock(compose, tmp_path, sampler):
    row = run(compose(tiny(sampler, "trainer.probe_size=256")), out_dir=tmp_path / "out")
    assert all({"probe_vr", "probe_spearman", "probe_vr_ideal", "probe_captured"} <= p.keys() for p in row.curve)
    last = row.curve[-1]
    assert last["probe_vr_ideal"] is not None and 0 < last["probe_vr_ideal"] <= 1
    if sampler == "uniform":
        assert last["probe_vr"] == pytest.approx(1.0) and last["probe_spearman"] is None
    assert row.probe_time_s > 0 and row.probe_time_s < row.eval_time_s + row.probe_time_s


def test_probe_size_zero_turns_the_probe_off(compose, tmp_path):
    row = run(compose(tiny("nws", "trainer.probe_size=0")), out_dir=tmp_path / "out")
    assert not any("probe_vr" in p for p in row.curve) and row.probe_time_s == 0
