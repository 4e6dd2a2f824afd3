"""bench.report.tables on synthetic rows: the protocol's numbers by hand (T_u, loose target, equal-time quality, the
epoch-1 flag), lines that are never pooled across configurations, the files, the CLI and its errors."""
from __future__ import annotations

import dataclasses

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.report.tables import markdown_table, summarize, write_report
from bench.results.rows import ResultRow, read_rows, write_row
from bench.results.identity import experiment_id, group_id, identity, run_id


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
    assert (r.ttt_min, r.ttt_median, r.ttt_reached, r.ttt_known) == (10.0, 12.0, 2, 3)
    assert r.ttt_ratio == pytest.approx(12.0 / 24.0)  # median vs uniform's median (20, 24, 30)
    assert r.overhead_pct == pytest.approx(2.0)
    assert r.train_time_mean == pytest.approx(41.0)


def test_never_reached_is_inf_and_ratio_against_the_same_dataset(results):
    df = summarize(read_rows(results))
    loss = line(df, "california", "loss")
    assert math.isinf(loss.ttt_min) and math.isinf(loss.ttt_median) and loss.ttt_reached == 0
    assert math.isinf(loss.ttt_ratio)
    uni = line(df, "california", "uniform")  # 40, 44, never -> median 44
    assert (uni.ttt_median, uni.ttt_reached, uni.ttt_ratio) == (44.0, 2, 1.0)
    assert line(df, "california", "nws").ttt_ratio == pytest.approx(33.0 / 44.0)
    assert "inf (0/3)" in markdown_table(df)


def test_sketch_sweep_gives_one_line_per_setting_and_sorted_order(results):
    df = summarize(read_rows(results))
    nws = df[(df.dataset == "adult") & (df.sampler == "nws")]
    assert list(nws.setting) == ["depth=2 width=256", "depth=2 width=1024", "depth=4 width=256", "depth=4 width=1024"]
    assert list(nws.seeds) == [1, 1, 1, 3]
    assert list(df.dataset) == sorted(df.dataset)
    assert list(df[df.dataset == "california"].sampler) == ["loss", "nws", "uniform"]
    assert set(df[df.dataset == "california"].setting) == {""}  # one line per sampler there: nothing to tell apart


def test_markdown_table_has_provenance_and_one_line_per_group(results):
    df = summarize(read_rows(results))
    md = markdown_table(df)
    assert "- device: cpu" in md and "- torch: 2.14.1" in md and "- git commit: 31f0c4d" in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln]
    assert len(rows) == 1 + len(df) == 1 + 9
    assert "| adult | nws | depth=4 width=1024 | 3 |" in md and "12.0 (2/3)" in md and "0.99·T_u time vs uniform" in md
    assert "hand target ≥ 0.85" in md and "hand target ≤ 0.3" in md  # the metric's direction in each experiment


def test_write_report_writes_markdown_csv_and_plots(results):
    (results / "sketch_fidelity.json").write_text(json.dumps(
        [{"family": "srp", "depth": d, "width": w, "error": 1.0 / (d * w) ** 0.5}
         for d in (1, 2, 4) for w in (64, 256, 1024)]))
    out = results / "report"
    md = write_report([results], out)
    assert md == out / "report.md" and "12.0 (2/3)" in md.read_text()
    for name in ("summary.csv", "experiments.csv", "adult_metric_vs_time.png", "adult_time_to_target.png",
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
    # no time_to_target_s key at all = unknown ("—"), not "never reached" (inf); no curve: no protocol numbers
    assert "| adult | uniform | 1 | 0.8000 | — | — | — | — | — | — | — | — | — | — |" in md
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
    assert "| experiment | sampler | setting |" in p.stdout and "12.0 (2/3)" in p.stdout
    assert (results / "report.md").exists()


@pytest.mark.parametrize("sub", ["empty", "missing"])
def test_cli_fails_with_one_line_on_no_rows(tmp_path, sub):
    (tmp_path / "empty").mkdir()
    p = run_cli(tmp_path / sub)
    assert p.returncode != 0
    assert p.stderr.strip().count("\n") == 0 and p.stderr.startswith("bench.report: error:")


# -- the protocol on rows of this version (config, group and experiment ids) ---------------------------------
STEPS_PER_EPOCH, EVALS_PER_EPOCH = 10, 2  # evaluations at steps 0, 5, 10, ..., 40 (4 epochs)


def protocol_row(sampler: str, seed: int, metrics: list[float], dt: float, *, lr: float = 1e-3,
                 metric: str = "accuracy", target: float | None = 0.5, probe: list[float] | None = None) -> ResultRow:
    """A finished run whose evaluation i is at step 5 i and fair-clock time i * dt, with the given metrics."""
    cfg = {"dataset": {"name": "synthetic"}, "model": {"hidden": [32]}, "sampler": {"name": sampler},
           "trainer": {"optimizer": {"lr": lr}, "target": target, "target_metric": metric}, "seed": seed}
    curve = [{"step": 5 * i, "epoch": min(5 * i // STEPS_PER_EPOCH, 3), "time_s": i * dt, "metric": m,
              **({"probe_vr": probe[i]} if probe else {})} for i, m in enumerate(metrics)]
    reached = next((p for p in curve if target is not None and p["metric"] >= target), None)
    return ResultRow(
        run_id=run_id(cfg), group_id=group_id(cfg), experiment_id=experiment_id(cfg), dataset="synthetic",
        sampler=sampler, seed=seed, model="MLP", task="multiclass", target_metric=metric, target=target,
        reached_target=reached is not None, time_to_target_s=reached and reached["time_s"],
        final_metric=metrics[-1], best_metric=max(metrics), train_time_s=curve[-1]["time_s"], sampler_time_s=0.0,
        steps=40, epochs=4, steps_per_epoch=STEPS_PER_EPOCH, evals_per_epoch=EVALS_PER_EPOCH, device="cpu",
        torch_version="2.14.1", git_commit="abc", overrides=[f"sampler={sampler}", f"seed={seed}"],
        config=identity(cfg), curve=curve)


# uniform's finals 0.90, 0.92, 0.86 -> T_u = 0.90, loose 0.891; its total clocks 4.0, 4.4, 3.6 -> median 4.0
UNIFORM = [([0.1, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.895, 0.90], 0.5),
           ([0.1, 0.5, 0.6, 0.7, 0.8, 0.85, 0.89, 0.91, 0.92], 0.55),
           ([0.1, 0.5, 0.6, 0.7, 0.8, 0.84, 0.85, 0.855, 0.86], 0.45)]
FAST = [([0.1, 0.6, 0.8, 0.88, 0.90, 0.90, 0.91, 0.91, 0.91], 0.6),  # better in steps, slower per step
        ([0.1, 0.6, 0.8, 0.89, 0.895, 0.90, 0.90, 0.90, 0.90], 0.6),
        ([0.1, 0.6, 0.8, 0.88, 0.90, 0.90, 0.91, 0.91, 0.91], 0.7)]


def protocol_rows(**kw) -> list[ResultRow]:
    return ([protocol_row("uniform", s, m, dt, **kw) for s, (m, dt) in enumerate(UNIFORM)]
            + [protocol_row("nws", s, m, dt, **kw) for s, (m, dt) in enumerate(FAST)])


def test_uniform_target_and_loose_target_are_uniforms_median_final_and_99_percent_of_it():
    s = summarize(protocol_rows())
    e = s.attrs["experiments"].iloc[0]
    assert e.tu == pytest.approx(0.90) and e.loose == pytest.approx(0.891)
    assert e.uniform_time_s == pytest.approx(4.0) and e.uniform_seeds == 3
    assert e.eval_every_steps == 5 and e.steps_per_epoch == 10


def test_times_and_steps_to_the_targets_are_medians_of_each_seeds_first_evaluation_reaching_them():
    s = summarize(protocol_rows())
    u, n = line(s, "synthetic", "uniform"), line(s, "synthetic", "nws")
    # uniform reaches T_u = 0.90 at 4.0 s (step 40), 3.85 s (step 35), never -> median 4.0 s, 40 steps, 2 of 3
    assert (u.tu_median, u.tu_steps, u.tu_reached, u.tu_known) == (pytest.approx(4.0), 40, 2, 3)
    # ... and 0.891 at 3.5 s (step 35), 3.85 s (step 35), never -> median 3.85 s
    assert (u.loose_median, u.loose_steps, u.loose_reached) == (pytest.approx(3.85), 35, 2)
    # nws reaches 0.90 at 2.4 s (step 20), 3.0 s (step 25), 2.8 s (step 20); 0.891 at 2.4, 2.4, 2.8
    assert (n.tu_median, n.tu_steps, n.tu_reached) == (pytest.approx(2.8), 20, 3)
    assert (n.loose_median, n.loose_steps, n.loose_reached) == (pytest.approx(2.4), 20, 3)
    assert n.loose_ratio == pytest.approx(2.4 / 3.85) and u.loose_ratio == pytest.approx(1.0)


def test_equal_time_quality_is_the_last_evaluation_at_or_before_uniforms_median_clock():
    s = summarize(protocol_rows())
    # at 4.0 s: nws seeds are at evaluations 6 (3.6 s), 6 (3.6 s), 5 (3.5 s): 0.91, 0.90, 0.90
    assert line(s, "synthetic", "nws").eq_mean == pytest.approx((0.91 + 0.90 + 0.90) / 3)
    # uniform seeds at evaluations 8 (4.0 s, inclusive), 7 (3.85 s), 8 (3.6 s): 0.90, 0.91, 0.86
    assert line(s, "synthetic", "uniform").eq_mean == pytest.approx((0.90 + 0.91 + 0.86) / 3)


def test_a_target_uniform_reaches_inside_epoch_one_is_flagged_and_t_u_is_not():
    s = summarize(protocol_rows(target=0.5))  # uniform has 0.5 at step 5, inside the first epoch of 10 steps
    e = s.attrs["experiments"].iloc[0]
    assert e.ttt_epoch1 and not e.tu_epoch1 and not e.loose_epoch1
    md = markdown_table(s)
    assert "uninformative: uniform reaches hand target inside epoch 1" in md
    assert "0.60 (3/3) †" in md and "4.00 (2/3) †" not in md  # the hand-target cells carry the mark, T_u's do not
    assert not summarize(protocol_rows(target=0.85)).attrs["experiments"].iloc[0].ttt_epoch1  # step 25: epoch 3


def test_a_one_pass_experiment_takes_t_u_after_its_epoch_and_flags_nothing():
    rows = [dataclasses.replace(r, epochs=1) for r in protocol_rows(target=0.5)]
    e = summarize(rows).attrs["experiments"].iloc[0]
    assert e.one_pass and e.tu == pytest.approx(0.90) and not (e.ttt_epoch1 or e.tu_epoch1 or e.loose_epoch1)
    md = markdown_table(summarize(rows))
    assert "one pass: T_u is the final metric after the one epoch" in md and " †" not in md  # no cell marked


def test_the_experiment_line_states_the_targets_and_the_evaluation_interval():
    md = markdown_table(summarize(protocol_rows()))
    assert "T_u = 0.9000 (median final of 3 `uniform` seeds), loose ≥ 0.8910" in md
    assert "evaluation every 5 steps (2 per epoch of 10, ≈ 0.50 s of uniform's clock)" in md


def test_two_learning_rates_are_two_experiments_each_with_its_own_t_u_never_pooled_as_seeds():
    rows = protocol_rows(lr=1e-3) + [protocol_row("uniform", s, [x - 0.1 for x in m], dt, lr=1e-2)
                                     for s, (m, dt) in enumerate(UNIFORM)]
    s = summarize(rows)
    uni = s[s.sampler == "uniform"]
    assert len(uni) == 2 and list(uni.seeds) == [3, 3]
    ex = s.attrs["experiments"].set_index("name")
    assert ex.loc["synthetic lr=0.001"].tu == pytest.approx(0.90) and ex.loc["synthetic lr=0.01"].tu == pytest.approx(0.80)


def test_rows_that_differ_in_a_setting_and_in_the_seed_are_separate_lines_of_one_seed():
    # the old failure: lr 0.1 seed 0, lr 0.01 seed 1, lr 0.001 seed 2 reported as "3 seeds" of one line
    rows = [protocol_row("uniform", seed, UNIFORM[0][0], 0.5, lr=lr) for seed, lr in enumerate((0.1, 0.01, 0.001))]
    s = summarize(rows)
    assert len(s) == 3 and list(s.seeds) == [1, 1, 1]


def test_older_rows_that_differ_only_in_a_command_line_override_are_not_pooled(tmp_path):
    for seed, lr in enumerate(("0.1", "0.01", "0.001")):
        row = make_row("adult", "uniform", seed, 0.85, 10.0)
        write_old_row(tmp_path, {**row, "run_id": f"r{seed}", "overrides": [f"trainer.optimizer.lr={lr}", f"seed={seed}"]})
    s = summarize(read_rows(tmp_path))
    assert list(s.seeds) == [1, 1, 1] and sorted(s["name"]) == ["adult lr=0.001", "adult lr=0.01", "adult lr=0.1"]


def test_an_experiment_with_several_uniform_lines_gets_no_t_u_and_a_note(tmp_path):
    rows = protocol_rows()
    rows[0].group_id = "another-configuration"  # a uniform line that should not exist within one experiment
    for r in rows:
        write_row(tmp_path, r)
    s = summarize(read_rows(tmp_path))
    assert math.isnan(s.attrs["experiments"].iloc[0].tu)
    text = write_report(tmp_path).read_text()
    assert "synthetic: 2 `uniform` lines" in text and "something is wrong" in text and "no T_u: 2 `uniform` lines" in text


def test_lower_is_better_metrics_use_a_loose_target_above_t_u():
    rows = [protocol_row("uniform", s, [1.0 - x for x in m], dt, metric="logloss", target=None)
            for s, (m, dt) in enumerate(UNIFORM)]
    e = summarize(rows).attrs["experiments"].iloc[0]
    assert e.tu == pytest.approx(0.10) and e.loose == pytest.approx(0.101) and math.isnan(e.ttt)
    u = summarize(rows).iloc[0]
    # log loss <= 0.101: seed 0 at 4.0 s (0.100; 0.105 before is not), seed 1 at 3.85 s (0.09), seed 2 never
    assert u.loose_median == pytest.approx(4.0) and u.loose_reached == 2


def test_the_probe_column_and_plot_appear_only_when_the_curves_have_the_probe(tmp_path):
    plain = write_report([_written(tmp_path / "a", protocol_rows())], tmp_path / "a_out").read_text()
    assert "probe VR" not in plain.split("\n- ")[0] and not (tmp_path / "a_out" / "synthetic_probe_vs_time.png").exists()
    vr = [1.0, 0.9, 0.8, 0.7, 0.6, 0.6, 0.6, 0.6, 0.5]
    rows = [protocol_row("nws", s, m, dt, probe=vr) for s, (m, dt) in enumerate(FAST)]
    text = write_report([_written(tmp_path / "b", protocol_rows() + rows)], tmp_path / "b_out").read_text()
    assert "| probe VR last / median |" in text and "| 0.50 / 0.60 |" in text
    for name in ("synthetic_metric_vs_time.png", "synthetic_time_to_target.png", "synthetic_probe_vs_time.png"):
        assert (tmp_path / "b_out" / name).stat().st_size > 0, name


def _written(results: Path, rows: list[ResultRow]) -> Path:
    for r in rows:
        write_row(results, r)
    return results
