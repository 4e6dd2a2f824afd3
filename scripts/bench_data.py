#!/usr/bin/env python
"""Measure preparing a Criteo_x1-shaped file at scale: prepare time, rows/s, peak RSS, cache size, feed rows/s.

    scripts/bench_data.py --rows 1000000          # ~1 min on 2 cores
    scripts/bench_data.py --rows 10000000         # ~10 min; writes ~2.5 GB of CSV to a temporary folder

It writes a synthetic file in the exact Criteo_x1 schema (label, I1..I13 floats in [0, 1], C1..C26 integer ids
global across fields, skewed so that a few ids are frequent and most are rare, about 2M distinct ids in all)
as the folder the published zip unpacks to (train.csv with `--rows` rows, valid.csv and test.csv a tenth each),
in chunks, into a temporary folder that is deleted afterwards. Then, each in its own process so that its peak
RSS (`ru_maxrss` from wait4) is its own: `bench.data.prepare("criteo_x1", path=...)`, and the training feed:
random batches of 512 gathered from the memory-mapped cache (x_num, x_cat, y). Results are merged into
`--out` (default docs/cpu/bench_data_cpu.json, keyed by row count) with the load average; with two sizes in the
file the table adds a linear extrapolation of time and peak RSS to the published 33,003,326 + 12,837,291 rows.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

CHUNK = 500_000
FULL_ROWS = 33_003_326 + 8_250_124 + 4_587_167  # Criteo_x1 train + valid + test
# per-field id ranges of the synthetic ids (about Criteo_x1's skew: a few fields with hundreds of thousands of ids)
CARDS = [1460, 580, 400_000, 150_000, 300, 24, 12_000, 630, 3, 90_000, 5_600, 350_000, 3_200, 27, 15_000,
         250_000, 10, 5_600, 2_200, 4, 300_000, 18, 15, 140_000, 105, 140_000]

_PREPARE = """
import sys
from bench import data
data.prepare("criteo_x1", root=sys.argv[1], path=sys.argv[2])
"""
_FEED = """
import json, sys, time, torch
from bench import data
d = data.load("criteo_x1", root=sys.argv[1], path=sys.argv[2])
g = torch.Generator().manual_seed(0)
batches = int(sys.argv[3])
start = time.perf_counter()
total = 0.0
for _ in range(batches):
    idx = torch.randint(0, d.num_train, (512,), generator=g)
    x_num, x_cat, y = d.x_num_train[idx], d.x_cat_train[idx], d.y_train[idx]
    total += float(y.sum()) + float(x_cat[:, 0].sum())
seconds = time.perf_counter() - start
print(json.dumps({"feed_rows_per_s": batches * 512 / seconds, "feed_batches": batches}))
"""


def write_split(path: Path, rows: int, seed: int) -> None:
    """Write `rows` Criteo_x1-schema rows to `path`, vectorised, `CHUNK` rows at a time."""
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(CARDS)[:-1]])
    writer = None
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            cols = {"label": rng.integers(0, 2, n, dtype=np.int8)}
            cols.update({f"I{i}": np.round(rng.random(n, dtype=np.float32) ** 3, 5) for i in range(1, 14)})
            for f, (card, off) in enumerate(zip(CARDS, offsets, strict=True), 1):
                cols[f"C{f}"] = off + (card * rng.random(n) ** 3).astype(np.int64)  # skewed: small ids frequent
            table = pa.table(cols)
            if writer is None:
                writer = pacsv.CSVWriter(str(path), table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def run_measured(code: str, *args: str) -> tuple[float, int, str]:
    """Run `python -c code args` with this PYTHONPATH; return (seconds, peak RSS in bytes, stdout)."""
    env = dict(os.environ, TQDM_DISABLE="1", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE)
    out = proc.stdout.read().decode()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the measured process failed (exit {proc.returncode})")
    return seconds, usage.ru_maxrss * 1024, out


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def measure(rows: int, feed_batches: int, workdir: Path) -> dict:
    src, cache = workdir / "Criteo_x1", workdir / "cache"
    src.mkdir()
    start = time.perf_counter()
    for split, n, seed in (("train", rows, 1), ("valid", rows // 10, 2), ("test", rows // 10, 3)):
        write_split(src / f"{split}.csv", n, seed)
    generate_s = time.perf_counter() - start
    total_rows = rows + 2 * (rows // 10)
    load_before = os.getloadavg()
    prep_s, prep_rss, _ = run_measured(_PREPARE, str(cache), str(src))
    feed_s, feed_rss, out = run_measured(_FEED, str(cache), str(src), str(feed_batches))
    feed = json.loads(out.strip().splitlines()[-1])
    return {"rows_train": rows, "rows_total": total_rows, "csv_bytes": folder_bytes(src),
            "generate_s": round(generate_s, 1), "prepare_s": round(prep_s, 1),
            "prepare_rows_per_s": round(total_rows / prep_s), "prepare_peak_rss_mb": round(prep_rss / 2**20),
            "cache_bytes": folder_bytes(cache), "feed_rows_per_s": round(feed["feed_rows_per_s"]),
            "feed_batches": feed["feed_batches"], "feed_process_s": round(feed_s, 1),
            "feed_peak_rss_mb": round(feed_rss / 2**20), "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()]}


def extrapolate(runs: dict) -> dict | None:
    """A line through the two largest measured sizes, at the full Criteo_x1 row count (train + valid + test)."""
    if len(runs) < 2:
        return None
    a, b = sorted(runs.values(), key=lambda r: r["rows_total"])[-2:]
    at = lambda key: a[key] + (b[key] - a[key]) * (FULL_ROWS - a["rows_total"]) / (b["rows_total"] - a["rows_total"])  # noqa: E731
    return {"rows_total": FULL_ROWS, "prepare_s": round(at("prepare_s")),
            "prepare_peak_rss_mb": round(at("prepare_peak_rss_mb")), "cache_bytes": round(at("cache_bytes")),
            "from_rows_total": [a["rows_total"], b["rows_total"]]}


def table(runs: dict, extra: dict | None) -> str:
    head = f"{'rows (train+valid+test)':>24} {'prepare s':>10} {'rows/s':>9} {'peak RSS MB':>12} {'cache MB':>9} {'feed rows/s':>12} {'load avg':>9}"
    lines = [head]
    for r in sorted(runs.values(), key=lambda r: r["rows_total"]):
        lines.append(f"{r['rows_total']:>24,} {r['prepare_s']:>10} {r['prepare_rows_per_s']:>9,} "
                     f"{r['prepare_peak_rss_mb']:>12,} {r['cache_bytes'] / 2**20:>9,.0f} {r['feed_rows_per_s']:>12,} "
                     f"{r['loadavg_before'][0]:>9}")
    if extra:
        lines.append(f"{extra['rows_total']:>24,} {extra['prepare_s']:>10} {'':>9} {extra['prepare_peak_rss_mb']:>12,} "
                     f"{extra['cache_bytes'] / 2**20:>9,.0f} {'(linear extrapolation)':>22}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="train rows (valid and test get a tenth each)")
    parser.add_argument("--feed-batches", type=int, default=2000, help="random batches of 512 to gather")
    parser.add_argument("--out", type=Path, default=Path("docs/cpu/bench_data_cpu.json"))
    parser.add_argument("--tmp", type=Path, default=None, help="where the temporary CSV and cache go")
    args = parser.parse_args()
    if args.rows < 1000:
        parser.error(f"--rows must be >= 1000, got {args.rows}")
    workdir = Path(tempfile.mkdtemp(prefix="bench_data-", dir=args.tmp))
    try:
        result = measure(args.rows, args.feed_batches, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    doc = json.loads(args.out.read_text()) if args.out.is_file() else {"runs": {}}
    result.update(command=f"scripts/bench_data.py --rows {args.rows}", machine=platform.machine(),
                  cpus=os.cpu_count(), date=time.strftime("%Y-%m-%d %H:%M"))
    doc["runs"][str(args.rows)] = result
    doc["extrapolation"] = extrapolate(doc["runs"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(doc["runs"], doc["extrapolation"]))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
