"""Resumable checkpoints: model, optimizer, LR schedule, sampler (sketch, RNG, position), clocks and curve.

A checkpoint lives at `<results_dir>/ckpt/<run_id>.pt` (stable across re-runs of the same sweep) and is
written atomically (a temporary file, fsync, rename), so a run killed while saving keeps the previous one;
temporary files a killed run leaves behind are never read and are removed with the checkpoint. Restoring it
and training on gives, on the CPU with the same seed, bit for bit the result of an uninterrupted run.
A file that cannot be read raises `CheckpointError` before anything is restored.

    save_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=..., state=...)
    state = load_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=...)
    remove_checkpoint(path)

Preemption (SIGTERM from SLURM, `kill` or a container runtime; SIGINT from Ctrl-C): `STOP.install()` (done by
`python -m bench.run`) turns the first such signal into a request; the loop's end-of-step hook `stop_point(save, ...)`
then writes a checkpoint of the state after that whole step (the same point a periodic checkpoint is taken at, so
the resumed run is still bit-identical) and raises `Preempted`, which finishes W&B marked preempted
(bench.results.logger) and ends the process with status 128 + the signal's number (143 for SIGTERM, 130 for SIGINT). Under
torchrun every rank all-reduces its flag at each step, so all ranks stop after the same step. A second signal more
than a second after the first stops at once (the default action); repeats within that second are one event
delivered twice (to the process group, and forwarded by torchrun) and ignored.

    STOP.install()
    train(..., stop=stop_point(save, path, device))     # raises Preempted after the step the signal lands in

A checkpoint that cannot be written (a full disk: OSError) leaves the previous one as it was: on a signal the run
still stops, says so in one line and exits with EXIT_NO_CHECKPOINT (74) instead of 143/130; a periodic one
(`periodic(save, path)`) is one warning and training goes on.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .distributed import is_distributed
from ..results.files import atomic_write
from .loop import TrainState

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_path", "remove_checkpoint", "CheckpointError",
           "Preempted", "StopSignal", "STOP", "stop_point", "periodic", "agreed_signal", "exit_status", "EXIT_NO_CHECKPOINT"]

log = logging.getLogger("bench.train.checkpoint")

_KEYS = ("model", "optimizer", "scheduler", "sampler", "state", "torch_rng", "cuda_rng")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint). The message is one line."""


def checkpoint_path(results_dir: str | Path, rid: str) -> Path:
    """Return where the checkpoint of run `rid` lives."""
    return Path(results_dir) / "ckpt" / f"{rid}.pt"


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Optional[Any], sampler: Any, state: TrainState,
                    extra: Optional[dict[str, Any]] = None) -> None:
    """Write everything needed to continue the run exactly, atomically (temp file + rename). `extra` maps names to
    other stateful parts (with `state_dict`/`load_state_dict`, e.g. bench.build.features.ModelRekey)."""
    blob = {
        "extra": {name: part.state_dict() for name, part in (extra or {}).items()},
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler": sampler.state_dict(),
        "state": dataclasses.asdict(state),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    atomic_write(path, lambda f: _save(blob, f))


def _save(blob: dict[str, Any], f: Any) -> None:
    """`torch.save`, whose zip writer turns a failed write (OSError: a full disk) into a RuntimeError while it
    closes: the OSError is raised again, so callers see what went wrong."""
    try:
        torch.save(blob, f)
    except RuntimeError as exc:
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise


def remove_checkpoint(path: Path) -> None:
    """Delete the checkpoint at `path` and any temporary files that killed saves left beside it."""
    path.unlink(missing_ok=True)
    for leftover in path.parent.glob(f"{path.stem}.*.tmp"):
        leftover.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated or corrupt file: unpickling, zip or EOF errors
        detail = (str(exc).splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(exc).__name__}: {detail})") from None
    if not isinstance(blob, dict) or not all(k in blob for k in _KEYS):
        raise CheckpointError(f"checkpoint {path} is not a bench checkpoint (missing keys)")
    return blob


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Optional[Any], sampler: Any,
                    extra: Optional[dict[str, Any]] = None) -> TrainState:
    """Restore model, optimizer, schedule, sampler, the `extra` parts and RNG from `path`; return the saved TrainState.

    Raises CheckpointError, with nothing restored, when the file cannot be read."""
    blob = _read(path)
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    sampler.load_state_dict(blob["sampler"])
    for name, part in (extra or {}).items():
        part.load_state_dict(blob["extra"][name])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState(**blob["state"])


# -- preemption ---------------------------------------------------------------------------------------------
def exit_status(signum: int) -> int:
    """The exit status of a run stopped by `signum`: 128 + its number, what a shell reports for a process the
    signal ended (143 for SIGTERM, 130 for SIGINT): schedulers and wrappers read it as "terminated", and it
    differs from 0 (done), 1 (crash), 2 (bad input) and 75 (another process runs the job)."""
    return 128 + int(signum)


EXIT_NO_CHECKPOINT = 74  # sysexits.h EX_IOERR: stopped on a signal, but its checkpoint could not be written


class Preempted(Exception):
    """Training stopped after a whole step because the process was asked to stop; the checkpoint is written, or,
    when `error` says why it could not be (a full disk), the previous one is left as it was.

    `preempted` tells `bench.results.logger.RunLogger` to finish W&B marked preempted; `exit_code` is the process's
    status: 128 + the signal's number, or EXIT_NO_CHECKPOINT (74) when the checkpoint was not written."""

    preempted = True

    def __init__(self, signum: int, step: int, checkpoint: Optional[Path], error: Optional[str] = None) -> None:
        self.signum, self.step, self.checkpoint, self.error = int(signum), step, checkpoint, error
        self.exit_code = EXIT_NO_CHECKPOINT if error else exit_status(signum)
        super().__init__(f"{signal.Signals(self.signum).name} after step {step}; {self.saved()}")

    def saved(self) -> str:
        """What became of the checkpoint: written, or not written and which one a rerun resumes from."""
        if not self.error:
            return f"checkpoint {self.checkpoint} written"
        kept = (f"the previous checkpoint {self.checkpoint} is kept" if self.checkpoint and self.checkpoint.is_file()
                else "there is no previous checkpoint: a rerun starts over")
        return f"checkpoint {self.checkpoint} NOT written ({self.error}); {kept}"


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class StopSignal:
    """SIGTERM and SIGINT as a request to stop after the current step, read by `stop_point` (one per process: STOP)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REPEAT_S = 1.0  # a repeat within this many seconds is the same event delivered twice

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._at = 0.0
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Handle SIGTERM and SIGINT in this process (call from the main thread; again: no-op)."""
        for sig in self.SIGNALS:
            if sig not in self._previous:
                self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Restore the handlers that were there before `install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}

    def reset(self) -> None:
        """Forget a request (tests)."""
        self.signum, self._at = None, 0.0

    def _handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.signum is not None:
            if now - self._at < self.REPEAT_S:
                return
            self.uninstall()
            signal.raise_signal(signum)  # the default action now: stop at once
            return
        self.signum, self._at = signum, now
        name = signal.Signals(signum).name
        os.write(2, f"\n[{name}] stopping after this step with a checkpoint; send it again to stop at once\n".encode())


STOP = StopSignal()


def agreed_signal(device: Optional[torch.device] = None, signals: StopSignal = STOP) -> int:
    """The signal number every process of the run agrees to stop on (0: none): this process's request, or under
    torchrun the largest any rank received (one all_reduce; on `device`, the rank's CUDA device under nccl). Ranks
    whose process group is not up yet do not stop here (they could not agree): their first step decides."""
    signum = signals.signum or 0
    if is_distributed():
        import torch.distributed as dist

        if device is None:
            device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        flag = torch.tensor([signum], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return 0
    return signum


def stop_point(save: Callable[[TrainState], None], path: Optional[Path], device: torch.device,
               signals: StopSignal = STOP) -> Callable[[TrainState], None]:
    """The training loop's end-of-step hook: when a stop was asked for (on any rank: `agreed_signal`, so every rank
    stops after the same step), `save(state)` and raise `Preempted`."""

    def check(state: TrainState) -> None:
        signum = agreed_signal(device, signals)
        if signum:
            try:
                save(state)
            except OSError as exc:  # a full disk, a vanished folder: the previous checkpoint is intact (atomic_write)
                raise Preempted(signum, state.step, path, error=_why(exc)) from None
            raise Preempted(signum, state.step, path)

    return check


def periodic(save: Callable[[TrainState], None], path: Optional[Path]) -> Callable[[TrainState], None]:
    """The loop's periodic checkpoint: `save(state)`, where a write that fails (OSError: a full disk) is one warning
    and training goes on with the previous checkpoint kept (atomic_write never leaves a partial one)."""
    warned: list[str] = []

    def write(state: TrainState) -> None:
        try:
            save(state)
        except OSError as exc:
            if not warned:
                log.warning(f"checkpoint {path} not written at step {state.step} ({_why(exc)}); the previous one is "
                            f"kept and training goes on (further failures are not reported)")
            warned.append(_why(exc))

    return write
