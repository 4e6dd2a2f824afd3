"""The evaluation protocol's numbers, read off learning curves: targets from uniform, time and steps to reach
them, the metric at equal time, and whether a target is too easy to say anything.

Why: a target that uniform sampling reaches inside the first epoch makes every sampler tie, and a hand-set
target says little about the quality a budget reaches. So each experiment's target comes from its uniform
runs: T_u is the median over seeds of uniform's final metric at the full budget, with a looser 0.99 T_u
(1.01 T_u for lower-is-better metrics). In a one-pass experiment (`trainer.epochs=1`, the lineage regime) the
budget is one epoch, T_u is uniform's median final metric after it, and the epoch-1 flag does not apply
(`epoch_flag_applies`). `bench.report.tables` applies these functions to every run and takes
medians over seeds.

    from bench.report.protocol import uniform_target, loose_target, first_reach, value_at, inside_first_epoch
    t_u = uniform_target([0.978, 0.980, 0.979]); loose = loose_target(t_u, higher_is_better=True)
    time_s, step = first_reach(row.curve, "accuracy", loose)   # inf, inf if never
    value_at(row.curve, 12.5)                                  # metric at the last evaluation at or before 12.5 s

A curve is a row's list of evaluation points (`bench.train.loop`): dicts with `step`, `epoch`, `time_s` (the fair
clock, sampler setup included) and `metric` (the target metric on the test split). Times and steps cannot be
finer than the evaluation interval: "reached" means reached at an evaluation.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..train.metrics import METRICS, reaches

__all__ = ["LOOSE_SLACK", "uniform_target", "loose_target", "first_reach", "value_at", "inside_first_epoch",
           "epoch_flag_applies", "median", "eval_interval_steps", "last_value"]

LOOSE_SLACK = 0.01  # the loose target is 1 % short of T_u: 0.99 T_u, or 1.01 T_u for lower-is-better metrics

Curve = Sequence[dict[str, Any]]


def median(values: Iterable[float]) -> float:
    """Return the median of the known values (NaN = unknown is left out; inf = never counts); NaN if none."""
    known = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.median(known)) if known else math.nan


def uniform_target(finals: Iterable[Optional[float]]) -> float:
    """Return T_u: the median over seeds of uniform's final metric (NaN when no seed has one)."""
    return median(f for f in finals if f is not None)


def loose_target(t_u: float, higher_is_better: bool, slack: float = LOOSE_SLACK) -> float:
    """Return the loose target: (1 - slack) T_u when higher is better, else (1 + slack) T_u."""
    return t_u * (1 - slack) if higher_is_better else t_u * (1 + slack)


def _points(curve: Curve, key: str = "metric") -> list[dict[str, Any]]:
    """The evaluation points with a time and a finite `key` (the target metric by default), in the order taken."""
    return [p for p in curve if p.get("time_s") is not None and p.get(key) is not None
            and not math.isnan(float(p[key]))]


def first_reach(curve: Curve, metric: str, target: Optional[float]) -> tuple[float, float]:
    """Return (fair-clock seconds, step) at the first evaluation whose metric reaches `target` (>= or <= as
    `metric` says); (inf, inf) if none does; (nan, nan) when the target or the metric is unknown."""
    if target is None or math.isnan(target) or metric not in METRICS:
        return math.nan, math.nan
    for p in _points(curve):
        if reaches(metric, float(p["metric"]), target):
            return float(p["time_s"]), float(p.get("step", math.nan))
    return math.inf, math.inf


def value_at(curve: Curve, time_s: float, key: str = "metric") -> float:
    """Return the metric (or another recorded `key`, e.g. "test_logloss") at the last evaluation taken at or before
    `time_s` fair-clock seconds (no interpolation: the model at that time is the one last evaluated); NaN if the run
    had no evaluation by then."""
    if math.isnan(time_s):
        return math.nan
    before = [p for p in _points(curve, key) if float(p["time_s"]) <= time_s]
    return float(before[-1][key]) if before else math.nan


def inside_first_epoch(curve: Curve, metric: str, target: Optional[float], steps_per_epoch: Optional[int]) -> bool:
    """Return whether the run first reaches `target` at an evaluation inside its first epoch (step <=
    steps_per_epoch; `epoch == 0` for rows that did not record steps_per_epoch)."""
    if target is None or math.isnan(target) or metric not in METRICS:
        return False
    for p in _points(curve):
        if reaches(metric, float(p["metric"]), target):
            if steps_per_epoch:
                return float(p.get("step", math.inf)) <= steps_per_epoch
            return p.get("epoch") == 0
    return False


def epoch_flag_applies(epochs: Optional[float]) -> bool:
    """Return whether the "reached inside epoch 1" flag means anything for a budget of `epochs`: not for a one-pass
    experiment (the lineage regime), where the whole budget is epoch 1 and T_u is uniform's median final metric
    after its one epoch; yes for longer budgets and for rows that did not record theirs."""
    return epochs is None or math.isnan(float(epochs)) or float(epochs) > 1


def eval_interval_steps(steps_per_epoch: Optional[int], evals_per_epoch: Optional[int]) -> float:
    """Return the training steps between two evaluations (NaN when the row did not record them)."""
    if not steps_per_epoch or not evals_per_epoch:
        return math.nan
    return steps_per_epoch / evals_per_epoch


def last_value(curve: Curve, key: str) -> float:
    """Return the last known value of `key` over the curve's points (NaN if none has it)."""
    values = [p.get(key) for p in curve if p.get(key) is not None and not math.isnan(float(p[key]))]
    return float(values[-1]) if values else math.nan
