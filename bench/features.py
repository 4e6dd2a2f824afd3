"""What the NWS sampler hashes: the hash key of every training sample, and its cached sketch slots.

The key of a sample is its raw input, flattened and centered, with categorical fields replaced by a fixed
random embedding (as the paper's prototype hashed CTR data); optionally passed through a fixed random
projection (`input=projection`) and optionally with the label appended (`with_label`). Training inputs do not
change, so the sketch slots of all N samples are computed once and cached on disk, keyed by everything that
determines them.

    sketch, slots = sketch_and_slots(cfg_sketch, data, seed=0, device="cpu", cache_dir=root)   # what NWS needs
    keys = hash_keys(x_num, x_cat, cardinalities, input="raw", embed_dim=4, seed=0)        # float32 [N, d]
    sketch = build_sketch(dim=keys.shape[1], family="srp", depth=16, width=1024, bits=4, seed=0)
    slots = cached_slots(sketch, keys, cache_dir, tag="movielens100k")  # int32 [N, L]
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from dataclasses import asdict
from typing import Any, Optional

import torch

from sketch import NWSketch, make_hash
from .results import atomic_write

log = logging.getLogger("bench.features")

__all__ = ["hash_keys", "build_sketch", "cached_slots", "sketch_and_slots"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _categorical_embedding(x_cat: torch.Tensor, cardinalities: list[int], embed_dim: int, seed: int) -> torch.Tensor:
    g = _generator(seed + 101)
    tables = [torch.randn(c, embed_dim, generator=g).to(x_cat.device) for c in cardinalities]  # drawn on the CPU
    return torch.cat([t[x_cat[:, f]] for f, t in enumerate(tables)], dim=1) if tables else x_cat.new_zeros(len(x_cat), 0).float()


def _label_columns(y: torch.Tensor, task: str, num_classes: int, scale: float) -> torch.Tensor:
    if task == "multiclass":
        return torch.nn.functional.one_hot(y.long(), num_classes).float() * scale
    return y.float().view(-1, 1) * scale


def hash_keys(
    x_num: torch.Tensor,
    x_cat: torch.Tensor,
    cardinalities: list[int],
    *,
    input: str = "raw",
    proj_dim: int = 64,
    embed_dim: int = 4,
    with_label: bool = False,
    label_scale: float = 1.0,
    y: Optional[torch.Tensor] = None,
    task: str = "multiclass",
    num_classes: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Return the float32 [N, d] vectors the sketch hashes (see the module docstring)."""
    parts = [x_num.reshape(len(x_num), -1).float()]
    if x_cat.shape[1] > 0:
        parts.append(_categorical_embedding(x_cat, cardinalities, embed_dim, seed))
    keys = torch.cat(parts, dim=1)
    keys = keys - keys.mean(0, keepdim=True)  # center: angles then mean something for SRP
    if input == "projection":
        proj = (torch.randn(keys.shape[1], proj_dim, generator=_generator(seed + 202)) / proj_dim**0.5).to(keys.device)
        keys = keys @ proj
    elif input != "raw":
        raise ValueError(f"input must be 'raw' or 'projection', got {input!r}")
    if with_label:
        if y is None:
            raise ValueError("y is required when with_label=True")
        keys = torch.cat([keys, _label_columns(y, task, num_classes, label_scale)], dim=1)
    return keys.contiguous()


def build_sketch(
    dim: int,
    family: str,
    depth: int,
    width: int,
    bits: int,
    bandwidth: float = 1.0,
    decay: float = 1.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> NWSketch:
    """Return an empty NWSketch over `dim`-dimensional keys with the given hash family and shape."""
    h = make_hash(family, dim, depth, bits, bandwidth, seed=seed, device=device)
    return NWSketch(h, width=width, decay=decay)


def _cache_key(sketch: NWSketch, keys: torch.Tensor, tag: str, extra: dict[str, Any]) -> str:
    desc = {"tag": tag, "hash": sketch.hash.config(), "width": sketch.width, "shape": list(keys.shape), **extra}
    # a cheap fingerprint of the keys themselves guards against a stale cache after data changes
    probe = keys[:: max(1, len(keys) // 1000)].double().sum().item()
    desc["probe"] = round(probe, 6)
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def cached_slots(
    sketch: NWSketch,
    keys: torch.Tensor,
    cache_dir: str | Path | None,
    tag: str,
    extra: Optional[dict[str, Any]] = None,
    chunk: int = 65536,
) -> torch.Tensor:
    """Return int32 slots [N, L] of `keys` under `sketch`, from `cache_dir` when computed before.

    A cached file that cannot be read or does not hold int32 [N, L] slots in range is recomputed and rewritten,
    with one warning."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "slots" / f"{_cache_key(sketch, keys, tag, extra or {})}.pt"
        if path.is_file():
            cached = _read_slots(path, sketch, len(keys))
            if cached is not None:
                return cached
    slots = torch.cat([sketch.slots(keys[i : i + chunk].to(sketch.device)).to(torch.int32)
                       for i in range(0, len(keys), chunk)])
    if path is not None:
        atomic_write(path, lambda f: torch.save(slots.cpu(), f))
    return slots


def _read_slots(path: Path, sketch: NWSketch, n: int) -> Optional[torch.Tensor]:
    """The slots cached at `path`, or None (and one warning) when the file is corrupt or not what it should be."""
    try:
        slots = torch.load(path, map_location=sketch.device, weights_only=True)
        depth = sketch.table.shape[0] // sketch.width  # slots per item: one per sketch row
        shape_ok = isinstance(slots, torch.Tensor) and slots.dtype == torch.int32 and slots.dim() == 2
        if not shape_ok or tuple(slots.shape) != (n, depth):
            raise ValueError(f"it holds {type(slots).__name__} {getattr(slots, 'dtype', '')} "
                             f"{tuple(getattr(slots, 'shape', ()))}, not int32 slots [{n}, {depth}]")
        if n and (int(slots.min()) < 0 or int(slots.max()) >= sketch.table.shape[0]):
            raise ValueError(f"its slots fall outside [0, {sketch.table.shape[0]})")
        return slots
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or foreign: compute the slots again
        text = " ".join(str(exc).split())[:160]
        log.warning(f"the NWS slots cache {path} cannot be used ({type(exc).__name__}: {text}): recomputing it")
        return None


def sketch_and_slots(spec: Any, data: Any, *, seed: int, device: torch.device | str, cache_dir: Optional[str]) -> tuple[NWSketch, torch.Tensor]:
    """Return an empty sketch shaped by `spec` (the `sketch` config group as a plain object: family, depth,
    width, bits, bandwidth, decay, key) and the int32 slots [N, L] of `data`'s training items on `device`."""
    key = spec.key
    keys = hash_keys(data.x_num_train, data.x_cat_train, data.cardinalities, input=key.input, proj_dim=key.proj_dim,
                     embed_dim=key.embed_dim, with_label=key.with_label, label_scale=key.label_scale,
                     y=data.y_train, task=data.task, num_classes=data.num_classes, seed=seed)
    sketch = build_sketch(keys.shape[1], spec.family, spec.depth, spec.width, spec.bits, spec.bandwidth, spec.decay,
                          seed=seed, device=device)
    slots = cached_slots(sketch, keys, cache_dir, tag=data.name, extra={"key": asdict(key), "rows": data.num_train})
    return sketch, slots.to(device)
