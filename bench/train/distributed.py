"""The process layout of a run: one process, or one of `torchrun`'s data-parallel ranks.

    torchrun --standalone --nproc_per_node=2 -m bench.run ...     # 2 ranks (gloo on CPU, nccl on CUDA)
    python -m bench.run ...                                      # one process: no process group at all

`init_distributed` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK; MASTER_ADDR/PORT for the
rendezvous), picks the device (`cuda:LOCAL_RANK` under CUDA) and backend (nccl on CUDA, gloo on the CPU),
and initializes the default process group once per process (calling it again returns the same layout).
With WORLD_SIZE unset or 1 it initializes nothing, and every helper here degrades to a no-op.

    env = init_distributed("auto")
    with main_first(): data = load(...)          # rank 0 prepares the cache, then the others read it
    if env.is_main: ...write results...
    finished = broadcast_object(row_exists)      # decisions every rank must share
    barrier(); cleanup()

Nothing Hydra-specific: the harness maps its config onto these plain arguments.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "init_distributed", "cleanup", "broadcast_object", "broadcast_tensor", "barrier", "is_distributed",
           "main_first", "layout_fields"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the run."""

    rank: int = 0  # global rank in [0, world_size)
    world_size: int = 1  # number of processes (1: no process group)
    local_rank: int = 0  # rank on this machine: picks the GPU
    device: torch.device = torch.device("cpu")  # this process's device
    is_main: bool = True  # rank 0: the one that logs, checkpoints and writes results

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _device(device_pref: str, local_rank: int, world_size: int) -> torch.device:
    if device_pref not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device_pref must be 'auto', 'cpu' or 'cuda', got {device_pref!r}")
    use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
    if not use_cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("no CUDA device is visible; use device=cpu or device=auto")
    if world_size > 1 and local_rank >= torch.cuda.device_count():
        raise ValueError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA device(s) are visible")
    return torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())


def is_distributed() -> bool:
    """Whether a process group with more than one rank is initialized."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init_distributed(device_pref: str = "auto") -> DistEnv:
    """Return this process's `DistEnv`, initializing the default process group when WORLD_SIZE > 1.

    device_pref: "auto" (CUDA when available), "cpu" or "cuda". Backend: nccl for CUDA, gloo for the CPU;
    rendezvous through torchrun's env:// variables. Idempotent: a second call reuses the group.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"RANK={rank} must lie in [0, WORLD_SIZE={world_size})")
    device = _device(device_pref, local_rank, world_size)
    if world_size > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        if device.type == "cuda":
            torch.cuda.set_device(device)  # before the group: nccl binds each rank to its GPU
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            kwargs = {"device_id": device} if device.type == "cuda" else {}
            dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **kwargs)
    return DistEnv(rank=rank, world_size=world_size, local_rank=local_rank, device=device, is_main=rank == 0)


def cleanup() -> None:
    """Wait for every rank, then destroy the default process group if there is one.

    Call it once, when the process's work ended normally on every rank (not from a `finally` that also runs
    on errors: a rank that failed elsewhere would leave the others waiting here). Exiting with the group
    still alive can abort the process at exit ("terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks together (e.g. to prepare a dataset or a cache
    file once). If rank 0's block raises, the others are still released (and usually raise the same way)."""
    if not is_distributed():
        yield
        return
    if dist.get_rank() != 0:
        dist.barrier()
    try:
        yield
    finally:
        if dist.get_rank() == 0:
            dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return `src`'s `obj` on every rank (picklable objects; `obj` is ignored on the other ranks).

    Send tensors on the CPU (a CUDA tensor is unpickled onto the sender's GPU index); move large ones with
    `dist.broadcast` instead. In a single process returns `obj` itself.
    """
    if not is_distributed():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def broadcast_tensor(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Return `t` holding `src`'s values (bitwise) on every rank: in place, on its own device; `t` in one process."""
    if is_distributed():
        dist.broadcast(t, src=src)
    return t


def layout_fields(env: DistEnv, sampler: Any) -> dict[str, Any]:
    """Result-row fields of the run's layout: world size and, for a data-parallel run whose sampler all-reduces
    a sketch, whether the ranks' sketches stayed identical and the non-finite losses dropped on all ranks."""
    from sketch.distributed import feedback_mode, sync_check

    if not env.distributed or feedback_mode(sampler) != "reduce":
        return {"world_size": env.world_size}
    skipped = torch.tensor([float(sampler.skipped_nonfinite)], device=env.device)
    dist.all_reduce(skipped)
    return {"world_size": env.world_size, "skipped_nonfinite": int(skipped.item()), "sketch_in_sync": sync_check(sampler.sketch)}
