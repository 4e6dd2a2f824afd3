"""Summarize result rows into a markdown report, a CSV and plots, by the evaluation protocol (bench.report.protocol).

    python -m bench.report results/                      # writes results/report.md, summary.csv, *.png
    python -m bench.report multirun/2024-06-01 results/ --out reports/today --baseline uniform
    python -m bench.report results/ --fidelity results/sketch_fidelity.json

PATH is any directory under which `runs/*.json` rows lie (a results, run or multirun dir), read with
`bench.results.rows.read_rows` (a file that is not a readable row is skipped with one warning naming it). Exit
status: 0 written, 2 bad input (no such path, no rows), 73 the output folder cannot be written (one line each).

**Lines, never pooled.** One table line per configuration over seeds: rows are seeds of one line only when their
whole configuration but the seed is identical (`group_id`); rows that differ in anything else (a learning rate, a
batch size, a sketch width) are different lines, labelled by the settings that tell them apart. Rows written
before the typed row, which lack a `group_id`, are told apart by what they recorded plus their command-line
overrides. **Experiments** are the rows that differ only in the sampler and what only samplers read
(`experiment_id`); each is named by its `experiment=` override (else its dataset).

**Targets from uniform.** Per experiment, T_u = the median over seeds of the baseline (uniform) sampler's final
metric at the full budget, and a loose target 0.99 T_u (1.01 T_u where lower is better). Per line: fair-clock
seconds and steps to reach T_u and the loose target (each seed's first evaluation reaching it, median over seeds,
inf if never, with how many seeds reached it); the metric at uniform's median total clock (equal-time quality:
the last evaluation at or before it, mean ± std over seeds); the final metric; the hand-set `trainer.target` as a
secondary column. A target that uniform reaches inside its first epoch is flagged (†): every sampler ties there.
Time-to-target cannot be finer than the evaluation interval, which the report states per experiment. The
proxy-quality probe (`probe_vr`, `probe_spearman` in the curves, bench.train.probe) is shown when present.
Device, torch version and git commit are printed above the table and kept in summary.csv.

    from bench.report.tables import summarize, markdown_table, write_report
    df = summarize(read_rows("results")); print(markdown_table(df)); write_report(["results"], "out")
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from bench.config.preflight import CONF_DIR
from bench.report.plots import (flagged, number, op_symbol, plot_curves, plot_fidelity, plot_probe, plot_sweep, plot_ttt,
                                setting_text)
from bench.report.protocol import (epoch_flag_applies, eval_interval_steps, first_reach, inside_first_epoch, last_value,
                                   loose_target, median, uniform_target, value_at)
from bench.results.rows import ResultRow, read_rows
from bench.train.timing import find_stalls

__all__ = ["summarize", "experiments", "markdown_table", "write_report", "frame", "experiment_override", "ReportError", "main"]
# The plots are bench.report.plots'; the curve readings (T_u, first reach, value at a time) are bench.report.protocol's.

NUMERIC = ("seed", "target", "time_to_target_s", "final_metric", "best_metric", "train_time_s",
           "sampler_time_s", "sampler_overhead", "steps", "epochs", "steps_per_epoch", "evals_per_epoch")
TEXT = ("dataset", "model", "sampler", "target_metric", "device", "torch_version", "git_commit")
HIDDEN_KEYS = ("seed", "sampler", "sampler.name", "experiment")  # never part of a line's label
# Command-line overrides that say where things go or how they are shown, not what is computed (older rows only)
IGNORED_OVERRIDES = ("seed", "paths.", "logger", "hydra", "progress", "resume", "dataset.root", "device")
EXPERIMENTS = CONF_DIR / "experiment"  # the names `experiment=` resolves
TARGETS = (("tu", "T_u"), ("loose", "0.99·T_u"), ("ttt", "hand target"))  # (column prefix, name)


EXIT_BAD_INPUT = 2  # no such path, no rows
EXIT_CANT_WRITE = 73  # sysexits.h EX_CANTCREAT: the output folder cannot be written


class ReportError(ValueError):
    """A problem with the input (no such path, no rows) or the output folder: one line for the user, and the exit
    status `python -m bench.report` ends with."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# -- one record per run ----------------------------------------------------------------------------------------
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


def _overrides(row: ResultRow) -> dict[str, str]:
    """The row's command-line overrides that change what it computes, as {key: value}."""
    out = {}
    for o in row.overrides or []:
        key, _, value = str(o).partition("=")
        key = key.lstrip("+~")
        if not any(key == k or key.startswith(k if k.endswith(".") else k + ".") for k in IGNORED_OVERRIDES):
            out[key] = value
    return out


def _settings(row: ResultRow) -> dict[str, Any]:
    """The row's configuration, flattened: its identity config, or for an older row what it recorded plus its
    command-line overrides (so rows that differ in an override the row did not record are not pooled)."""
    if row.config:
        return _flat(row.config)
    recorded = _flat({"sampler": {"name": row.sampler, **row.sampler_options}, "sketch": row.sketch or {},
                      "model": row.model, "target": row.target})
    return {**_overrides(row), **recorded}


def _line_key(row: ResultRow, settings: dict[str, Any]) -> str:
    """Rows with one key are seeds of one table line: the group id (configuration minus seed), or for older
    rows the settings they recorded and their overrides."""
    return row.group_id or json.dumps({k: v for k, v in settings.items() if k != "seed"}, sort_keys=True, default=str)


def _experiment_key(row: ResultRow, settings: dict[str, Any]) -> str:
    """Rows with one key compare samplers on one experiment: the experiment id, or for older rows (dataset, model,
    metric, target and the overrides that are not the sampler's)."""
    if row.experiment_id:
        return row.experiment_id
    own = {k: v for k, v in _overrides(row).items() if not k.startswith(("sampler", "sketch", "experiment"))}
    return json.dumps([row.dataset, row.model, row.target_metric, row.target, own], sort_keys=True, default=str)


def experiment_override(row: ResultRow) -> str | None:
    """The row's `experiment=` override when that experiment exists (conf/experiment/): an older row may carry a
    misspelled name that Hydra skipped (the group is optional), and the default job ran under it."""
    named = [str(o).partition("=")[2] for o in row.overrides or [] if str(o).lstrip("+").startswith("experiment=")]
    return named[-1] if named and (EXPERIMENTS / f"{named[-1]}.yaml").is_file() else None


def _probe(curve: list) -> dict[str, float]:
    """The probe's last VR, its median over the evaluations, and its last Spearman (NaN when absent)."""
    vrs = [p.get("probe_vr") for p in curve if p.get("probe_vr") is not None]
    return {"probe_vr_last": last_value(curve, "probe_vr"), "probe_vr_median": median(vrs),
            "probe_spearman_last": last_value(curve, "probe_spearman")}


def frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """One record per finished row with its settings flattened (`cfg:sampler.mix`, `cfg:sketch.width`, ...), its
    line and experiment keys, the experiment's name and a label naming the settings that tell its line apart."""
    records = []
    for r in rows:
        if r.status not in (None, "done"):
            continue
        settings = _settings(r)
        st = find_stalls(r.curve or [])  # from the curve: rows written before the stall fields have it too
        records.append({**r.to_dict(), "stalls": st.count,
                        "median_step_s": st.median_step_s if st.median_step_s is not None else math.nan,
                        **{f"cfg:{k}": v for k, v in settings.items()},
                        "time_to_target_s": _time_to_target(r), "higher_is_better": r.higher_is_better,
                        "line": _line_key(r, settings), "experiment": _experiment_key(r, settings),
                        "experiment_override": experiment_override(r), **_probe(r.curve or [])})
    df = pd.DataFrame(records)
    if df.empty:
        return df
    for c in NUMERIC:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in TEXT:
        df[c] = df[c].where(df[c].notna(), "?").astype(str)
    df["sampler_overhead"] = df.sampler_overhead.fillna(df.sampler_time_s / df.train_time_s)
    df["name"] = _experiment_names(df)
    df["setting"] = _setting_labels(df)
    df["label"] = (df.sampler + " " + df.setting).str.strip()
    return df


def _cfg_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("cfg:") and c[4:] not in HIDDEN_KEYS]


def _varying(d: pd.DataFrame, cols: list[str]) -> list[str]:
    """The columns whose value (missing counts as a value) is not the same for every row of `d`."""
    return [c for c in cols if d[c].astype(str).nunique() > 1]


MOST_SETTINGS = 3  # settings in an experiment's name; more are counted (`+2 more`)


def _labels(d: pd.DataFrame, cols: list[str], most: int | None = None, unset: bool = False) -> list[str]:
    """Per row, `key=value` for `cols` (values cut short; a missing one left out, or `key=unset` with `unset`),
    the first `most` of them and a count of the rest."""
    names = _short_names([c[4:] for c in cols])
    out = []
    for r in d[cols].itertuples(index=False):
        parts = [f"{n}={_short(setting_text(v)) if not _missing(v) else 'unset'}" for n, v in zip(names, r)
                 if unset or not _missing(v)]
        if most is not None and len(parts) > most:
            parts = parts[:most] + [f"+{len(parts) - most} more"]
        out.append(" ".join(parts))
    return out


def _short(text: str, most: int = 20) -> str:
    """A setting's value for a name: a path's last part, at most `most` characters."""
    text = text.rstrip("/").rsplit("/", 1)[-1] if "/" in text else text
    return text if len(text) <= most else text[: most - 3] + "..."


def _experiment_names(df: pd.DataFrame) -> pd.Series:
    """Per row: its experiment's `experiment=` override (else its dataset), plus the settings that tell it apart
    from other experiments of that name (two learning rates are two experiments, never one)."""
    base = {}
    for key, d in df.groupby("experiment", sort=False):
        named = Counter(v for v in d.experiment_override if isinstance(v, str))
        base[key] = named.most_common(1)[0][0] if named else d.dataset.iloc[0]
    names = df.experiment.map(base)
    own = [c for c in _cfg_columns(df) if not c.startswith(("cfg:sampler.", "cfg:sketch."))]
    for _, d in df.groupby(names, sort=False):
        firsts = d.drop_duplicates("experiment")
        if len(firsts) > 1:
            varying = _varying(firsts, own)
            suffix = dict(zip(firsts.experiment, _labels(firsts, varying, MOST_SETTINGS)))
            if len(set(suffix.values())) < len(suffix):  # a setting one of them lacks tells them apart
                suffix = dict(zip(firsts.experiment, _labels(firsts, varying, MOST_SETTINGS, unset=True)))
            if len(set(suffix.values())) < len(suffix):  # nothing recorded tells them apart: their ids do
                suffix = {k: f"{v} id={str(k)[:6]}".strip() for k, v in suffix.items()}
            names[d.index] = [f"{n} {suffix[k]}".strip() for n, k in zip(names[d.index], d.experiment)]
    return names


def _setting_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: `key=value` for each setting that differs between the lines of one sampler in its experiment
    (the sampler column already tells samplers apart)."""
    labels = pd.Series("", index=df.index)
    cols = _cfg_columns(df)
    for _, d in df.groupby(["experiment", "sampler"], sort=False):
        lines = d.drop_duplicates("line")
        if len(lines) > 1:
            varying = _varying(lines, cols)
            text = _labels(lines, varying)
            unset = len(set(text)) < len(text)  # a setting some lines lack tells them apart
            by_line = dict(zip(lines.line, _labels(lines, varying, unset=unset)))
            labels[d.index] = [by_line[k] for k in d.line]
    return labels


def _short_names(keys: list[str]) -> list[str]:
    """The last component of each dotted key, or the whole key where two would share a last component."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [s if last.count(s) == 1 else k for s, k in zip(last, keys)]


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# -- the protocol: targets per experiment, times per run -------------------------------------------------------
def _majority(flags: list[bool]) -> bool:
    return bool(flags) and sum(flags) * 2 >= len(flags)


def _eval_interval_s(curves: Iterable[list]) -> float:
    """The median fair-clock seconds between two evaluations after the first (NaN if unknown)."""
    gaps = [b["time_s"] - a["time_s"] for c in curves for a, b in zip(c[1:], c[2:])
            if a.get("time_s") is not None and b.get("time_s") is not None]
    return median(gaps)


def _experiment(d: pd.DataFrame, baseline: str) -> dict[str, Any]:
    """One experiment's protocol numbers from its baseline lines (T_u only when there is exactly one)."""
    u = d[d.sampler == baseline]
    metric, higher = d.target_metric.iloc[0], bool(d.higher_is_better.iloc[0])
    one = u.line.nunique() == 1
    t_u = uniform_target(u.final_metric) if one else math.nan
    hand = d.target.dropna()
    hand = float(hand.iloc[0]) if len(hand) else math.nan
    src = u if len(u) else d
    spe = src.steps_per_epoch.dropna()
    spe = int(spe.iloc[0]) if len(spe) else None
    epe = src.evals_per_epoch.dropna()
    targets = {"tu": t_u, "loose": loose_target(t_u, higher), "ttt": hand}
    epochs = src.epochs.dropna()
    one_pass = not epoch_flag_applies(float(epochs.max()) if len(epochs) else None)
    flags = {p: one and not one_pass and _majority([inside_first_epoch(c, metric, t, spe) for c in u.curve])
             for p, t in targets.items()}
    return {"experiment": d.experiment.iloc[0], "name": d["name"].iloc[0], "dataset": d.dataset.iloc[0],
            "model": d.model.iloc[0], "target_metric": metric, "higher_is_better": higher,
            "uniform_lines": u.line.nunique(), "uniform_seeds": len(u) if one else 0,
            **targets, "uniform_time_s": median(u.train_time_s) if one else math.nan,
            "steps_per_epoch": spe, "evals_per_epoch": int(epe.iloc[0]) if len(epe) else None,
            "eval_every_steps": eval_interval_steps(spe, int(epe.iloc[0]) if len(epe) else None),
            "eval_every_s": _eval_interval_s(u.curve) if one else math.nan,
            "one_pass": one_pass, **{f"{p}_epoch1": f for p, f in flags.items()}}


def experiments(df: pd.DataFrame, baseline: str = "uniform") -> pd.DataFrame:
    """One record per experiment of `frame`'s output: T_u, the loose target, the hand target, uniform's median
    total clock, the evaluation interval, and which targets uniform reaches inside epoch 1 (`*_epoch1`)."""
    return pd.DataFrame([_experiment(d, baseline) for _, d in df.groupby("experiment", sort=False)])


def _run_numbers(r: pd.Series, e: pd.Series) -> dict[str, float]:
    """One run's seconds and steps to T_u and to the loose target, and its metric at uniform's median total clock."""
    curve = r.curve if isinstance(r.curve, list) else []
    t_tu, s_tu = first_reach(curve, r.target_metric, e.tu)
    t_loose, s_loose = first_reach(curve, r.target_metric, e.loose)
    setup = 0.0 if pd.isna(r.setup_time_s) else float(r.setup_time_s)
    return {"tu_s": t_tu, "tu_steps": s_tu, "loose_s": t_loose, "loose_steps": s_loose,
            "loose_robust_s": s_loose * r.median_step_s + setup,  # stall-robust: steps x median per-step time + setup
            "at_uniform_time": value_at(curve, e.uniform_time_s)}


def _with_run_numbers(df: pd.DataFrame, ex: pd.DataFrame) -> pd.DataFrame:
    by_key = ex.set_index("experiment")
    numbers = pd.DataFrame([_run_numbers(r, by_key.loc[r.experiment]) for _, r in df.iterrows()], index=df.index)
    return pd.concat([df, numbers], axis=1)


def _times(t: pd.Series, steps: pd.Series | None, prefix: str) -> dict[str, Any]:
    """min / median / max seconds over seeds, how many reached (finite), how many are known, median steps."""
    t = t.dropna()
    nan = math.nan
    out = {f"{prefix}_min": t.min() if len(t) else nan, f"{prefix}_median": median(t),
           f"{prefix}_max": t.max() if len(t) else nan, f"{prefix}_reached": int(np.isfinite(t).sum()),
           f"{prefix}_known": len(t)}
    if steps is not None:
        out[f"{prefix}_steps"] = median(steps)
    return out


def _stats(g: pd.DataFrame) -> dict[str, Any]:
    return {
        "label": g.label.iloc[0], "setting": g.setting.iloc[0], "higher_is_better": g.higher_is_better.iloc[0],
        "seeds": len(g), "repeated_seeds": len(g) - g.seed.nunique(),
        "final_mean": g.final_metric.mean(), "final_std": g.final_metric.std(),
        "best_mean": g.best_metric.mean(), "best_std": g.best_metric.std(),
        "eq_mean": g.at_uniform_time.mean(), "eq_std": g.at_uniform_time.std(),
        "eq_known": int(g.at_uniform_time.notna().sum()),
        **_times(g.time_to_target_s, None, "ttt"), **_times(g.tu_s, g.tu_steps, "tu"),
        **_times(g.loose_s, g.loose_steps, "loose"), "loose_robust_median": median(g.loose_robust_s),
        "stalled_runs": int((g.stalls > 0).sum()),
        "probe_vr_last": median(g.probe_vr_last), "probe_vr_median": median(g.probe_vr_median),
        "probe_spearman_last": median(g.probe_spearman_last),
        "overhead_pct": 100 * g.sampler_overhead.mean(), "train_time_mean": g.train_time_s.mean(),
        "steps_mean": g.steps.mean(),
        **{c: "; ".join(sorted(set(g[c]))) for c in ("device", "torch_version", "git_commit")},
        **{c: g[c].iloc[0] for c in g.columns if c.startswith("cfg:")},
    }


def _ratio(s: pd.DataFrame, col: str, baseline: str) -> np.ndarray:
    """Each line's `col` over the baseline line's in the same experiment (NaN where that is unknown or 0)."""
    base = s.loc[s.sampler == baseline, ["experiment", col]].drop_duplicates("experiment")
    base = base.rename(columns={col: "_base"})
    b = s[["experiment"]].merge(base, on="experiment", how="left")._base.astype(float).to_numpy()
    ok = np.isfinite(b) & (b > 0)
    return np.where(ok, s[col].to_numpy(dtype=float) / np.where(ok, b, 1.0), np.nan)


def summarize(rows: Iterable[ResultRow] | pd.DataFrame, baseline: str = "uniform") -> pd.DataFrame:
    """One line per configuration over seeds (rows that differ in any setting but the seed are different lines),
    with the protocol's numbers and the time ratios against the baseline sampler of the same experiment. The
    experiments' records (`experiments`) are in `.attrs["experiments"]`."""
    df = rows if isinstance(rows, pd.DataFrame) else frame(rows)
    if df.empty:
        raise ReportError("no finished rows to summarize")
    ex = experiments(df, baseline)
    df = _with_run_numbers(df, ex)
    keys = ["name", "dataset", "model", "target_metric", "target", "experiment", "sampler", "line"]
    s = pd.DataFrame([{**dict(zip(keys, k)), **_stats(g)} for k, g in df.groupby(keys, dropna=False, sort=False)])
    s["ttt_ratio"] = _ratio(s, "ttt_median", baseline)
    s["loose_ratio"] = _ratio(s, "loose_median", baseline)
    flags = ex.set_index("experiment")[[f"{p}_epoch1" for p, _ in TARGETS]]
    s = s.join(flags, on="experiment")
    varying = [c for c in s.columns if c.startswith("cfg:") and s[c].astype(str).nunique() > 1]
    order = ["name", "sampler", *varying]
    s = s.sort_values(order, na_position="first", kind="stable", key=_sort_key).reset_index(drop=True)
    s.attrs["baseline"] = baseline
    s.attrs["experiments"] = ex.sort_values("name", kind="stable").reset_index(drop=True)
    return s


def _sort_key(col: pd.Series) -> pd.Series:
    """Numbers sort as numbers, anything else as text (a column may mix them: null pool sizes, lists)."""
    numeric = pd.to_numeric(col, errors="coerce")
    return numeric if numeric.notna().sum() == col.notna().sum() else col.astype(str)


# -- markdown --------------------------------------------------------------------------------------------------
def _mean_std(m: float, s: float) -> str:
    return number(m, ".4f") + ("" if pd.isna(s) else f" ± {s:.4f}")


def _seconds(x: float) -> str:
    """Seconds as a cell: two decimals under 10 s (short CPU runs), one above."""
    return number(x, ".2f" if not pd.isna(x) and abs(x) < 10 else ".1f")


def _reach(r: pd.Series, prefix: str) -> str:
    """`median s (reached/known)` with † when uniform reaches this target inside epoch 1; "—" when unknown."""
    if not r[f"{prefix}_known"]:
        return "—"
    flag = " †" if flagged(r.get(f"{prefix}_epoch1")) else ""
    return f"{_seconds(r[f'{prefix}_median'])} ({r[f'{prefix}_reached']}/{r[f'{prefix}_known']}){flag}"


def _probe_cell(r: pd.Series) -> str:
    return "—" if pd.isna(r.probe_vr_last) else f"{r.probe_vr_last:.2f} / {number(r.probe_vr_median, '.2f')}"


def _cells(r: pd.Series, baseline: str) -> dict[str, str]:
    stalled = f" ‡{r.stalled_runs}" if r.stalled_runs else ""  # runs of this line whose clock stalled
    return {"experiment": r["name"], "sampler": r.sampler + stalled, "setting": r.setting, "seeds": str(r.seeds),
            "final": _mean_std(r.final_mean, r.final_std),
            f"at {baseline}'s time": _mean_std(r.eq_mean, r.eq_std) if r.eq_known else "—",
            "to T_u s (reached)": _reach(r, "tu"), "T_u steps": number(r.tu_steps, ".0f") if r.tu_known else "—",
            "to 0.99·T_u s (reached)": _reach(r, "loose"),
            "0.99·T_u steps": number(r.loose_steps, ".0f") if r.loose_known else "—",
            "0.99·T_u s stall-robust": _seconds(r.loose_robust_median) if r.loose_known else "—",
            f"0.99·T_u time vs {baseline}": number(r.loose_ratio, ".2f"),
            "hand target s (reached)": _reach(r, "ttt"), "probe VR last / median": _probe_cell(r),
            "sampler overhead": number(r.overhead_pct) + ("" if pd.isna(r.overhead_pct) else "%"),
            "train s": number(r.train_time_mean), "steps": number(r.steps_mean, ".0f")}


def _experiment_line(e: pd.Series, baseline: str) -> str:
    """One bullet: an experiment's targets, uniform's clock, the evaluation interval and the epoch-1 flags."""
    op = op_symbol(e.target_metric)
    head = f"**{e['name']}** ({e.dataset}, {e.model}, {e.target_metric}): "
    if e.uniform_lines != 1:
        t_u = (f"no T_u: {e.uniform_lines} `{baseline}` lines" if e.uniform_lines else f"no `{baseline}` rows, no T_u")
    else:
        t_u = (f"T_u = {number(e.tu, '.4f')} (median final of {e.uniform_seeds} `{baseline}` seeds), "
               f"loose {op} {number(e.loose, '.4f')}; {baseline}'s median total clock {number(e.uniform_time_s)} s")
    hand = f"hand target {op} {number(e.ttt, 'g')}" if not pd.isna(e.ttt) else "no hand target"
    every = (f"evaluation every {number(e.eval_every_steps, '.0f')} steps ({e.evals_per_epoch} per epoch of "
             f"{e.steps_per_epoch}" + (f", ≈ {number(e.eval_every_s, '.2f')} s of {baseline}'s clock)"
                                       if not pd.isna(e.eval_every_s) else ")")
             if not pd.isna(e.eval_every_steps) else "evaluation interval not recorded")
    early = [name for p, name in TARGETS if flagged(e[f"{p}_epoch1"])]
    flag = f"; † uninformative: {baseline} reaches {', '.join(early)} inside epoch 1" if early else ""
    if e.get("one_pass", False):
        flag = "; one pass: T_u is the final metric after the one epoch, the epoch-1 flag (†) does not apply"
    return head + "; ".join([t_u, hand, every]) + flag


def markdown_table(df: pd.DataFrame) -> str:
    """Device / torch / git commit lines, one line per experiment (targets, evaluation interval, flags), then the
    markdown table of `summarize`'s output."""
    baseline = df.attrs.get("baseline", "uniform")
    cells = pd.DataFrame([_cells(r, baseline) for _, r in df.iterrows()])
    if not df.setting.astype(bool).any():
        cells = cells.drop(columns="setting")
    if df.probe_vr_last.isna().all():
        cells = cells.drop(columns="probe VR last / median")
    prov = [f"- {name}: " + "; ".join(sorted({v for s in df[c] for v in s.split("; ")}))
            for name, c in (("device", "device"), ("torch", "torch_version"), ("git commit", "git_commit"))]
    ex = df.attrs.get("experiments")
    targets = [] if ex is None else ["", "Targets per experiment:", ""] + [f"- {_experiment_line(e, baseline)}"
                                                                         for _, e in ex.iterrows()]
    header = list(cells.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v).replace("|", r"\|") for v in row) + " |"
              for row in cells.itertuples(index=False)]
    return "\n".join(prov + targets + [""] + lines)


LEGEND = [
    "T_u: the median over seeds of `{b}`'s final metric at the full budget, per experiment; loose target "
    "0.99·T_u (1.01·T_u where lower is better); the hand target is the experiment's `trainer.target`",
    "to T_u / to 0.99·T_u / hand target: fair-clock seconds (sampling, sketch, forward/backward/optimizer and "
    "sampler setup; evaluation excluded) at each seed's first evaluation reaching it, median over seeds, inf if "
    "never, (seeds that reached it / seeds); steps: median steps at that evaluation",
    "at `{b}`'s time: the metric at the last evaluation at or before `{b}`'s median total clock (equal-time "
    "quality), mean ± std over seeds; final: at the last evaluation, mean ± std (ddof=1)",
    "† uninformative target: `{b}` reaches it inside epoch 1 (at an evaluation at step <= steps per epoch), "
    "where every sampler ties; it does not apply to one-pass experiments (a budget of one epoch)",
    "0.99·T_u s stall-robust: steps to 0.99·T_u x the run's median per-step time + setup, median over seeds: "
    "the fair clock without the evaluation intervals a busy machine stalled; ‡k after a sampler: k of its runs had "
    "stalls (an evaluation interval over 3x the run's median per-step time)",
    "0.99·T_u time vs `{b}`: median / median within the experiment; probe VR: the proxy-quality probe's variance "
    "ratio (1 = uniform, < 1 = less gradient noise), last evaluation / median over evaluations, median over seeds",
]


# -- the report ------------------------------------------------------------------------------------------------
def _load(paths: list[Path]) -> list[ResultRow]:
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
    notes = [f"{len(rf)} rows from {', '.join(map(str, paths))}; one line per configuration over seeds "
             f"(rows that differ in any setting but the seed are never pooled)"]
    notes += [t.format(b=baseline) for t in LEGEND]
    ex = s.attrs["experiments"]
    missing = sorted(ex.name[ex.uniform_lines == 0])
    notes += [f"no `{baseline}` rows for {', '.join(missing)}: no T_u and no ratio there"] if missing else []
    for _, e in ex[ex.uniform_lines > 1].iterrows():
        settings = sorted(set(s.label[(s.experiment == e.experiment) & (s.sampler == baseline)]))
        notes.append(f"{e['name']}: {e.uniform_lines} `{baseline}` lines ({'; '.join(settings)}): something is wrong "
                     f"(a `{baseline}` run reads nothing a sampler reads, so one experiment has one such line); "
                     "no T_u there")
    return notes + [f"{r['name']} / {r.label}: {r.repeated_seeds} rows repeat a seed: rows from an older version "
                    "that did not record their whole config, pooled on what they recorded (see their overrides)"
                    for _, r in s[s.repeated_seeds > 0].iterrows()]


def _fidelity(paths: list[Path], fidelity, out: Path) -> tuple[str | None, list[str]]:
    found = [Path(fidelity)] if fidelity else sorted(f for p in paths if p.is_dir()
                                                      for f in p.rglob("sketch_fidelity.json"))
    if not found:
        return None, []
    png, note = plot_fidelity(found[0], out)
    return png, [note] + ([f"also found, not plotted: {', '.join(map(str, found[1:]))}"] if found[1:] else [])


def _plots(rf: pd.DataFrame, s: pd.DataFrame, out: Path) -> list[str | None]:
    plots: list[str | None] = []
    for _, e in s.attrs["experiments"].iterrows():
        runs, lines = rf[rf.experiment == e.experiment], s[s.experiment == e.experiment]
        plots += [plot_curves(runs, e, out), plot_ttt(lines, e, out), plot_probe(runs, e, out)]
    return plots + [plot_sweep(s, out)]


def _build(paths, out=None, baseline="uniform", fidelity=None) -> tuple[Path, str]:
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths)]
    if fidelity is not None and not Path(fidelity).is_file():
        raise ReportError(f"no such fidelity file: {fidelity}")
    rf = frame(_load(paths))
    s = summarize(rf, baseline)
    table = markdown_table(s)
    out = Path(out) if out else (paths[0] if paths[0].is_dir() else paths[0].parent)
    try:
        return _write(paths, out, rf, s, table, baseline, fidelity)
    except OSError as e:  # a read-only folder, a full disk, a file where the folder should be
        raise ReportError(f"cannot write the report into {out} ({e.strerror or e}); choose another folder with "
                          f"--out DIR", EXIT_CANT_WRITE) from None


def _write(paths: list[Path], out: Path, rf: pd.DataFrame, s: pd.DataFrame, table: str, baseline: str,
           fidelity) -> tuple[Path, str]:
    out.mkdir(parents=True, exist_ok=True)
    s.to_csv(out / "summary.csv", index=False)
    s.attrs["experiments"].to_csv(out / "experiments.csv", index=False)
    plots = _plots(rf, s, out)
    png, fid_notes = _fidelity(paths, fidelity, out)
    text = ["# nws-bench report", "", table, ""]
    text += [f"- {n}" for n in _notes(rf, s, paths, baseline) + fid_notes] + [""]
    text += [f"![{p}]({p})" for p in plots + [png] if p]
    (out / "report.md").write_text("\n".join(text) + "\n")
    return out / "report.md", table


def write_report(paths, out=None, baseline: str = "uniform", fidelity=None) -> Path:
    """Write report.md, summary.csv, experiments.csv and the plots to `out` (default: the first path); return
    report.md."""
    return _build(paths, out, baseline, fidelity)[0]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", metavar="PATH", help="dirs under which runs/*.json rows lie")
    p.add_argument("--out", help="output dir (default: the first PATH)")
    p.add_argument("--baseline", default="uniform", help="the sampler that sets T_u and that ratios are against")
    p.add_argument("--fidelity", help="sketch_fidelity.json (default: found under PATH)")
    a = p.parse_args(argv)
    try:
        report, table = _build(a.paths, a.out, a.baseline, a.fidelity)
    except ReportError as e:
        print(f"bench.report: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(table)
    print(f"\nwrote {report} (+ summary.csv, experiments.csv, plots)", file=sys.stderr)


if __name__ == "__main__":
    main()
