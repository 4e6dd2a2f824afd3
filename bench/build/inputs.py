"""The runtime inputs of the samplers, made by the harness from a run's data and model: one provider per input
name (`sketch.samplers.INPUTS`), never one per sampler.

A sampler class registers itself in `sketch.samplers` with the inputs its constructor takes; everything the
harness knows about a sampler is derived from that class and the providers of its inputs:

- its options = the class's `option_checks` (defaults and types from the constructor) plus the providers'
  keyword options (`static`'s scores come from a proxy run of `proxy_steps` steps);
- the config groups it reads besides `sampler` = the providers' `reads` (the sketch and slots read `sketch`);
- validation = the class's `check_options` plus the providers' checks, whose one-line errors `config_error`
  maps to the config key that fed them.

    from bench.build.inputs import RunContext, sampler_with_inputs, reads
    sampler, setup_s = sampler_with_inputs("nws", options, RunContext(data=..., model=..., ...))
    reads("uniform")   # ()   reads("nws")   # ("sketch",)
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

from sketch._checks import Check, check_options, check_positive_int
from sketch.samplers import SAMPLERS

from ..train.distributed import broadcast_tensor, main_first
from ..train.metrics import per_sample_loss, predict_logits
from ..config.derive import parameter, schema_from_signature
from ..train.timing import Stopwatch

__all__ = ["RunContext", "Provider", "PROVIDERS", "provides", "reads", "sampler_options", "option_parameters",
           "check_sampler_options", "sampler_schema", "sampler_with_inputs"]


@dataclass
class RunContext:
    """What a provider may read: the run's data, model and layout (plain values, no config)."""

    data: Any  # bench.data.TensorData, on `device`
    model: torch.nn.Module
    batch_size: int  # per rank
    steps_per_epoch: int
    epochs: int
    seed: int
    device: torch.device
    cache_dir: Optional[str] = None  # where the NWS slots cache lives
    cache_cap_bytes: Optional[int] = None  # the most the slots cache may hold (least recently used files go first)
    num_replicas: int = 1
    rank: int = 0
    sketch: Any = None  # the `sketch` group as a plain object (bench.config.schemas.SketchConfig), for providers that read it

    @property
    def task(self) -> str:
        return self.data.task


@dataclass(frozen=True)
class Provider:
    """Makes one or more inputs (`fn(ctx, **options) -> {input: value}`); `reads`: config groups it needs."""

    fn: Callable[..., dict]
    inputs: tuple[str, ...]
    reads: tuple[str, ...] = ()
    checks: Mapping[str, Check] = field(default_factory=dict)

    def options(self) -> dict[str, inspect.Parameter]:
        """The provider's keyword options (everything after the context), which the sampler's config carries."""
        return {name: parameter(self.fn, name) for name in list(inspect.signature(self.fn).parameters)[1:]}


PROVIDERS: dict[str, Provider] = {}  # input name -> its provider


def provides(*inputs: str, reads: tuple[str, ...] = (), checks: Optional[Mapping[str, Check]] = None) -> Callable:
    """Decorator: the function makes `inputs` (names of `sketch.samplers.INPUTS`, each made by one provider)."""
    def add(fn: Callable[..., dict]) -> Callable[..., dict]:
        provider = Provider(fn, tuple(inputs), tuple(reads), dict(checks or {}))
        for name in inputs:
            if name in PROVIDERS:
                raise ValueError(f"input {name!r} has a provider already: {PROVIDERS[name].fn.__name__}")
            PROVIDERS[name] = provider
        return fn
    return add


# -- what a sampler needs, derived from its class -----------------------------------------------------------
def _providers(name: str) -> list[Provider]:
    found: list[Provider] = []
    for need in SAMPLERS[name].inputs:
        if PROVIDERS[need] not in found:
            found.append(PROVIDERS[need])
    return found


def reads(name: str) -> tuple[str, ...]:
    """The config groups the sampler registered as `name` reads besides its own (through its inputs' providers)."""
    return tuple(dict.fromkeys(g for p in _providers(name) for g in p.reads))


def sampler_options(sampler: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a resolved `sampler` config group (a plain mapping): every key but its `name`."""
    return {k: v for k, v in sampler.items() if k != "name"}


def option_parameters(name: str) -> dict[str, inspect.Parameter]:
    """Every option of the sampler `name`: the class's (`option_checks`) and its providers', with default and type."""
    cls = SAMPLERS[name]
    params = {key: parameter(cls, key) for key in cls.option_checks}
    for provider in _providers(name):
        params.update(provider.options())
    return params


def check_sampler_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Return `options` checked by the class's and its providers' checks (the first bad one raises, naming it)."""
    cls = SAMPLERS[name]
    checked = cls.check_options(**{k: v for k, v in options.items() if k in cls.option_checks})
    provider_checks = {k: c for p in _providers(name) for k, c in p.checks.items()}
    return {**checked, **check_options(provider_checks, {k: v for k, v in options.items() if k not in checked})}


def sampler_schema(name: str, base: type) -> type:
    """The structured-config dataclass of sampler `name`: `base` with `name` set, plus each option with its default."""
    return schema_from_signature(f"{SAMPLERS[name].__name__}Config", option_parameters(name), base, fixed={"name": name})


def sampler_with_inputs(name: str, options: Mapping[str, Any], ctx: RunContext) -> tuple[Any, float]:
    """Return (sampler, setup seconds): make the class's inputs (timed: charged to the run's clock), then build the
    class with the shared arguments, those inputs and its options."""
    cls = SAMPLERS[name]
    watch, inputs = Stopwatch(ctx.device), {}
    with watch:
        for provider in _providers(name):
            made = provider.fn(ctx, **{k: v for k, v in options.items() if k in provider.options()})
            inputs.update({k: v for k, v in made.items() if k in cls.inputs})
    common = dict(num_samples=ctx.data.num_train, batch_size=ctx.batch_size, steps_per_epoch=ctx.steps_per_epoch,
                  seed=ctx.seed, device=ctx.device, num_replicas=ctx.num_replicas, rank=ctx.rank)
    return cls(**common, **inputs, **{k: v for k, v in options.items() if k in cls.option_checks}), watch.seconds


# -- the providers --------------------------------------------------------------------------------------------
@provides("scores", checks={"proxy_steps": check_positive_int})
def proxy_scores(ctx: RunContext, proxy_steps: int = 50) -> dict:
    """Static scores: per-sample losses of a copy of the model after `proxy_steps` uniform Adam steps (lr 1e-3);
    under data parallel rank 0's scores (bitwise) for every rank, so all ranks draw from the same q."""
    data, proxy = ctx.data, copy.deepcopy(ctx.model)
    opt = torch.optim.Adam(proxy.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(ctx.seed + 7)
    for _ in range(proxy_steps):
        idx = torch.randint(0, data.num_train, (ctx.batch_size * ctx.num_replicas,), generator=g).to(data.y_train.device)
        loss = per_sample_loss(proxy(data.x_num_train[idx], data.x_cat_train[idx]), data.y_train[idx], ctx.task).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    logits = predict_logits(proxy, data.x_num_train, data.x_cat_train, 4096, data.y_train.device)
    return {"scores": broadcast_tensor(per_sample_loss(logits, data.y_train, ctx.task))}


@provides("score_fn")
def loss_scorer(ctx: RunContext) -> dict:
    """`score_fn(indices)` -> the current model's per-sample losses (a no-grad forward: the scoring samplers' cost)."""
    data, model, task = ctx.data, ctx.model, ctx.task

    @torch.no_grad()
    def score(idx: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(model(data.x_num_train[idx], data.x_cat_train[idx]), data.y_train[idx], task)

    return {"score_fn": score}


@provides("num_epochs")
def epoch_budget(ctx: RunContext) -> dict:
    """The training budget in epochs (InfoBatch stops pruning for the last 1 - delta of them)."""
    return {"num_epochs": ctx.epochs}


@provides("labels")
def training_labels(ctx: RunContext) -> dict:
    """The training labels (the stream filter always keeps the classes it is told to)."""
    return {"labels": ctx.data.y_train}


@provides("sketch", "slots", reads=("sketch",))
def sketch_inputs(ctx: RunContext) -> dict:
    """An empty sketch over the configured hash keys and the cached slots of every training item."""
    from .features import sketch_and_slots

    with main_first():  # under DDP rank 0 hashes and writes the slots cache; the others read the same bits
        sketch, slots = sketch_and_slots(ctx.sketch, ctx.data, seed=ctx.seed, device=ctx.device, cache_dir=ctx.cache_dir,
                                         model=ctx.model, cache_cap_bytes=ctx.cache_cap_bytes)
    return {"sketch": sketch, "slots": slots}
