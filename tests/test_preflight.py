"""The preflight (`bench.config.preflight`): what a hostile command line gets refused, in one line, before anything starts.

The properties under test, each through `python -m bench.run`'s own code (`bench.cli.cli` in this process; the
subprocess cases are in tests/test_bad_input.py):
- a sweep is checked whole before job 0: every value of every axis (the command line's and the sweep file's,
  the command line winning), and every bad value is listed in the one line;
- sizes nobody could allocate are refused against a memory budget (the sketch table, the slots when the number
  of rows is known before loading, and the line says when it is not);
- strict config: an unknown top-level key, a boolean that is not true/false;
- folders that cannot be written are refused before anything is created; `preflight` creates the good ones;
- checks that need the data (AUC on a one-class test split) stop the run before training;
- more threads than cores are clamped, and the row says so.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import bench.config.cli as bench_cli
from bench.train.checkpoint import STOP
from bench.config.errors import ConfigError
from bench.config.preflight import Budget, available_cores, check_command_line, folder_problem, preflight, sketch_memory, train_rows, usable_threads
from bench.results.rows import read_rows
from bench.run import run

from test_run import tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread

# TINY without its sketch shape: for sweeps over it
UNSHAPED = [o for o in tiny("nws") if not o.startswith(("sketch.depth", "sketch.width"))]


def _refused(argv: list[str]) -> str:
    with pytest.raises(ConfigError) as info:
        check_command_line(argv)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def _where(tmp_path: Path) -> list[str]:
    return [f"paths.results_dir={tmp_path / 'results'}", f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'out'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


# -- sweeps: refused whole, before job 0 ---------------------------------------------------------------------
@pytest.mark.parametrize("widths", ["64,-1", "-1,64"])
def test_a_sweep_with_a_bad_value_is_refused_whole_whichever_job_has_it(tmp_path, widths):
    msg = _refused(["-m", *tiny("nws"), f"sketch.width={widths}", *_where(tmp_path)])
    assert msg == "<sketch.width=-1> is not allowed: width must be an integer >= 1, got -1"
    assert not list(tmp_path.iterdir())  # nothing created: no results, no data, no sweep folder


def test_every_bad_value_of_a_sweep_is_listed_in_one_line(tmp_path):
    msg = _refused(["-m", *tiny("nws"), "sketch.width=64,-1", "sampler.mix=0.5,2", "seed=0,1", *_where(tmp_path)])
    assert msg.startswith("2 bad values in this sweep of 8 jobs: ")
    assert "<sketch.width=-1> is not allowed: width must be an integer >= 1, got -1" in msg
    assert "<sampler.mix=2.0> is not allowed: mix must be a number in [0, 1], got 2.0" in msg
    assert msg.count("<sketch.width=-1>") == 1  # one line per bad value, however many jobs share it


def test_the_sweep_files_params_are_enumerated_and_the_command_line_wins(tmp_path):
    # conf/sweep/sketch_grid.yaml sweeps depth 4,16,64 x width 64,1024,16384 x bits x seed; the command line fixes
    # bits and seed, so 9 jobs remain, and every (depth, width) pair of the file is composed and checked
    argv = ["-m", *UNSHAPED, "sweep=sketch_grid", "seed=0", "sketch.bits=4", *_where(tmp_path)]
    configs = check_command_line(argv)
    assert len(configs) == 9 and {(c.seed, c.sketch.bits) for c in configs} == {(0, 4)}
    assert {(c.sketch.depth, c.sketch.width) for c in configs} == {(d, w) for d in (4, 16, 64) for w in (64, 1024, 16384)}
    # a budget of 10 MiB: the two largest sketches (16 x 16384 and 64 x 16384, 12 and 48 MiB) are refused, by name
    msg = _refused([*argv, "memory_budget_gb=0.01"])
    assert msg.startswith("2 bad values in this sweep of 9 jobs: <sketch.depth=16 sketch.width=16384> is not allowed: "
                          "it needs 12.1 MiB (sketch table 2.0 MiB + slots of 600 rows 37.5 KiB + native draw index "
                          "6.0 MiB + hashing peak 4.0 MiB)")
    assert ("<sketch.depth=64 sketch.width=16384> is not allowed: it needs 48.3 MiB (sketch table 8.0 MiB + slots of 600 "
            "rows 150.0 KiB + native draw index 24.1 MiB + hashing peak 16.0 MiB), over the memory budget of 10.2 MiB "
            "(memory_budget_gb=0.01)") in msg


def test_beyond_max_compositions_each_config_group_choice_is_composed_once(tmp_path, monkeypatch):
    import bench.config.preflight as pf

    monkeypatch.setattr(pf, "MAX_COMPOSITIONS", 2)  # sampler x trainer: 4 combinations of choices, too many
    configs = check_command_line(["-m", *tiny("uniform"), "sampler=uniform,history", "trainer=quick,default", "seed=0,1",
                                  *_where(tmp_path)])
    pairs = {(c.sampler.name, c.trainer.epochs, c.seed) for c in configs}
    # the first choices, then each other choice once, each with every combination of the values (the seeds)
    assert pairs == {("uniform", 1, 0), ("uniform", 1, 1), ("history", 1, 0), ("history", 1, 1), ("uniform", 3, 0), ("uniform", 3, 1)}


# -- sizes ---------------------------------------------------------------------------------------------------
def test_a_sketch_larger_than_the_memory_budget_is_refused_with_one_line(tmp_path):
    # the issue's two cases: an allocation traceback and an OOM kill, now one line each before anything starts
    wide = _refused([*UNSHAPED, "sketch.width=10000000000", *_where(tmp_path)])  # depth 8, the default
    assert wide.startswith("<sketch.width=10000000000> is not allowed: it needs 3,576.3 GiB (sketch table 596.0 GiB + "
                           "slots of 600 rows 18.8 KiB + native draw index 1,788.1 GiB + hashing peak 1,192.1 GiB), "
                           "over the memory budget of ")
    assert "GiB available here; set memory_budget_gb to change it)" in wide
    deep = _refused(["sketch.depth=1000000", *_where(tmp_path)])  # the default dataset: 80,000 training rows
    assert deep.startswith("<sketch.depth=1000000> is not allowed: it needs 8,042.3 GiB (sketch table 30.5 GiB + slots "
                           "of 80,000 rows 298.0 GiB + native draw index 389.6 GiB + hashing peak 7,324.2 GiB), over "
                           "the memory budget of ")
    over = _refused([*UNSHAPED, "sketch.width=100000", "memory_budget_gb=0.001", *_where(tmp_path)])
    assert over.endswith("over the memory budget of 1.0 MiB (memory_budget_gb=0.001)")
    assert not list(tmp_path.iterdir())


def test_without_the_number_of_rows_the_table_alone_is_checked_and_the_line_says_so(compose):
    cfg = compose(["dataset=cifar10", "sampler=nws", "sketch.width=1000000"])
    assert train_rows(cfg) == (None, None)  # a Hub dataset: its size is unknown before it is fetched
    msg = sketch_memory(cfg, None, Budget(2**20, "memory_budget_gb=0.001"), ("sketch.width",))
    assert msg == ("<sketch.width=1000000> is not allowed: it needs 61.0 MiB (sketch table 61.0 MiB; its slots not "
                   "counted: the size of dataset cifar10 is unknown before loading), over the memory budget of 1.0 MiB "
                   "(memory_budget_gb=0.001)")


def test_the_budget_is_the_setting_else_a_slurm_jobs_memory_else_half_of_this_machines(compose):
    from bench.config.preflight import memory_budget

    assert memory_budget(compose(["memory_budget_gb=2"]), 2**40) == Budget(2 * 2**30, "memory_budget_gb=2.0")
    slurm = memory_budget(compose(["hydra/launcher=slurm"], hydra_cfg=True), 2**30)  # the job's node, not this one
    assert slurm.bytes == 16 * 2**30 and slurm.source.startswith("half of hydra.launcher.mem_gb=32")
    assert memory_budget(compose([]), 8 * 2**30).bytes == 4 * 2**30
    assert memory_budget(compose([]), None) == Budget(None, "")  # unknown here: not checked


def test_a_sampler_that_reads_no_sketch_is_not_held_to_its_size(tmp_path):
    assert len(check_command_line([*tiny("uniform"), "sketch.width=10000000000", *_where(tmp_path)])) == 1


def test_depth_times_width_must_fit_int32_slots_whatever_the_budget(compose):
    cfg = compose([*tiny("nws"), "sketch.depth=2", "sketch.width=1073741824"])
    msg = sketch_memory(cfg, 600, Budget(2**50, "memory_budget_gb=1048576"), ("sketch.depth", "sketch.width"))
    assert msg == ("<sketch.depth=2 sketch.width=1073741824> is not allowed: depth x width = 2,147,483,648 must be "
                   "< 2**31 (the slots are int32)")


def test_the_batch_is_checked_against_the_rows_known_before_loading(tmp_path):
    msg = _refused(["-m", *tiny("nws"), "trainer.batch_size=64,1000", *_where(tmp_path)])
    assert msg == "<trainer.batch_size=1000> is not allowed: an integer in [1, 600] (the training rows)"


# -- strict config -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,expected", [
    ("+seeed=3", "<seeed=3> is not allowed: the config has no such key; its keys: dataset, model, sampler, sketch"),
    ("seeed=3", "<seeed=3> is not allowed: the config has no key 'seeed'; its keys: dataset, model"),
    ("resume=no", "<resume=no> is not allowed: true or false"),
    ("resume=maybe", "<resume=maybe> is not allowed: true or false"),
    ("resume=1", "<resume=1> is not allowed: true or false"),
    ("progress=yes", "<progress=yes> is not allowed: true or false"),
    ("sketch.key.with_label=on", "<sketch.key.with_label=on> is not allowed: true or false"),
    ("seed=abc", "<seed=abc> is not allowed: Value 'abc' of type 'str' could not be converted to Integer"),
    ("memory_budget_gb=0", "<memory_budget_gb=0.0> is not allowed: a finite number > 0 or null"),
])
def test_unknown_top_level_keys_and_non_boolean_booleans_are_refused(tmp_path, override, expected):
    assert _refused([*tiny("nws"), override, *_where(tmp_path)]).startswith(expected)


@pytest.mark.parametrize("override", ["resume=false", "resume=True", "progress=FALSE", "sketch.key.with_label=true"])
def test_true_and_false_in_any_case_are_booleans(tmp_path, override):
    (cfg,) = check_command_line([*tiny("nws"), override, *_where(tmp_path)])
    key, value = override.split("=")
    assert OmegaConf.select(cfg, key) is (value.lower() == "true")


# -- folders -------------------------------------------------------------------------------------------------
def test_folders_that_cannot_be_written_are_refused_before_anything_is_created(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cases = {
        f"paths.results_dir={blocker}": f"<paths.results_dir={blocker}> is not allowed: a folder this process can write "
                                        f"to; {blocker} is a file, not a folder",
        f"paths.results_dir={blocker}/sub": f"{blocker}/sub cannot be created: {blocker} is a file",
        f"paths.data_dir={blocker}/data": f"<paths.data_dir={blocker}/data> is not allowed: a folder this process can "
                                          f"write to; {blocker}/data cannot be created: {blocker} is a file",
        f"dataset.root={blocker}": f"<dataset.root={blocker}> is not allowed",
        f"hydra.run.dir={blocker}/out": f"<hydra.run.dir={blocker}/out> is not allowed",
    }
    for override, expected in cases.items():
        assert expected in _refused([*tiny("nws"), *_where(tmp_path), override]), override
    both = _refused(["-m", *tiny("nws"), *_where(tmp_path), f"paths.results_dir={blocker}", "sketch.width=8,-1"])
    assert both.startswith("2 bad values in this sweep of 2 jobs: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_preflight_creates_the_results_and_data_folders_and_proves_them_writable(tmp_path):
    preflight(["-m", *tiny("nws"), "seed=0,1", *_where(tmp_path)])
    assert (tmp_path / "results" / "runs").is_dir() and (tmp_path / "results" / "ckpt").is_dir()
    assert (tmp_path / "data").is_dir() and not list((tmp_path / "data").iterdir())  # the probe file is gone
    assert folder_problem(tmp_path / "results") is None


# -- the real entry point, in this process ---------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch, tmp_path):
    """Run `python -m bench.run ARGV` through bench.cli.cli here; return (exit status, stderr lines)."""

    def call(argv: list[str], capsys) -> tuple[int, list[str]]:
        monkeypatch.setattr(sys, "argv", ["bench.run", *argv])
        with pytest.raises(SystemExit) as info:
            bench_cli.cli(run)
        return info.value.code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]

    yield call
    STOP.uninstall()
    STOP.reset()


@pytest.mark.parametrize("extra,expected", [
    (["-m", "sketch.width=64,-1"], "error: <sketch.width=-1> is not allowed: width must be an integer >= 1, got -1"),
    (["-m", "sketch.width=-1,64"], "error: <sketch.width=-1> is not allowed: width must be an integer >= 1, got -1"),
    (["sketch.width=10000000000"], "error: <sketch.width=10000000000> is not allowed: it needs 3,576.3 GiB"),
    (["+seeed=3"], "error: <seeed=3> is not allowed: the config has no such key"),
    (["resume=no"], "error: <resume=no> is not allowed: true or false"),
    (["resume=maybe"], "error: <resume=maybe> is not allowed: true or false"),
    # issue 20: optional groups with no such file, an overflowing seed, an unquoted non-ASCII value
    (["experiment=mnist_mpl"], "error: <experiment=mnist_mpl> is not allowed: one of adult, avazu, criteo,"),
    (["-m", "sweep=foo"], "error: <sweep=foo> is not allowed: one of dev, dev_baselines,"),
    (["seed=1180591620717411303424"], "error: <seed=1180591620717411303424> is not allowed: an integer in [0, 4294967295]"),
    (["dataset.name=café"], "error: <dataset.name=café> is not allowed: Hydra's override grammar reads unquoted values "
                            "in ASCII only; quote it: 'dataset.name=\"café\"'"),
])
def test_the_cli_refuses_with_one_line_and_status_2_before_anything_starts(cli, capsys, tmp_path, extra, expected):
    flags = [e for e in extra if e.startswith("-")]
    status, lines = cli([*flags, *UNSHAPED, *[e for e in extra if not e.startswith("-")], *_where(tmp_path)], capsys)
    assert status == 2 and lines == [lines[-1]] and lines[-1].startswith(expected), lines
    assert not list(tmp_path.iterdir())  # no job started: no results, no data, no run or sweep folder


def test_the_cli_refuses_the_sizes_of_the_issue_on_the_default_dataset(cli, capsys, tmp_path):
    status, lines = cli(["sketch.depth=1000000", *_where(tmp_path)], capsys)
    assert status == 2 and lines[-1].startswith("error: <sketch.depth=1000000> is not allowed: it needs 8,042.3 GiB")
    assert not list(tmp_path.iterdir())


# -- what only the data or the machine can tell ----------------------------------------------------------------
def test_auc_on_a_test_split_with_one_class_is_an_error_before_training(compose, tmp_path):
    cfg = compose([*tiny("uniform"), "+dataset.options.task=binary", "+dataset.options.classes=2", "dataset.test_size=1",
                   "dataset.metric=auc"])
    with pytest.raises(ConfigError) as info:
        run(cfg, out_dir=tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith("<trainer.target_metric='auc'> is not allowed: AUC needs both classes in the test split, "
                          "which has ") and "use accuracy, logloss, or a test split with both classes" in msg
    assert ("1 positive and 0 negative rows" in msg) or ("0 positive and 1 negative rows" in msg)
    assert not (tmp_path / "results").exists()


def test_threads_above_the_cores_are_clamped_and_the_row_records_it(compose, tmp_path):
    cores = available_cores()
    assert usable_threads(None) == (None, []) and usable_threads(cores) == (cores, [])
    row = run(compose([*tiny("uniform"), f"trainer.threads={cores + 998}"]), out_dir=tmp_path / "out")
    note = f"<trainer.threads={cores + 998}> is more than the {cores} cores this process may use: using {cores}"
    assert row.warnings == [note] and torch.get_num_threads() == cores
    (stored,) = read_rows(tmp_path / "results")
    assert stored.warnings == [note] and stored.device.endswith(f"{cores} threads")
