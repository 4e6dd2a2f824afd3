"""Build the benchmark's comparison view in a W&B project: metric vs training clock by sampler, time to target
per sampler, the sketch-size sweep, the proxy-quality probe.

    pip install wandb-workspaces                                   # W&B's workspace library (not a default dependency)
    python -m bench.wandb_dashboard --project nws-bench            # saves a workspace view, prints its URL
    python -m bench.wandb_dashboard --project nws-bench --entity my-team --dataset kdd04 --metric auc
    python -m bench.wandb_dashboard --project nws-bench --dry-run  # prints the view it would send; no network

Saving needs a W&B account (`WANDB_API_KEY` or `wandb login`) and a network; `--dry-run` needs neither: it prints
the panel specification as JSON (the W&B view model that `save` would send when wandb-workspaces is installed,
else this module's own plain specification, `spec()`). The panels read what `bench.results.logger.run_logger` logs:
`test/<metric>`, `train/loss` and `probe/*` against `train/time_s` (the fair clock) or the step, the result row's
scalars in the summary (`time_to_target_s`, `best_metric`, `sampler_overhead`), and the config's `sampler.name`,
`dataset.name` and `sketch.*`. Runs are grouped by sampler (by dataset, then sampler, unless `--dataset` picks
one), with the median over seeds and the min-max band.

Errors (no wandb-workspaces, no key, W&B refusing the view) are one line on stderr; exit status 2 for what the
user must fix, 1 when W&B fails.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional, Sequence

from .results.logger import CLOCK_KEY, has_wandb_key, metric_key
from .train.metrics import METRICS

__all__ = ["spec", "workspace", "main", "SAMPLER_KEY", "DATASET_KEY"]

SAMPLER_KEY = "sampler.name"  # W&B config keys (bench.results.logger.run_logger's config is the run's identity)
DATASET_KEY = "dataset.name"
SUMMARY_KEYS = ("time_to_target_s", "best_metric", "final_metric", "sampler_overhead")  # the result row's scalars
SKETCH_KEYS = ("sketch.depth", "sketch.width", "sketch.bits")
PROBE_KEYS = ("probe/spearman", "probe/vr", "probe/captured")


def _line(title: str, y: str, x: str = CLOCK_KEY) -> dict[str, Any]:
    return {"type": "line", "title": title, "x": x, "y": [y], "agg": "median", "range": "minmax"}


def _bar(title: str, key: str) -> dict[str, Any]:
    return {"type": "bar", "title": title, "metrics": [f"summary:{key}"], "agg": "median", "range": "minmax"}


def spec(metrics: Sequence[str] = tuple(METRICS), dataset: Optional[str] = None, name: str = "nws-bench",
         group: Optional[str] = None) -> dict[str, Any]:
    """The comparison view as plain data: sections of panels. Axes are W&B history keys, `config:<key>` or
    `summary:<key>`; `Step` is W&B's step (the training step). `dataset`/`group` filter the runs."""
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {', '.join(unknown)}")
    shown = [METRICS[m] for m in metrics]
    filters = {k: v for k, v in ((DATASET_KEY, dataset), ("group", group)) if v is not None}
    return {
        "name": name,
        "x_axis": CLOCK_KEY,
        "filters": filters,
        "groupby": [SAMPLER_KEY] if dataset else [DATASET_KEY, SAMPLER_KEY],
        "sections": [
            {"name": "Metric vs training clock (fair clock, s)",
             "panels": [_line(f"{m.display} vs training clock", metric_key(m.name)) for m in shown]
                       + [_line("training loss vs training clock", "train/loss")]},
            {"name": "Metric vs step",
             "panels": [_line(f"{m.display} vs step", metric_key(m.name), x="Step") for m in shown]},
            {"name": "Time to target per sampler",
             "panels": [_bar("time to target (s, fair clock; missing: not reached)", "time_to_target_s"),
                        _bar("best metric", "best_metric"), _bar("sampler overhead (share of the clock)",
                                                                  "sampler_overhead")]},
            {"name": "Sketch-size sweep (nws)",
             "panels": [{"type": "scatter", "title": f"time to target vs {k}", "x": f"config:{k}",
                         "y": "summary:time_to_target_s"} for k in SKETCH_KEYS[:2]]
                       + [{"type": "parallel", "title": "sketch shape vs time to target and best metric",
                           "columns": [f"config:{k}" for k in SKETCH_KEYS]
                                      + ["summary:time_to_target_s", "summary:best_metric"]}]},
            {"name": "Proxy-quality probe",
             "panels": [_line(f"{k} vs training clock", k) for k in PROBE_KEYS]},
        ],
    }


def _axis(key: str) -> Any:
    import wandb_workspaces.reports.v2 as wr

    section, _, name = key.partition(":")
    if section == "config":
        return wr.Config(name)
    if section == "summary":
        return wr.SummaryMetric(name)
    return key


def _panel(p: dict[str, Any]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    if p["type"] == "line":
        return wr.LinePlot(title=p["title"], x=p["x"], y=p["y"], groupby_aggfunc=p["agg"],
                           groupby_rangefunc=p["range"], smoothing_type="none")
    if p["type"] == "bar":
        return wr.BarPlot(title=p["title"], metrics=[_axis(m) for m in p["metrics"]], groupby_aggfunc=p["agg"],
                          groupby_rangefunc=p["range"])
    if p["type"] == "scatter":
        return wr.ScatterPlot(title=p["title"], x=_axis(p["x"]), y=_axis(p["y"]), log_x=True)
    if p["type"] == "parallel":
        return wr.ParallelCoordinatesPlot(title=p["title"], columns=[
            wr.ParallelCoordinatesPlotColumn(metric=_axis(c)) for c in p["columns"]])
    raise ValueError(f"unknown panel type {p['type']!r}")


def workspace(view: dict[str, Any], entity: str, project: str) -> Any:
    """The `wandb_workspaces` Workspace of a `spec()` (built locally; `.save()` sends it)."""
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    filters = [expr.Config(k) == v for k, v in view["filters"].items() if k != "group"]
    if "group" in view["filters"]:
        filters.append(expr.Metric("Group") == view["filters"]["group"])
    return ws.Workspace(
        entity=entity, project=project, name=view["name"],
        settings=ws.WorkspaceSettings(x_axis=view["x_axis"], smoothing_type="none", max_runs=100),
        runset_settings=ws.RunsetSettings(filters=filters, groupby=[expr.Config(k) for k in view["groupby"]]),
        sections=[ws.Section(name=s["name"], panels=[_panel(p) for p in s["panels"]], is_open=True)
                  for s in view["sections"]],
    )


def sent_view(view: dict[str, Any], entity: str, project: str) -> dict[str, Any]:
    """The W&B view model `workspace(view).save()` would send, as JSON-able data (no network)."""
    return workspace(view, entity, project)._to_model().model_dump(by_alias=True, exclude_none=True, mode="json")


def _fail(message: str, status: int) -> int:
    print(f"bench.wandb_dashboard: error: {message}", file=sys.stderr)
    return status


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.wandb_dashboard", description=__doc__.splitlines()[0])
    p.add_argument("--project", required=True, help="the W&B project the runs were logged to (logger.wandb.project)")
    p.add_argument("--entity", default=os.environ.get("WANDB_ENTITY"), help="W&B user or team (default: the key's)")
    p.add_argument("--dataset", help="show one dataset's runs (dataset.name), grouped by sampler")
    p.add_argument("--group", help="show one W&B group's runs (logger.wandb.group; default groups: <dataset>-<id>)")
    p.add_argument("--metric", nargs="+", default=list(METRICS), choices=list(METRICS), help="metrics to plot")
    p.add_argument("--name", default="nws-bench", help="the view's name")
    p.add_argument("--dry-run", action="store_true", help="print the view it would send as JSON; no network")
    a = p.parse_args(argv)
    view = spec(a.metric, a.dataset, a.name, a.group)
    try:
        import wandb_workspaces  # noqa: F401
    except ImportError:
        if a.dry_run:
            print(json.dumps(view, indent=1))
            print("note: wandb-workspaces is not installed: this is the plain specification, not W&B's view model",
                  file=sys.stderr)
            return 0
        return _fail("needs W&B's workspace library: pip install wandb-workspaces (or: pip install 'wandb[workspaces]')", 2)
    if a.dry_run:
        print(json.dumps(sent_view(view, a.entity or "ENTITY", a.project), indent=1))
        return 0
    if not has_wandb_key():
        return _fail("needs a W&B account: set WANDB_API_KEY or run `wandb login` (or use --dry-run)", 2)
    try:
        import wandb

        entity = a.entity or wandb.Api().default_entity
        saved = workspace(view, entity, a.project).save()
    except Exception as exc:  # noqa: BLE001 - W&B refused or cannot be reached: one line
        return _fail(f"W&B did not take the view ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})", 1)
    print(saved.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
