"""End-to-end runs of the harness: every sampler on tiny data, skip-on-rerun, a real `-m` sweep and its report."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sketch.samplers import SAMPLERS
from bench.results.rows import read_rows
from bench.run import run

from conftest import REPO

# A tiny, fast composition: in-memory clustered data, a small MLP, one short epoch, no W&B.
TINY = [
    "dataset=synthetic", "+dataset.options.n=600", "+dataset.options.d=8", "dataset.target=0.5",
    "model=mlp", "model.hidden=[32]", "trainer=quick", "trainer.batch_size=64", "logger=disabled",
    "progress=false", "sketch.depth=4", "sketch.width=64",
]


def tiny(sampler: str, *extra: str) -> list[str]:
    pool = ["sampler.pool_size=null"] if sampler in ("nws_full", "loss") else []  # score every item
    return [f"sampler={sampler}", *TINY, *pool, *extra]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_trains_end_to_end_and_writes_one_row(compose, tmp_path, sampler):
    cfg = compose(tiny(sampler))
    row = run(cfg, out_dir=tmp_path / "out")
    steps_per_epoch = -(-600 // 64)
    assert row.sampler == sampler and row.steps == steps_per_epoch and row.epochs == 1
    # the curve has the evaluation before training and after the last step, with growing clocks
    times = [p["time_s"] for p in row.curve]
    assert row.curve[0]["step"] == 0 and row.curve[-1]["step"] == row.steps and times == sorted(times)
    assert row.final_metric > 0.3  # 4 classes: chance is 0.25; a short run learns something
    assert 0 <= row.sampler_time_s <= row.train_time_s and row.eval_time_s > 0
    assert (tmp_path / "results" / "runs" / f"{row.run_id}.json").is_file()
    assert (tmp_path / "out" / "runs" / f"{row.run_id}.json").is_file()
    assert "time to accuracy" in row.summary_table()


def test_rerunning_a_finished_job_skips_it(compose, tmp_path):
    cfg = compose(tiny("nws"))
    first = run(cfg, out_dir=tmp_path / "a")
    second = run(cfg, out_dir=tmp_path / "b")
    # the second call found the row and returned it without training again (same timestamp, same clock)
    assert second.timestamp == first.timestamp and second.train_time_s == first.train_time_s
    assert (tmp_path / "b" / "runs" / f"{first.run_id}.json").is_file()  # the new run dir gets a copy
    assert len(read_rows(tmp_path / "results")) == 1


def test_different_seed_is_a_different_job(compose, tmp_path):
    a = run(compose(tiny("uniform", "seed=0")), out_dir=tmp_path / "a")
    b = run(compose(tiny("uniform", "seed=1")), out_dir=tmp_path / "b")
    assert a.run_id != b.run_id
    assert len(read_rows(tmp_path / "results")) == 2


def _bench_run(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_sweep_through_hydra_entry_point_writes_one_row_per_job_and_reports(tmp_path):
    sweep = tmp_path / "sweep"
    res = _bench_run(["-m", *tiny("uniform,history,nws").__iter__(), f"paths.results_dir={tmp_path / 'results'}",
                      f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = read_rows(sweep)
    assert sorted(r.sampler for r in rows) == ["history", "nws", "uniform"]
    assert len(read_rows(tmp_path / "results")) == 3
    assert "[sweep] finished" in res.stderr
    rep = subprocess.run([sys.executable, "-m", "bench.report", str(sweep)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert rep.returncode == 0, rep.stderr[-2000:]
    table_lines = [line for line in rep.stdout.splitlines() if line.startswith("| synthetic")]
    assert sorted(line.split("|")[2].strip() for line in table_lines) == ["history", "nws", "uniform"]
    assert (sweep / "report.md").is_file()


@pytest.mark.slow
def test_joblib_launcher_runs_jobs_in_parallel_processes(tmp_path):
    res = _bench_run(["-m", "hydra/launcher=local_parallel", *tiny("uniform"), "seed=0,1",
                      f"paths.results_dir={tmp_path / 'results'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(r.seed for r in read_rows(tmp_path / "results")) == [0, 1]


def test_bad_value_stops_before_training_with_one_line(tmp_path):
    res = _bench_run([*tiny("nws"), "sketch.width=-5", f"paths.results_dir={tmp_path / 'results'}"], cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == "error: <sketch.width=-5> is not allowed: width must be an integer >= 1, got -5"
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "results").exists()
