"""Fair clocks for training runs (as airbench and AlgoPerf time them), that do not perturb what they measure.

`StepClock` is the training loop's clock: the seconds of the training steps (sampler draw, sketch update, forward,
backward, optimizer) and the sampler's share of them. On the CPU both are `time.perf_counter` readings. On CUDA
the step is bracketed by two CUDA events and the sampler's sections by more, all recorded on the current stream
without waiting; the step's end is the one synchronization per step, after which every event has completed and
the elapsed times are read without stalling anything. (Synchronizing at every section boundary, as nested
stopwatches do, serializes host and device several times a step: on an H200 that alone showed ~12 % "sampler
overhead" for uniform sampling.) Work queued before the step began (evaluation, a probe) is not charged to it:
the start event completes only once that work is done.

`Stopwatch` times one-off sections that are not steps (evaluation, sampler setup): it synchronizes CUDA at both
ends, so queued device work is charged to the section that queued it.

    clock = StepClock(device)              # or StepClock(device, seconds, share_seconds) to resume
    clock.start(); clock.start_share(); idx = next(batches); clock.stop_share(); ...; clock.stop()
    clock.seconds, clock.share_seconds

    sw = Stopwatch(device)
    with sw: ...                           # or sw.start(); ...; sw.stop()
    sw.seconds

`find_stalls(curve)` reads a finished run's curve for stalls (an evaluation interval whose per-step time is over
3x the run's median: the machine was busy) and gives a stall-robust time to a target (steps x median + setup).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

__all__ = ["Stopwatch", "StepClock", "synchronize", "timed", "Stalls", "find_stalls", "STALL_FACTOR"]


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


def _cuda_event() -> Any:
    return torch.cuda.Event(enable_timing=True)


class StepClock:
    """Seconds of training steps and of the sampler's share of them, with at most one synchronization per step.

    Contract: `start()` ... `stop()` brackets one step; inside it, `start_share()` ... `stop_share()` brackets each
    section charged to the sampler (any number, not nested). `stop()` adds the step's seconds to `seconds` and its
    sections' seconds to `share_seconds`, and returns the step's seconds; the sections never exceed the step.

    Markers are `time.perf_counter()` readings on the CPU and recorded CUDA events on a CUDA device (reused from a
    small pool); `event` and `sync` replace `torch.cuda.Event(enable_timing=True)` and the device synchronization,
    so the event path can be tested without a GPU (an event needs `record()` and `elapsed_time(end) -> ms`).
    """

    def __init__(self, device: torch.device | str = "cpu", seconds: float = 0.0, share_seconds: float = 0.0, *,
                 event: Optional[Callable[[], Any]] = None, sync: Optional[Callable[[], None]] = None) -> None:
        self.device = torch.device(device)
        self.seconds = seconds
        self.share_seconds = share_seconds
        self.uses_events = event is not None or self.device.type == "cuda"
        self._new_event = event or _cuda_event
        self._sync = sync or (lambda: synchronize(self.device))
        self._pool: list[Any] = []
        self._step: Any = None  # the open step's start marker
        self._share: Any = None  # the open section's start marker
        self._sections: list[tuple[Any, Any]] = []  # this step's closed sections

    def _mark(self) -> Any:
        """A marker of now: a perf_counter reading, or an event recorded on the current stream (no waiting)."""
        if not self.uses_events:
            return time.perf_counter()
        ev = self._pool.pop() if self._pool else self._new_event()
        ev.record()
        return ev

    def _elapsed(self, a: Any, b: Any) -> float:
        """Seconds between two markers (events: both completed, after the step's synchronization)."""
        return a.elapsed_time(b) / 1000.0 if self.uses_events else b - a

    def start(self) -> None:
        """Begin a step."""
        if self._step is not None:
            raise RuntimeError("StepClock.start() called twice without stop()")
        self._step = self._mark()

    def start_share(self) -> None:
        """Begin a section charged to the sampler (inside a step)."""
        if self._step is None or self._share is not None:
            raise RuntimeError("StepClock.start_share() needs an open step and no open section")
        self._share = self._mark()

    def stop_share(self) -> None:
        """End the open sampler section."""
        if self._share is None:
            raise RuntimeError("StepClock.stop_share() called without start_share()")
        self._sections.append((self._share, self._mark()))
        self._share = None

    def stop(self) -> float:
        """End the step: the one synchronization (CUDA), then read every marker; return the step's seconds."""
        if self._step is None or self._share is not None:
            raise RuntimeError("StepClock.stop() needs an open step and no open section")
        end = self._mark()
        if self.uses_events:
            self._sync()
        step = self._elapsed(self._step, end)
        share = sum(self._elapsed(a, b) for a, b in self._sections)
        self.seconds += step
        self.share_seconds += min(share, step)
        if self.uses_events:
            self._pool += [self._step, end, *(m for pair in self._sections for m in pair)]
        self._step, self._sections = None, []
        return step


STALL_FACTOR = 3.0  # an evaluation interval whose per-step time is over this many times the run's median stalled


@dataclass(frozen=True)
class Stalls:
    """What a noisy machine did to one run's clock, read from its curve (fair-clock `time_s` and `step` at each
    evaluation): the per-step seconds of each evaluation interval, their median, and the intervals over
    STALL_FACTOR x that median (stalls: another process took the cores) with the seconds they lost beyond it."""

    interval_step_s: list[float]
    median_step_s: Optional[float]
    count: int
    seconds: float

    def robust_time(self, steps: Optional[int], setup_s: float) -> Optional[float]:
        """A stall-robust time to a target first reached at `steps`: steps x median per-step time + setup."""
        if steps is None or self.median_step_s is None:
            return None
        return steps * self.median_step_s + setup_s


def find_stalls(curve: list[dict], factor: float = STALL_FACTOR) -> Stalls:
    """The `Stalls` of a curve (points with `step` and `time_s`, in order; intervals without steps are skipped)."""
    pts = [(p["step"], p["time_s"]) for p in curve or [] if p.get("step") is not None and p.get("time_s") is not None]
    spans = [(b_step - a_step, b_t - a_t) for (a_step, a_t), (b_step, b_t) in zip(pts, pts[1:]) if b_step > a_step]
    per_step = [t / n for n, t in spans]
    if not per_step:
        return Stalls([], None, 0, 0.0)
    median = statistics.median(per_step)
    stalled = [(n, t) for n, t in spans if t / n > factor * median]
    return Stalls(per_step, median, len(stalled), sum(t - n * median for n, t in stalled))


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
