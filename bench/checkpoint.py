"""Resumable checkpoints: model, optimizer, LR schedule, sampler (sketch, RNG, position), clocks and curve.

A checkpoint lives at `<results_dir>/ckpt/<run_id>.pt` (stable across re-runs of the same sweep) and is
written atomically, so a run killed while saving keeps the previous one. Restoring it and training on gives,
on the CPU with the same seed, bit for bit the result of an uninterrupted run.

    save_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=..., state=...)
    state = load_checkpoint(path, model=..., optimizer=..., scheduler=..., sampler=...)
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional

import torch

from .train import TrainState

__all__ = ["save_checkpoint", "load_checkpoint", "checkpoint_path"]


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, *, model: torch.nn.Module, optimizer: Any, scheduler: Optional[Any], sampler: Any) -> TrainState:
    """Restore model, optimizer, schedule, sampler and RNG from `path`; return the saved TrainState."""
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    if scheduler is not None and blob["scheduler"] is not None:
        scheduler.load_state_dict(blob["scheduler"])
    sampler.load_state_dict(blob["sampler"])
    torch.set_rng_state(blob["torch_rng"])
    if blob["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState(**blob["state"])
