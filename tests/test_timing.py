"""The fair clock (bench.train.timing.StepClock): the sampler's share plus the rest is the step, on the CPU and on the
event path (tested with a fake event class, so no GPU is needed), with one synchronization per step."""
from __future__ import annotations

import time

import pytest
import torch

from bench.train.timing import StepClock, Stopwatch


class FakeEvents:
    """A stand-in for CUDA timing events on a fake device timeline: `now` (ms) is what an event records."""

    def __init__(self) -> None:
        self.now = 0.0
        self.created = 0
        self.syncs = 0

    def event(self):
        clock = self
        self.created += 1

        class Event:
            t = None

            def record(self) -> None:
                self.t = clock.now

            def elapsed_time(self, end) -> float:
                return end.t - self.t

        return Event()

    def sync(self) -> None:
        self.syncs += 1


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_on_the_cpu_the_share_plus_the_rest_is_the_step():
    clock = StepClock("cpu")
    for _ in range(3):
        clock.start()
        clock.start_share()
        busy(0.002)
        clock.stop_share()
        busy(0.004)  # the model's part
        clock.start_share()
        busy(0.001)
        clock.stop_share()
        step = clock.stop()
        assert step >= 0.007
    assert not clock.uses_events
    assert 0.009 <= clock.share_seconds < clock.seconds
    assert clock.seconds - clock.share_seconds >= 0.012  # the model's part is not the sampler's


def test_the_event_path_attributes_sections_from_event_times_with_one_sync_per_step():
    fake = FakeEvents()
    clock = StepClock("cpu", event=fake.event, sync=fake.sync)
    for _ in range(4):
        clock.start()
        clock.start_share()
        fake.now += 2.0  # draw: 2 ms
        clock.stop_share()
        fake.now += 5.0  # forward, backward, optimizer: 5 ms
        clock.start_share()
        fake.now += 1.0  # feedback: 1 ms
        clock.stop_share()
        assert clock.stop() == pytest.approx(0.008)
    assert clock.uses_events and fake.syncs == 4  # one synchronization per step, none at the sections
    assert clock.seconds == pytest.approx(0.032) and clock.share_seconds == pytest.approx(0.012)
    assert fake.created == 6  # 6 markers in the first step, reused from the pool afterwards


def test_a_resumed_clock_continues_from_its_saved_seconds():
    fake = FakeEvents()
    clock = StepClock("cpu", 10.0, 2.0, event=fake.event, sync=fake.sync)
    clock.start()
    clock.start_share()
    fake.now += 500.0
    clock.stop_share()
    clock.stop()
    assert (clock.seconds, clock.share_seconds) == (pytest.approx(10.5), pytest.approx(2.5))


def test_a_cuda_device_uses_events_and_the_cpu_does_not():
    assert StepClock(torch.device("cuda")).uses_events and not StepClock("cpu").uses_events


@pytest.mark.parametrize("calls", [["stop"], ["start_share"], ["start", "start"], ["stop_share"],
                                   ["start", "start_share", "stop"], ["start", "start_share", "start_share"]])
def test_misordered_calls_raise_instead_of_miscounting(calls):
    clock = StepClock("cpu")
    with pytest.raises(RuntimeError):
        for name in calls:
            getattr(clock, name)()


def test_stopwatch_still_times_one_off_sections():
    watch = Stopwatch("cpu")
    with watch:
        busy(0.002)
    assert watch.seconds >= 0.002
