"""The lineage's published datasets (criteo_x1, avazu_x4, movielens_latest_x1) on small files in the exact schema:
each loader and layout, the vocabulary and out-of-vocabulary code, the memory-mapped cache, every bad-file case,
the chunked NWS slots, and one end-to-end run through the harness."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench import data
from bench.data._lineage import SCHEMAS

from lineage_files import split_texts, write_folder, write_zip


def _cache_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name not in (".locks", "downloads")) if root.exists() else []


def _train_frame(name: str, rows: int = 200) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(split_texts(name, rows)["train"]), dtype=str)


def test_criteo_x1_from_a_zip_with_one_folder_codes_train_values_and_maps_the_cache(tmp_path):
    z = write_zip(tmp_path / "Criteo_x1.zip", "criteo_x1", folder="Criteo_x1")
    d = data.load("criteo_x1", root=tmp_path / "cache", path=str(z))
    assert (d.num_train, d.num_test, d.input_shape, len(d.cardinalities)) == (200, 50, (13,), 26)
    assert d.x_cat_train.dtype == torch.int32 and d.y_train.dtype == torch.float32
    train = _train_frame("criteo_x1")
    np.testing.assert_allclose(d.x_num_train.numpy(), train[[f"I{i}" for i in range(1, 14)]].astype(np.float32))
    # codes 1..k in sorted order of the train values (min_count 1), 0 reserved for out of vocabulary
    c1 = train["C1"].astype(int)
    assert d.cardinalities[0] == c1.nunique() + 1
    np.testing.assert_array_equal(d.x_cat_train[:, 0].numpy(), np.searchsorted(np.sort(c1.unique()), c1) + 1)
    assert data.read_meta(data.cache_path("criteo_x1", tmp_path / "cache", path=str(z)))["layout"] == "columnar"


def test_avazu_x4_keeps_ids_above_2_63_out_of_the_features_and_codes_minus_one_and_the_hour(tmp_path):
    z = write_zip(tmp_path / "Avazu_x4.zip", "avazu_x4")  # train.csv etc. at the zip's root
    train = _train_frame("avazu_x4")
    assert (train["id"].astype(np.uint64) >= np.uint64(2**63)).any() and (train["C20"] == "-1").any()
    d = data.load("avazu_x4", root=tmp_path / "cache", path=str(z), min_count=1)
    fields = SCHEMAS["avazu_x4"].fields
    assert d.input_shape == (0,) and len(d.cardinalities) == len(fields) == 23 and "id" not in fields
    c20 = train["C20"].astype(int)
    np.testing.assert_array_equal(d.x_cat_train[:, fields.index("C20")].numpy(),
                                  np.searchsorted(np.sort(c20.unique()), c20) + 1)
    hours = train["hour"].astype(int) % 100
    assert d.cardinalities[fields.index("hour_of_day")] == hours.nunique() + 1
    assert d.cardinalities[fields.index("weekday")] == 7 + 1  # 14102100..14102823: nine days, every weekday


def test_movielens_latest_x1_from_the_unpacked_folder_with_a_min_count(tmp_path):
    folder = write_folder(tmp_path / "MovielensLatest_x1", "movielens_latest_x1", rows=200)
    d = data.load("movielens_latest_x1", root=tmp_path / "cache", path=str(folder), min_count=8)
    counts = _train_frame("movielens_latest_x1")["user_id"].value_counts()
    assert d.cardinalities[0] == int((counts >= 8).sum()) + 1  # rarer users share code 0
    rare = set(counts[counts < 8].index.astype(int))
    users = pd.read_csv(folder / "train.csv")["user_id"]
    assert (d.x_cat_train[:, 0].numpy()[users.isin(rare).to_numpy()] == 0).all()


def test_max_rows_is_a_prefix_and_eval_split_reads_valid_from_the_same_cache(tmp_path):
    z = write_zip(tmp_path / "m.zip", "movielens_latest_x1", rows=400)
    root = tmp_path / "cache"
    full = data.load("movielens_latest_x1", root=root, path=str(z))
    head = data.load("movielens_latest_x1", root=root, path=str(z), max_rows=50)
    assert (head.num_train, head.num_test) == (50, 50)
    assert torch.equal(head.y_train, full.y_train[:50])
    valid = data.load("movielens_latest_x1", root=root, path=str(z), max_rows=50, eval_split="valid")
    assert len(_cache_dirs(root)) == 2  # eval_split is not part of the cache's key
    assert not torch.equal(valid.y_test, head.y_test) or not torch.equal(valid.x_cat_test, head.x_cat_test)


def test_without_a_path_offline_it_fails_at_once_saying_how_to_pass_a_local_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(data.DataUnavailable, match=r"dataset\.options\.path=/path/to/Avazu_x4\.zip"):
        data.prepare("avazu_x4", root=tmp_path)
    assert _cache_dirs(tmp_path) == []


def _corrupt_member(path: Path) -> Path:
    """A zip whose train.csv is stored deflated and has its compressed bytes damaged in the middle."""
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("train.csv")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    mid = start + info.compress_size // 2
    raw[mid : mid + 64] = bytes(64)
    path.write_bytes(bytes(raw))
    return path


BAD = {
    "not a zip": (lambda p: (p.write_text("label,user_id\n1,2\n"), p)[1], r"is not a readable zip"),
    "truncated zip": (lambda p: (p.write_bytes(write_zip(p, "movielens_latest_x1").read_bytes()[:-200]), p)[1],
                      r"is not a readable zip"),
    "missing split": (lambda p: write_zip(p, "movielens_latest_x1", skip=("valid",)), r"has no valid\.csv"),
    "corrupt member": (lambda p: _corrupt_member(write_zip(p, "movielens_latest_x1", rows=3000)),
                       r"train\.csv cannot be read near row \d+"),
    "missing path": (lambda p: p.parent / "nowhere.zip", r"no such file or folder"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_one_line_naming_it_and_leaves_no_cache(tmp_path, case):
    make, message = BAD[case]
    path = make(tmp_path / "MovielensLatest_x1.zip")
    with pytest.raises(data.DataUnavailable, match=message) as info:
        data.prepare("movielens_latest_x1", root=tmp_path / "cache", path=str(path))
    assert "\n" not in str(info.value)
    assert _cache_dirs(tmp_path / "cache") == []  # nothing half-written


def test_a_missing_column_and_a_bad_label_are_named(tmp_path):
    texts = split_texts("criteo_x1", 50)
    for name, edit, message in (("nocol", lambda t: t.replace(",C26", ",C99", 1), r"lacks column\(s\) C26"),
                                ("label", lambda t: t.replace("\n1,", "\n7,", 1), r"label=7\.0 at row \d+")):
        folder = tmp_path / name
        folder.mkdir()
        for split, text in texts.items():
            (folder / f"{split}.csv").write_text(edit(text) if split == "train" else text)
        with pytest.raises(data.DataUnavailable, match=message):
            data.prepare("criteo_x1", root=tmp_path / "cache", path=str(folder))
    assert _cache_dirs(tmp_path / "cache") == []


def test_a_killed_preparation_leaves_a_temporary_folder_that_the_next_one_removes(tmp_path):
    z = write_zip(tmp_path / "m.zip", "movielens_latest_x1")
    root = tmp_path / "cache"
    target = data.cache_path("movielens_latest_x1", root, path=str(z))
    stale = root / f".tmp-{target.name}-999999-x"
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "y.f32").write_bytes(b"\0" * 12)
    data.prepare("movielens_latest_x1", root=root, path=str(z))
    assert not stale.exists() and _cache_dirs(root) == [target.name]
    data.verify(target)  # sizes and code ranges of every split


def test_nws_slots_made_in_chunks_equal_the_slots_of_the_whole_key_matrix(tmp_path):
    from bench.config.schemas import KeyConfig, SketchConfig
    from bench.build.features import sketch_and_slots

    d = data.synthetic(n=300, d=6, classes=2, cat_fields=2, task="binary")
    for key in (KeyConfig(normalize="standardize", with_label=True), KeyConfig(input="projection")):
        spec = SketchConfig(depth=4, width=256, bits=4, key=key)
        _, whole = sketch_and_slots(spec, d, seed=1, device="cpu", cache_dir=None)
        _, chunked = sketch_and_slots(spec, d, seed=1, device="cpu", cache_dir=str(tmp_path), chunk_rows=64)
        _, cached = sketch_and_slots(spec, d, seed=1, device="cpu", cache_dir=str(tmp_path), chunk_rows=64)
        assert torch.equal(whole, chunked) and torch.equal(chunked, cached)


def test_criteo_x1_trains_end_to_end_through_the_harness_from_a_local_zip(compose, tmp_path):
    from bench.run import run

    z = write_zip(tmp_path / "Criteo_x1.zip", "criteo_x1", rows=300, folder="Criteo_x1")
    over = ["experiment=lineage/criteo_x1", "sampler=stream_filter", f"dataset.options.path={z}",
            f"dataset.root={tmp_path / 'data'}", "model.hidden=[16]", "trainer=quick", "trainer.batch_size=64",
            "trainer.evals_per_epoch=1", "logger=disabled", "progress=false", "sketch.depth=4", "sketch.width=64",
            "trainer.probe_size=0"]
    cfg = compose(over)
    assert (cfg.sketch.family, cfg.sketch.bits) == ("pstable", 1)  # the lineage's sketch for stream_filter
    row = run(cfg, out_dir=tmp_path / "out")
    assert row.dataset == "criteo_x1" and row.steps == 5 and row.epochs == 1
    assert "path" not in row.config["dataset"]["options"] and row.config["dataset"]["fingerprint"]
