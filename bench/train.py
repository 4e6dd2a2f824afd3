"""The training loop with fair timing, periodic evaluation, time-to-target and resumable checkpoints.

Reads top to bottom: draw a batch from the sampler, weight the per-sample losses by the sampler's
importance weights, step, feed the losses back. The fair clock (`Stopwatch`) covers all of that, sampler
included; evaluation, logging and checkpointing run between steps, outside it. Time-to-target is the clock
(plus the sampler's setup cost, e.g. hashing all inputs once) at the first evaluation reaching the target.

    result = train(model, optimizer, scheduler, sampler, data, spec, device=..., on_eval=..., checkpoint=...)

Deep code gets plain arguments: `TrainSpec` holds the few numbers the loop needs.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from .metrics import evaluate, is_better, per_sample_loss
from .timing import Stopwatch

__all__ = ["TrainSpec", "TrainState", "train", "eval_steps"]


@dataclass
class TrainSpec:
    task: str  # binary, multiclass or regression
    epochs: int  # budget in epochs
    steps_per_epoch: int  # fixed for every sampler
    evals_per_epoch: int = 4  # evaluations per epoch (plus one before training)
    target_metric: str = "accuracy"  # metric that decides time-to-target
    target: float = 0.9  # threshold of the target metric
    max_time_s: Optional[float] = None  # fair-clock budget (None: epochs only)
    eval_batch_size: int = 4096  # evaluation batch
    checkpoint_every_s: float = 0.0  # fair-clock seconds between checkpoints (0: never)
    checkpoint_every_steps: int = 0  # steps between checkpoints (0: never); for tests and short runs
    warmup_steps: int = 1  # untimed passes on a throwaway model copy before the clock starts


@dataclass
class TrainState:
    """Everything that moves during training, checkpointed as a whole."""

    epoch: int = 0
    step: int = 0
    train_s: float = 0.0
    sampler_s: float = 0.0
    eval_s: float = 0.0
    setup_s: float = 0.0
    time_to_target_s: Optional[float] = None
    steps_to_target: Optional[int] = None
    best_metric: Optional[float] = None
    last_loss: float = float("nan")
    curve: list = field(default_factory=list)
    last_checkpoint_s: float = 0.0
    stopped_by_time: bool = False


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


def _evaluate(model: torch.nn.Module, data: Any, spec: TrainSpec, state: TrainState, on_eval: Callable) -> None:
    watch = Stopwatch(next(model.parameters()).device)
    with watch:
        scores = evaluate(model, data.x_num_test, data.x_cat_test, data.y_test, spec.task, spec.eval_batch_size)
    state.eval_s += watch.seconds
    metric = scores[spec.target_metric]
    elapsed = state.setup_s + state.train_s
    higher = spec.target_metric in ("accuracy", "auc")
    if metric == metric and (state.best_metric is None or (metric > state.best_metric if higher else metric < state.best_metric)):
        state.best_metric = metric
    if state.time_to_target_s is None and is_better(spec.target_metric, metric, spec.target):
        state.time_to_target_s, state.steps_to_target = elapsed, state.step
    point = {"step": state.step, "epoch": state.epoch, "time_s": elapsed, "metric": metric,
             "train_loss": state.last_loss, **{f"test_{k}": v for k, v in scores.items()}}
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
) -> TrainState:
    """Train `model` with `sampler` and return the final `TrainState` (curve, clocks, time-to-target).

    With `resumed=True`, `state` and the sampler come from a checkpoint: the sampler continues mid-epoch.
    """
    state = state or TrainState()
    evals = eval_steps(spec.steps_per_epoch, spec.epochs, spec.evals_per_epoch)
    total_steps = spec.epochs * spec.steps_per_epoch
    step_watch, sampler_watch = Stopwatch(device, state.train_s), Stopwatch(device, state.sampler_s)
    if not resumed:
        _warmup(model, data, spec, batch_size, device)
        _evaluate(model, data, spec, state, on_eval)
    model.train()
    while state.epoch < spec.epochs and not state.stopped_by_time:
        if not resumed:
            sampler.set_epoch(state.epoch)
        resumed = False
        batches = iter(sampler)
        while True:
            step_watch.start()
            sampler_watch.start()
            idx = next(batches, None)
            if idx is None:
                sampler_watch.stop()
                step_watch.stop()
                break
            weights = sampler.weights(idx)
            sampler_watch.stop()
            x, c, y = _batch(data, idx)
            losses = per_sample_loss(model(x, c), y, spec.task)
            loss = (weights.to(losses.dtype) * losses).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            sampler_watch.start()
            sampler.update(idx, losses.detach())
            sampler_watch.stop()
            step_watch.stop()
            state.step += 1
            state.train_s, state.sampler_s = step_watch.seconds, sampler_watch.seconds
            state.last_loss = float(loss.detach())
            on_step(state)
            if state.step in evals or state.step == total_steps:
                _evaluate(model, data, spec, state, on_eval)
            if spec.max_time_s is not None and state.setup_s + state.train_s >= spec.max_time_s:
                state.stopped_by_time = True
                break
            if _checkpoint_due(spec, state):
                state.last_checkpoint_s = state.train_s
                checkpoint(state)
        if not state.stopped_by_time:
            state.epoch += 1
    if state.curve and state.curve[-1]["step"] != state.step:
        _evaluate(model, data, spec, state, on_eval)
    return state


def _checkpoint_due(spec: TrainSpec, state: TrainState) -> bool:
    by_steps = spec.checkpoint_every_steps > 0 and state.step % spec.checkpoint_every_steps == 0
    by_time = spec.checkpoint_every_s > 0 and state.train_s - state.last_checkpoint_s >= spec.checkpoint_every_s
    return by_steps or by_time


def final_metric(state: TrainState) -> float:
    """Return the target metric at the last evaluation (nan when there was none)."""
    return state.curve[-1]["metric"] if state.curve else math.nan
