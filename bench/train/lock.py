"""One process per run: a lock on `<results_dir>/locks/<run_id>.lock`, held while the run trains.

Two identical runs started into one results folder would both train to the end, and the second would "resume" from
the first's checkpoint while it is still being written. With the lock, the second stops at once with one line
(`RunLocked`; `python -m bench.run` exits with status 75, EX_TEMPFAIL: try again later) and, in a sweep, leaves
that job to the process that runs it and goes on with the next one, so two copies of one sweep share its jobs.

The lock is `flock` on the file, which the kernel releases when its process ends, however it ends: a lock file left
behind by a killed process (the file holds that process's pid, host and start time) is stale, and the next run takes
it over and says so. A clean release deletes the file. Where `flock` is not supported (some network file systems)
the run goes on unlocked after one warning; on Windows there is no lock.

    lock = acquire(results_dir, run_id)     # raises RunLocked when another live process holds it
    ...train, write the row...
    lock.release()

Under torchrun rank 0 takes the lock and every rank gets its answer (all ranks stop, or none).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Optional

from .distributed import broadcast_object, is_distributed

__all__ = ["RunLock", "RunLocked", "acquire", "lock_path", "release_all", "EXIT_LOCKED"]

EXIT_LOCKED = 75  # sysexits.h EX_TEMPFAIL: another process runs this job now; run the command again later

log = logging.getLogger("bench.train.lock")

_HELD: dict[Path, "RunLock"] = {}  # the locks this process holds (a process holds a run's lock once)


class RunLocked(RuntimeError):
    """Another live process holds the run's lock. The message is one line: who holds it and what to do."""

    def __init__(self, message: str, rid: str = "") -> None:
        super().__init__(message)
        self.rid = rid


def lock_path(results_dir: str | Path, rid: str) -> Path:
    """Where the lock of run `rid` lives."""
    return Path(results_dir) / "locks" / f"{rid}.lock"


class RunLock:
    """A held run lock (or, on other ranks and where locks are not supported, a stand-in that holds nothing)."""

    def __init__(self, path: Optional[Path] = None, fd: Optional[int] = None) -> None:
        self.path, self._fd = path, fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Delete the lock file and let go of the lock (safe to call twice)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.pop(self.path, None)
        try:
            os.unlink(self.path)  # while holding it: whoever opened it before then finds it gone and retries
        except OSError:
            pass
        os.close(fd)


def _holder(fd: int) -> dict[str, Any]:
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        return json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process"
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')} (since {holder.get('started', '?')})"


def _lock(path: Path, rid: str) -> RunLock:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLocked(f"run {rid} is already running in {_describe(holder)}: not started here (lock {path}); "
                            f"run the command again when it has ended: a finished run is skipped, a stopped one resumed", rid) from None
        except OSError as exc:  # no flock on this file system
            os.close(fd)
            warnings.warn(f"cannot lock {path} ({exc.strerror}): run {rid} goes on without a lock; do not start it twice")
            return RunLock()
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder released (and deleted) it while we opened it: lock the current file
    stale = _holder(fd)
    if stale:  # a clean release deletes the file: its content is what a killed process left
        log.warning(f"took over the lock of run {rid} from {_describe(stale)}, which no longer holds it (killed?)")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "run_id": rid}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return RunLock(path, fd)


def acquire(results_dir: str | Path, rid: str) -> RunLock:
    """Take the lock of run `rid` under `results_dir`, or raise `RunLocked` when a live process holds it.

    A lock this process holds already is returned as it is (a run retried in one process, e.g. in tests).
    Under torchrun rank 0 takes it and every rank raises or returns together."""
    path = lock_path(Path(results_dir).absolute(), rid)
    main = not is_distributed() or _rank() == 0
    lock, problem = RunLock(), None
    if main:
        if path in _HELD:
            lock = _HELD[path]
        else:
            try:
                lock = _lock(path, rid) if os.name == "posix" else RunLock()
            except RunLocked as exc:
                problem = str(exc)
            if lock.held:
                _HELD[path] = lock
    problem = broadcast_object(problem)
    if problem:
        raise RunLocked(problem, rid)
    return lock


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank()


def release_all() -> None:
    """Release every lock this process holds (at exit: after a stop, an error or a sweep's last job)."""
    for lock in list(_HELD.values()):
        lock.release()


atexit.register(release_all)
