"""Run logging: Weights & Biases (online, offline or disabled) plus local files that always work.

`RunLogger` writes every logged dict as a line of `<run_dir>/metrics.jsonl` and mirrors it to W&B. W&B
never stops a run: with mode=online but no API key, or when `wandb.init` fails (no network), it warns once
and falls back to offline mode (then disabled if even that fails, or if wandb cannot be imported); an
online start gives up after `init_timeout_s` (W&B's own default, 90 s, is a long stall per job); a W&B
call that fails mid-run warns and turns W&B off while the local files go on. `close()` always calls
`wandb.finish()` and never raises; use the logger as a context manager so that also happens when the run
fails (the run's exception then propagates unchanged).

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


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"


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
        init_timeout_s: float = 30.0,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        self.mode = mode
        self._wandb = None
        self._run = None
        self.init_timeout_s = init_timeout_s
        if mode != "disabled":
            self._start_wandb(config, project, entity, list(tags or []), name, group)

    def _start_wandb(self, config: dict, project: str, entity: Optional[str], tags: list, name: Optional[str], group: Optional[str]) -> None:
        try:
            import wandb
        except ImportError as exc:
            warnings.warn(f"wandb cannot be imported ({exc}): W&B disabled <logger.wandb.mode={self.mode}>")
            self.mode = "disabled"
            return
        self._wandb = wandb
        mode = self.mode
        if mode == "online" and not has_wandb_key():
            warnings.warn("no W&B API key (WANDB_API_KEY or ~/.netrc): logging offline <logger.wandb.mode=online>")
            mode = "offline"
        for attempt in (mode, "offline") if mode == "online" else (mode,):
            try:
                self._run = wandb.init(project=project, entity=entity, config=config, tags=tags, name=name, group=group,
                                       dir=str(self.run_dir), mode=attempt, reinit="finish_previous",
                                       settings=wandb.Settings(silent=True, init_timeout=self.init_timeout_s))
                self.mode = attempt
                return
            except Exception as exc:  # no network, bad key, ...: the run must go on
                warnings.warn(f"W&B {attempt} init failed ({_one_line(exc)}); "
                              f"{'trying offline' if attempt == 'online' else 'W&B disabled'} <logger.wandb.mode={self.mode}>")
        self.mode = "disabled"
        self._run = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` at `step` locally and in W&B."""
        self._metrics.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        self._metrics.flush()
        if self._run is not None:
            try:
                self._run.log(metrics, step=step)
            except Exception as exc:  # the W&B service died, the disk is full, ...: the run goes on
                self._drop_wandb("log", exc)

    def summary(self, values: dict[str, Any]) -> None:
        """Set the W&B run summary (scalars only) and write `summary.json` locally."""
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) or v is None}
        (self.run_dir / "summary.json").write_text(json.dumps(scalars, indent=1, default=str))
        if self._run is not None:
            try:
                for k, v in scalars.items():
                    self._run.summary[k] = v
            except Exception as exc:
                self._drop_wandb("summary", exc)

    def _drop_wandb(self, call: str, exc: Exception) -> None:
        warnings.warn(f"W&B {call} failed ({_one_line(exc)}); W&B off for the rest of this run, local "
                      f"files go on <logger.wandb.mode={self.mode}>")
        self._finish_wandb(exit_code=1)

    def _finish_wandb(self, exit_code: int = 0) -> None:
        """Finish the W&B run, if any; a failure to finish is a warning, never an exception."""
        run, self._run = self._run, None
        if run is None:
            return
        try:
            run.finish(exit_code=exit_code)
        except Exception as exc:
            warnings.warn(f"W&B finish failed ({_one_line(exc)}) <logger.wandb.mode={self.mode}>")

    def close(self, exit_code: int = 0) -> None:
        """Close the local file and finish the W&B run (always safe to call twice; never raises)."""
        if not self._metrics.closed:
            self._metrics.close()
        self._finish_wandb(exit_code)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(exit_code=0 if exc_type is None else 1)
