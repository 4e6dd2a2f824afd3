"""Bad input stops a run before training with one line naming the key, the value and what is allowed.

Each case below is a command-line override a user could type. Most go through the in-process path that
`python -m bench.run` takes (compose, or Hydra's composition error in one line; then validate and run); a
representative subset runs the real entry point in subprocesses: exit status 2, no traceback, one error
line, nothing written to the results folder.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from hydra.errors import HydraException

from bench.config.schemas import validate
from bench.config.errors import ConfigError, composition_error
from bench.config.cli import check_command_line
from bench.run import run

from test_run import TINY, tiny

CUDA = torch.cuda.is_available()

# (overrides on top of the tiny nws run, what the error line must contain)
BAD = [
    # ranges checked by bench.config.schemas.validate
    (["sketch.width=-5"], "<sketch.width=-5> is not allowed: width must be an integer >= 1, got -5"),
    (["sketch.depth=0"], "<sketch.depth=0> is not allowed: depth must be an integer >= 1, got 0"),
    (["sketch.bits=100"], "<sketch.bits=100> is not allowed: bits must be an integer in [1, 62] for family 'srp', got 100"),
    (["sketch.family=pstable", "sketch.bandwidth=0"], "<sketch.bandwidth=0.0> is not allowed: bandwidth must be a finite number > 0"),
    (["sketch.bandwidth=-1.5"], "<sketch.bandwidth=-1.5> is not allowed"),
    (["sketch.decay=0"], "<sketch.decay=0.0> is not allowed: decay must be a number in (0, 1]"),
    (["sketch.decay=1.5"], "<sketch.decay=1.5> is not allowed: decay must be a number in (0, 1]"),
    (["sampler.mix=1.5"], "<sampler.mix=1.5> is not allowed: mix must be a number in [0, 1], got 1.5"),
    (["trainer.epochs=0"], "<trainer.epochs=0> is not allowed: an integer >= 1"),
    (["trainer.optimizer.lr=-0.1"], "<trainer.optimizer.lr=-0.1> is not allowed: a finite number > 0"),
    (["trainer.evals_per_epoch=0"], "<trainer.evals_per_epoch=0> is not allowed: an integer >= 1"),
    (["trainer.target=1.5"], "<trainer.target=1.5> is not allowed: a number in [0, 1] for accuracy"),
    (["trainer.target_metric=f1"], "<trainer.target_metric='f1'> is not allowed: one of accuracy, auc, logloss, mse"),
    (["trainer.schedule=step"], "<trainer.schedule='step'> is not allowed: one of constant, cosine, onecycle"),
    (["trainer.max_time_s=0"], "<trainer.max_time_s=0.0> is not allowed: a finite number > 0 or null"),
    (["seed=-1"], "<seed=-1> is not allowed: an integer in [0, 4294967295]"),
    (["device=tpu"], "<device='tpu'> is not allowed: one of auto, cpu, cuda"),
    (["logger.wandb.mode=loud"], "<logger.wandb.mode='loud'> is not allowed: one of online, offline, disabled"),
    (["dataset.train_size=0"], "<dataset.train_size=0> is not allowed: an integer >= 1"),
    (["model.hidden=[32,-4]"], "<model.hidden=[32, -4]> is not allowed: hidden must hold integers >= 1, got [32, -4]"),
    (["model.dropout=1.5"], "<model.dropout=1.5> is not allowed: dropout must be a number in [0, 1), got 1.5"),
    (["+sketch.widht=8"], "<sketch.widht=8> is not allowed: sketch has no such key; its keys: family, depth, width"),
    # checks that need the data (bench.config.schemas.validate_against_data, bench.run.load_data)
    (["trainer.batch_size=100000"], "<trainer.batch_size=100000> is not allowed: an integer in [1, 600]"),
    (["sampler.proposal=full"], "<sampler.proposal=full> is not allowed: sampler has no key 'proposal'; its keys: name, "
                                "mix, refresh_every; the full estimator is its own sampler now: use sampler=nws_full"),
    (["sampler=nws_full", "sampler.pool_size=100000"], "<sampler.pool_size=100000> is not allowed: pool_size must be None or in [1, num_samples=600], got 100000"),
    (["trainer.target_metric=mse"], "<trainer.target_metric='mse'> is not allowed: one of accuracy, logloss for a multiclass"),
    (["dataset.name=imagenet"], "<dataset.name='imagenet'> is not allowed: one of movielens100k"),
    (["dataset.options.n=-5"], "<dataset.options={'n': -5, 'd': 8}> is not allowed: n must be an integer >= 1"),
    (["+dataset.options.rows=5"], "takes no option(s) ['rows']"),
    # objects Hydra builds
    (["trainer.optimizer._target_=torch.optim.Adamm"], "<trainer.optimizer._target_='torch.optim.Adamm'> is not allowed: no such class"),
    (["+trainer.optimizer.momentum=0.9"], "<trainer.optimizer=torch.optim.Adam(lr=0.001, momentum=0.9)> is not allowed: TypeError"),
    (["+model.depth=3"], "<model._target_='bench.build.models.MLP'> could not be built: TypeError"),
    # Hydra's composition errors, in one line
    (["sketch.widht=8"], "<sketch.widht=8> is not allowed: sketch has no key 'widht'; its keys: family, depth, width"),
    (["sketch.depth=abc"], "<sketch.depth=abc> is not allowed: Value 'abc' of type 'str' could not be converted to Integer"),
    (["trainer.optimizer.lr=fast"], "<trainer.optimizer.lr=fast> is not allowed: Value 'fast' of type 'str' could not be converted to Float"),
    (["sampler=bogus"], "<sampler=bogus> is not allowed: one of history, infobatch, loss, nws, nws_full, selective_backprop, static, stream_filter, uniform"),
    (["dataset=imagenet"], "<dataset=imagenet> is not allowed: one of adult,"),
    (["model=resnet"], "<model=resnet> is not allowed: one of embedding_mlp, mlp, timm_cnn"),
    (["sampler=uniform", "sampler.mix=0.5"], "<sampler.mix=0.5> is not allowed: sampler has no key 'mix'; its keys: name"),
]


def first_error(compose, overrides: list[str], out_dir) -> str:
    """What `python -m bench.run <overrides>` reports: Hydra's composition error or the ConfigError, one line."""
    try:
        cfg = compose(overrides)
    except HydraException as exc:
        return composition_error(exc, overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
        run(cfg, out_dir=out_dir)
    return str(info.value)


def _overrides(extra: list[str]) -> list[str]:
    base = tiny("nws")
    if any(e.startswith("sampler=") for e in extra):
        base = [o for o in base if not o.startswith(("sampler=", "sampler.pool_size"))]
    return [*base, *extra]


@pytest.mark.parametrize("extra,expected", BAD, ids=[" ".join(e) for e, _ in BAD])
def test_bad_value_fails_before_training_with_one_line(compose, tmp_path, extra, expected):
    msg = first_error(compose, _overrides(extra), tmp_path / "out")
    assert expected in msg
    assert "\n" not in msg and len(msg) < 400
    assert not (tmp_path / "results").exists()  # nothing trained, nothing written


@pytest.mark.skipif(CUDA, reason="CUDA is available here")
def test_cuda_without_cuda_fails_before_training(compose, tmp_path):
    msg = first_error(compose, _overrides(["device=cuda"]), tmp_path / "out")
    assert msg == "<device='cuda'> is not allowed: no CUDA device is visible; use device=cpu or device=auto"
    assert not (tmp_path / "results").exists()


def test_hub_dataset_offline_fails_before_training(compose, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    overrides = [o for o in TINY if not o.startswith(("dataset", "+dataset"))]
    msg = first_error(compose, ["dataset=cifar10", *overrides, f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "out")
    assert msg.startswith("<dataset.name='cifar10'> could not be loaded: cifar10: needs a network") and "HF_HUB_OFFLINE=1" in msg
    assert "\n" not in msg and not (tmp_path / "results").exists()


# -- the real entry point --------------------------------------------------------------------------------
CLI = [
    (["trainer.batch_size=100000"], "error: <trainer.batch_size=100000> is not allowed: an integer in [1, 600] (the training rows)"),
    (["sketch.widht=8"], "error: <sketch.widht=8> is not allowed: sketch has no key 'widht'; its keys: family, depth, width, bits, bandwidth, decay, key"),
    (["sketch.depth=abc"], "error: <sketch.depth=abc> is not allowed: Value 'abc' of type 'str' could not be converted to Integer"),
    (["sampler=bogus"], "error: <sampler=bogus> is not allowed: one of history, infobatch, loss, nws, nws_full, selective_backprop, static, stream_filter, uniform (the registered samplers; plugins=[your_module] adds yours)"),
    # a sweep whose second value is bad stops before its first job trains
    (["-m", "sketch.depth=2,abc"], "error: <sketch.depth=abc> is not allowed: Value 'abc' of type 'str' could not be converted to Integer"),
    # the preflight (bench.config.preflight): a sweep validated whole, strict booleans, a data folder that cannot be made
    (["-m", "sketch.width=64,-1"], "error: <sketch.width=-1> is not allowed: width must be an integer >= 1, got -1"),
    (["resume=no"], "error: <resume=no> is not allowed: true or false"),
    (["paths.data_dir={tmp}/a-file/data"], "error: <paths.data_dir={tmp}/a-file/data> is not allowed: a folder this "
                                           "process can write to; {tmp}/a-file/data cannot be created: {tmp}/a-file is a file"),
    # only the data can tell: stopped before training (its folders exist, nothing is in them)
    (["+dataset.options.task=binary", "+dataset.options.classes=2", "dataset.test_size=1", "dataset.metric=auc"],
     "error: <trainer.target_metric='auc'> is not allowed: AUC needs both classes in the test split, which has "),
]


@pytest.mark.parametrize("argv,expected", [
    (["-m", "sampler=uniform,history,bogus"], "<sampler=bogus> is not allowed: one of history"),
    (["-m", "seed=interval(0,1)"], "<seed=interval(0,1)> is not allowed: the basic sweeper takes value lists"),
    (["--multirun", "sketch.width=8,wide"], "<sketch.width=wide> is not allowed: Value 'wide'"),
    (["hydra/launcher=slurmm"], "<hydra/launcher=slurmm> is not allowed: one of basic, joblib"),
    (["sketch.width=[8"], "no viable alternative at input"),
    (["seed=0,1"], "Ambiguous value for argument 'seed=0,1'"),  # a sweep without -m
])
def test_command_line_check_names_the_bad_override_of_a_sweep(argv, expected):
    # what `python -m bench.run` checks before Hydra starts: every sweep value composes
    with pytest.raises(ConfigError) as info:
        check_command_line(argv)
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("argv", [["-m", "sampler=uniform,nws", "seed=range(0,3)"], ["--cfg", "job", "sketch.widht=1"], []])
def test_command_line_check_lets_good_sweeps_and_other_flags_through(argv):
    check_command_line(argv)  # --cfg and friends are Hydra's own business


def test_bad_command_lines_exit_2_with_one_error_line_and_no_traceback(tmp_path):
    """Through the real entry point, one case of each kind: Hydra's composition, the whole-sweep preflight, and a
    check only the data can make (the in-process tests above cover every value)."""
    _exit_2_with_one_line(tmp_path, [CLI[1], CLI[5], CLI[8]])


@pytest.mark.slow
def test_every_bad_command_line_case_exits_2_through_the_entry_point(tmp_path):
    _exit_2_with_one_line(tmp_path, CLI)


def _exit_2_with_one_line(tmp_path, cases) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    procs = []
    (tmp_path / "a-file").write_text("a file where a folder should be")
    for i, (extra, _) in enumerate(cases):  # side by side: each is a few seconds of imports
        extra = [e.format(tmp=tmp_path) for e in extra]
        flags = [e for e in extra if e.startswith("-")]
        args = [*flags, *_overrides([e for e in extra if not e.startswith("-")]), f"paths.results_dir={tmp_path / f'results{i}'}",
                f"hydra.run.dir={tmp_path / f'out{i}'}", f"hydra.sweep.dir={tmp_path / f'sweep{i}'}"]
        procs.append(subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for i, ((extra, expected), proc) in enumerate(zip(cases, procs)):
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2, (extra, err[-2000:])
        assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err, (extra, err)
        assert [line for line in lines if line.startswith("error:")] == [lines[-1]], (extra, err)
        assert lines[-1].startswith(expected.format(tmp=tmp_path)), (extra, lines[-1])
        assert not (tmp_path / f"sweep{i}").exists(), extra  # no job of a sweep started
        assert not (tmp_path / f"out{i}").exists(), extra  # a refused run leaves no output folder (issue 20)
        if "auc" in expected:  # the preflight made the folders; the run stopped before writing anything
            assert not [p for p in (tmp_path / f"results{i}").rglob("*") if p.is_file()]
        else:
            assert not (tmp_path / f"results{i}").exists(), extra
