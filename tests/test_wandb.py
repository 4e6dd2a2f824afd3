"""What a benchmark run sends W&B, read back from the offline run files, and the dashboard that reads it.

W&B runs offline here (no account, no network): `wandb.init(mode="offline")` writes `offline-run-*/run-<id>.wandb`,
a log of protobuf records (`wandb.proto.wandb_internal_pb2.Record`) in W&B's LevelDB-style framing, which
`records()` below parses. The properties under test: every evaluation key is plotted against the training clock
(`define_metric`) and each metric's summary is its best value; a run is grouped by its experiment, tagged with
its sampler, dataset and model, has a job type, and its config holds no absolute path of this machine; a killed
and resumed run writes the same W&B run id again; the dashboard's panels read exactly the keys the runs log.
Saving the dashboard needs a W&B account: only the view it would send is checked (when wandb-workspaces is there).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest

import bench.run as bench_run
from bench.results.logger import CLOCK_KEY, RunLogger, metric_key, portable, run_logger, wandb_point
from bench.train.metrics import METRICS
from bench.results.rows import read_rows
from bench.wandb_dashboard import SAMPLER_KEY, spec

from conftest import REPO
from test_run import tiny

pytestmark = pytest.mark.usefixtures("one_thread")


# -- reading an offline run file ---------------------------------------------------------------------------
_BLOCK, _HEADER = 32768, 7  # W&B's datastore: a 7-byte file header, then records in 32 KiB blocks


def records(path: Path) -> Iterator[Any]:
    """The `Record`s of a `.wandb` file: each a 7-byte header (crc, length, type: full/first/middle/last) and data."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, parts = _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the rest of a block too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if kind == 0:  # zero padding up to the end of the block
            pos += left
            continue
        body, pos = data[pos + _HEADER:pos + _HEADER + length], pos + _HEADER + length
        parts = body if kind in (1, 2) else parts + body
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            yield record


def read_run(path: Path) -> dict[str, Any]:
    """The run file as plain data: run record fields, config, defined metrics, history rows, final summary."""
    out: dict[str, Any] = {"config": {}, "metrics": {}, "history": [], "summary": {}}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out.update(run_id=r.run_id, group=r.run_group, job_type=r.job_type, tags=list(r.tags), name=r.display_name)
            out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "metric":
            m = rec.metric
            out["metrics"][m.name or m.glob_name] = {"step_metric": m.step_metric,
                                                     "summary": [f.name for f, v in m.summary.ListFields() if v]}
        elif kind == "history":
            out["history"].append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                out["summary"]["/".join(i.nested_key) or i.key] = json.loads(i.value_json)
    return out


def run_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


# -- a real run through the command line, read back ----------------------------------------------------------
@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> dict[str, Any]:
    """One offline benchmark run on a table (whose absolute path must not reach W&B) through `python -m bench.run`."""
    tmp = tmp_path_factory.mktemp("wandb")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": rng.choice(["u", "v"], 300), "y": (x[:, 0] > 0).astype(int)}) \
        .to_csv(tmp / "t.csv", index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    args = ["dataset=table", f"dataset.path={tmp / 't.csv'}", "dataset.label=y", "model=mlp", "model.hidden=[16]",
            "trainer=quick", "trainer.batch_size=32", "trainer.epochs=2", "sampler=nws", "sketch.depth=4",
            "sketch.width=64", "logger=offline", "logger.wandb.tags=[mine]", "progress=false",
            f"paths.data_dir={tmp / 'data'}", f"paths.results_dir={tmp / 'results'}", f"hydra.run.dir={tmp / 'out'}"]
    proc = subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=tmp, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = read_rows(tmp / "results")
    (path,) = run_files(tmp / "out")
    return {"tmp": tmp, "row": row, "run": read_run(path)}


def test_the_run_is_identified_grouped_tagged_and_typed(logged):
    run, row = logged["run"], logged["row"]
    assert run["run_id"] == row.run_id  # W&B's id is the run id: a resumed run continues it
    assert run["group"] == f"table-{row.experiment_id}"  # the experiment: every sampler and seed compared on it
    assert run["job_type"] == "train"
    assert {"sampler:nws", "dataset:table", "model:MLP", "mine"} <= set(run["tags"])
    assert run["name"] == f"table-nws-s0-{row.run_id}"


def test_the_config_is_the_run_identity_without_absolute_paths(logged):
    config, tmp = logged["run"]["config"], logged["tmp"]
    assert config["run_id"] == logged["row"].run_id and config["sampler"]["name"] == "nws"
    assert config["sketch"]["width"] == 64 and config["dataset"]["name"] == "table"
    assert config["dataset"]["fingerprint"] == logged["row"].config["dataset"]["fingerprint"]
    assert "path" not in config["dataset"] and "paths" not in config
    machine = [str(tmp), str(Path.home()), str(REPO), str(Path(sys.executable).parent)]
    for text in strings(config):
        assert not os.path.isabs(text) and not any(m in text for m in machine), text


def test_every_chart_can_use_the_training_clock_and_the_best_value_is_the_summary(logged):
    metrics, run, row = logged["run"]["metrics"], logged["run"], logged["row"]
    assert metrics[CLOCK_KEY]["summary"] == ["max"]
    for glob in ("test/*", "train/*", "probe/*"):
        assert metrics[glob]["step_metric"] == CLOCK_KEY
    for name, metric in METRICS.items():  # each metric under its own name, summarised by its best value
        assert metrics[metric_key(name)] == {"step_metric": CLOCK_KEY, "summary": ["max" if metric.higher_is_better else "min"]}
    history = run["history"]
    assert len(history) == len(row.curve)
    assert [h["_step"] for h in history] == [p["step"] for p in row.curve]  # W&B's step is the training step
    assert [h[CLOCK_KEY] for h in history] == pytest.approx([p["time_s"] for p in row.curve])
    assert all("metric" not in h and "test/auc" in h and "train/loss" in h for h in history)
    if "probe_vr" in row.curve[-1]:  # the proxy-quality probe's numbers ride along
        assert history[-1]["probe/vr"] == pytest.approx(row.curve[-1]["probe_vr"])
    summary = run["summary"]
    assert summary["test/auc"] == {"max": pytest.approx(row.best_metric)}
    assert summary["test/logloss"] == {"min": pytest.approx(min(p["test_logloss"] for p in row.curve))}
    assert summary["best_metric"] == pytest.approx(row.best_metric) and summary["target_metric"] == "auc"


def test_the_dashboard_reads_exactly_what_the_runs_log(logged):
    run = logged["run"]
    logged_keys = set().union(*run["history"])
    view = spec(["auc"])
    panels = [p for s in view["sections"] for p in s["panels"]]
    for p in panels:
        y = p.get("y", [])
        axes = [p.get("x"), *([y] if isinstance(y, str) else y), *p.get("metrics", []), *p.get("columns", [])]
        for axis in [a for a in axes if isinstance(a, str) and a != "Step"]:
            section, _, key = axis.partition(":") if ":" in axis else ("history", "", axis)
            if section == "config":
                node = run["config"]
                for part in key.split("."):
                    node = node[part]
            elif section == "summary":
                assert key in run["summary"], key
            elif not key.startswith("probe/") or "probe_vr" in logged["row"].curve[-1]:
                assert key in logged_keys, key
    assert view["x_axis"] == CLOCK_KEY and view["groupby"][-1] == SAMPLER_KEY


# -- resume: the same W&B run -----------------------------------------------------------------------------------
class Killed(BaseException):
    """Stands in for SIGKILL inside the test process."""


def test_a_killed_and_resumed_run_writes_the_same_wandb_run(compose, monkeypatch, tmp_path):
    overrides = [*tiny("uniform"), "logger=offline", "trainer.epochs=2", "trainer.checkpoint_every_steps=1"]
    save = bench_run.save_checkpoint

    def save_then_die(path, **parts):
        save(path, **parts)
        if parts["state"].step >= 6:
            raise Killed

    with monkeypatch.context() as m:
        m.setattr(bench_run, "save_checkpoint", save_then_die)
        with pytest.raises(Killed):
            bench_run.run(compose(overrides), out_dir=tmp_path / "first")
    row = bench_run.run(compose(overrides), out_dir=tmp_path / "second")
    (killed,), (resumed,) = run_files(tmp_path / "first"), run_files(tmp_path / "second")
    a, b = read_run(killed), read_run(resumed)
    assert a["run_id"] == b["run_id"] == row.run_id and a["group"] == b["group"]
    # the resumed session goes on from the checkpoint's step: together one curve, no step twice
    steps_a, steps_b = [h["_step"] for h in a["history"]], [h["_step"] for h in b["history"]]
    assert max(steps_a) <= 6 < min(steps_b) and steps_b[-1] == row.steps


def test_two_sessions_with_one_run_id_write_one_wandb_run_and_resume_false_a_new_one(compose, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    for i, step in enumerate((1, 2)):
        with RunLogger(tmp_path / f"s{i}", config={"a": 1}, mode="offline", run_id="abc123def456", group="g") as log:
            log.log_eval({"step": step, "time_s": float(step), "metric": 0.5, "test_accuracy": 0.5})
    ids = [read_run(p)["run_id"] for i in (0, 1) for p in run_files(tmp_path / f"s{i}")]
    assert ids == ["abc123def456", "abc123def456"]
    # what the harness asks W&B for: resume="allow" with the run id, or a new run when resume=false
    import wandb

    seen = []
    monkeypatch.setattr(wandb, "init", lambda **kw: seen.append(kw) or (_ for _ in ()).throw(RuntimeError("no")))
    cfg = compose([*tiny("uniform"), "logger=offline"])
    for resume in (True, False):
        cfg.resume = resume
        with pytest.warns(UserWarning, match="W&B offline init failed"):
            run_logger(tmp_path / "x", cfg, {"seed": 0, "sampler": {"name": "uniform"}}, "feedbeef0001").close()
    assert (seen[0]["id"], seen[0]["resume"], seen[0]["job_type"]) == ("feedbeef0001", "allow", "train")
    assert seen[1]["id"].startswith("feedbeef0001-") and seen[1]["id"] != "feedbeef0001"


# -- the pieces ---------------------------------------------------------------------------------------------
def test_evaluation_points_get_the_benchmarks_wandb_names():
    point = {"step": 3, "epoch": 0, "time_s": 1.5, "metric": 0.7, "train_loss": 0.4, "test_auc": 0.7,
             "test_loss": 0.5, "probe_spearman": 0.3, "probe_vr": 0.9, "other": 1}
    assert wandb_point(point) == {"train/step": 3, "train/epoch": 0, "train/time_s": 1.5, "train/loss": 0.4,
                                  "test/auc": 0.7, "test/loss": 0.5, "probe/spearman": 0.3, "probe/vr": 0.9, "other": 1}


def test_portable_keeps_relative_values_and_drops_machine_paths():
    assert portable({"a": "/data/x/my.csv", "b": ["~/q.parquet", "rel/p"], "c": 3, "d": {"e": "/"}}) == \
        {"a": "my.csv", "b": ["q.parquet", "rel/p"], "c": 3, "d": {"e": "/"}}


def test_the_dashboard_cli_dry_run_prints_the_view_without_a_network(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_API_KEY": ""}
    proc = subprocess.run([sys.executable, "-m", "bench.wandb_dashboard", "--project", "p", "--dataset", "kdd04",
                           "--metric", "auc", "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    view = json.loads(proc.stdout)
    text = json.dumps(view)
    assert "test/auc" in text and "train/time_s" in text and "time_to_target_s" in text and "sketch" in text
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:  # the plain specification
        assert view["filters"] == {"dataset.name": "kdd04"} and view["groupby"] == [SAMPLER_KEY]
    else:  # W&B's view model, as `save` would send it
        assert view["project"] == "p" and '"viewType": "Run History Line Plot"' in text
        assert '"xAxis": "train/time_s"' in text and '"name": "sampler.value.name"' in text


def test_the_dashboard_without_its_library_or_an_account_says_so_in_one_line(tmp_path):
    env = {**os.environ, "WANDB_API_KEY": "", "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "-m", "bench.wandb_dashboard", "--project", "p"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("bench.wandb_dashboard: error: needs ")


def test_the_view_model_uses_the_clock_groups_by_sampler_and_filters_the_dataset():
    pytest.importorskip("wandb_workspaces")
    from bench.wandb_dashboard import sent_view

    view = sent_view(spec(["auc", "accuracy"], dataset="kdd04"), "me", "p")
    text = json.dumps(view)
    panels = [p for s in view["spec"]["section"]["panelBankConfig"]["sections"] for p in s["panels"]]
    kinds = {p["viewType"] for p in panels}
    assert {"Run History Line Plot", "Bar Chart", "Scatter Plot", "Parallel Coordinates Plot"} <= kinds
    assert view["spec"]["section"]["settings"]["xAxis"] == CLOCK_KEY
    assert '"metrics": ["summary_metrics.time_to_target_s"]' in text
    assert '"xAxis": "config:sketch.value.width"' in text
    assert '"value": "kdd04"' in text
