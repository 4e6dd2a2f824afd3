"""`python -m bench.run`: check the command line, run the job (or each job of a sweep), print its table.

    python -m bench.run sampler=history dataset=kdd04
    python -m bench.run -m sampler=uniform,nws seed=0,1,2

Exit status (what a scheduler or a wrapper script can act on):
- 0: every job finished (or had finished before: its row is kept and it is skipped);
- 2: bad input, as ONE line on stderr before any data is loaded or any job starts (`bench.config.preflight`: every job
  of a sweep composed and validated, folders writable, the sketch within the memory budget), or, for what only
  the data can tell (a batch larger than the dataset, AUC on a one-class test split), before that job trains;
- 75 (EX_TEMPFAIL): another live process runs this job now (`bench.train.lock`); in a sweep the job is left to it and
  the others run, and the status is 75 at the end: run the command again later to collect everything;
- 128 + the signal's number, 143 for SIGTERM (SLURM preemption, `kill`, `docker stop`) and 130 for SIGINT (Ctrl-C):
  stopped after a whole step with a checkpoint, W&B finished marked preempted, the rest of a sweep not started
  (`bench.train.checkpoint`); the same command resumes. Under torchrun every rank stops after the same step;
- 74 (EX_IOERR): stopped on such a signal, but its checkpoint could not be written (a full disk): the previous
  checkpoint is kept, and the same command resumes from it;
- 1: anything else (a crash, with its traceback).
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from ..train.checkpoint import STOP, Preempted, agreed_signal, exit_status
from .schemas import register_configs, validate
from .errors import ConfigError
from ..train.distributed import cleanup
from ..train.lock import EXIT_LOCKED, RunLocked
from .plugins import expand_all_samplers, load_plugins, plugin_modules
from .preflight import CONF_DIR, check_command_line, preflight

__all__ = ["cli", "job", "check_command_line", "CONF_DIR"]

log = logging.getLogger("bench.config.cli")

register_configs()

_LEFT: list[str] = []  # jobs of this sweep left to the live processes that hold their locks


def job(run: Callable[[DictConfig], Any], cfg: DictConfig) -> Optional[float]:
    """One job (Hydra's task function, with `run` bound): import the job's plugins (a launcher's worker process has
    not), validate, run, print the table; return the final target metric (for sweepers)."""
    try:
        load_plugins(cfg.get("plugins") or [])
    except ConfigError as exc:
        _fail(exc)
    signum = agreed_signal()
    if signum:  # the signal came between two jobs of a sweep: start no more
        _stopped(f"{signal.Signals(signum).name} before {_job()} started", exit_status(signum))
    try:
        validate(cfg)
        row = run(cfg)
    except ConfigError as exc:
        _discard_output_dir()
        _fail(exc)
    except RunLocked as exc:
        if not _multirun():
            _discard_output_dir()
            _say(f"error: {exc}")
            sys.exit(EXIT_LOCKED)
        log.warning(f"{_job()} left to the process that runs it: {exc}")
        _LEFT.append(exc.rid)
        return None
    except Preempted as exc:
        rest = "; the jobs after it were not started" if _multirun() else ""
        _stopped(f"{signal.Signals(exc.signum).name} after step {exc.step} of {_job()}; {exc.saved()}{rest}",
                 exc.exit_code)
    if row.world_size == 1 or torch.distributed.get_rank() == 0:  # rank 0 speaks for the job
        print(row.summary_table())
        print(f"row: {row.path(cfg.paths.results_dir)}")
    return row.final_metric


def _multirun() -> bool:
    return HydraConfig.initialized() and str(HydraConfig.get().mode) == "RunMode.MULTIRUN"


def _job() -> str:
    return f"job #{HydraConfig.get().job.num} of the sweep" if _multirun() else "the run"


def _discard_output_dir() -> None:
    """Remove the output folder Hydra made for a single run that was refused (`outputs/<date>/<time>/`), when it
    holds only Hydra's own files, and the date folders left empty: a refused command leaves nothing behind."""
    if not HydraConfig.initialized() or _multirun():
        return
    hydra = HydraConfig.get()
    out = Path(hydra.runtime.output_dir)
    own = {".hydra", f"{hydra.job.name}.log"}
    if not out.is_dir() or any(p.name not in own for p in out.iterdir()):
        return
    shutil.rmtree(out, ignore_errors=True)
    cwd = Path.cwd().absolute()
    for parent in out.absolute().parents:
        if parent == cwd or cwd not in parent.parents:
            break
        try:
            parent.rmdir()  # only when empty
        except OSError:
            break


def _say(line: str) -> None:
    """Print one line on stderr, from rank 0 only under torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)


def _stopped(what: str, status: int) -> NoReturn:
    _say(f"stopped: {what}; run the same command to resume (exit status {status})")
    cleanup()  # every rank stopped at the same point: the process group can be torn down
    sys.exit(status)


def _fail(exc: ConfigError) -> NoReturn:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def cli(run: Callable[[DictConfig], Any]) -> None:
    """`python -m bench.run ...` with `run(cfg) -> ResultRow` as each job: offline defaults for the Hugging Face
    libraries, SIGTERM/SIGINT as a request to stop after a checkpoint, the user's plugins imported and
    `sampler=all` expanded, the preflight (one line and exit status 2 on a problem), then Hydra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when `datasets` is first imported (lazily, in bench.data)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    STOP.install()
    try:
        load_plugins(plugin_modules(sys.argv[1:]))
        register_configs()  # again: the plugins' samplers get their config schemas
        sys.argv[1:] = expand_all_samplers(sys.argv[1:])
        preflight(sys.argv[1:])
    except ConfigError as exc:
        _fail(exc)
    task = functools.update_wrapper(functools.partial(job, run), job)  # Hydra finds this module through __wrapped__
    hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(task)()
    cleanup()  # the process group lives for the whole process (all jobs of a sweep); not on errors (see cleanup)
    if _LEFT:
        _say(f"error: {len(_LEFT)} job(s) of this sweep were left to the processes running them ({', '.join(_LEFT)}); "
             f"run the same command again when they have ended (exit status {EXIT_LOCKED})")
        sys.exit(EXIT_LOCKED)
