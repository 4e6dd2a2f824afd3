"""bench.report on synthetic rows: the table's numbers by hand, the files, the CLI and its errors."""
from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report import markdown_table, summarize, write_report
from bench.results import read_rows, run_id


def write_old_row(results_dir: Path, row: dict) -> None:
    """Write a row the way versions before the typed row did (flat sketch_* fields, no config): they must load."""
    path = results_dir / "runs" / f"{row['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row))

ROOT = Path(__file__).resolve().parents[1]
TARGETS = {"adult": ("accuracy", 0.85, True), "california": ("mse", 0.30, False),
           "covtype": ("accuracy", 0.9, True)}
# (dataset, sampler) -> per-seed (final metric, time to target or None = never reached)
RUNS = {
    ("adult", "uniform"): [(0.852, 20.0), (0.856, 24.0), (0.858, 30.0)],
    ("adult", "loss"): [(0.853, 18.0), (0.851, 21.0), (0.857, 19.5)],
    ("adult", "nws"): [(0.851, 10.0), (0.855, 12.0), (0.860, None)],
    ("california", "uniform"): [(0.29, 40.0), (0.28, 44.0), (0.31, None)],
    ("california", "loss"): [(0.33, None), (0.34, None), (0.32, None)],
    ("california", "nws"): [(0.27, 30.0), (0.28, 33.0), (0.29, 35.0)],
}
SWEEP = [(2, 256, 0.840, None), (2, 1024, 0.849, 16.0), (4, 256, 0.846, 14.0)]  # adult, seed 0


def make_row(dataset, sampler, seed, final, ttt, depth=4, width=1024):
    metric, target, higher = TARGETS[dataset]
    cfg = {"dataset": dataset, "sampler": sampler, "seed": seed, "depth": depth, "width": width}
    curve = [{"step": 100 * i, "epoch": i, "time_s": 8.0 * i, "metric": final - (0.05 if higher else -0.05) / i,
              "loss": 1.0 / i} for i in range(1, 6)]
    return {
        "run_id": run_id(cfg), "status": "done", "timestamp": "2024-06-01T12:00:00", "dataset": dataset,
        "model": "mlp", "sampler": sampler, "seed": seed, "task": "binary",
        "sketch_family": "srp", "sketch_depth": depth, "sketch_width": width, "sketch_bits": 2,
        "sketch_bandwidth": None, "sketch_decay": 1.0, "target_metric": metric, "target": target,
        "higher_is_better": higher, "reached_target": ttt is not None, "time_to_target_s": ttt,
        "steps_to_target": None if ttt is None else 300, "final_metric": final, "best_metric": final + 0.002,
        "final_loss": 0.3, "train_time_s": 40.0 + seed, "eval_time_s": 2.0, "sampler_time_s": 0.02 * (40 + seed),
        "sampler_overhead": 0.02 if sampler != "uniform" else 0.001, "setup_time_s": 0.5, "steps": 500,
        "epochs": 5, "skipped_nonfinite": 0, "device": "cpu", "torch_version": "2.14.1",
        "git_commit": "31f0c4d", "config_hash": run_id(cfg), "overrides": [], "curve": curve,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    for (ds, sampler), runs in RUNS.items():
        for seed, (final, ttt) in enumerate(runs):
            write_old_row(tmp_path / "multirun" / f"{ds}_{sampler}_{seed}", make_row(ds, sampler, seed, final, ttt))
    for depth, width, final, ttt in SWEEP:
        write_old_row(tmp_path, make_row("adult", "nws", 0, final, ttt, depth, width))
    return tmp_path


def line(df, dataset, sampler, setting=""):
    sel = df[(df.dataset == dataset) & (df.sampler == sampler) & (df.setting == setting)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_summary_numbers_match_a_hand_computation(results):
    df = summarize(read_rows(results))
    r = line(df, "adult", "nws", "depth=4 width=1024")
    finals = [0.851, 0.855, 0.860]
    assert r.seeds == 3
    assert r.final_mean == pytest.approx(statistics.mean(finals))
    assert r.final_std == pytest.approx(statistics.stdev(finals))  # sample std, ddof=1
    assert r.best_mean == pytest.approx(statistics.mean(finals) + 0.002)
    # times 10, 12, never: min 10, median of (10, 12, inf) = 12, two of three reached it
    assert (r.ttt_min, r.ttt_median, r.reached, r.ttt_known) == (10.0, 12.0, 2, 3)
    assert r.ttt_ratio == pytest.approx(12.0 / 24.0)  # median vs uniform's median (20, 24, 30)
    assert r.overhead_pct == pytest.approx(2.0)
    assert r.train_time_mean == pytest.approx(41.0)


def test_never_reached_is_inf_and_ratio_against_the_same_dataset(results):
    df = summarize(read_rows(results))
    loss = line(df, "california", "loss")
    assert math.isinf(loss.ttt_min) and math.isinf(loss.ttt_median) and loss.reached == 0
    assert math.isinf(loss.ttt_ratio)
    uni = line(df, "california", "uniform")  # 40, 44, never -> median 44
    assert (uni.ttt_median, uni.reached, uni.ttt_ratio) == (44.0, 2, 1.0)
    assert line(df, "california", "nws").ttt_ratio == pytest.approx(33.0 / 44.0)
    assert "inf / inf (0/3)" in markdown_table(df)


def test_sketch_sweep_gives_one_line_per_setting_and_sorted_order(results):
    df = summarize(read_rows(results))
    nws = df[(df.dataset == "adult") & (df.sampler == "nws")]
    assert list(nws.setting) == ["depth=2 width=256", "depth=2 width=1024", "depth=4 width=256", "depth=4 width=1024"]
    assert list(nws.seeds) == [1, 1, 1, 3]
    assert list(df.dataset) == sorted(df.dataset)
    assert list(df[df.dataset == "california"].sampler) == ["loss", "nws", "uniform"]


def test_markdown_table_has_provenance_and_one_line_per_group(results):
    df = summarize(read_rows(results))
    md = markdown_table(df)
    assert "- device: cpu" in md and "- torch: 2.14.1" in md and "- git commit: 31f0c4d" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + len(df) == 1 + 9
    assert "10.0 / 12.0 (2/3)" in md and "0.50" in md and "median vs uniform" in md
    assert "accuracy ≥ 0.85" in md and "mse ≤ 0.3" in md


def test_write_report_writes_markdown_csv_and_plots(results):
    (results / "sketch_fidelity.json").write_text(json.dumps(
        [{"family": "srp", "depth": d, "width": w, "error": 1.0 / (d * w) ** 0.5}
         for d in (1, 2, 4) for w in (64, 256, 1024)]))
    out = results / "report"
    md = write_report([results], out)
    assert md == out / "report.md" and "10.0 / 12.0 (2/3)" in md.read_text()
    for name in ("summary.csv", "adult_metric_vs_time.png", "adult_time_to_target.png",
                 "california_metric_vs_time.png", "california_time_to_target.png", "sketch_sweep.png",
                 "sketch_fidelity.png"):
        assert (out / name).stat().st_size > 0, name
    csv = pd.read_csv(out / "summary.csv")
    unreached = csv[(csv.dataset == "california") & (csv.sampler == "loss")].ttt_median
    assert len(csv) == 9 and math.isinf(unreached.iloc[0])


def test_old_rows_with_missing_fields_and_odd_fidelity_are_tolerated(tmp_path):
    write_old_row(tmp_path, {"run_id": "old", "dataset": "adult", "sampler": "uniform", "final_metric": 0.8})
    (tmp_path / "sketch_fidelity.json").write_text(json.dumps([{"rows": 2, "buckets": 64, "err": 0.1}]))
    md = write_report(tmp_path).read_text()
    # no time_to_target_s key at all = unknown ("—"), not "never reached" (inf)
    assert "| adult | uniform | 1 | ? ≥ — | 0.8000 | — | — | — | — | — | — |" in md
    assert "skipped" in md and not (tmp_path / "sketch_fidelity.png").exists()


def test_notes_flag_a_missing_baseline_and_repeated_seeds(results):
    row = make_row("covtype", "loss", 0, 0.7, 5.0)
    write_old_row(results, {**row, "run_id": "a"})
    write_old_row(results, {**row, "run_id": "b"})  # same seed, a config difference the table does not see
    text = write_report(results).read_text()
    assert "no `uniform` rows for covtype" in text and "covtype / loss: 1 rows repeat a seed" in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "bench.report", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_the_table(results):
    p = run_cli(results)
    assert p.returncode == 0, p.stderr
    assert "| dataset | sampler | setting |" in p.stdout and "10.0 / 12.0 (2/3)" in p.stdout
    assert (results / "report.md").exists()


@pytest.mark.parametrize("sub", ["empty", "missing"])
def test_cli_fails_with_one_line_on_no_rows(tmp_path, sub):
    (tmp_path / "empty").mkdir()
    p = run_cli(tmp_path / sub)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("bench.report: error:")
