"""The evaluation protocol's parts: the curve readings (bench.report.protocol), the label-noise control, the linear LR decay,
and the experiment and sweep files (development vs test, frozen NWS settings, every sampler). No prepared
dataset is needed: data tests use the in-memory `synthetic` dataset, config tests only compose."""
from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from bench.build.parts import load_data, schedule
from bench.config.schemas import register_configs, validate
from bench.config.errors import ConfigError
from bench.data import synthetic
from bench.report.protocol import first_reach, inside_first_epoch, loose_target, median, uniform_target, value_at
from sketch.samplers import SAMPLERS
from bench.results.identity import run_id

from conftest import CONF, REPO

TEST = ["mnist_mlp", "fmnist_mlp", "fmnist_noisy_mlp", "mnist_cnn", "fmnist_cnn", "kdd04_long", "ml100k_long"]
DEV = ["dev_mnist_subset", "dev_adult", "dev_digits"]
QUICK = ["quick/mnist_mlp", "quick/fmnist_mlp", "quick/fmnist_noisy_mlp", "quick/mnist_cnn", "quick/fmnist_cnn"]
CURVE = [{"step": 0, "epoch": 0, "time_s": 0.5, "metric": 0.1},
         {"step": 50, "epoch": 0, "time_s": 1.0, "metric": 0.7},
         {"step": 100, "epoch": 0, "time_s": 1.5, "metric": 0.8},
         {"step": 150, "epoch": 1, "time_s": 2.0, "metric": 0.9}]


# -- reading curves ---------------------------------------------------------------------------------------------
def test_first_reach_is_the_first_evaluation_at_or_past_the_target_and_inf_if_never():
    assert first_reach(CURVE, "accuracy", 0.8) == (1.5, 100)  # reaching means >= for accuracy
    assert first_reach(CURVE, "accuracy", 0.95) == (math.inf, math.inf)
    assert first_reach(CURVE, "logloss", 0.7) == (0.5, 0)  # lower is better: 0.1 <= 0.7 at once
    assert all(math.isnan(v) for v in first_reach(CURVE, "accuracy", None) + first_reach(CURVE, "?", 0.5))


def test_value_at_takes_the_last_evaluation_at_or_before_the_time_without_interpolating():
    assert value_at(CURVE, 1.5) == 0.8  # an evaluation exactly at the time counts
    assert value_at(CURVE, 1.99) == 0.8
    assert value_at(CURVE, 9.0) == 0.9
    assert math.isnan(value_at(CURVE, 0.4))  # before the first evaluation (the sampler's setup) there is none


def test_inside_first_epoch_uses_steps_per_epoch_and_falls_back_to_the_epoch_field():
    assert inside_first_epoch(CURVE, "accuracy", 0.8, steps_per_epoch=100)
    assert not inside_first_epoch(CURVE, "accuracy", 0.8, steps_per_epoch=99)
    assert not inside_first_epoch(CURVE, "accuracy", 0.85, steps_per_epoch=None)  # first reached in epoch 1
    assert inside_first_epoch(CURVE, "accuracy", 0.8, steps_per_epoch=None)
    assert not inside_first_epoch(CURVE, "accuracy", 0.99, steps_per_epoch=100)  # never reached: not flagged


def test_t_u_is_the_median_final_and_the_loose_target_is_one_percent_easier():
    assert uniform_target([0.90, 0.92, 0.86, None]) == pytest.approx(0.90)
    assert loose_target(0.90, higher_is_better=True) == pytest.approx(0.891)
    assert loose_target(0.30, higher_is_better=False) == pytest.approx(0.303)
    assert median([1.0, math.inf, math.inf]) == math.inf and median([2.0, math.nan]) == 2.0
    assert math.isnan(uniform_target([]))


# -- label noise --------------------------------------------------------------------------------------------------
def test_label_noise_changes_exactly_the_fraction_to_other_classes_and_leaves_the_test_set():
    data = synthetic(n=2000, d=4, classes=5)
    noisy = data.with_label_noise(0.2, seed=0)
    changed = noisy.y_train != data.y_train
    assert int(changed.sum()) == 400  # exactly round(0.2 * 2000), each to a different class
    assert torch.equal(noisy.y_test, data.y_test) and torch.equal(noisy.x_num_train, data.x_num_train)
    shift = (noisy.y_train[changed] - data.y_train[changed]) % 5
    assert set(shift.tolist()) == {1, 2, 3, 4}  # every other class is drawn
    assert noisy.y_train.dtype == torch.int64 and int(noisy.y_train.max()) < 5


def test_label_noise_is_the_same_for_the_same_seed_and_differs_for_another():
    data = synthetic(n=500, d=4)
    assert torch.equal(data.with_label_noise(0.3, seed=0).y_train, data.with_label_noise(0.3, seed=0).y_train)
    assert not torch.equal(data.with_label_noise(0.3, seed=0).y_train, data.with_label_noise(0.3, seed=1).y_train)


def test_binary_label_noise_flips_and_regression_or_bad_rates_are_refused():
    data = synthetic(n=400, d=4, classes=2, task="binary")
    noisy = data.with_label_noise(0.25, seed=0)
    assert int((noisy.y_train != data.y_train).sum()) == 100 and set(noisy.y_train.tolist()) <= {0.0, 1.0}
    assert data.with_label_noise(0.0) is data
    for rate in (1.0, -0.1, "0.2", True):
        with pytest.raises(ValueError, match="label_noise must be a number in \\[0, 1\\)"):
            data.with_label_noise(rate)
    with pytest.raises(ValueError, match="regression"):
        synthetic(n=100, d=4, task="regression").with_label_noise(0.1)


def test_the_config_key_applies_noise_to_the_loaded_training_labels_and_changes_the_run_identity(compose):
    base = ["dataset=synthetic", "+dataset.options.n=600", "+dataset.options.d=8"]
    clean, noisy = compose(base), compose([*base, "dataset.label_noise=0.2"])
    validate(noisy)
    y0, y1 = load_data(clean, torch.device("cpu")).y_train, load_data(noisy, torch.device("cpu")).y_train
    assert int((y0 != y1).sum()) == 120
    resolved = [OmegaConf.to_container(c, resolve=True) for c in (clean, noisy)]
    assert run_id(resolved[0]) != run_id(resolved[1])


def test_an_out_of_range_label_noise_stops_with_one_line_naming_the_key(compose):
    allowed = r"label_noise must be a number in \[0, 1\)"
    with pytest.raises(ConfigError, match=rf"^<dataset.label_noise=1.5> is not allowed: {allowed}"):
        validate(compose(["dataset.label_noise=1.5"]))


# -- the linear schedule ------------------------------------------------------------------------------------------
def test_linear_schedule_decays_the_learning_rate_to_zero_over_the_budget_and_resumes():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = schedule("linear", opt, total_steps=10, lr=0.1)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[5] == pytest.approx(0.05) and opt.param_groups[0]["lr"] == 0.0
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    again = schedule("linear", opt2, total_steps=10, lr=0.1)
    again.load_state_dict(sched.state_dict())  # what a checkpoint restores
    assert again.last_epoch == 10 and again.get_last_lr() == [0.0]


def test_linear_is_an_allowed_schedule_and_a_misspelled_one_is_not(compose):
    validate(compose(["trainer.schedule=linear"]))
    with pytest.raises(ConfigError, match="one of constant, cosine, onecycle, linear"):
        validate(compose(["trainer.schedule=linaer"]))


# -- experiment and sweep files -----------------------------------------------------------------------------------
def experiment(name: str) -> tuple[str, dict]:
    text = (CONF / "experiment" / f"{name}.yaml").read_text()
    return text, yaml.safe_load(text) or {}


@pytest.mark.parametrize("name", TEST + DEV + QUICK)
def test_every_protocol_experiment_composes_validates_and_decays_its_lr_to_zero(compose, name):
    cfg = compose([f"experiment={name}"])
    OmegaConf.resolve(cfg)
    validate(cfg)
    assert cfg.trainer.schedule == "linear" and cfg.trainer.epochs >= 4  # multi-epoch, same decay for every sampler
    assert experiment(name)[0].startswith("# @package _global_")


@pytest.mark.parametrize("name", TEST)
def test_test_experiments_say_so_and_set_no_nws_setting_of_their_own(name):
    text, body = experiment(name)
    assert "Protocol TEST experiment" in text and "For:" in text  # what it is for
    assert not {"sketch", "sampler"} & body.keys()  # NWS settings are the frozen defaults, tuned on DEV only
    assert not any("sketch" in str(d) or "sampler" in str(d) for d in body.get("defaults", []))


@pytest.mark.parametrize("name", DEV)
def test_development_experiments_say_so(name):
    assert "Protocol DEVELOPMENT experiment" in experiment(name)[0]


def test_image_mlp_experiments_have_ten_epochs_and_the_noisy_one_differs_only_by_its_noise(compose):
    for name in ("mnist_mlp", "fmnist_mlp", "fmnist_noisy_mlp"):
        assert compose([f"experiment={name}"]).trainer.epochs >= 10
    clean, noisy = (OmegaConf.to_container(compose([f"experiment={n}"]), resolve=True)
                    for n in ("fmnist_mlp", "fmnist_noisy_mlp"))
    assert noisy["dataset"].pop("label_noise") == 0.2 and clean["dataset"].pop("label_noise") == 0.0
    assert clean == noisy


@pytest.mark.parametrize("name", QUICK)
def test_quick_experiments_differ_from_their_full_ones_only_in_data_size_and_epochs(compose, name):
    full = OmegaConf.to_container(compose([f"experiment={name.split('/')[1]}"]), resolve=True)
    quick = OmegaConf.to_container(compose([f"experiment={name}"]), resolve=True)
    for key in ("train_size", "test_size"):
        full["dataset"].pop(key), quick["dataset"].pop(key)
    full["trainer"].pop("epochs"), quick["trainer"].pop("epochs")
    assert quick == full and "Quick mode of experiment=" in experiment(name)[0]


def sweep_params(name: str) -> dict[str, list[str]]:
    """The sweep file's axes, its `${samplers:}` resolved (every registered sampler)."""
    register_configs()  # the resolver
    raw = OmegaConf.create(yaml.safe_load((CONF / "sweep" / f"{name}.yaml").read_text()))
    params = OmegaConf.to_container(raw.hydra.sweeper.params, resolve=True)
    return {k: str(v).split(",") for k, v in params.items()}


def test_test_sweeps_run_every_test_experiment_with_every_registered_sampler_and_three_seeds():
    assert sweep_params("protocol") == {"experiment": TEST, "sampler": list(SAMPLERS), "seed": ["0", "1", "2"]}
    quick = sweep_params("protocol_quick")["experiment"]
    assert [q.removeprefix("quick/") for q in quick] == TEST
    assert sweep_params("paper")["sampler"] == list(SAMPLERS)


def test_tuning_sweeps_touch_only_development_experiments():
    for name in ("dev_baselines", "dev", "dev_round2", "dev_round3"):
        assert sweep_params(name)["experiment"] == DEV
    assert not set(DEV) & set(TEST)


def test_reproduce_refuses_an_unknown_argument_with_one_line():
    p = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), "--bogus"], capture_output=True, text=True,
                       timeout=30, check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "unknown argument '--bogus'" in p.stderr


def test_fill_results_records_how_long_the_reproduction_took(tmp_path: Path):
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from fill_results import filled, with_duration

    text = with_duration("# nws-bench report\n\n| a |\n", "24 min 10 s")
    before = "# Results\n<!-- table:cpu-quick:start -->\nold\n<!-- table:cpu-quick:end -->\nafter\n"
    doc = filled(before, "cpu-quick", text)
    assert "- reproduced in 24 min 10 s" in doc and "old" not in doc and doc.endswith("after\n")


def test_the_epoch_one_flag_applies_to_multi_epoch_budgets_only():
    from bench.report.protocol import epoch_flag_applies

    assert not epoch_flag_applies(1) and not epoch_flag_applies(1.0)  # one pass: the whole budget is epoch 1
    assert epoch_flag_applies(3) and epoch_flag_applies(None) and epoch_flag_applies(float("nan"))
