"""Resumable checkpoints: model, optimizer, LR schedule, sampler (sketch, RNG, position), clocks and curve.

A checkpoint lives at `<results_dir>/ckpt/<run_id>.pt` (stable across re-runs of the same sweep) and is
written atomically (a temporary file, fsync, rename), so a run killed while saving keeps the previous one;
temporary files a killed run leaves behind are never read and are removed with the checkpoint. Restoring it
and training on gives, on the CPU with the same seed, bit for bit the result of an uninterrupted run.
A file that cannot be read raises `CheckpointError` before anything is restored.

    save_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=..., state=...)
    state = load_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=...)
    remove_checkpoint(path)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

import torch

from .results import atomic_write
from .train import TrainState

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_path", "remove_checkpoint", "CheckpointError"]

_KEYS = ("model", "optimizer", "scheduler", "sampler", "state", "torch_rng", "cuda_rng")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint). The message is one line."""


def checkpoint_path(results_dir: str | Path, rid: str) -> Path:
    """Return where the checkpoint of run `rid` lives."""
    return Path(results_dir) / "ckpt" / f"{rid}.pt"


def save_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Optional[Any], sampler: Any, state: TrainState) -> None:
    """Write everything needed to continue the run exactly, atomically (temp file + rename)."""
    blob = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "sampler": sampler.state_dict(),
        "state": dataclasses.asdict(state),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    atomic_write(path, lambda f: torch.save(blob, f))


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


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Optional[Any], sampler: Any) -> TrainState:
    """Restore model, optimizer, schedule, sampler and RNG from `path`; return the saved TrainState.

    Raises CheckpointError, with nothing restored, when the file cannot be read."""
    blob = _read(path)
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    sampler.load_state_dict(blob["sampler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState(**blob["state"])
