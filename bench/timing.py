"""Fair clocks for training runs (as airbench and AlgoPerf time them).

A `Stopwatch` accumulates the seconds spent between `start()` and `stop()`, synchronizing CUDA at both
ends so that queued GPU work is charged to the section that queued it. The harness keeps one for the whole
training step (sampler draw, sketch update, forward, backward, optimizer) and one for the sampler's share;
evaluation, logging and checkpointing happen between steps, outside both.

    sw = Stopwatch(device)
    with sw: ...                       # or sw.start(); ...; sw.stop()
    sw.seconds
"""
from __future__ import annotations

import time
from typing import Callable

import torch

__all__ = ["Stopwatch", "synchronize", "timed"]


def synchronize(device: torch.device) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulated wall-clock seconds of the sections it times, CUDA-synchronized at both ends."""

    def __init__(self, device: torch.device | str = "cpu", seconds: float = 0.0) -> None:
        self.device = torch.device(device)
        self.seconds = seconds
        self._t0: float | None = None

    def start(self) -> None:
        if self._t0 is not None:
            raise RuntimeError("Stopwatch.start() called twice without stop()")
        synchronize(self.device)
        self._t0 = time.perf_counter()

    def stop(self) -> float:
        """Stop timing and return the seconds of this section."""
        if self._t0 is None:
            raise RuntimeError("Stopwatch.stop() called without start()")
        synchronize(self.device)
        dt = time.perf_counter() - self._t0
        self._t0 = None
        self.seconds += dt
        return dt

    def __enter__(self) -> "Stopwatch":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def timed(fn: Callable[[], object], *, repeats: int, warmup: int, sync: Callable[[], None]) -> list[float]:
    """Run `fn` `warmup` times, then time `repeats` calls (seconds each), calling `sync` (e.g. a CUDA
    synchronize) after each so queued device work is counted. For benchmarks (scripts/bench_*.py)."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times
