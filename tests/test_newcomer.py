"""What a newcomer and a careless user tripped over (issue 20): each case with the check that it now behaves.

Fast, in-process checks; the one subprocess (`test_refusals_through_the_entry_point`) runs several command lines
side by side. Run: `PYTHONPATH=$PWD python -m pytest -q tests/test_newcomer.py`.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.config.schemas import ConfigError, KeyConfig, SketchConfig
from bench.config.cli import check_command_line
from bench.config.preflight import sketch_bytes

from conftest import REPO
from test_run import tiny


# -- 2. the memory estimate matches what is allocated ------------------------------------------------------------
@pytest.mark.parametrize("depth,width", [(2, 64), (8, 1024), (32, 4096), (64, 16384)])
def test_memory_estimate_matches_the_allocated_tensors_within_1_5x(depth, width, one_thread):
    from bench import data as datasets
    from bench.build.features import sketch_and_slots
    from sketch.samplers import NWSSampler

    data = datasets.load("synthetic", n=3000, d=16, seed=0)
    spec = SketchConfig(depth=depth, width=width, bits=6)
    sketch, slots = sketch_and_slots(spec, data, seed=0, device="cpu", cache_dir=None)
    sampler = NWSSampler(sketch, slots, 64)
    measured = {"sketch table": sketch.table.nbytes,
                "hash parameters": sum(t.nbytes for t in sketch.hash.params.values()),
                "slots": slots.nbytes, "native draw index": sampler._native.memory_bytes()}
    estimate = sketch_bytes(depth, width, 6, rows=data.num_train, dim=16, native=True)
    for part, got in measured.items():
        assert got / 1.5 <= estimate[part] <= got * 1.5, (part, got, estimate[part])
    total = sum(measured.values())
    assert total / 1.5 <= sum(v for k, v in estimate.items() if k != "hashing peak") <= total * 1.5


def test_a_sketch_too_deep_for_this_machine_is_refused_before_training():
    # the issue: digits at depth 100,000 passed the old estimate (3.6 GiB) and was OOM-killed at 23.5 GB RSS
    with pytest.raises(ConfigError) as info:
        check_command_line(["dataset=digits", "trainer=quick", "sketch.depth=100000", "memory_budget_gb=10.9"])
    msg = str(info.value)
    assert msg.startswith("<sketch.depth=100000> is not allowed: it needs ") and "native draw index" in msg
    assert "over the memory budget of 10.9 GiB" in msg and "\n" not in msg


# -- 3. the default sampler on every shipped dataset ------------------------------------------------------------
def _cached(name: str) -> bool:
    from bench.data import cache_path
    from bench.data._cache import read_meta

    return read_meta(cache_path(name)) is not None


QUICK = ["trainer=quick", "logger=disabled", "progress=false", "trainer.probe_size=0"]


@pytest.mark.skipif(not _cached("california_housing"), reason="california_housing is not prepared here")
def test_the_default_sampler_runs_on_a_regression_dataset(compose, tmp_path, one_thread):
    from bench.config.schemas import validate
    from bench.run import run

    cfg = compose(["dataset=california_housing", *QUICK, "dataset.train_size=1024", "dataset.test_size=256"])
    assert cfg.sampler.name == "nws" and cfg.sketch.key.label_buckets  # the defaults, untouched
    validate(cfg)
    row = run(cfg, out_dir=tmp_path / "out")
    assert row.task == "regression" and row.steps == 4 and row.final_metric > 0


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits", "california_housing", "adult", "kdd04", "movielens100k", "mnist_subset",
                                  "mnist", "fashion_mnist"])
def test_every_shipped_offline_dataset_runs_with_the_default_sampler(compose, tmp_path, name):
    from bench.config.schemas import validate
    from bench.run import run

    if name != "digits" and not _cached(name):
        pytest.skip(f"{name} is not prepared here (python -m bench.prepare {name})")
    cfg = compose([f"dataset={name}", *QUICK])
    validate(cfg)
    assert run(cfg, out_dir=tmp_path / "out").steps > 0


# -- 4. one line and a distinct status ------------------------------------------------------------------------------
def test_a_checkpoint_that_cannot_be_written_on_sigterm_keeps_the_previous_one_and_exits_74(tmp_path):
    from bench.train.checkpoint import EXIT_NO_CHECKPOINT, Preempted, StopSignal, stop_point
    from bench.results.files import atomic_write
    from bench.train.loop import TrainState

    previous = tmp_path / "ckpt" / "run.pt"
    atomic_write(previous, lambda f: f.write(b"step 3"))

    def full_disk(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    signals = StopSignal()
    signals.signum = signal.SIGTERM
    check = stop_point(lambda state: atomic_write(previous, full_disk), previous, torch.device("cpu"), signals)
    with pytest.raises(Preempted) as info:
        check(TrainState(step=7))
    assert info.value.exit_code == EXIT_NO_CHECKPOINT == 74
    assert str(info.value) == (f"SIGTERM after step 7; checkpoint {previous} NOT written (No space left on device); "
                               f"the previous checkpoint {previous} is kept")
    assert previous.read_bytes() == b"step 3" and [p.name for p in previous.parent.iterdir()] == ["run.pt"]


def test_a_periodic_checkpoint_that_cannot_be_written_is_one_warning_and_training_goes_on(tmp_path, caplog):
    from bench.train.checkpoint import periodic
    from bench.train.loop import TrainState

    def full_disk(state):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    write = periodic(full_disk, tmp_path / "run.pt")
    write(TrainState(step=5))
    write(TrainState(step=10))
    warned = [r.getMessage() for r in caplog.records if r.name == "bench.train.checkpoint"]
    assert warned == [f"checkpoint {tmp_path / 'run.pt'} not written at step 5 (No space left on device); the previous "
                      f"one is kept and training goes on (further failures are not reported)"]


def _row(**fields):
    from bench.results.rows import ResultRow

    curve = [{"step": s, "time_s": t, "metric": m} for s, t, m in fields.pop("points", [(0, 0.0, 0.1), (5, 1.0, 0.9)])]
    return ResultRow(**{"run_id": "abc", "dataset": "digits", "sampler": "uniform", "seed": 0,
                        "target_metric": "accuracy", "final_metric": curve[-1]["metric"], "train_time_s": curve[-1]["time_s"],
                        "setup_time_s": 0.0, "eval_time_s": 0.1, "steps": curve[-1]["step"], "curve": curve, **fields})


def _write(folder: Path, row, **changes) -> Path:
    path = folder / "runs" / f"{row.run_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**row.to_dict(), **changes}))
    return path


def test_the_report_names_a_row_with_a_null_curve_and_a_folder_it_cannot_write(tmp_path, capsys, caplog):
    from bench.report.tables import main

    bad = _write(tmp_path / "a", _row(), curve=None)
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "a")])
    assert info.value.code == 2
    assert any(str(bad) in r.getMessage() and "'curve' is null, not a list" in r.getMessage() for r in caplog.records)
    _write(tmp_path / "b", _row())
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(SystemExit) as info:
        main([str(tmp_path / "b"), "--out", str(tmp_path / "a-file" / "report")])
    assert info.value.code == 73
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1] == (f"bench.report: error: cannot write the report into {tmp_path / 'a-file' / 'report'} (File exists); "
                       f"choose another folder with --out DIR") or err[-1].startswith("bench.report: error: cannot write")


# -- 5. accepted but wrong -----------------------------------------------------------------------------------------
def test_an_empty_results_folder_is_refused(compose):
    from bench.config.schemas import validate

    with pytest.raises(ConfigError, match=r"^<paths.results_dir=''> is not allowed: a folder path \(not empty"):
        validate(compose(["paths.results_dir="]))


def test_a_train_size_larger_than_the_dataset_is_said_once():
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from bench.build.parts import oversized

    cfg = OmegaConf.create({"dataset": {"train_size": 100000000, "test_size": None}})
    data = SimpleNamespace(name="digits", num_train=1438, num_test=359)
    assert oversized(cfg, data) == ["<dataset.train_size=100000000> is more than the 1,438 rows of digits's train "
                                    "split: using all 1,438"]


def test_a_table_line_names_the_file_read_now_and_cuts_long_column_lists():
    from bench.data._table import describe

    meta = {"task": "binary", "rows": {"train": 8, "test": 2},
            "info": {"source": "/old/churn.csv", "label": "y", "target": {"how": "two values"}, "categorical": [],
                     "numeric": [f"px{i}" for i in range(784)]}}
    line = describe(meta, source="/new/churn.csv")
    assert line.startswith("table /new/churn.csv: ") and "/old/" not in line
    assert "784 numeric (px0, px1, px2, px3, px4, px5, ... (784 in all))" in line and len(line) < 300


def test_the_slots_cache_keeps_the_recently_used_files_under_its_cap_and_prepare_clean_empties_it(tmp_path, capsys):
    from bench import data as datasets
    from bench.build.features import cached_slots, build_sketch
    from bench.prepare import main

    data = datasets.load("synthetic", n=500, d=4, seed=0)
    keys = data.x_num_train.float()
    folder = tmp_path / "slots"
    size = 500 * 4 * 4  # N x depth int32
    cap = int(2.5 * size) + 2000  # two files fit (with torch.save's header), three do not

    def slots(width):
        return cached_slots(build_sketch(4, "srp", 4, width, 3), keys, tmp_path, "t", cap_bytes=cap)

    slots(64), slots(128)
    first = sorted(folder.glob("*.pt"), key=lambda p: p.stat().st_mtime)[0]
    os.utime(first, (1, 1))  # the 64-wide file is the least recently used ...
    slots(64)  # ... until it is read again, which marks it used
    slots(256)  # the third: the least recently used one (the 128-wide) goes
    assert len(list(folder.glob("*.pt"))) == 2 and first.exists()
    assert main(["--clean", "--root", str(tmp_path)]) == 0
    assert not list(folder.glob("*.pt"))
    assert capsys.readouterr().out.startswith(f"removed 2 slots file(s), ")


# -- 6. logs that fit where they go ---------------------------------------------------------------------------------
def test_progress_off_a_terminal_is_one_line_per_evaluation():
    import io

    from bench.results.logger import Progress

    stream = io.StringIO()
    bar = Progress("digits/nws", total=6, metric="accuracy", stream=stream)
    for step in range(1, 7):
        bar.update(1)
        if step % 3 == 0:
            bar.evaluated({"step": step, "time_s": 0.5 * step, "metric": 0.25 * step / 3})
    bar.close()
    assert stream.getvalue() == ("[digits/nws] step 3/6 accuracy 0.2500 clock 1.5 s\n"
                                 "[digits/nws] step 6/6 accuracy 0.5000 clock 3.0 s\n")


def test_no_none_in_the_run_summary_table():
    table = _row(target=None, device="cpu", torch_version="2", git_commit="abc").summary_table()
    assert "None" not in table and "| time to target | no target set (trainer.target) |" in table


def test_report_names_are_short_ascii_and_made_of_the_settings_that_differ(tmp_path):
    from bench.report.plots import _slug
    from bench.report.tables import frame

    slug = _slug("table label=prix_été categorical=[\"région\",\"ville\",\"quartier\",\"rue\"] drop=[\"id\"] " * 2)
    assert slug.isascii() and len(slug) <= 60 and set(slug) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
    a = _row(run_id="a", experiment_id="e1", config={"dataset": {"name": "digits"}, "trainer": {"probe_size": 2048, "lr": 0.1}})
    b = _row(run_id="b", experiment_id="e2", config={"dataset": {"name": "digits"}, "trainer": {"probe_size": 2048}})
    c = _row(run_id="c", experiment_id="e3", config={"dataset": {"name": "digits"}, "trainer": {"lr": 0.1}})
    names = sorted(frame([a, b, c])["name"])
    assert not any("#" in n for n in names) and names == sorted(set(names))  # told apart by what differs
    assert all(len(n) < 60 for n in names)


def test_reproduce_sh_warns_on_a_busy_machine(tmp_path):
    load = tmp_path / "loadavg"
    load.write_text(f"{4.0 * os.cpu_count()} 1.0 1.0 1/1 1\n")
    env = {**os.environ, "PYTHON": "false", "NWS_LOADAVG": str(load)}  # stops at the first python call
    p = subprocess.run(["bash", str(REPO / "scripts" / "reproduce.sh"), "--quick", "--no-docs", "--out", str(tmp_path)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert "reproduce.sh: warning: load average " in p.stderr and "over 0.5 per core" in p.stderr


def test_sketch_fidelity_uses_no_deprecated_name():
    import warnings

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import sketch_fidelity
    finally:
        sys.path.pop(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        assert sketch_fidelity._make_hash("srp", 4, 3, 0, 2, 2, 1.0, "cpu").depth == 3


# -- 8. stalls -------------------------------------------------------------------------------------------------------
def test_stalls_are_found_counted_and_discounted_and_old_rows_still_load():
    from bench.results.rows import ResultRow
    from bench.train.timing import find_stalls

    # 10 steps per interval at 0.1 s per step, except one interval that took 4 s (a busy machine)
    curve = [{"step": 10 * i, "time_s": t} for i, t in enumerate([0.5, 1.5, 2.5, 6.5, 7.5, 8.5])]
    st = find_stalls(curve)
    assert st.median_step_s == pytest.approx(0.1) and st.count == 1 and st.seconds == pytest.approx(3.0)
    assert st.robust_time(40, 0.5) == pytest.approx(4.5)  # vs 7.5 s on the fair clock
    old = {k: v for k, v in _row().to_dict().items() if k not in ("stalls", "stall_s", "interval_step_s", "median_step_s",
                                                                   "robust_time_to_target_s")}
    assert ResultRow.from_dict(old).stalls is None


def test_the_report_marks_stalled_lines_and_gives_a_stall_robust_time(tmp_path):
    from bench.report.tables import write_report

    points = [(0, 0.0, 0.1), (10, 1.0, 0.5), (20, 2.0, 0.7), (30, 3.0, 0.8), (40, 4.0, 0.9)]
    stalled = [(0, 0.0, 0.1), (10, 1.0, 0.5), (20, 6.0, 0.7), (30, 7.0, 0.8), (40, 8.0, 0.9)]
    _write(tmp_path, _row(run_id="u", sampler="uniform", experiment_id="e", group_id="gu", points=points))
    _write(tmp_path, _row(run_id="n", sampler="nws", experiment_id="e", group_id="gn", points=stalled))
    text = write_report(tmp_path).read_text()
    assert "| nws ‡1 |" in text and "| uniform |" in text and "0.99·T_u s stall-robust" in text
    line = next(line for line in text.splitlines() if line.startswith("| digits | nws"))
    assert "| 4.00 |" in line  # 40 steps x 0.1 s per step, where the fair clock says 8.00


# -- 1. the report never names an experiment after a group that did not resolve -------------------------------------
def test_the_report_names_experiments_only_after_existing_experiment_files():
    from bench.report.tables import frame

    typo = _row(run_id="a", experiment_id="e1", overrides=["experiment=mnist_mpl"])  # an older row: Hydra skipped it
    named = _row(run_id="b", experiment_id="e2", dataset="mnist", overrides=["experiment=mnist_mlp"])
    assert sorted(frame([typo, named])["name"]) == ["digits", "mnist_mlp"]


@pytest.mark.slow
def test_sigterm_on_a_full_disk_exits_74_with_one_line_and_the_same_command_resumes(tmp_path):
    # a real full disk: a 512 KiB tmpfs holds the results folder; the checkpoint (a 2 MiB sketch table) cannot fit
    import shutil
    import time

    from test_preemption import LONG, _start, _training, _wait_for

    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        args = [*LONG, "sketch.width=65536", f"paths.data_dir={tmp_path / 'data'}", f"paths.results_dir={disk}",
                "logger=disabled"]
        proc = _start([*args, f"hydra.run.dir={tmp_path / 'out'}"], cwd=tmp_path)
        _wait_for(_training(tmp_path / "out" / "metrics.jsonl"), proc)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        last = [line for line in err.splitlines() if line.strip()][-1]
        assert proc.returncode == 74, err[-3000:]
        assert last.startswith("stopped: SIGTERM after step ") and "NOT written (No space left on device); there is no " \
            "previous checkpoint: a rerun starts over; run the same command to resume (exit status 74)" in last, last
        assert "Traceback" not in err and not list((disk / "ckpt").glob("*"))  # nothing partial left behind
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_torch_save_on_a_full_disk_raises_the_os_error_not_the_zip_writers():
    import io

    from bench.train.checkpoint import _save

    class FullDisk(io.BytesIO):
        def write(self, b):
            if self.tell() + len(b) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(b)

    with pytest.raises(OSError) as info:
        _save({"table": torch.zeros(10000)}, FullDisk())
    assert info.value.errno == errno.ENOSPC


RSS_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from bench import data as datasets
from bench.config.schemas import SketchConfig
from bench.build.features import sketch_and_slots
from bench.config.preflight import sketch_bytes
from sketch.samplers import NWSSampler

def status(key):  # kB lines of /proc/self/status
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key + ":"))

depth = int(sys.argv[1])
data = datasets.load("digits")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) starts again from the current RSS
base = status("VmRSS")
sketch, slots = sketch_and_slots(SketchConfig(depth=depth), data, seed=0, device="cpu", cache_dir=None)
next(iter(NWSSampler(sketch, slots, 256, refresh_every=4)))
print(sum(sketch_bytes(depth, 4096, 10, data.num_train, 64, native=True).values()) / (status("VmHWM") - base))
"""


@pytest.mark.slow
@pytest.mark.parametrize("depth", [500, 2000])
def test_memory_estimate_matches_the_peak_rss_of_a_real_build_within_1_5x(depth):
    # digits at the default width and bits: the peak RSS growth of hashing, the slots and the native index
    p = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(depth)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-2000:]
    assert 1 / 1.5 <= float(p.stdout.split()[-1]) <= 1.5
