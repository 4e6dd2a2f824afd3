#!/usr/bin/env python3
"""Per-step costs of finished runs, read from their result rows: the sampler's share of the fair clock, seconds per
step, and robust versions of both for a shared, noisy machine.

    .venv/bin/python scripts/step_costs.py results                      # every row under results/runs
    .venv/bin/python scripts/step_costs.py results --out docs/cpu/quick_step_costs.json --label after

For every (dataset, sampler) it prints, as medians over seeds: the share of the fair clock spent in the sampler
(`sampler_time_s / train_time_s`), fair-clock ms per step (`train_time_s / steps`), and `steps x median step`:
the steps times the median over the run's evaluation intervals of (clock seconds / steps) in that interval,
which discounts intervals in which other processes stalled the run; also the fastest interval's ms per step.
Then NWS against uniform: the ratio of the per-step costs and the share targets of issue 19 (NWS's share at most
2x uniform's or uniform's + 3 points; its step at most 1.15x uniform's). Writes JSON (and .md) when --out is given.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.results.files import atomic_write_text
from bench.results.rows import read_rows


def finished_rows(results: Path) -> list[dict[str, Any]]:
    """The finished rows under `results` (`bench.results.rows.read_rows`: its runs/*.json), as plain dicts."""
    return [r.to_dict() for r in read_rows(results) if r.status == "done"]


def interval_ms(curve: list[dict[str, Any]]) -> list[float]:
    """ms per step in each interval between two evaluations (clock time: evaluation excluded)."""
    pts = [(p["step"], p["time_s"]) for p in curve]
    return [1e3 * (t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(pts, pts[1:]) if s1 > s0]


def run_costs(row: dict[str, Any]) -> dict[str, float]:
    """One run's share, ms per step, median-interval and fastest-interval ms per step."""
    steps = row["steps"]
    intervals = interval_ms(row["curve"])
    return {"share": row["sampler_time_s"] / row["train_time_s"], "ms_per_step": 1e3 * row["train_time_s"] / steps,
            "steps_x_median_s": steps * statistics.median(intervals) / 1e3, "fastest_ms": min(intervals),
            "sampler_ms_per_step": 1e3 * row["sampler_time_s"] / steps}


def summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Medians over seeds of every run's costs, by 'dataset/sampler'."""
    groups: dict[str, list[dict[str, float]]] = {}
    for r in rows:
        groups.setdefault(f"{r['dataset']}/{r['sampler']}", []).append(run_costs(r))
    return {k: {"seeds": len(v), **{m: statistics.median(c[m] for c in v) for m in v[0]}} for k, v in sorted(groups.items())}


def verdicts(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """NWS against uniform on each dataset: the issue's two targets."""
    out = {}
    for key, nws in table.items():
        dataset, sampler = key.split("/")
        uni = table.get(f"{dataset}/uniform")
        if sampler != "nws" or uni is None:
            continue
        allowed = max(2 * uni["share"], uni["share"] + 0.03)
        out[dataset] = {"share_nws": nws["share"], "share_uniform": uni["share"], "share_allowed": allowed,
                        "share_met": nws["share"] <= allowed,
                        "step_ratio": nws["ms_per_step"] / uni["ms_per_step"],
                        "step_ratio_median_interval": nws["steps_x_median_s"] / uni["steps_x_median_s"],
                        "step_ratio_fastest": nws["fastest_ms"] / uni["fastest_ms"]}
        out[dataset]["step_met"] = out[dataset]["step_ratio_median_interval"] <= 1.15
    return out


def markdown(table: dict[str, dict[str, Any]], checks: dict[str, dict[str, Any]], label: str) -> str:
    lines = [f"Per-step costs ({label}; medians over seeds)", "",
             "| dataset / sampler | seeds | sampler share | ms/step (clock) | sampler ms/step | steps x median step (s) | fastest interval ms/step |",
             "|---|---|---|---|---|---|---|"]
    for k, c in table.items():
        lines.append(f"| {k} | {c['seeds']} | {100 * c['share']:.1f} % | {c['ms_per_step']:.2f} | {c['sampler_ms_per_step']:.3f} | "
                     f"{c['steps_x_median_s']:.1f} | {c['fastest_ms']:.2f} |")
    lines += ["", "| dataset | NWS share | allowed (2x uniform's or +3 points) | NWS/uniform ms per step (clock / median interval / fastest) | targets |",
              "|---|---|---|---|---|"]
    for d, v in checks.items():
        met = f"share {'met' if v['share_met'] else 'MISSED'}, step {'met' if v['step_met'] else 'MISSED'}"
        lines.append(f"| {d} | {100 * v['share_nws']:.1f} % | {100 * v['share_allowed']:.1f} % | {v['step_ratio']:.2f}x / "
                     f"{v['step_ratio_median_interval']:.2f}x / {v['step_ratio_fastest']:.2f}x | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results_dir (its runs/ folder holds the rows)")
    p.add_argument("--out", type=Path, default=None, help="write JSON here (and the table next to it as .md)")
    p.add_argument("--label", default="", help="what these runs are (printed in the table)")
    args = p.parse_args(argv)
    rows = finished_rows(args.results)
    if not rows:
        raise SystemExit(f"results must hold finished rows under {args.results / 'runs'}, found none")
    table = summary(rows)
    checks = verdicts(table)
    text = markdown(table, checks, args.label or str(args.results))
    print(text)
    if args.out is not None:
        command = "scripts/step_costs.py " + " ".join(sys.argv[1:] if argv is None else argv)
        atomic_write_text(args.out, json.dumps({"command": command, "label": args.label, "summary": table,
                                                "targets": checks}, indent=2))
        atomic_write_text(args.out.with_suffix(".md"), f"`{command}`\n\n{text}\n")


if __name__ == "__main__":
    main()
