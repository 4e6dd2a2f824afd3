"""Result rows: the typed row of one finished run (`ResultRow`), written atomically as JSON under
`<results_dir>/runs/<run_id>.json` (the id: `bench.results.identity`), and read back by the report.

    from bench.results.rows import ResultRow, write_row, read_rows
    write_row(results_dir, row); rows = read_rows(results_dir)

`ResultRow` is the one definition of a row: the writer (`bench.run`), the report and W&B all use it. Rows
written by older versions load too (`ResultRow.from_dict`): their flat `sketch_*`/`sampler_*` fields become
`sketch`/`sampler_options`, and missing fields are None.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

from ..train.metrics import METRICS
from .files import atomic_write_text

__all__ = ["ResultRow", "write_row", "read_rows", "row_path"]


def row_path(results_dir: str | Path, rid: str) -> Path:
    """Return where the row of run `rid` lives."""
    return Path(results_dir) / "runs" / f"{rid}.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


@dataclass
class ResultRow:
    """The result of one finished run. Times are fair-clock seconds (bench.train.loop); None means "never" or "unknown"."""

    run_id: str  # identity of the run (`bench.results.identity.run_id`)
    dataset: str
    sampler: str  # registry name
    seed: int
    status: str = "done"
    group_id: Optional[str] = None  # the configuration over seeds: rows of one group are seeds of one line
    experiment_id: Optional[str] = None  # the experiment over samplers: a report compares samplers within one
    timestamp: Optional[str] = None
    model: Optional[str] = None  # the model class
    task: Optional[str] = None  # binary, multiclass or regression
    sampler_options: dict = field(default_factory=dict)  # the sampler's config options
    sketch: Optional[dict] = None  # the sketch group, for samplers that read it (else None)
    target_metric: Optional[str] = None  # accuracy, auc, logloss or mse (bench.train.metrics.METRICS)
    target: Optional[float] = None  # the hand-set time-to-target threshold (trainer.target)
    reached_target: Optional[bool] = None
    time_to_target_s: Optional[float] = None  # setup + clock at the first evaluation reaching the target
    steps_to_target: Optional[int] = None
    final_metric: Optional[float] = None  # at the last evaluation
    best_metric: Optional[float] = None  # over the evaluations
    final_loss: Optional[float] = None  # test loss at the last evaluation
    train_time_s: Optional[float] = None  # the fair clock, setup included
    eval_time_s: Optional[float] = None  # evaluation (excluded from the clock)
    probe_time_s: Optional[float] = None  # the proxy-quality probe at evaluations (excluded; bench.train.probe)
    sampler_time_s: Optional[float] = None  # the sampler's share of the clock (draw, weights, feedback)
    setup_time_s: Optional[float] = None  # one-off sampler setup (hashing, proxy run), charged to the clock
    sampler_overhead: Optional[float] = None  # (sampler + setup) / clock
    steps: Optional[int] = None
    epochs: Optional[int] = None
    steps_per_epoch: Optional[int] = None
    evals_per_epoch: Optional[int] = None
    stopped_by_time: Optional[bool] = None  # trainer.max_time_s ended the run
    skipped_nonfinite: Optional[int] = None  # non-finite per-sample losses the sampler dropped
    skipped_steps: Optional[int] = None  # optimizer steps skipped for a non-finite gradient
    interval_step_s: list = field(default_factory=list)  # fair-clock seconds per step of each evaluation interval
    median_step_s: Optional[float] = None  # their median
    stalls: Optional[int] = None  # intervals over 3x that median (bench.timing.find_stalls): a busy machine
    stall_s: Optional[float] = None  # the seconds those intervals took beyond the median rate
    robust_time_to_target_s: Optional[float] = None  # steps_to_target x median_step_s + setup: stall-robust
    world_size: int = 1  # data-parallel ranks
    sketch_in_sync: Optional[bool] = None  # DDP with an all-reduced sketch: the ranks' sketches stayed equal
    device: Optional[str] = None
    torch_version: Optional[str] = None
    git_commit: Optional[str] = None
    overrides: list = field(default_factory=list)  # the command line's overrides
    warnings: list = field(default_factory=list)  # what the harness changed about the run (e.g. threads clamped to the cores)
    config: dict = field(default_factory=dict)  # `identity` of the run's config
    curve: list = field(default_factory=list)  # one dict per evaluation: step, epoch, time_s, metric, test_*, probe_*

    @property
    def higher_is_better(self) -> bool:
        return METRICS[self.target_metric].higher_is_better if self.target_metric in METRICS else True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def path(self, results_dir: str | Path) -> Path:
        """Where this row lives under `results_dir`."""
        return row_path(Path(results_dir).absolute(), self.run_id)

    def summary_table(self) -> str:
        """Return a short markdown table of this run's result (what `python -m bench.run` prints)."""
        metric = METRICS.get(self.target_metric)
        name, op = (metric.display, metric.op) if metric else (str(self.target_metric), ">=")
        ttt = self.time_to_target_s
        cells = [
            ("dataset / sampler", f"{self.dataset} / {self.sampler} (seed {self.seed})"),
            (f"final {name}", _number(self.final_metric)),
            (f"best {name}", _number(self.best_metric)),
            (f"time to {name} {op} {self.target}" if self.target is not None else "time to target",
             "no target set (trainer.target)" if self.target is None else
             f"{ttt:.2f} s (step {self.steps_to_target})" if ttt is not None else "not reached"),
            ("train time (fair clock)", f"{self.train_time_s:.2f} s over {self.steps} steps"),
            ("sampler overhead", f"{100 * (self.sampler_overhead or 0):.1f} % (setup {self.setup_time_s:.2f} s)"),
            ("eval time (excluded)", f"{self.eval_time_s:.2f} s"),
            *([("stalls (busy machine)", f"{self.stalls} evaluation interval(s) over 3x the median step time, "
                f"{self.stall_s:.1f} s lost; stall-robust time to target: "
                + (f"{self.robust_time_to_target_s:.2f} s" if self.robust_time_to_target_s is not None else "—"))]
              if self.stalls else []),
            ("device / torch / commit", f"{self.device} / {self.torch_version} / {self.git_commit}"),
        ]
        return "\n".join(["| what | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in cells]])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResultRow":
        """Return the row of a JSON object, from this version or an older one; raise ValueError for a foreign object."""
        if not isinstance(d, dict) or not {"run_id", "dataset", "sampler"} <= d.keys():
            raise ValueError("not a result row (no run_id, dataset and sampler)")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in known}
        for f in dataclasses.fields(cls):  # a list or dict field of another type would fail later, far from its file
            kind = f.default_factory if f.default_factory in (list, dict) else None
            if kind is not None and f.name in values and not isinstance(values[f.name], kind):
                raise ValueError(f"its {f.name!r} is {json.dumps(values[f.name])[:40]}, not a {kind.__name__}")
        if "sketch" not in d and any(k.startswith("sketch_") for k in d):  # written before the typed row
            old = {k[len("sketch_"):]: v for k, v in d.items() if k.startswith("sketch_") and k != "sketch_in_sync"}
            values["sketch"] = old if d.get("sampler") == "nws" else None
            values["sampler_options"] = {k[len("sampler_"):]: v for k, v in d.items()
                                         if k.startswith("sampler_") and k not in ("sampler_time_s", "sampler_overhead") and v is not None}
        values.setdefault("seed", 0)
        return cls(**values)


def _number(x: Optional[float]) -> str:
    return "—" if x is None or x != x else f"{x:.4f}"


def write_row(results_dir: str | Path, row: ResultRow) -> Path:
    """Write one run's row atomically to `<results_dir>/runs/<run_id>.json` and return its path."""
    path = row_path(results_dir, row.run_id)
    atomic_write_text(path, json.dumps(_jsonable(row.to_dict()), indent=1, sort_keys=True))
    return path


def read_rows(paths: str | Path | Iterable[str | Path]) -> list[ResultRow]:
    """Return the rows under one or more directories (searched recursively for `runs/*.json`) or files.

    A file that is not a readable row (truncated, not JSON, another program's JSON) is skipped with one warning
    naming it (logger `bench.results.rows`); the other rows are returned."""
    roots = [paths] if isinstance(paths, (str, Path)) else list(paths)
    rows: dict[str, ResultRow] = {}
    for root in roots:
        root = Path(root)
        files = [root] if root.is_file() else sorted(root.rglob("runs/*.json"))
        for f in files:
            try:
                row = ResultRow.from_dict(json.loads(f.read_text()))
            except (OSError, ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                why = " ".join(str(exc).split())[:160]
                logging.getLogger("bench.results.rows").warning(f"skipping {f}: not a readable result row ({why})")
                continue
            rows[row.run_id] = row  # the same run found twice (copies) counts once
    return list(rows.values())
