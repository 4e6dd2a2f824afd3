#!/usr/bin/env python3
"""The lineage-regime table from result rows (docs/RESULTS.md §0.2): per one-pass experiment and sampler, medians
over seeds of the sampler's share of the clock, the median per-step time, time and steps to 0.99·T_u and to T_u,
the ratio to uniform's time to 0.99·T_u, and AUC and logloss at uniform's median clock.

    .venv/bin/python scripts/lineage_table.py RESULTS_DIR        # after python -m bench.run -m sweep=lineage

The curve readings are the report's own (`bench.report.protocol`); rows are read with `bench.results.rows`.
"""
from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

from bench.report.protocol import first_reach, loose_target, median, uniform_target, value_at
from bench.report.tables import experiment_override
from bench.results.rows import ResultRow, read_rows

SAMPLER_ORDER = ["uniform", "static", "loss", "history", "infobatch", "nws", "nws_full", "stream_filter",
                 "selective_backprop"]
HEADER = ("| sampler | share of the clock | ms/step (median interval) | to 0.99·T_u s (steps) | to T_u s (steps) | "
          "reached T_u | 0.99·T_u time vs uniform | AUC at uniform's time | logloss at uniform's time | final AUC |")


def by_experiment(rows: list[ResultRow]) -> dict[str, dict[str, list[ResultRow]]]:
    """Rows grouped by experiment (its `experiment=` override, else its dataset), then by sampler."""
    groups: dict[str, dict[str, list[ResultRow]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[experiment_override(r) or r.dataset][r.sampler].append(r)
    return groups


def reach(rows: list[ResultRow], target: float) -> tuple[float, float, int]:
    """Median seconds and steps to `target` AUC over `rows`, and how many of them reached it."""
    hits = [first_reach(r.curve, "auc", target) for r in rows]
    return median(t for t, _ in hits), median(s for _, s in hits), sum(math.isfinite(t) for t, _ in hits)


def when(seconds: float, steps: float) -> str:
    return "never" if not math.isfinite(seconds) else f"{seconds:.1f} ({int(steps)})"


def table(samplers: dict[str, list[ResultRow]]) -> list[str]:
    """The markdown lines of one experiment (uniform's rows set T_u and the equal-time clock)."""
    uniform = samplers["uniform"]
    t_u = uniform_target(r.final_metric for r in uniform)
    clock = median(r.train_time_s - (r.setup_time_s or 0) for r in uniform)
    lines = [f"(T_u = {t_u:.4f} AUC, uniform's median clock {clock:.1f} s, {len(uniform)} seeds)", "", HEADER,
             "|" + "---|" * HEADER.count(" | ") + "---|"]
    baseline = reach(uniform, loose_target(t_u, True))[0]
    for name in [s for s in SAMPLER_ORDER if s in samplers] + sorted(set(samplers) - set(SAMPLER_ORDER)):
        rs = samplers[name]
        loose_s, loose_n, _ = reach(rs, loose_target(t_u, True))
        full_s, full_n, reached = reach(rs, t_u)
        ratio = loose_s / baseline if math.isfinite(loose_s) else math.inf
        lines.append(
            f"| {name} | {100 * median(r.sampler_time_s / r.train_time_s for r in rs):.1f} % "
            f"| {1e3 * median(r.median_step_s for r in rs):.0f} | {when(loose_s, loose_n)} | {when(full_s, full_n)} "
            f"| {reached}/{len(rs)} | {ratio:.2f}x | {median(value_at(r.curve, clock) for r in rs):.4f} "
            f"| {median(value_at(r.curve, clock, 'test_logloss') for r in rs):.4f} "
            f"| {median(r.final_metric for r in rs):.4f} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path, help="a results_dir of the lineage sweep (its runs/ folder holds the rows)")
    args = p.parse_args(argv)
    groups = by_experiment([r for r in read_rows(args.results) if r.status == "done"])
    if not groups:
        raise SystemExit(f"results must hold finished rows under {args.results / 'runs'}, found none")
    for name, samplers in sorted(groups.items()):
        if "uniform" not in samplers:
            print(f"\n**{name}**: no uniform rows, so no T_u (skipped)")
            continue
        print(f"\n**{name}** " + "\n".join(table(samplers)))


if __name__ == "__main__":
    main()
