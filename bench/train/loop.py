"""The training loop with fair timing, periodic evaluation, time-to-target and resumable checkpoints.

Reads top to bottom: draw a batch from the sampler, weight the per-sample losses by the sampler's
importance weights, step, feed the losses back. The fair clock (`StepClock`: one CUDA synchronization per step,
the sampler's share attributed with CUDA events) covers all of that, sampler included; evaluation, logging and
checkpointing run between steps, outside it. Time-to-target is the clock
(plus the sampler's setup cost, e.g. hashing all inputs once) at the first evaluation reaching the target.

    result = train(model, optimizer, scheduler, sampler, data, spec, device=..., on_eval=..., checkpoint=...)

Deep code gets plain arguments: `TrainSpec` holds the few numbers the loop needs.

Non-finite losses: a per-sample loss that is NaN or inf is left out of the step's weighted mean (the mean
runs over the finite ones) and still fed back to the sampler, which drops and counts it
(`sampler.skipped_nonfinite`). A NaN that comes out of the forward pass also reaches the gradient
(0 * NaN = NaN in the backward), so when the gradient is not finite the optimizer step is skipped, as AMP's
GradScaler does, and counted in `TrainState.skipped_steps` (one warning). The LR schedule still advances,
so every sampler keeps the same schedule per step.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist

from .metrics import evaluate, improves, per_sample_loss, reaches
from .distributed import is_distributed
from .timing import StepClock, Stopwatch

__all__ = ["TrainSpec", "TrainState", "train", "eval_steps", "weighted_loss"]


@dataclass
class TrainSpec:
    """The numbers the loop needs. No defaults here: the harness fills every field from `cfg.trainer`, whose
    schema (bench.config.schemas.TrainerConfig) owns the defaults."""

    task: str  # binary, multiclass or regression
    epochs: int  # budget in epochs
    steps_per_epoch: int  # fixed for every sampler
    evals_per_epoch: int  # evaluations per epoch (plus one before training)
    target_metric: str  # metric that decides time-to-target (bench.train.metrics.METRICS)
    target: Optional[float]  # threshold of the target metric (None: no hand-set target)
    max_time_s: Optional[float]  # fair-clock budget (None: epochs only)
    eval_batch_size: int  # evaluation batch
    checkpoint_every_s: float  # fair-clock seconds between checkpoints (0: never)
    checkpoint_every_steps: int  # steps between checkpoints (0: never); for tests and short runs
    warmup_steps: int  # untimed passes on a throwaway model copy before the clock starts


@dataclass
class TrainState:
    """Everything that moves during training, checkpointed as a whole."""

    epoch: int = 0
    step: int = 0
    train_s: float = 0.0
    sampler_s: float = 0.0
    eval_s: float = 0.0
    probe_s: float = 0.0  # the proxy-quality probe at evaluations (outside the clock, like evaluation)
    setup_s: float = 0.0
    time_to_target_s: Optional[float] = None
    steps_to_target: Optional[int] = None
    best_metric: Optional[float] = None
    last_loss: float = float("nan")
    curve: list = field(default_factory=list)
    last_checkpoint_s: float = 0.0
    stopped_by_time: bool = False
    skipped_steps: int = 0  # optimizer steps skipped because the gradient was not finite


def eval_steps(steps_per_epoch: int, epochs: int, evals_per_epoch: int) -> set[int]:
    """Return the global steps after which to evaluate: evenly within each epoch, and the last step."""
    steps = {0}
    for e in range(epochs):
        for k in range(1, evals_per_epoch + 1):
            steps.add(e * steps_per_epoch + max(1, round(k * steps_per_epoch / evals_per_epoch)))
    return steps


def _batch(data: Any, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return data.x_num_train[idx], data.x_cat_train[idx], data.y_train[idx]


def _warmup(model: torch.nn.Module, data: Any, spec: TrainSpec, batch_size: int, device: torch.device) -> None:
    """Run untimed forward/backward passes on a copy, so lazy init and kernel selection stay off the clock."""
    if spec.warmup_steps <= 0:
        return
    twin = copy.deepcopy(model)
    idx = torch.arange(min(batch_size, data.x_num_train.shape[0]), device=data.x_num_train.device)
    rng = torch.get_rng_state()
    for _ in range(spec.warmup_steps):
        x, c, y = _batch(data, idx)
        per_sample_loss(twin(x, c), y, spec.task).mean().backward()
    torch.set_rng_state(rng)  # warm-up must not shift the run's random stream
    del twin
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def weighted_loss(weights: torch.Tensor, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the importance-weighted mean of the finite per-sample losses and the count of the others.

    Non-finite terms are left out and the mean runs over the rest (NaN when none is left); with every loss
    finite this is `(weights * losses).mean()`. The count is a 0-dim tensor: no host sync here.
    """
    weighted = weights.to(losses.dtype) * losses
    finite = torch.isfinite(weighted)
    kept = finite.sum()
    loss = torch.where(finite, weighted, torch.zeros_like(weighted)).sum() / kept
    return loss, finite.numel() - kept


def _step_is_finite(model: torch.nn.Module, bad: torch.Tensor, state: TrainState) -> bool:
    """Return whether to take the optimizer step: yes unless some losses were non-finite and so is the gradient.

    One host sync (the count), as AMP's GradScaler before its step; the gradient is checked only when needed.
    """
    count = int(bad)
    if count == 0 or all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None):
        return True
    state.skipped_steps += 1
    if state.skipped_steps == 1:
        warnings.warn(f"step {state.step + 1}: skipped the optimizer step: {count} per-sample loss(es) were not finite "
                      f"and neither was the gradient; further skips are counted in skipped_steps", RuntimeWarning, stacklevel=3)
    return False


def _evaluate(model: torch.nn.Module, data: Any, spec: TrainSpec, state: TrainState, on_eval: Callable,
              probe: Optional[Callable[[], dict]] = None) -> None:
    watch = Stopwatch(next(model.parameters()).device)
    with watch:
        scores = evaluate(model, data.x_num_test, data.x_cat_test, data.y_test, spec.task, spec.eval_batch_size)
    state.eval_s += watch.seconds
    metric = scores[spec.target_metric]
    elapsed = state.setup_s + state.train_s
    if improves(spec.target_metric, metric, state.best_metric):
        state.best_metric = metric
    if state.time_to_target_s is None and reaches(spec.target_metric, metric, spec.target):
        state.time_to_target_s, state.steps_to_target = elapsed, state.step
    point = {"step": state.step, "epoch": state.epoch, "time_s": elapsed, "metric": metric,
             "train_loss": state.last_loss, **{f"test_{k}": v for k, v in scores.items()}}
    if probe is not None:
        watch = Stopwatch(next(model.parameters()).device)
        with watch:
            point.update(probe())
        state.probe_s += watch.seconds
    state.curve.append(point)
    on_eval(point)


def train(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Optional[Any],
    sampler: Any,
    data: Any,
    spec: TrainSpec,
    *,
    device: torch.device,
    batch_size: int,
    state: Optional[TrainState] = None,
    on_eval: Callable[[dict], None] = lambda point: None,
    on_step: Callable[[TrainState], None] = lambda state: None,
    checkpoint: Callable[[TrainState], None] = lambda state: None,
    resumed: bool = False,
    feedback: Optional[Callable[[torch.Tensor, torch.Tensor], None]] = None,
    probe: Optional[Callable[[], dict]] = None,
    stop: Callable[[TrainState], None] = lambda state: None,
    on_epoch: Optional[Callable[[int], None]] = None,
) -> TrainState:
    """Train `model` with `sampler` and return the final `TrainState` (curve, clocks, time-to-target).

    With `resumed=True`, `state` and the sampler come from a checkpoint: the sampler continues mid-epoch
    (a checkpoint taken after the last step of an epoch continues with the next epoch).
    Data parallel: `model` may be a DistributedDataParallel (warm-up and evaluation use its `.module`, without
    collectives) and `feedback(idx, losses)` replaces `sampler.update` (e.g. `sketch.distributed.distributed_update`).
    `probe()` -> dict, when given, runs after each evaluation (outside the clock, timed in `probe_s`) and its
    numbers join the evaluation's point (bench.train.probe).
    `on_epoch(epoch)`, when given, runs before each epoch starts (not when resuming mid-epoch) and is charged to the
    clock as sampler time (bench.build.features.ModelRekey re-hashes the model's features there).
    `stop(state)` runs at the end of every whole step; it raises to stop there (preemption: bench.train.checkpoint.stop_point).
    """
    state = state or TrainState()
    net = getattr(model, "module", model)  # the bare model: evaluation and warm-up run no collectives
    update = feedback or sampler.update
    distributed = is_distributed()
    mid_epoch = resumed
    if resumed and state.step >= (state.epoch + 1) * spec.steps_per_epoch:
        state.epoch, mid_epoch = state.epoch + 1, False  # saved after the epoch's last step, before the epoch advanced
    evals = eval_steps(spec.steps_per_epoch, spec.epochs, spec.evals_per_epoch)
    total_steps = spec.epochs * spec.steps_per_epoch
    clock = StepClock(device, state.train_s, state.sampler_s)  # the step and the sampler's share of it
    if not resumed:
        _warmup(net, data, spec, batch_size, device)
        _evaluate(net, data, spec, state, on_eval, probe)
    model.train()
    while state.epoch < spec.epochs and not state.stopped_by_time:
        if not mid_epoch:
            if on_epoch is not None:
                _timed_share(clock, state, lambda: on_epoch(state.epoch))
            sampler.set_epoch(state.epoch)
        mid_epoch = False
        batches = iter(sampler)
        while True:
            clock.start()
            clock.start_share()
            idx = next(batches, None)
            if idx is None:
                clock.stop_share()
                clock.stop()
                break
            weights = sampler.weights(idx)
            clock.stop_share()
            x, c, y = _batch(data, idx)
            losses = per_sample_loss(model(x, c), y, spec.task)
            loss, bad = weighted_loss(weights, losses)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if distributed:
                dist.all_reduce(bad)  # every rank must take the same decision (the gradients are shared)
            if _step_is_finite(model, bad, state):
                optimizer.step()
            if scheduler is not None:
                scheduler.step()
            clock.start_share()
            update(idx, losses.detach())
            clock.stop_share()
            clock.stop()
            state.step += 1
            state.train_s, state.sampler_s = clock.seconds, clock.share_seconds
            state.last_loss = float(loss.detach())
            on_step(state)
            if state.step in evals or state.step == total_steps:
                _evaluate(net, data, spec, state, on_eval, probe)
            if spec.max_time_s is not None and _time_is_up(spec, state, device, distributed):
                state.stopped_by_time = True
                break
            if _checkpoint_due(spec, state):
                state.last_checkpoint_s = state.train_s
                checkpoint(state)
            stop(state)  # SIGTERM/SIGINT: checkpoint this whole step and raise (every rank after the same step)
        if not state.stopped_by_time:
            state.epoch += 1
    if state.curve and state.curve[-1]["step"] != state.step:
        _evaluate(net, data, spec, state, on_eval, probe)
    return state


def _timed_share(clock: Any, state: TrainState, work: Callable[[], None]) -> None:
    """Run `work` on the clock, as the sampler's share (sampler work outside a step, e.g. a re-hash)."""
    clock.start()
    clock.start_share()
    work()
    clock.stop_share()
    clock.stop()
    state.train_s, state.sampler_s = clock.seconds, clock.share_seconds


def _time_is_up(spec: TrainSpec, state: TrainState, device: torch.device, distributed: bool) -> bool:
    """Whether the fair-clock budget is spent; under DDP rank 0's clock decides for all (one broadcast)."""
    up = state.setup_s + state.train_s >= spec.max_time_s
    if distributed:
        flag = torch.tensor([float(up)], device=device)
        dist.broadcast(flag, src=0)
        up = bool(flag.item())
    return up


def _checkpoint_due(spec: TrainSpec, state: TrainState) -> bool:
    by_steps = spec.checkpoint_every_steps > 0 and state.step % spec.checkpoint_every_steps == 0
    by_time = spec.checkpoint_every_s > 0 and state.train_s - state.last_checkpoint_s >= spec.checkpoint_every_s
    return by_steps or by_time


def final_metric(state: TrainState) -> float:
    """Return the target metric at the last evaluation (nan when there was none)."""
    return state.curve[-1]["metric"] if state.curve else math.nan
