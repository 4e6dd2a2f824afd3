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

What a benchmark run sends W&B (`run_logger`, used by `bench.run`), so that runs group and plot the way the
benchmark reads them (`python -m bench.wandb_dashboard` builds the matching workspace):
- every evaluation under its own name (`wandb_point`): `test/<metric>` (`test/auc`, `test/accuracy`, ...),
  `train/loss`, `probe/<name>` for the proxy-quality probe, and the training clock `train/time_s` (the fair
  clock) with `train/step` and `train/epoch`; W&B's own step is the training step;
- `define_metric`: every `test/`, `train/` and `probe/` key is plotted against `train/time_s` by default (the
  step stays available as an x-axis), and each metric's summary is its best value (`max` or `min` by the
  metric's direction, bench.train.metrics.METRICS); the result row's scalars are added to the summary at the end;
- group: `logger.wandb.group`, by default the experiment (`<dataset>-<experiment_id>`: the runs one report
  compares); tags `sampler:<name>`, `dataset:<name>`, `model:<class>` plus `logger.wandb.tags`;
  job type `logger.wandb.job_type` ("train");
- config: the run's identity (what it computes) with its ids, without this machine's paths (`portable`);
- id: the run id, with `resume="allow"`: a killed run that resumes from its checkpoint continues the same W&B
  run (offline, each session writes its own `offline-run-*` folder with that id: `wandb sync` uploads them into
  one run). `resume=false` starts a new W&B run (`<run_id>-<time>`).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from ..train.metrics import METRICS

__all__ = ["RunLogger", "Progress", "run_logger", "has_wandb_key", "wandb_point", "wandb_key", "metric_key", "portable",
           "CLOCK_KEY", "STEP_KEY"]

CLOCK_KEY = "train/time_s"  # the fair training clock: the default x-axis of every benchmark chart
STEP_KEY = "train/step"  # the training step (also W&B's own step)

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
        run_id: Optional[str] = None,
        job_type: Optional[str] = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.run_dir / "metrics.jsonl", "a")
        self.mode = mode
        self._wandb = None
        self._run = None
        self.init_timeout_s = init_timeout_s
        if mode != "disabled":
            ident = {"name": name, "group": group, "id": run_id, "job_type": job_type,
                     "resume": "allow" if run_id else None}
            self._start_wandb(portable(config), project, entity, list(tags or []), ident)

    def _start_wandb(self, config: dict, project: str, entity: Optional[str], tags: list, ident: dict) -> None:
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
                self._run = wandb.init(project=project, entity=entity, config=config, tags=tags, **ident,
                                       dir=str(self.run_dir), mode=attempt, reinit="finish_previous",
                                       settings=wandb.Settings(silent=True, init_timeout=self.init_timeout_s))
                self.mode = attempt
                self._define_metrics()
                return
            except Exception as exc:  # no network, bad key, ...: the run must go on
                warnings.warn(f"W&B {attempt} init failed ({_one_line(exc)}); "
                              f"{'trying offline' if attempt == 'online' else 'W&B disabled'} <logger.wandb.mode={self.mode}>")
        self.mode = "disabled"
        self._run = None

    def _define_metrics(self) -> None:
        """Plot every benchmark key against the training clock and summarise each metric by its best value."""
        define = getattr(self._run, "define_metric", None)
        if define is None:  # a stand-in run without it
            return
        try:
            define(CLOCK_KEY, summary="max")
            define(STEP_KEY, summary="max")
            for glob in ("train/*", "test/*", "probe/*"):
                define(glob, step_metric=CLOCK_KEY)
            for name, metric in METRICS.items():
                define(metric_key(name), step_metric=CLOCK_KEY, summary="max" if metric.higher_is_better else "min")
            define("test/loss", step_metric=CLOCK_KEY, summary="min")
        except Exception as exc:  # the W&B service died: the run goes on
            self._drop_wandb("define_metric", exc)

    def log_eval(self, point: dict[str, Any]) -> None:
        """Record one evaluation of the training loop (`bench.train.loop`'s point: step, time_s, test_*, probe_*, ...):
        as it is in metrics.jsonl, under the benchmark's W&B names (`wandb_point`) in W&B, at its step."""
        self._write(point["step"], point)
        self._send(wandb_point(point), point["step"])

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Record `metrics` at `step` locally and in W&B."""
        self._write(step, metrics)
        self._send(metrics, step)

    def _write(self, step: int, metrics: dict[str, Any]) -> None:
        self._metrics.write(json.dumps({"step": step, **metrics}, default=float) + "\n")
        self._metrics.flush()

    def _send(self, metrics: dict[str, Any], step: int) -> None:
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

    def _finish_wandb(self, exit_code: int = 0, preempted: bool = False) -> None:
        """Finish the W&B run, if any (marked preempted first when asked); a failure is a warning, never an exception."""
        run, self._run = self._run, None
        if run is None:
            return
        try:
            if preempted:
                run.mark_preempting()
            run.finish(exit_code=exit_code)
        except Exception as exc:
            warnings.warn(f"W&B finish failed ({_one_line(exc)}) <logger.wandb.mode={self.mode}>")

    def close(self, exit_code: int = 0, preempted: bool = False) -> None:
        """Close the local file and finish the W&B run, marked preempted if `preempted` (always safe to call twice;
        never raises)."""
        if not self._metrics.closed:
            self._metrics.close()
        self._finish_wandb(exit_code, preempted)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type: object, exc: Optional[BaseException], tb: object) -> None:
        # a stop on request (bench.train.checkpoint.Preempted: preempted, exit_code) is not a failure: W&B shows it preempted
        if getattr(exc, "preempted", False):
            self.close(exit_code=int(getattr(exc, "exit_code", 1)), preempted=True)
        else:
            self.close(exit_code=0 if exc_type is None else 1)


class Progress:
    """A run's progress on stderr: a redrawn tqdm bar on a terminal; anywhere else (`make run > log`, CI, a SLURM
    log) one line per evaluation, `[movielens100k/nws] step 118/471 auc 0.7012 clock 61.3 s`, never a redraw.

        bar = Progress("digits/nws", total=36, metric="accuracy", enabled=cfg.progress)
        bar.update(1); bar.evaluated(point); bar.close()
    """

    def __init__(self, desc: str, total: int, metric: str = "metric", initial: int = 0, enabled: bool = True,
                 stream: Optional[Any] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.desc, self.total, self.metric, self.enabled = desc, total, metric, enabled
        self._bar = None
        if enabled and _is_tty(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=initial, desc=desc, unit="step", leave=False, file=self.stream)

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def evaluated(self, point: dict[str, Any]) -> None:
        """Show one evaluation of the loop (`bench.train`'s point: step, time_s, metric)."""
        if self._bar is not None:
            self._bar.set_postfix(metric=f"{point['metric']:.4f}")
        elif self.enabled:
            print(f"[{self.desc}] step {point['step']}/{self.total} {self.metric} {point['metric']:.4f} "
                  f"clock {point['time_s']:.1f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or foreign stream
        return False


def metric_key(name: str) -> str:
    """The W&B key of an evaluation metric (`auc` -> `test/auc`)."""
    return f"test/{name}"


def wandb_key(key: str) -> Optional[str]:
    """The W&B key of an evaluation point's key: `test_auc` -> `test/auc`, `probe_vr` -> `probe/vr`,
    `train_loss` -> `train/loss`, `time_s`/`step`/`epoch` -> `train/...`; None for `metric` (the target metric,
    which is already there under its own name); any other key unchanged."""
    if key == "metric":
        return None
    for prefix in ("test", "probe", "train"):
        if key.startswith(prefix + "_"):
            return f"{prefix}/{key[len(prefix) + 1:]}"
    return f"train/{key}" if key in ("time_s", "step", "epoch") else key


def wandb_point(point: dict[str, Any]) -> dict[str, Any]:
    """An evaluation point (bench.train.loop) under its W&B keys (`wandb_key`)."""
    return {wandb_key(k): v for k, v in point.items() if wandb_key(k) is not None}


def portable(value: Any) -> Any:
    """`value` (a config) without this machine's paths: an absolute path (or `~/...`) becomes its last part."""
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if isinstance(value, str) and (os.path.isabs(value) or value.startswith("~")):
        return os.path.basename(value.rstrip("/\\")) or value
    return value


def run_logger(run_dir: str | Path, cfg: Any, resolved: dict[str, Any], rid: str, enabled: bool = True) -> RunLogger:
    """The `RunLogger` of one benchmark run (`cfg`: its Hydra config; `resolved`: the resolved config its id `rid`
    was computed from, see bench.build.parts.resolved_config): named, grouped, tagged and configured as the module
    docstring says. `enabled=False` (the other ranks of a data-parallel job) writes local files only."""
    from .identity import experiment_id, group_id, identity

    w = cfg.logger.wandb
    model = str(cfg.model._target_).rsplit(".", 1)[-1]
    config = {**identity(resolved), "run_id": rid, "group_id": group_id(resolved),
              "experiment_id": experiment_id(resolved)}
    tags = [f"sampler:{cfg.sampler.name}", f"dataset:{cfg.dataset.name}", f"model:{model}", *map(str, w.tags)]
    return RunLogger(run_dir, config=config, mode=w.mode if enabled else "disabled", project=w.project,
                     entity=w.entity, tags=list(dict.fromkeys(tags)),
                     name=f"{cfg.dataset.name}-{cfg.sampler.name}-s{cfg.seed}-{rid}",
                     group=w.group or f"{cfg.dataset.name}-{experiment_id(resolved)}", init_timeout_s=w.init_timeout_s,
                     run_id=rid if cfg.resume else f"{rid}-{time.strftime('%Y%m%d-%H%M%S')}", job_type=w.job_type)
