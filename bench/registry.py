"""The sampler registry at the harness edge: every sampler registered once, with what it needs from a run.

An entry names a sampler class of `sketch.samplers` (by its registry name there), the config groups it reads
besides its own (`nws` reads `sketch`), and, where the class needs runtime inputs, a setup function that
prepares them from the data and the model (NWS: hash keys, sketch and cached slots; static: a proxy run's
losses; loss: a scoring function). Everything else is derived from the class, so each default and each
allowed range lives in one place, its constructor:

- the config schema of `conf/sampler/<name>.yaml` = the class's `option_checks` names with the constructor's
  defaults and type hints, plus the setup function's keyword options with theirs;
- validation = the class's `check_options` (and the setup's checks), whose one-line errors `config_error`
  maps to the config key that fed them.

    from bench.registry import SAMPLERS, build_sampler, RunContext
    sampler, setup_s = build_sampler(cfg.sampler.name, options, RunContext(data=..., model=..., ...))

Adding a sampler is the recipe in docs/DESIGN.md: the class (with `option_checks`) exported by
`sketch.samplers`, one `register(...)` line below (with a setup function if it needs inputs), one YAML file.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch

import sketch.samplers as samplers
from sketch._checks import Check, check_options, check_positive_int

from .distributed import broadcast_tensor, main_first
from .metrics import per_sample_loss, predict_logits
from .schema import parameter, schema_from_signature
from .timing import Stopwatch

__all__ = ["RunContext", "SamplerEntry", "SAMPLERS", "register", "build_sampler", "sampler_schema", "config_error",
           "sampler_options"]


@dataclass
class RunContext:
    """What a setup function may read: the run's data, model and layout (plain values, no config)."""

    data: Any  # bench.data.TensorData, on `device`
    model: torch.nn.Module
    batch_size: int  # per rank
    steps_per_epoch: int
    epochs: int
    seed: int
    device: torch.device
    cache_dir: Optional[str] = None  # where the NWS slots cache lives
    num_replicas: int = 1
    rank: int = 0
    sketch: Any = None  # the `sketch` group as a plain object (bench.config.SketchConfig), for entries that read it

    @property
    def task(self) -> str:
        return self.data.task


Setup = Callable[..., dict]  # setup(ctx, **setup_options) -> the class's runtime keyword inputs


@dataclass(frozen=True)
class SamplerEntry:
    """One registered sampler: its class, the groups it reads besides `sampler`, its setup and the setup's checks."""

    name: str
    cls: type
    setup: Optional[Setup] = None
    reads: tuple[str, ...] = ()
    setup_checks: Mapping[str, Check] = field(default_factory=dict)

    def class_options(self) -> dict[str, inspect.Parameter]:
        """The constructor's options (the names in `option_checks`) with their parameters (default, hint)."""
        return {name: parameter(self.cls, name) for name in self.cls.option_checks}

    def setup_options(self) -> dict[str, inspect.Parameter]:
        """The setup function's keyword options (everything after the context)."""
        if self.setup is None:
            return {}
        return {name: parameter(self.setup, name) for name in list(inspect.signature(self.setup).parameters)[1:]}

    def check(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Return `options` checked by the class's and the setup's checks (first bad one raises, naming it)."""
        checked = self.cls.check_options(**{k: v for k, v in options.items() if k in self.cls.option_checks})
        return {**checked, **check_options(self.setup_checks, {k: v for k, v in options.items() if k not in checked})}


SAMPLERS: dict[str, SamplerEntry] = {}


def register(name: str, *, setup: Optional[Setup] = None, reads: tuple[str, ...] = (),
             setup_checks: Optional[Mapping[str, Check]] = None) -> None:
    """Register the `sketch.samplers` class named `name` with the harness (once per name)."""
    if name in SAMPLERS:
        raise ValueError(f"sampler {name!r} is registered already")
    if name not in samplers.SAMPLERS:
        raise ValueError(f"name must be one of sketch.samplers.SAMPLERS ({', '.join(samplers.SAMPLERS)}), got {name!r}")
    SAMPLERS[name] = SamplerEntry(name, samplers.SAMPLERS[name], setup, reads, dict(setup_checks or {}))


# -- deriving the config schema ---------------------------------------------------------------------------
def sampler_schema(entry: SamplerEntry, base: type) -> type:
    """Return the structured-config dataclass of `entry`: `base` with `name` set, plus each class option and setup
    option with its constructor's (or setup's) default and type."""
    params = {**entry.class_options(), **entry.setup_options()}
    return schema_from_signature(f"{entry.cls.__name__}Config", params, base, fixed={"name": entry.name})


def sampler_options(sampler: Mapping[str, Any]) -> dict[str, Any]:
    """The options of a resolved `sampler` config group (a plain mapping): every key but its `name`."""
    return {k: v for k, v in sampler.items() if k != "name"}


# -- building -----------------------------------------------------------------------------------------------
def build_sampler(name: str, options: Mapping[str, Any], ctx: RunContext) -> tuple[Any, float]:
    """Return (sampler, setup seconds): run the entry's setup (timed: it is charged to the run's clock), then
    the class with the shared arguments, the setup's inputs and the class options."""
    entry = SAMPLERS[name]
    class_options = {k: v for k, v in options.items() if k in entry.cls.option_checks}
    setup_options = {k: v for k, v in options.items() if k in entry.setup_options()}
    watch = Stopwatch(ctx.device)
    with watch:
        inputs = entry.setup(ctx, **setup_options) if entry.setup is not None else {}
    common = dict(num_samples=ctx.data.num_train, batch_size=ctx.batch_size, steps_per_epoch=ctx.steps_per_epoch,
                  seed=ctx.seed, device=ctx.device, num_replicas=ctx.num_replicas, rank=ctx.rank)
    return entry.cls(**common, **inputs, **class_options), watch.seconds


def config_error(exc: BaseException, group: str, options: Mapping[str, Any]) -> Optional[str]:
    """Return `<group.key=value> is not allowed: ...` when a constructor's one-line error names one of `options`
    (its message starts with the option's name), else None."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = text.split(" ", 1)[0]
    if first in options:
        return f"<{group}.{first}={options[first]!r}> is not allowed: {text}"
    return None


# -- setup functions: the runtime inputs of the samplers that need them -------------------------------------
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


def loss_scorer(ctx: RunContext) -> dict:
    """`score_fn(indices)` -> the current model's per-sample losses (a no-grad forward: the loss sampler's cost)."""
    data, model, task = ctx.data, ctx.model, ctx.task

    @torch.no_grad()
    def score(idx: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(model(data.x_num_train[idx], data.x_cat_train[idx]), data.y_train[idx], task)

    return {"score_fn": score}


def epoch_budget(ctx: RunContext) -> dict:
    """InfoBatch's input: the number of epochs (it stops pruning for the last 1 - delta of them)."""
    return {"num_epochs": ctx.epochs}


def sketch_inputs(ctx: RunContext) -> dict:
    """NWS's inputs: an empty sketch over the configured hash keys and the cached slots of every training item."""
    from .features import sketch_and_slots

    with main_first():  # under DDP rank 0 hashes and writes the slots cache; the others read the same bits
        sketch, slots = sketch_and_slots(ctx.sketch, ctx.data, seed=ctx.seed, device=ctx.device, cache_dir=ctx.cache_dir,
                                         model=ctx.model)
    return {"sketch": sketch, "slots": slots}


def sketch_and_labels(ctx: RunContext) -> dict:
    """The stream filter's inputs: NWS's, plus the training labels (for the always-kept classes)."""
    return {**sketch_inputs(ctx), "labels": ctx.data.y_train}


register("uniform")
register("static", setup=proxy_scores, setup_checks={"proxy_steps": check_positive_int})
register("loss", setup=loss_scorer)
register("history")
register("infobatch", setup=epoch_budget)
register("nws", setup=sketch_inputs, reads=("sketch",))
register("nws_full", setup=sketch_inputs, reads=("sketch",))
register("stream_filter", setup=sketch_and_labels, reads=("sketch",))
register("selective_backprop", setup=loss_scorer)
