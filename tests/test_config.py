"""Every config group option and experiment composes against its schema; bad values fail with one line."""
from __future__ import annotations

import re

import pytest
from omegaconf import OmegaConf

from bench.config.schemas import validate
from bench.config.errors import ConfigError

from conftest import CONF

GROUPS = ["dataset", "model", "sampler", "sketch", "trainer", "logger", "paths"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_every_group_option_composes_and_validates(compose, group, option):
    # Each option resolves completely (no missing values, interpolations ok) and passes the range checks.
    cfg = compose([f"{group}={option}"])
    OmegaConf.resolve(cfg)
    assert not OmegaConf.missing_keys(cfg)
    validate(cfg)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes(compose, experiment):
    cfg = compose([f"experiment={experiment}"])
    OmegaConf.resolve(cfg)
    validate(cfg)
    text = (CONF / "experiment" / f"{experiment}.yaml").read_text()
    assert text.startswith("# @package _global_")
    assert "offline stand-in" in text.lower() or "needs a network" in text.lower()  # each file says which it is


@pytest.mark.parametrize("launcher", ["basic", "joblib", "local_parallel", "submitit_slurm", "slurm", "submitit_local"])
def test_launcher_configs_compose(compose, launcher):
    # The cluster launcher can't run here, but its config must compose with our keys.
    cfg = compose([f"hydra/launcher={launcher}"], hydra_cfg=True)
    launcher_cfg = cfg.hydra.launcher
    assert "_target_" in launcher_cfg
    if launcher == "slurm":
        assert launcher_cfg.gpus_per_task == 1 and "partition" in launcher_cfg and launcher_cfg.timeout_min > 0


def test_misspelled_key_fails_at_composition(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="widht"):
        compose(["sketch.widht=8"])


def test_wrong_type_fails_at_composition(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException):
        compose(["sketch.depth=many"])


def test_unknown_group_option_names_the_choices(compose):
    from hydra.errors import MissingConfigException

    with pytest.raises(MissingConfigException, match="sampler/bogus"):
        compose(["sampler=bogus"])


def test_config_error_message_names_key_value_and_allowed(compose):
    cfg = compose(["sketch.width=0"])
    with pytest.raises(ConfigError) as info:
        validate(cfg)
    msg = str(info.value)
    assert "sketch.width=0" in msg and "integer >= 1" in msg and "\n" not in msg


# Each usage line composes every job of its sweep (seconds each): two by default, the rest with -m slow.
FAST_SWEEPS = ("protocol_quick", "lineage")


@pytest.mark.parametrize("sweep", [s if s in FAST_SWEEPS else pytest.param(s, marks=pytest.mark.slow)
                                   for s in options("sweep")])
def test_the_usage_line_of_every_sweep_file_works_as_written(compose, sweep):
    """The sweep file's own usage line composes and validates every job (each value of each axis), and the sweep
    has at least three seeds and nine jobs."""
    from bench.config.cli import check_command_line
    from bench.config.overrides import sweep_size

    text = (CONF / "sweep" / f"{sweep}.yaml").read_text()
    usage = re.search(r"python -m bench\.run ((?:\S+ ?)+)", text)
    assert usage, f"conf/sweep/{sweep}.yaml says how to run it"
    argv = usage.group(1).split()
    assert f"sweep={sweep}" in argv and "-m" in argv
    jobs = check_command_line(argv)  # composes and validates every value of every axis, or raises one line
    params = jobs[0].hydra.sweeper.params if "hydra" in jobs[0] else compose([f"sweep={sweep}"], hydra_cfg=True).hydra.sweeper.params
    assert "seed" in params and len(str(params.seed).split(",")) >= 3  # at least three seeds
    assert sweep_size([f"{k}={v}" for k, v in params.items()]) >= 9
