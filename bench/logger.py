"""Run logging: Weights & Biases (online, offline or disabled) plus local files that always work.

`RunLogger` writes every logged dict as a line of `<run_dir>/metrics.jsonl` and mirrors it to W&B. W&B
never stops a run: with mode=online but no API key, or when `wandb.init` fails (no network), it warns once
and falls back to offline mode (then disabled if even that fails). `close()` always calls `wandb.finish()`;
use the logger as a context manager so that also happens when the run fails.

    with RunLogger(run_dir, config=cfg_dict, mode="offline", project="nws-bench", name=run_id) as log:
        log.log({"metric": 0.8}, step=10)
        log.summary({"time_to_target_s": 12.3})
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Optional

__all__ = ["RunLogger", "has_wandb_key"]

log = logging.getLogger(__name__)


def has_wandb_key() -> bool:
    """Return whether a W&B API key is configured (environment variable or ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


class RunLogger:
    """Local JSONL metrics plus a W&B run that falls back to offline instead of failing."""

    def __init__(
        self,
        run_dir: str | Path,
        config: dict[str, Any],
        mode: str = "offline",
        project: str = "nws-bench",
        entity: Optional[str] = None,
        tags: Optional[list[str]] = None,
        name: Optional[str] = None,
        group: Optional[str] = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        self.mode = mode
        self._wandb = None
        self._run = None
        if mode != "disabled":
            self._start_wandb(config, project, entity, list(tags or []), name, group)

    def _start_wandb(self, config: dict, project: str, entity: Optional[str], tags: list, name: Optional[str], group: Optional[str]) -> None:
        import wandb

        self._wandb = wandb
        mode = self.mode
        if mode == "online" and not has_wandb_key():
            warnings.warn("no W&B API key (WANDB_API_KEY or ~/.netrc): logging offline <logger.wandb.mode=online>")
            mode = "offline"
        for attempt in (mode, "offline") if mode == "online" else (mode,):
            try:
                self._run = wandb.init(project=project, entity=entity, config=config, tags=tags, name=name, group=group,
                                       dir=str(self.run_dir), mode=attempt, reinit="finish_previous",
                                       settings=wandb.Settings(silent=True))
                self.mode = attempt
                return
            except Exception as exc:  # no network, bad key, ...: the run must go on
                warnings.warn(f"W&B {attempt} init failed ({type(exc).__name__}: {exc}); "
                              f"{'trying offline' if attempt == 'online' else 'W&B disabled'} <logger.wandb.mode={self.mode}>")
        self.mode = "disabled"
        self._run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` at `step` locally and in W&B."""
        self._metrics.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        self._metrics.flush()
        if self._run is not None:
            self._run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        """Set the W&B run summary (scalars only) and write `summary.json` locally."""
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}
        (self.run_dir / "summary.json").write_text(json.dumps(scalars, indent=1, default=str))
        if self._run is not None:
            for k, v in scalars.items():
                self._run.summary[k] = v

    def close(self, exit_code: int = 0) -> None:
        """Close the local file and finish the W&B run (always safe to call twice)."""
        if not self._metrics.closed:
            self._metrics.close()
        if self._run is not None:
            try:
                self._run.finish(exit_code=exit_code)
            finally:
                self._run = None

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(exit_code=0 if exc_type is None else 1)
