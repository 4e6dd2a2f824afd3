"""Build the configured sampler for a run, with the setup it needs and what that setup costs.

Each sampler gets the shared arguments (num_samples, batch_size, steps_per_epoch, seed, device, replicas)
plus its runtime inputs: `static` the scores of a short proxy run, `loss` a scoring function over the
current model, `infobatch` the epoch budget, `nws` the sketch and the cached slots of the hashed inputs.
Setup seconds (proxy run, hashing) are returned so the harness can charge them to time-to-target.

    sampler, setup_s = build_sampler(cfg.sampler, cfg.sketch, data, model, task=..., batch_size=..., ...)
"""
from __future__ import annotations

import copy
from typing import Any, Callable, Optional

import torch
import torch.distributed
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .distributed import main_first
from .features import build_sketch, cached_slots, hash_keys
from .metrics import per_sample_loss, predict_logits
from .timing import Stopwatch

__all__ = ["build_sampler", "proxy_scores", "loss_scorer"]

# Keys of a sampler config that the harness reads itself; the rest go to the sampler's constructor.
_HARNESS_KEYS = ("name", "proxy_steps")


def _factory(sampler_cfg: DictConfig) -> Callable[..., Any]:
    kept = {k: v for k, v in OmegaConf.to_container(sampler_cfg, resolve=True).items() if k not in _HARNESS_KEYS}
    return instantiate(kept)


def proxy_scores(model: torch.nn.Module, data: Any, task: str, steps: int, batch_size: int, seed: int, lr: float = 1e-3) -> torch.Tensor:
    """Return static scores: per-sample losses of a copy of `model` after `steps` uniform Adam steps."""
    proxy = copy.deepcopy(model)
    opt = torch.optim.Adam(proxy.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed + 7)
    for _ in range(steps):
        idx = torch.randint(0, data.num_train, (batch_size,), generator=g).to(data.y_train.device)
        loss = per_sample_loss(proxy(data.x_num_train[idx], data.x_cat_train[idx]), data.y_train[idx], task).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    logits = predict_logits(proxy, data.x_num_train, data.x_cat_train, 4096, data.y_train.device)
    return per_sample_loss(logits, data.y_train, task)


def loss_scorer(model: torch.nn.Module, data: Any, task: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return score_fn(indices) -> current per-sample losses (a no-grad forward pass: the loss sampler's cost)."""

    @torch.no_grad()
    def score(idx: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(model(data.x_num_train[idx], data.x_cat_train[idx]), data.y_train[idx], task)

    return score


def build_sampler(
    sampler_cfg: DictConfig,
    sketch_cfg: DictConfig,
    data: Any,
    model: torch.nn.Module,
    *,
    task: str,
    batch_size: int,
    steps_per_epoch: int,
    epochs: int,
    seed: int,
    device: torch.device,
    cache_dir: Optional[str] = None,
    num_replicas: int = 1,
    rank: int = 0,
) -> tuple[Any, float]:
    """Return (sampler, setup seconds) for the configured sampler."""
    make = _factory(sampler_cfg)
    common = dict(num_samples=data.num_train, batch_size=batch_size, steps_per_epoch=steps_per_epoch, seed=seed,
                  device=device, num_replicas=num_replicas, rank=rank)
    name = sampler_cfg.name
    watch = Stopwatch(device)
    with watch:
        if name == "static":
            scores = proxy_scores(model, data, task, sampler_cfg.proxy_steps, batch_size * num_replicas, seed)
            if num_replicas > 1:  # all ranks must draw from the same q: rank 0's scores (bitwise) for everyone
                torch.distributed.broadcast(scores, src=0)
            extra: dict[str, Any] = {"scores": scores}
        elif name == "loss":
            extra = {"score_fn": loss_scorer(model, data, task)}
        elif name == "infobatch":
            extra = {"num_epochs": epochs}
        elif name == "nws":
            extra = _nws_inputs(sketch_cfg, data, task, seed, device, cache_dir)
        else:
            extra = {}
    return make(**common, **extra), watch.seconds


def _nws_inputs(sketch_cfg: DictConfig, data: Any, task: str, seed: int, device: torch.device, cache_dir: Optional[str]) -> dict:
    key = sketch_cfg.key
    keys = hash_keys(data.x_num_train, data.x_cat_train, data.cardinalities, input=key.input, proj_dim=key.proj_dim,
                     embed_dim=key.embed_dim, with_label=key.with_label, label_scale=key.label_scale,
                     y=data.y_train, task=task, num_classes=data.num_classes, seed=seed)
    sketch = build_sketch(keys.shape[1], sketch_cfg.family, sketch_cfg.depth, sketch_cfg.width, sketch_cfg.bits,
                          sketch_cfg.bandwidth, sketch_cfg.decay, seed=seed, device=device)
    extra = {"key": OmegaConf.to_container(key), "rows": data.num_train}
    with main_first():  # under DDP rank 0 hashes and writes the cache; the others read the same bits
        slots = cached_slots(sketch, keys, cache_dir, tag=data.name, extra=extra)
    return {"sketch": sketch, "slots": slots.to(device)}
