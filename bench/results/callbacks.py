"""Hydra callbacks: a progress line per finished job of a sweep.

Registered in conf/config.yaml under `hydra.callbacks`. The basic launcher runs jobs in this process, so
`on_job_end` sees each job finish; other launchers (joblib, submitit) run jobs elsewhere and report at the
end of the sweep.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ..config.overrides import sweep_size

log = logging.getLogger("bench.sweep")

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    """Print `[sweep] job k/n done (...)` after each job and a closing line after the sweep."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        overrides = {o.partition("=")[0]: o for o in config.hydra.overrides.task}
        for key, value in (config.hydra.sweeper.get("params") or {}).items():
            overrides.setdefault(key, f"{key}={value}")  # the command line wins over a sweep file
        self.total = sweep_size(list(overrides.values()))
        print(f"[sweep] {self.total} job(s) -> {config.hydra.sweep.dir}", file=sys.stderr)

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode is None or str(config.hydra.mode) != "RunMode.MULTIRUN":
            return
        self.done += 1
        status = getattr(job_return, "status", None)
        bar = "#" * int(20 * self.done / max(self.total, 1))
        print(f"[sweep] [{bar:<20}] job {self.done}/{self.total} {getattr(status, 'name', '')}: "
              f"{' '.join(config.hydra.overrides.task)}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        print(f"[sweep] finished -> {config.hydra.sweep.dir} (report: python -m bench.report {config.hydra.sweep.dir})", file=sys.stderr)
