"""The identity of a run: which config keys decide what it computes.

A run's identity (`run_id`) is a hash of its resolved config (`identity`): output locations are left out, and
so are the config groups its sampler does not read (a uniform run does not read `sketch`, so sketch settings do
not change its id). The same job in a re-run sweep has the same id: `bench.run` skips a job whose row exists
and resumes one whose checkpoint exists. `group_id` drops the seed too (the rows of one configuration over
seeds), `experiment_id` also drops the sampler and what only samplers read (the rows a report compares).

    from bench.results.identity import run_id, group_id, experiment_id
    rid = run_id(resolved_config_dict)
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from sketch.samplers import SAMPLERS

from ..build.inputs import reads

__all__ = ["identity", "run_id", "group_id", "experiment_id", "sampler_groups", "IGNORED_KEYS"]

# Config keys (dotted for nested ones) that say where things are or go, not what is computed: left out of
# the run identity, so a sweep re-run with another data cache ($NWS_DATA, $HOME) or results folder finds its rows.
IGNORED_KEYS = ("paths", "logger", "hydra", "progress", "resume", "memory_budget_gb", "dataset.root")


def _without(cfg: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    kept = dict(cfg)
    for key in keys:
        head, _, rest = key.partition(".")
        if rest and isinstance(kept.get(head), dict):
            kept[head] = _without(kept[head], [rest])
        elif not rest:
            kept.pop(head, None)
    return kept


def sampler_groups() -> tuple[str, ...]:
    """The config groups some sampler reads besides its own (`sketch`): part of a run's identity only when its
    sampler reads them."""
    return tuple(sorted({g for name in SAMPLERS for g in reads(name)}))


def identity(cfg: dict[str, Any]) -> dict[str, Any]:
    """Return the resolved config `cfg` without output locations and without the groups its sampler does not read."""
    kept = _without(cfg, IGNORED_KEYS)
    sampler = kept.get("sampler")
    name = sampler.get("name") if isinstance(sampler, dict) else None
    if name not in SAMPLERS:
        return kept
    return _without(kept, [g for g in sampler_groups() if g not in reads(name)])


def _digest(cfg: dict[str, Any]) -> str:
    text = json.dumps(cfg, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def run_id(cfg: dict[str, Any]) -> str:
    """Return the 12-hex identity of a run: sha1 of `identity(cfg)`."""
    return _digest(identity(cfg))


def group_id(cfg: dict[str, Any]) -> str:
    """Return the identity of the run's configuration over seeds: `run_id` without the seed."""
    return _digest(_without(identity(cfg), ["seed"]))


def experiment_id(cfg: dict[str, Any]) -> str:
    """Return the identity of the run's experiment: `group_id` without the sampler and the groups only samplers read."""
    return _digest(_without(identity(cfg), ["seed", "sampler", *sampler_groups()]))
