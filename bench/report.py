"""Summarize result rows into a markdown table, a CSV and plots.

    python -m bench.report results/                      # writes results/report.md, summary.csv, *.png
    python -m bench.report multirun/2024-06-01 results/ --out reports/today --baseline uniform
    python -m bench.report results/ --fidelity results/sketch_fidelity.json

PATH is any directory under which `runs/*.json` rows lie (a results, run or multirun dir), read with
`bench.results.read_rows`. One table line per configuration over seeds: rows that differ in any setting but
the seed (a sampler option, a sketch width, the learning rate, ...) are different lines, labelled by the
settings that tell them apart, so a depth/width sweep shows one line per setting and nothing is pooled.
Timing follows airbench/AlgoPerf: time-to-target is the row's first evaluation reaching the target (null =
never = inf); we show its min / median over seeds with how many seeds reached it, and median/median against
the baseline sampler of the same experiment. `±` is the sample std (ddof=1). Device, torch version and git commit are printed above the table and kept in summary.csv.

    from bench.report import summarize, markdown_table, write_report
    df = summarize(read_rows("results")); print(markdown_table(df)); write_report(["results"], "out")
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

from bench.metrics import METRICS
from bench.results import ResultRow, read_rows

__all__ = ["summarize", "markdown_table", "write_report", "frame", "ReportError", "main"]

NUMERIC = ("seed", "target", "time_to_target_s", "final_metric", "best_metric", "train_time_s",
           "sampler_time_s", "sampler_overhead", "steps")
TEXT = ("dataset", "model", "sampler", "target_metric", "device", "torch_version", "git_commit")
ERROR_KEYS = ("error", "rel_error", "relative_error", "abs_error", "mae", "rmse")
HIDDEN_KEYS = ("seed", "sampler.name")  # never part of a line's label (the seed varies within a line)


class ReportError(ValueError):
    """A problem with the input (no such path, no rows, unreadable file): one line for the user."""


def _time_to_target(row: ResultRow) -> float:
    if row.reached_target is None and row.time_to_target_s is None:
        return math.nan  # a row from an older version: unknown, not "never"
    return math.inf if row.time_to_target_s is None or row.reached_target is False else float(row.time_to_target_s)


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists as text, so they compare and hash."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.dumps(v) if isinstance(v, list) else v
    return out


def _settings(row: ResultRow) -> dict[str, Any]:
    """The row's configuration, flattened: its identity config, or for an older row what it recorded."""
    if row.config:
        return _flat(row.config)
    return _flat({"sampler": {"name": row.sampler, **row.sampler_options}, "sketch": row.sketch or {},
                  "model": row.model, "target": row.target})


def _line_key(row: ResultRow, settings: dict[str, Any]) -> str:
    """Rows with one key are seeds of one table line: the group id (configuration minus seed), or for older
    rows the settings they recorded."""
    return row.group_id or json.dumps({k: v for k, v in settings.items() if k != "seed"}, sort_keys=True, default=str)


def _experiment_key(row: ResultRow) -> str:
    """Rows with one key compare samplers on one experiment: the experiment id, or for older rows
    (dataset, model, metric, target)."""
    return row.experiment_id or f"{row.dataset}|{row.model}|{row.target_metric}|{row.target}"


def frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """One line per finished row with its settings flattened (`sampler.mix`, `sketch.width`, ...), its line and
    experiment keys, and a label naming the settings that tell its line apart from the dataset's other lines."""
    records = []
    for r in rows:
        if r.status not in (None, "done"):
            continue
        settings = _settings(r)
        records.append({**r.to_dict(), **{f"cfg:{k}": v for k, v in settings.items()},
                        "time_to_target_s": _time_to_target(r), "higher_is_better": r.higher_is_better,
                        "line": _line_key(r, settings), "experiment": _experiment_key(r)})
    df = pd.DataFrame(records)
    if df.empty:
        return df
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in TEXT:
        df[c] = df[c].where(df[c].notna(), "?").astype(str)
    df["sampler_overhead"] = df.sampler_overhead.fillna(df.sampler_time_s / df.train_time_s)
    df["setting"] = _setting_labels(df)
    df["label"] = (df.sampler + " " + df.setting).str.strip()
    return df


def _setting_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: `key=value` for each setting that differs between the lines of its dataset (not the seed)."""
    labels = pd.Series("", index=df.index)
    cfg_cols = [c for c in df.columns if c.startswith("cfg:") and c[4:] not in HIDDEN_KEYS]
    for _, d in df.groupby("dataset"):
        lines = d.drop_duplicates("line")
        varying = [c for c in cfg_cols if lines[c].astype(str).nunique() > 1]
        names = _short_names([c[4:] for c in varying])
        labels[d.index] = [" ".join(f"{n}={_text(v)}" for n, v in zip(names, r) if not _missing(v))
                           for r in d[varying].itertuples(index=False)]
    return labels


def _short_names(keys: list[str]) -> list[str]:
    """The last component of each dotted key, or the whole key where two would share a last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [s if last.count(s) == 1 else k for s, k in zip(last, keys)]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _text(v: Any) -> str:
    """A setting as a label shows it: floats in short form, a null pool as "all"."""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _stats(g: pd.DataFrame) -> dict[str, Any]:
    t = g.time_to_target_s.dropna()
    nan = math.nan
    return {
        "label": g.label.iloc[0], "setting": g.setting.iloc[0], "higher_is_better": g.higher_is_better.iloc[0],
        "seeds": len(g), "repeated_seeds": len(g) - g.seed.nunique(),
        "final_mean": g.final_metric.mean(), "final_std": g.final_metric.std(),
        "best_mean": g.best_metric.mean(), "best_std": g.best_metric.std(),
        "ttt_min": t.min() if len(t) else nan, "ttt_median": t.median() if len(t) else nan,
        "ttt_max": t.max() if len(t) else nan, "reached": int(np.isfinite(t).sum()), "ttt_known": len(t),
        "overhead_pct": 100 * g.sampler_overhead.mean(), "train_time_mean": g.train_time_s.mean(),
        "steps_mean": g.steps.mean(),
        **{c: "; ".join(sorted(set(g[c]))) for c in ("device", "torch_version", "git_commit")},
        **{c: g[c].iloc[0] for c in g.columns if c.startswith("cfg:")},
    }


def summarize(rows: Iterable[ResultRow] | pd.DataFrame, baseline: str = "uniform") -> pd.DataFrame:
    """One line per configuration over seeds (rows that differ in any setting but the seed are different lines),
    with the table's numbers and the time-to-target ratio against the baseline sampler of the same experiment."""
    df = rows if isinstance(rows, pd.DataFrame) else frame(rows)
    if df.empty:
        raise ReportError("no finished rows to summarize")
    keys = ["dataset", "model", "target_metric", "target", "experiment", "sampler", "line"]
    s = pd.DataFrame([{**dict(zip(keys, k)), **_stats(g)} for k, g in df.groupby(keys, dropna=False, sort=False)])
    base = s.loc[s.sampler == baseline, ["experiment", "ttt_median"]].drop_duplicates("experiment")
    s = s.merge(base.rename(columns={"ttt_median": "_base"}), on="experiment", how="left")
    ok = np.isfinite(s._base.astype(float)) & (s._base > 0)
    s["ttt_ratio"] = np.where(ok, s.ttt_median / s._base.where(ok, 1.0), np.nan)
    varying = [c for c in s.columns if c.startswith("cfg:") and s[c].astype(str).nunique() > 1]
    order = ["dataset", "sampler", "model", *varying, "target"]
    s = s.drop(columns="_base").sort_values(order, na_position="first", kind="stable", key=_sort_key).reset_index(drop=True)
    s.attrs["baseline"] = baseline
    return s


def _sort_key(col: pd.Series) -> pd.Series:
    """Numbers sort as numbers, anything else as text (a column may mix them: null pool sizes, lists)."""
    numeric = pd.to_numeric(col, errors="coerce")
    return numeric if numeric.notna().sum() == col.notna().sum() else col.astype(str)


def _number(x: float, spec: str = ".1f") -> str:
    """A table cell: "—" for unknown, "inf" for never."""
    return "—" if pd.isna(x) else "inf" if math.isinf(x) else format(x, spec)


def _mean_std(m: float, s: float) -> str:
    return _number(m, ".4f") + ("" if pd.isna(s) else f" ± {s:.4f}")


def _target(r: pd.Series) -> str:
    metric = METRICS.get(r.target_metric)
    op = {">=": "≥", "<=": "≤"}[metric.op] if metric else "≥"
    return f"{r.target_metric} {op} {_number(r.target, 'g')}"


def _cells(r: pd.Series) -> dict[str, str]:
    ttt = "—" if not r.ttt_known else f"{_number(r.ttt_min)} / {_number(r.ttt_median)} ({r.reached}/{r.ttt_known})"
    return {"dataset": r.dataset, "model": r.model, "sampler": r.sampler, "setting": r.setting,
            "seeds": str(r.seeds), "target": _target(r),
            "final": _mean_std(r.final_mean, r.final_std), "best": _mean_std(r.best_mean, r.best_std),
            "time-to-target s min / median (reached)": ttt, "ratio": _number(r.ttt_ratio, ".2f"),
            "sampler overhead": _number(r.overhead_pct) + ("" if pd.isna(r.overhead_pct) else "%"),
            "train s": _number(r.train_time_mean), "steps": _number(r.steps_mean, ".0f")}


def markdown_table(df: pd.DataFrame) -> str:
    """Device / torch / git commit lines, then the markdown table of `summarize`'s output."""
    cells = pd.DataFrame([_cells(r) for _, r in df.iterrows()])
    if df.groupby("dataset").model.nunique().max() <= 1:
        cells = cells.drop(columns="model")
    if not df.setting.astype(bool).any():
        cells = cells.drop(columns="setting")
    cells = cells.rename(columns={"ratio": f"median vs {df.attrs.get('baseline', 'uniform')}"})
    prov = [f"- {name}: " + "; ".join(sorted({v for s in df[c] for v in s.split("; ")}))
            for name, c in (("device", "device"), ("torch", "torch_version"), ("git commit", "git_commit"))]
    lines = ["| " + " | ".join(cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |"
              for row in cells.itertuples(index=False)]
    return "\n".join(prov + [""] + lines)


def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


def _slug(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name)


def plot_curves(rf: pd.DataFrame, ds: str, out: Path) -> str | None:
    """Target metric vs train time, one thin line per seed, one colour per sampler line; target dashed."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    drawn = False
    for i, (label, g) in enumerate(rf.groupby("label", sort=True)):
        first = True
        for curve in g.curve:
            pts = [(p.get("time_s"), p.get("metric")) for p in (curve if isinstance(curve, list) else [])]
            pts = [p for p in pts if None not in p]
            if pts:
                ax.plot(*zip(*pts), color=f"C{i % 10}", lw=0.9, alpha=0.8, label=label if first else None)
                first, drawn = False, True
    if not drawn:
        return None
    for t in rf.target.dropna().unique():
        ax.axhline(t, color="k", ls="--", lw=1, label=f"target {t:g}")
    ax.set(xlabel="fair-clock training time (s)", ylabel=rf.target_metric.iloc[0], title=f"{ds}: metric vs wall-clock")
    ax.legend(fontsize=7)
    return _save(fig, out / f"{_slug(ds)}_metric_vs_time.png")


def plot_ttt(s: pd.DataFrame, ds: str, out: Path) -> str | None:
    """Median time-to-target per line with min-max whiskers; unreached seeds drawn as red x at the right."""
    s = s[s.ttt_known > 0].reset_index(drop=True)
    if s.empty:
        return None
    vals = np.r_[s.ttt_min, s.ttt_max]
    fin = vals[np.isfinite(vals)]
    x_inf = 1.15 * fin.max() if len(fin) else 1.0
    cap = lambda v: x_inf if math.isinf(v) else v  # noqa: E731
    fig = Figure(figsize=(7, 0.5 * len(s) + 1.5))
    ax = fig.subplots()
    for y, r in s.iterrows():
        ax.plot([cap(r.ttt_min), cap(r.ttt_max)], [y, y], color="C0", lw=1.5)
        inf = math.isinf(r.ttt_median)
        ax.plot(cap(r.ttt_median), y, "x" if inf else "o", color="C3" if inf else "C0", ms=8)
        ax.annotate(f"{r.reached}/{r.ttt_known}", (x_inf, y), xytext=(8, -3), textcoords="offset points")
    ax.axvline(x_inf, color="C3", ls=":", lw=1)
    ax.invert_yaxis()  # first table line on top
    ax.set_yticks(range(len(s)), s.label)
    target = f"{s.target_metric.iloc[0]} target {_number(s.target.iloc[0], 'g')}"
    ax.set(xlabel=f"time to target (s); dotted line = not reached; {target}",
           title=f"{ds}: time to target (median, min-max over seeds)", xlim=(0, x_inf * 1.12))
    return _save(fig, out / f"{_slug(ds)}_time_to_target.png")


SWEPT = ("cfg:sketch.depth", "cfg:sketch.width", "cfg:sketch.bits", "cfg:sketch.bandwidth")  # sketch-sweep x axes


def _sweep_panel(top, bottom, d: pd.DataFrame, x: str) -> None:
    others = [c for c in SWEPT if c != x and c in d and d[c].nunique(dropna=False) > 1]
    for k, g in (d.groupby(others, dropna=False) if others else [((), d)]):
        g = g.sort_values(x)
        label = " ".join(f"{c.rsplit('.', 1)[-1]}={_text(v)}" for c, v in zip(others, k)) or g.sampler.iloc[0]
        top.errorbar(g[x], g.final_mean, yerr=g.final_std.fillna(0), marker="o", capsize=3, label=label)
        bottom.plot(g[x], g.ttt_median.replace(np.inf, np.nan), marker="o", label=label)
    name = x.rsplit(".", 1)[-1]
    top.set(ylabel=f"final {d.target_metric.iloc[0]}", title=f"{d.dataset.iloc[0]} / {d.sampler.iloc[0]}: vs {name}")
    bottom.set(xlabel=name, ylabel="median time to target (s)\n(unreached omitted)")
    top.legend(fontsize=7)
    if name == "width":
        top.set_xscale("log", base=2)
        bottom.set_xscale("log", base=2)


def plot_sweep(s: pd.DataFrame, out: Path) -> str | None:
    """Per dataset and sketch sampler: final metric and median time-to-target vs each sketch setting its lines vary."""
    panels = []
    for _, d in s.groupby(["dataset", "sampler"]):
        xs = [c for c in SWEPT if c in d and d[c].nunique() > 1]
        panels += [(d, x) for x in xs]
    if not panels:
        return None
    fig = Figure(figsize=(4.5 * len(panels), 6.5))
    axs = fig.subplots(2, len(panels), squeeze=False)
    for j, (d, x) in enumerate(panels):
        _sweep_panel(axs[0, j], axs[1, j], d, x)
    fig.tight_layout()
    return _save(fig, out / "sketch_sweep.png")


def plot_fidelity(path: Path, out: Path) -> tuple[str | None, str]:
    """Sketch error vs width and vs depth from scripts/sketch_fidelity.py's JSON list of dicts."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return None, f"{path}: unreadable ({e}); skipped"
    if isinstance(data, dict) and isinstance(data.get("rows"), list):  # scripts/sketch_fidelity.py's layout
        data = data["rows"]
    err = next((k for k in ERROR_KEYS if isinstance(data, list) and data and all(
        isinstance(d, dict) and {"width", "depth", k} <= d.keys() for d in data)), None)
    if err is None:
        return None, f"{path}: not a list of dicts with width, depth and one of {ERROR_KEYS}; skipped"
    fd = pd.DataFrame(data)
    fd["family"] = fd.get("family", pd.Series("", index=fd.index)).fillna("").astype(str)
    fig = Figure(figsize=(10, 4))
    for ax, (x, other) in zip(fig.subplots(1, 2), (("width", "depth"), ("depth", "width"))):
        for (fam, o), g in fd.groupby(["family", other]):
            g = g.groupby(x)[err].mean()
            ax.plot(g.index, g.values, marker="o", label=f"{fam} {other}={_text(o)}".strip())
        ax.set_xscale("log", base=2)
        ax.set(yscale="log" if (fd[err] > 0).all() else "linear", xlabel=x, ylabel=err,
               title=f"sketch {err} vs {x}")
        ax.legend(fontsize=7)
    return _save(fig, out / "sketch_fidelity.png"), f"fidelity: {path} ({err})"


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    for p in paths:
        if not p.exists():
            raise ReportError(f"no such path: {p}")
    try:
        rows = read_rows(paths)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ReportError(f"could not read rows under {', '.join(map(str, paths))}: {e!r}") from e
    if not rows:
        raise ReportError(f"no result rows (runs/*.json) under {', '.join(map(str, paths))}")
    return rows


def _notes(rf: pd.DataFrame, s: pd.DataFrame, paths: list[Path], baseline: str) -> list[str]:
    notes = [f"{len(rf)} rows from {', '.join(map(str, paths))}; ratios are median / median vs `{baseline}`",
             "time-to-target: first evaluation reaching the target, inf if never; min / median over seeds"]
    missing = sorted(set(s.dataset) - set(s.dataset[s.sampler == baseline]))
    notes += [f"no `{baseline}` rows for {', '.join(missing)}: no ratio there"] if missing else []
    return notes + [f"{r.dataset} / {r.label}: {r.repeated_seeds} rows repeat a seed: rows from an older version "
                    "that did not record their whole config, pooled on what they recorded (see their overrides)"
                    for _, r in s[s.repeated_seeds > 0].iterrows()]


def _fidelity(paths: list[Path], fidelity, out: Path) -> tuple[str | None, list[str]]:
    found = [Path(fidelity)] if fidelity else sorted(f for p in paths if p.is_dir()
                                                      for f in p.rglob("sketch_fidelity.json"))
    if not found:
        return None, []
    png, note = plot_fidelity(found[0], out)
    return png, [note] + ([f"also found, not plotted: {', '.join(map(str, found[1:]))}"] if found[1:] else [])


def _build(paths, out=None, baseline="uniform", fidelity=None) -> tuple[Path, str]:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if fidelity is not None and not Path(fidelity).is_file():
        raise ReportError(f"no such fidelity file: {fidelity}")
    rf = frame(_load(paths))
    s = summarize(rf, baseline)
    table = markdown_table(s)
    out = Path(out) if out else (paths[0] if paths[0].is_dir() else paths[0].parent)
    out.mkdir(parents=True, exist_ok=True)
    s.to_csv(out / "summary.csv", index=False)
    plots = [f for ds, g in rf.groupby("dataset") for f in
             (plot_curves(g, ds, out), plot_ttt(s[s.dataset == ds], ds, out))] + [plot_sweep(s, out)]
    png, fid_notes = _fidelity(paths, fidelity, out)
    text = ["# nws-bench report", "", table, ""]
    text += [f"- {n}" for n in _notes(rf, s, paths, baseline) + fid_notes] + [""]
    text += [f"![{p}]({p})" for p in plots + [png] if p]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return out / "report.md", table


def write_report(paths, out=None, baseline: str = "uniform", fidelity=None) -> Path:
    """Write report.md, summary.csv and the plots to `out` (default: the first path); return report.md."""
    return _build(paths, out, baseline, fidelity)[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="dirs under which runs/*.json rows lie")
    p.add_argument("--out", help="output dir (default: the first PATH)")
    p.add_argument("--baseline", default="uniform", help="sampler that time-to-target ratios are against")
    p.add_argument("--fidelity", help="sketch_fidelity.json (default: found under PATH)")
    a = p.parse_args(argv)
    try:
        report, table = _build(a.paths, a.out, a.baseline, a.fidelity)
    except ReportError as e:
        sys.exit(f"bench.report: error: {e}")
    print(table)
    print(f"\nwrote {report} (+ summary.csv, plots)", file=sys.stderr)


if __name__ == "__main__":
    main()
