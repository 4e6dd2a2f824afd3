"""Build a run's parts from its config at the harness edge, turning every build failure into one `ConfigError` line.

Each function takes a config node and returns a plain object (data, model, optimizer, schedule, sampler, the
training spec); deep code never sees the config. A constructor's own `ValueError`/`TypeError` is reported
against the config key that fed it (`<sampler.mix=2> is not allowed: mix must be a number in [0, 1], got 2`).

    data = load_data(cfg, device); model = build(cfg.model, "model", input_shape=..., ...)
    sampler, setup_s = build_sampler(cfg, RunContext(...))
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .. import data as datasets
from ..config.errors import ConfigError, config_error
from ..config.schemas import TABLE_METRICS, is_table, table_options
from ..train.checkpoint import CheckpointError, load_checkpoint
from ..train.distributed import DistEnv, init_distributed
from ..train.loop import TrainSpec, TrainState
from .inputs import RunContext, reads, sampler_options, sampler_with_inputs


LABEL_NOISE_SEED = 0  # dataset.label_noise's noisy items and labels: one draw per dataset config, not per run seed

log = logging.getLogger("bench.build.parts")

__all__ = ["layout", "load_data", "oversized", "resolved_config", "build", "schedule", "build_sampler", "train_spec",
           "steps_per_epoch", "restore"]


def layout(cfg: DictConfig) -> DistEnv:
    """This process's place in a torchrun job (one process: world_size 1); a bad device is a ConfigError."""
    try:
        return init_distributed(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"<device={cfg.device!r}> is not allowed: {exc}") from None


def load_data(cfg: DictConfig, device: torch.device) -> Any:
    """Load (preparing on first use) the configured dataset, take the configured subset, corrupt the configured
    fraction of its training labels (`dataset.label_noise`), move it to `device`."""
    table = is_table(cfg.dataset)  # dataset=table: the loader's options are the dataset keys (bench.config.schemas)
    if not table and cfg.dataset.name not in datasets.DATASETS:
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> is not allowed: one of {', '.join(datasets.DATASETS)}")
    options = table_options(cfg.dataset) if table else OmegaConf.to_container(cfg.dataset.options, resolve=True)
    try:
        data = datasets.load("table" if table else cfg.dataset.name, root=cfg.dataset.root, **options)
    except datasets.TableError as exc:  # a bad table: the key at fault
        raise ConfigError(exc.config_line()) from None
    except (ValueError, TypeError) as exc:  # unknown option or value out of range
        raise ConfigError(f"<dataset.options={options}> is not allowed: {exc}") from None
    except RuntimeError as exc:  # cannot be prepared here (offline, missing tool)
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> could not be loaded: {exc}") from None
    if cfg.dataset.train_size is not None or cfg.dataset.test_size is not None:
        data = data.subset(cfg.dataset.train_size or data.num_train, cfg.dataset.test_size or data.num_test, seed=0)
    try:  # fixed seed: the same noisy labels for every sampler and run seed of an experiment
        data = data.with_label_noise(cfg.dataset.label_noise, seed=LABEL_NOISE_SEED)
    except ValueError as exc:
        raise ConfigError(f"<dataset.label_noise={cfg.dataset.label_noise!r}> is not allowed: {exc}") from None
    return data.to(device)


def oversized(cfg: DictConfig, data: Any) -> list[str]:
    """One warning per `dataset.train_size` / `test_size` larger than the split it subsets (all its rows are used)."""
    notes = []
    for key, rows in (("train_size", data.num_train), ("test_size", data.num_test)):
        asked = cfg.dataset.get(key)
        if asked is not None and asked > rows:
            notes.append(f"<dataset.{key}={asked}> is more than the {rows:,} rows of {data.name}'s "
                         f"{key.split('_')[0]} split: using all {rows:,}")
    return notes


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that identifies a run (`bench.results.identity`), goes into its row and into W&B.

    A table's (`dataset=table`) is settled first: the table is prepared (cached by its content; a bad table is a
    one-line ConfigError here, before anything else), `dataset.metric=auto` becomes its task's default (and so
    `trainer.target_metric`, unless set), and the resolved dataset carries the content's `fingerprint` in place of
    `path` and `test_path` (where the files are on this machine is not part of what the run computes)."""
    if not is_table(cfg.dataset):
        return _without_locations(OmegaConf.to_container(cfg, resolve=True))
    options = table_options(cfg.dataset)
    try:
        meta = datasets.read_meta(datasets.prepare("table", cfg.dataset.root, **options))
        fingerprint = datasets.table_fingerprint(**options)
    except datasets.TableError as exc:
        raise ConfigError(exc.config_line()) from None
    if cfg.dataset.metric == "auto":
        cfg.dataset.metric = TABLE_METRICS[meta["task"]]
    source = Path(options["path"]).name  # the file read now: the cache (keyed by content) may name another
    log.info(f"{datasets.describe_table(meta, source=source)}; metric {cfg.trainer.target_metric}; content {fingerprint} "
             f"<dataset=table dataset.path={options['path']}>")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in ("path", "test_path"):
        resolved["dataset"].pop(key, None)
    resolved["dataset"]["fingerprint"] = fingerprint
    return resolved


def _without_locations(resolved: dict[str, Any]) -> dict[str, Any]:
    """A dataset read from the user's files by `dataset.options.path` (criteo_x1, ...): the content's `fingerprint`
    in place of the path, as for a table (where the files are on this machine is not part of the run)."""
    spec = datasets.DATASETS.get(resolved["dataset"].get("name"))
    options = resolved["dataset"].get("options") or {}
    if spec is None or spec.fingerprint is None or not any(k in options for k in spec.locations):
        return resolved
    try:
        resolved["dataset"]["fingerprint"] = spec.fingerprint(**options)
    except RuntimeError as exc:
        raise ConfigError(f"<dataset.options={options}> is not allowed: {exc}") from None
    for key in spec.locations:
        options.pop(key, None)
    return resolved


def build(node: DictConfig, key: str, *args: Any, **kwargs: Any) -> Any:
    """`instantiate(node, **kwargs)`, called with `args` when it is a partial (the optimizer); a target that
    cannot be imported or arguments it rejects (ValueError, TypeError) raise a one-line ConfigError naming `key`."""
    try:
        made = instantiate(node, **kwargs)
        return made(*args) if args else made
    except InstantiationException as exc:
        cause = exc.__cause__
        if cause is not None and not isinstance(cause, (ValueError, TypeError, ImportError, AttributeError)):
            raise
        if cause is None or isinstance(cause, (ImportError, AttributeError)):
            raise ConfigError(f"<{key}._target_={node._target_!r}> is not allowed: no such class (it cannot be imported)") from None
        raise ConfigError(f"<{key}._target_={node._target_!r}> could not be built: {type(cause).__name__}: {cause}") from None
    except (ValueError, TypeError) as exc:  # the partial rejected its arguments (e.g. an optimizer's betas)
        kwargs_text = ", ".join(f"{k}={v}" for k, v in OmegaConf.to_container(node).items() if not k.startswith("_"))
        raise ConfigError(f"<{key}={node._target_}({kwargs_text})> is not allowed: {type(exc).__name__}: {exc}") from None


def schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int, lr: float) -> Optional[Any]:
    """The per-step LR schedule `trainer.schedule` names over `total_steps` (None for a constant LR)."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if name == "linear":  # lr * (1 - step / total_steps): 0 after the last step of the budget
        return torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(_linear_decay, total_steps=total_steps))
    return None


def _linear_decay(step: int, total_steps: int) -> float:
    """The LR factor of `schedule("linear")` at `step`: from 1 down to 0 at `total_steps`."""
    return max(0.0, 1.0 - step / total_steps)


def build_sampler(cfg: DictConfig, ctx: RunContext) -> tuple[Any, float]:
    """Return (sampler, setup seconds) for `cfg.sampler` from its class and its inputs (bench.build.inputs); the sampler's (or the sketch's)
    one-line errors are reported against the config key that fed them."""
    options = sampler_options(OmegaConf.to_container(cfg.sampler, resolve=True))
    read = reads(cfg.sampler.name)
    if "sketch" in read:
        ctx.sketch = OmegaConf.to_object(cfg.sketch)
    try:
        return sampler_with_inputs(cfg.sampler.name, options, ctx)
    except (ValueError, TypeError) as exc:
        sketch = OmegaConf.to_container(cfg.sketch, resolve=True) if "sketch" in read else {}
        line = config_error(exc, "sampler", options) or config_error(exc, "sketch", sketch)
        raise ConfigError(line or f"<sampler={cfg.sampler.name}> could not be built: {type(exc).__name__}: {exc}") from None


def train_spec(cfg: DictConfig, task: str, steps_per_epoch: int) -> TrainSpec:
    """The numbers the training loop needs, from `cfg.trainer`."""
    t = cfg.trainer
    return TrainSpec(task=task, epochs=t.epochs, steps_per_epoch=steps_per_epoch, evals_per_epoch=t.evals_per_epoch,
                     target_metric=t.target_metric, target=t.target, max_time_s=t.max_time_s,
                     eval_batch_size=t.eval_batch_size, checkpoint_every_s=t.checkpoint_every_s,
                     checkpoint_every_steps=t.checkpoint_every_steps, warmup_steps=t.warmup_steps)


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Steps in one epoch, the same for every sampler: one pass over the data at the global batch size."""
    return math.ceil(num_train / batch_size)


def restore(ckpt: Path, rid: str, log: Any, **parts: Any) -> Optional[TrainState]:
    """Restore `parts` (model, optimizer, scheduler, sampler) from `ckpt` and return its TrainState; None when the
    file cannot be read (a warning: the run starts over). A checkpoint that does not fit the run is a ConfigError."""
    try:
        state = load_checkpoint(ckpt, **parts)
    except CheckpointError as exc:
        log.warning(f"{exc}: starting run {rid} over <resume=true>")
        return None
    except (ValueError, KeyError, RuntimeError) as exc:  # written by other code (a changed sampler or model)
        raise ConfigError(f"<resume=true> cannot continue from {ckpt}: it does not fit this run "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}); delete it or pass resume=false") from None
    log.info(f"resuming run {rid} from step {state.step} (epoch {state.epoch}) <resume=true>")
    return state
