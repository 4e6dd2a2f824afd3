"""Small files in the exact published schemas of Criteo_x1, Avazu_x4 and MovielensLatest_x1 (for the tests).

    zip_path = write_zip(tmp_path / "Criteo_x1.zip", "criteo_x1", rows=200, folder="Criteo_x1")
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

SPLIT_ROWS = {"train": 1.0, "valid": 0.25, "test": 0.25}


def criteo_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Criteo_x1 rows: label, I1..I13 in [0, 1], C1..C26 integer ids global across fields."""
    cols = {"label": rng.integers(0, 2, n)}
    cols.update({f"I{i}": np.round(rng.random(n), 4) for i in range(1, 14)})
    cols.update({f"C{i}": rng.integers(0, 6, n) + 10 * i for i in range(1, 27)})
    return pd.DataFrame(cols)


def avazu_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Avazu_x4 rows: uint64 ids (half of them >= 2^63), YYMMDDHH hours, hex strings, C20 partly -1."""
    ids = rng.integers(0, 2**63 - 1, n, dtype=np.uint64) + np.where(np.arange(n) % 2 == 0, np.uint64(2**63), np.uint64(0))
    hexes = lambda k: np.array([f"{v:08x}" for v in rng.integers(0, k, n) * 2654435761 % 2**32])  # noqa: E731
    cols = {"id": ids.astype(str), "click": rng.integers(0, 2, n),
            "hour": 14102100 + rng.integers(0, 9, n) * 100 + rng.integers(0, 24, n),
            "C1": rng.choice([1005, 1002, 1010], n), "banner_pos": rng.integers(0, 3, n)}
    for c in ("site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category", "device_id",
              "device_ip", "device_model"):
        cols[c] = hexes(5)
    cols.update({"device_type": rng.integers(0, 3, n), "device_conn_type": rng.integers(0, 3, n)})
    cols.update({f"C{i}": rng.integers(0, 5, n) * 7 for i in range(14, 22)})
    cols["C20"] = np.where(rng.random(n) < 0.5, -1, 100000 + rng.integers(0, 4, n))
    return pd.DataFrame(cols)


def movielens_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """MovielensLatest_x1 rows: label, user_id, item_id, tag_id."""
    return pd.DataFrame({"label": rng.integers(0, 2, n), "user_id": rng.integers(1, 30, n),
                         "item_id": rng.integers(1, 50, n), "tag_id": rng.integers(1, 20, n)})


FRAMES = {"criteo_x1": criteo_frame, "avazu_x4": avazu_frame, "movielens_latest_x1": movielens_frame}


def split_texts(name: str, rows: int, seed: int = 0) -> dict[str, str]:
    """The CSV text of each split (train has `rows` rows, valid and test a quarter each)."""
    rng = np.random.default_rng(seed)
    return {s: FRAMES[name](max(1, int(rows * f)), rng).to_csv(index=False) for s, f in SPLIT_ROWS.items()}


def write_zip(path: Path, name: str, rows: int = 200, folder: Optional[str] = None,
              skip: tuple[str, ...] = ()) -> Path:
    """A zip of train/valid/test.csv at its root or inside `folder`, leaving out the splits in `skip`."""
    prefix = f"{folder}/" if folder else ""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for split, text in split_texts(name, rows).items():
            if split not in skip:
                zf.writestr(f"{prefix}{split}.csv", text)
    return path


def write_folder(path: Path, name: str, rows: int = 200) -> Path:
    """The folder a published zip unpacks to: train/valid/test.csv."""
    path.mkdir(parents=True, exist_ok=True)
    for split, text in split_texts(name, rows).items():
        (path / f"{split}.csv").write_text(text)
    return path
