"""Result rows: one JSON object per finished run, written atomically, and the run identity.

A run's identity (`run_id`) is a hash of its resolved config with output locations left out, so the same
job in a re-run sweep has the same id: `bench.run` skips a job whose row exists and resumes one whose
checkpoint exists. Rows live at `<results_dir>/runs/<run_id>.json`; `bench.report` reads them.

    from bench.results import run_id, write_row, read_rows
    rid = run_id(cfg_dict); write_row(results_dir, row); rows = read_rows(results_dir)

Row fields (all JSON; `null` for "never", e.g. a target not reached):
    run_id, status ("done"), timestamp, dataset, model, sampler, seed, task,
    sketch_family, sketch_depth, sketch_width, sketch_bits, sketch_bandwidth, sketch_decay,
    sampler_mix, sampler_pool_size, sampler_refresh_every (null where the sampler has no such key),
    target_metric ("accuracy" | "auc" | "logloss" | "mse"), target, higher_is_better,
    reached_target, time_to_target_s, steps_to_target, final_metric, best_metric, final_loss,
    train_time_s (the fair clock), eval_time_s, sampler_time_s, sampler_overhead (sampler_time / train_time),
    setup_time_s (hashing, proxy scores: counted into time_to_target as well), steps, epochs,
    skipped_nonfinite (non-finite per-sample losses the sampler dropped), skipped_steps (optimizer steps
    skipped for a non-finite gradient; see bench.train), device, torch_version, git_commit, config_hash, overrides,
    curve: [{"step", "epoch", "time_s", "metric", "loss"}, ...]
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable

__all__ = ["run_id", "write_row", "read_rows", "row_path", "atomic_write", "atomic_write_text", "IGNORED_KEYS"]

# Config keys (dotted for nested ones) that say where things are or go, not what is computed: left out of
# the run identity, so a sweep re-run with another data cache ($NWS_DATA, $HOME) or results folder finds its rows.
IGNORED_KEYS = ("paths", "logger", "hydra", "progress", "resume", "dataset.root")


def _without(cfg: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    kept = dict(cfg)
    for key in keys:
        head, _, rest = key.partition(".")
        if rest and isinstance(kept.get(head), dict):
            kept[head] = _without(kept[head], [rest])
        elif not rest:
            kept.pop(head, None)
    return kept


def _canonical(cfg: dict[str, Any]) -> str:
    return json.dumps(_without(cfg, IGNORED_KEYS), sort_keys=True, default=str, separators=(",", ":"))


def run_id(cfg: dict[str, Any]) -> str:
    """Return the 12-hex identity of a run: sha1 of its resolved config, output locations excluded."""
    return hashlib.sha1(_canonical(cfg).encode()).hexdigest()[:12]


def row_path(results_dir: str | Path, rid: str) -> Path:
    """Return where the row of run `rid` lives."""
    return Path(results_dir) / "runs" / f"{rid}.json"


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that readers see the old one or the whole new one, never a part.

    `write(f)` fills a temp file `<stem>.<pid>.tmp` beside `path` (parallel writers never share one), which is
    fsynced and renamed over `path`; on any failure the temp file is removed and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of a text file (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def write_row(results_dir: str | Path, row: dict[str, Any]) -> Path:
    """Write one run's row atomically to `<results_dir>/runs/<run_id>.json` and return its path."""
    path = row_path(results_dir, row["run_id"])
    atomic_write_text(path, json.dumps(_jsonable(row), indent=1, sort_keys=True))
    return path


def read_rows(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Return the rows under one or more directories (searched recursively for `runs/*.json`)."""
    roots = [paths] if isinstance(paths, (str, Path)) else list(paths)
    rows: dict[str, dict[str, Any]] = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("runs/*.json"))
        for f in files:
            row = json.loads(f.read_text())
            rows[row["run_id"]] = row  # the same run found twice (copies) counts once
    return list(rows.values())
