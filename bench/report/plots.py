"""The report's plots and the way it writes numbers: metric vs fair-clock time (mean over seeds, min-max band,
markers at evaluations), time to each target, the proxy-quality probe, sketch sweeps and sketch fidelity.

Each `plot_*` takes `bench.report.tables`'s frames (one record per run from `frame`, one per line from `summarize`, one
per experiment from `experiments`), writes one PNG into `out` and returns its file name (None: nothing to draw).

    from bench.report.plots import plot_curves, plot_ttt, plot_probe
    plot_curves(runs_of_experiment, experiment_record, Path("out"))
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg

from ..train.metrics import METRICS

__all__ = ["plot_curves", "plot_ttt", "plot_probe", "plot_sweep", "plot_fidelity", "mean_curve", "number",
           "setting_text", "op_symbol", "flagged"]

ERROR_KEYS = ("error", "rel_error", "relative_error", "abs_error", "mae", "rmse")


# -- how numbers and settings are written (tables and plots) ----------------------------------------------------
def number(x: float, spec: str = ".1f") -> str:
    """A table cell: "—" for unknown, "inf" for never."""
    return "—" if pd.isna(x) else "inf" if math.isinf(x) else format(x, spec)


def setting_text(v: Any) -> str:
    """A setting as a label shows it: floats in short form, a null one as "null" (the config's word, never None)."""
    return f"{v:g}" if isinstance(v, float) else "null" if v is None else str(v)


def op_symbol(metric: str) -> str:
    """≥ for a higher-is-better metric, ≤ for a lower-is-better one."""
    m = METRICS.get(metric)
    return {">=": "≥", "<=": "≤"}[m.op] if m else "≥"


def flagged(v: Any) -> bool:
    """Whether an epoch-1 flag is set (a missing flag, NaN after a join, is not)."""
    return isinstance(v, (bool, np.bool_)) and bool(v)


# -- plots -----------------------------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> str:
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path.name


SLUG_CHARS = 60  # the longest PNG name stem


def _slug(name: str) -> str:
    """A file name stem for `name`: ASCII letters, digits, `.`, `-` and `_` only, at most SLUG_CHARS characters
    (a cut or changed name gets a short hash of the whole, so two experiments never share a file)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", ascii_name).strip("_") or "experiment"
    if len(slug) > SLUG_CHARS or ascii_name != name:
        slug = f"{slug[:SLUG_CHARS - 7].rstrip('_')}_{hashlib.sha1(name.encode()).hexdigest()[:6]}"
    return slug


def mean_curve(curves: Iterable[list], key: str = "metric") -> pd.DataFrame:
    """Seeds' curves aligned by step: mean fair-clock time, mean / min / max of `key` and the seed count per step."""
    pts = [(p["step"], p["time_s"], p[key]) for c in curves if isinstance(c, list) for p in c
           if p.get("step") is not None and p.get("time_s") is not None and p.get(key) is not None
           and not math.isnan(float(p[key]))]
    if not pts:
        return pd.DataFrame(columns=["step", "time", "mean", "lo", "hi", "n"])
    d = pd.DataFrame(pts, columns=["step", "time", "v"])
    return d.groupby("step").agg(time=("time", "mean"), mean=("v", "mean"), lo=("v", "min"), hi=("v", "max"),
                                 n=("v", "size")).reset_index()


def _draw_lines(ax, rf: pd.DataFrame, key: str) -> bool:
    """One line per table line: mean over seeds with markers at the evaluations and a min-max band."""
    drawn = False
    for i, (label, g) in enumerate(rf.groupby("label", sort=True)):
        m = mean_curve(g.curve, key)
        if m.empty:
            continue
        color = f"C{i % 10}"
        ax.plot(m.time, m["mean"], color=color, lw=1.2, marker="o", ms=2.5, label=f"{label} ({len(g)} seeds)")
        ax.fill_between(m.time, m.lo, m.hi, color=color, alpha=0.15, lw=0)
        drawn = True
    return drawn


def _interval_text(e: pd.Series) -> str:
    return f"evaluation every {number(e.eval_every_steps, '.0f')} steps" if not pd.isna(e.eval_every_steps) else ""


def _curve_panel(ax, rf: pd.DataFrame, e: pd.Series) -> bool:
    if not _draw_lines(ax, rf, "metric"):
        return False
    for value, style, name in ((e.tu, "-", "T_u"), (e.loose, ":", "0.99·T_u"), (e.ttt, "--", "hand target")):
        if not pd.isna(value):
            ax.axhline(value, color="k", ls=style, lw=0.9, label=f"{name} {value:.4g}")
    if not pd.isna(e.uniform_time_s):
        ax.axvline(e.uniform_time_s, color="grey", ls="-.", lw=0.8, label="uniform's median total clock")
    ax.set(xlabel="fair-clock training time (s): sampling + sketch + step + setup; evaluation excluded",
           ylabel=f"test {e.target_metric}")
    return True


def plot_curves(rf: pd.DataFrame, e: pd.Series, out: Path) -> str | None:
    """Target metric vs fair-clock time: mean over seeds, min-max band, markers at evaluations; T_u solid, loose
    dotted, hand target dashed, the baseline's median total clock as a vertical line. With T_u known, a second
    panel zooms in on the approach to it (5 loose-target gaps on the far side, 2 on the near one)."""
    zoom = not pd.isna(e.tu) and e.tu != e.loose
    fig = Figure(figsize=(13 if zoom else 7.5, 4.5))
    axs = fig.subplots(1, 2 if zoom else 1, squeeze=False)[0]
    if not _curve_panel(axs[0], rf, e):
        return None
    axs[0].set_title(f"{e['name']}: {e.target_metric} vs time ({_interval_text(e)}; mean over seeds, band min-max)",
                     fontsize=9)
    axs[0].legend(fontsize=7)
    if zoom:
        _curve_panel(axs[1], rf, e)
        gap = abs(e.tu - e.loose)
        axs[1].set_ylim(*((e.tu - 5 * gap, e.tu + 2 * gap) if e.higher_is_better else (e.tu - 2 * gap, e.tu + 5 * gap)))
        axs[1].set(title="near T_u", xlabel="fair-clock training time (s)")
        fig.tight_layout()
    return _save(fig, out / f"{_slug(e['name'])}_metric_vs_time.png")


def _ttt_panel(ax, s: pd.DataFrame, prefix: str, title: str, labels: bool) -> None:
    vals = np.r_[s[f"{prefix}_min"], s[f"{prefix}_max"]].astype(float)
    fin = vals[np.isfinite(vals)]
    x_inf = 1.15 * fin.max() if len(fin) and fin.max() > 0 else 1.0
    cap = lambda v: x_inf if math.isinf(v) else v  # noqa: E731
    for y, r in s.iterrows():
        if not r[f"{prefix}_known"]:
            continue
        ax.plot([cap(r[f"{prefix}_min"]), cap(r[f"{prefix}_max"])], [y, y], color="C0", lw=1.5)
        inf = math.isinf(r[f"{prefix}_median"])
        ax.plot(cap(r[f"{prefix}_median"]), y, "x" if inf else "o", color="C3" if inf else "C0", ms=7)
        ax.annotate(f"{r[f'{prefix}_reached']}/{r[f'{prefix}_known']}", (x_inf, y), xytext=(6, -3),
                    textcoords="offset points", fontsize=7)
    ax.axvline(x_inf, color="C3", ls=":", lw=1)
    if labels:  # the panels share the y axis: the first one sets its ticks
        ax.set_yticks(range(len(s)), s.label)
    ax.set(xlabel="fair-clock s (dotted: not reached)", title=title, xlim=(0, x_inf * 1.2))


def plot_ttt(s: pd.DataFrame, e: pd.Series, out: Path) -> str | None:
    """Per target (0.99·T_u, T_u, hand): median time to reach it per line, min-max whiskers, unreached as red x."""
    s = s.reset_index(drop=True)
    op = op_symbol(e.target_metric)
    panels = [(p, f"{name} ({op} {e[p]:.4g})" + (" †" if flagged(e[f"{p}_epoch1"]) else ""))
              for p, name in (("loose", "0.99·T_u"), ("tu", "T_u"), ("ttt", "hand target"))
              if not pd.isna(e[p]) and s[f"{p}_known"].any()]
    if s.empty or not panels:
        return None
    fig = Figure(figsize=(4 * len(panels) + 2, 0.45 * len(s) + 1.8))
    axs = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for j, (p, title) in enumerate(panels):
        _ttt_panel(axs[j], s, p, title, labels=j == 0)
    axs[0].invert_yaxis()  # first table line on top
    fig.suptitle(f"{e['name']}: time to target (median, min-max over seeds; {_interval_text(e)})", fontsize=9, y=1.0)
    fig.tight_layout()
    return _save(fig, out / f"{_slug(e['name'])}_time_to_target.png")


def plot_probe(rf: pd.DataFrame, e: pd.Series, out: Path) -> str | None:
    """The proxy-quality probe's VR and Spearman vs fair-clock time, samplers as lines (when the rows have it)."""
    keys = [(k, t) for k, t in (("probe_vr", "probe VR (1 = uniform, lower = less gradient noise)"),
                                ("probe_spearman", "probe Spearman(p, loss)")) if not mean_curve(rf.curve, k).empty]
    if not keys:
        return None
    fig = Figure(figsize=(6 * len(keys), 4))
    for ax, (k, title) in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        _draw_lines(ax, rf, k)
        if k == "probe_vr":
            ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set(xlabel="fair-clock training time (s)", ylabel=k, title=f"{e['name']}: {title}")
        ax.legend(fontsize=7)
    return _save(fig, out / f"{_slug(e['name'])}_probe_vs_time.png")


SWEPT = ("cfg:sketch.depth", "cfg:sketch.width", "cfg:sketch.bits", "cfg:sketch.bandwidth")  # sketch-sweep x axes


def _sweep_panel(top, bottom, d: pd.DataFrame, x: str, t: str) -> None:
    others = [c for c in SWEPT if c != x and c in d and d[c].nunique(dropna=False) > 1]
    for k, g in (d.groupby(others, dropna=False) if others else [((), d)]):
        g = g.sort_values(x)
        label = " ".join(f"{c.rsplit('.', 1)[-1]}={setting_text(v)}" for c, v in zip(others, k)) or g.sampler.iloc[0]
        top.errorbar(g[x], g.final_mean, yerr=g.final_std.fillna(0), marker="o", capsize=3, label=label)
        bottom.plot(g[x], g[f"{t}_median"].replace(np.inf, np.nan), marker="o", label=label)
    name = x.rsplit(".", 1)[-1]
    top.set(ylabel=f"final {d.target_metric.iloc[0]}", title=f"{d['name'].iloc[0]} / {d.sampler.iloc[0]}: vs {name}")
    target = "0.99·T_u" if t == "loose" else "the hand target"
    bottom.set(xlabel=name, ylabel=f"median time to {target} (s)\n(unreached omitted)")
    top.legend(fontsize=7)
    if name == "width":
        top.set_xscale("log", base=2)
        bottom.set_xscale("log", base=2)


def plot_sweep(s: pd.DataFrame, out: Path) -> str | None:
    """Per experiment and sketch sampler: final metric and median time to 0.99·T_u (else the hand target) vs each
    sketch setting its lines vary."""
    panels = []
    for _, d in s.groupby(["name", "sampler"]):
        xs = [c for c in SWEPT if c in d and d[c].nunique() > 1]
        panels += [(d, x, "loose" if d.loose_known.any() else "ttt") for x in xs]
    if not panels:
        return None
    fig = Figure(figsize=(4.5 * len(panels), 6.5))
    axs = fig.subplots(2, len(panels), squeeze=False)
    for j, (d, x, t) in enumerate(panels):
        _sweep_panel(axs[0, j], axs[1, j], d, x, t)
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
            ax.plot(g.index, g.values, marker="o", label=f"{fam} {other}={setting_text(o)}".strip())
        ax.set_xscale("log", base=2)
        ax.set(yscale="log" if (fd[err] > 0).all() else "linear", xlabel=x, ylabel=err,
               title=f"sketch {err} vs {x}")
        ax.legend(fontsize=7)
    return _save(fig, out / "sketch_fidelity.png"), f"fidelity: {path} ({err})"
