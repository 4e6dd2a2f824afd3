"""What the NWS sketch hashes: the hash key of every training item, its cached sketch slots, and the re-hash of
the model's own features during training.

The key of an item (`sketch.key`, bench.config.schemas.KeyConfig):
- `input=raw`: its input, flattened, with categorical fields replaced by a fixed random embedding (as the paper's
  prototype hashed CTR data); `input=projection`: a fixed random projection of that; `input=model`: the model's
  penultimate features (`model.embed`), re-hashed every `rehash_every` epochs as the model learns;
- made into keys by `sketch.feature_keys` (`normalize`: center, the default, standardize or none: the library's
  one code path, so a key here is what `NWSSampler.from_features` would hash);
- optionally with the scaled one-hot label appended (`with_label`), or with one set of buckets per class
  (`label_buckets`: the label is folded into the buckets, `NWSketch.slots(x, groups=labels)`);
- `follow=true`: every trained batch is re-keyed from the penultimate features its own training forward computed
  (a forward pre-hook on the model's head: no extra pass), and its items move there (`NWSSampler.move`).
Raw and projected keys do not change, so the slots of all N items are computed once and cached on disk
(`<data cache>/slots/`), keyed by everything that determines them; the cache is held to `paths.slots_cache_gb` by
removing the least recently used files, and `python -m bench.prepare --clean` empties it.

    sketch, slots = sketch_and_slots(cfg_sketch, data, seed=0, device="cpu", cache_dir=root)   # what NWS needs
    rekey = ModelRekey(sampler, model, data, cfg_sketch.key, seed=0)   # input=model: on_epoch + feedback hooks
    follow = ForwardRekey(sampler, model, data, cfg_sketch.key, seed=0, update=sampler.update)   # follow=true: feedback
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from sketch import NWSketch, feature_keys, make_hash
from sketch.samplers import features_to_slots
from ..results.files import atomic_write

log = logging.getLogger("bench.build.features")

CHUNK_ROWS = 1 << 20  # above this many training items, keys are made and hashed in chunks
HASH_CHUNK_ROWS = 1 << 17  # rows per chunk then (~130k rows x d float64 keys in memory at a time)

__all__ = ["hash_keys", "label_groups", "build_sketch", "cached_slots", "sketch_and_slots", "ChunkedKeys",
           "chunked_slots", "ModelRekey", "ForwardRekey", "CHUNK_ROWS", "slots_folder", "evict_slots", "clean_slots"]


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _embedding_tables(cardinalities: list[int], embed_dim: int, seed: int) -> list[torch.Tensor]:
    """The fixed random embedding of every categorical field (drawn on the CPU)."""
    g = _generator(seed + 101)
    return [torch.randn(c, embed_dim, generator=g) for c in cardinalities]


def _categorical_embedding(x_cat: torch.Tensor, tables: list[torch.Tensor]) -> torch.Tensor:
    tables = [t.to(x_cat.device) for t in tables]
    return torch.cat([t[x_cat[:, f]] for f, t in enumerate(tables)], dim=1) if tables else x_cat.new_zeros(len(x_cat), 0).float()


def _label_columns(y: torch.Tensor, task: str, num_classes: int, scale: float) -> torch.Tensor:
    if task == "multiclass":
        return torch.nn.functional.one_hot(y.long(), num_classes).float() * scale
    return y.float().view(-1, 1) * scale


def _inputs(data: Any, key: Any, seed: int, rows: slice = slice(None),
            tables: Optional[list[torch.Tensor]] = None) -> torch.Tensor:
    """The raw input of the training items `rows` as one float [n, d] matrix (categorical fields embedded)."""
    x_num = data.x_num_train[rows]
    parts = [x_num.reshape(x_num.shape[0], -1).float()]
    if data.x_cat_train.shape[1] > 0:
        tables = tables if tables is not None else _embedding_tables(data.cardinalities, key.embed_dim, seed)
        parts.append(_categorical_embedding(data.x_cat_train[rows], tables))
    return torch.cat(parts, dim=1)


@torch.no_grad()
def model_features(model: torch.nn.Module, data: Any, batch: int = 4096) -> torch.Tensor:
    """The model's penultimate features (`model.embed`) of every training item: float [N, h], eval mode, no grad."""
    was_training = model.training
    model.eval()
    out = torch.cat([model.embed(data.x_num_train[i : i + batch], data.x_cat_train[i : i + batch]).float()
                     for i in range(0, data.num_train, batch)])
    model.train(was_training)
    return out.reshape(data.num_train, -1)


def hash_keys(data: Any, key: Any, *, seed: int, model: Optional[torch.nn.Module] = None) -> torch.Tensor:
    """Return the float32 [N, d] keys the sketch hashes for `data`'s training items (see the module docstring);
    `model` is needed for `key.input == "model"`."""
    if key.input == "model":
        if model is None:
            raise ValueError("input='model' hashes the model's features: a model is needed")
        keys = feature_keys(model_features(model, data), key.normalize)
    else:
        keys = feature_keys(_inputs(data, key, seed), key.normalize)
        if key.input == "projection":
            proj = torch.randn(keys.shape[1], key.proj_dim, generator=_generator(seed + 202)) / key.proj_dim**0.5
            keys = keys @ proj.to(keys.device)
    if key.with_label:
        keys = torch.cat([keys, _label_columns(data.y_train, data.task, data.num_classes, key.label_scale)], dim=1)
    return keys.contiguous()


def label_groups(data: Any, key: Any) -> Optional[torch.Tensor]:
    """The group of every training item for `label_buckets` (its class), or None when the key does not use them or
    the task has no classes (regression: one set of buckets, so the default works on every dataset)."""
    if not key.label_buckets or data.task == "regression":
        return None
    return data.y_train.long()


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


def _cache_key(sketch: NWSketch, keys: torch.Tensor, tag: str, extra: dict[str, Any],
               shape: Optional[list[int]] = None) -> str:
    """The slots cache's key; `keys` may be every key or (with the full `shape`) the probe rows only."""
    desc = {"tag": tag, "hash": sketch.hash.config(), "width": sketch.width, "shape": shape or list(keys.shape),
            **extra}
    # a cheap fingerprint of the keys themselves guards against a stale cache after data changes
    probe = (keys if shape else keys[:: max(1, len(keys) // 1000)]).double().sum().item()
    desc["probe"] = round(probe, 6)
    return hashlib.sha1(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def slots_folder(cache_dir: str | Path) -> Path:
    """Where the slots cache lives under a data cache root (`<root>/slots/`)."""
    return Path(cache_dir) / "slots"


def _cached_files(folder: Path) -> list[tuple[float, int, Path]]:
    """(last use, bytes, path) of every cached slots file in `folder`, least recently used first."""
    found = []
    for p in folder.glob("*.pt"):
        try:
            st = p.stat()
        except OSError:  # removed meanwhile by another process
            continue
        found.append((st.st_mtime, st.st_size, p))
    return sorted(found)


def evict_slots(folder: Path, cap_bytes: int, keep: Optional[Path] = None) -> int:
    """Remove the least recently used slots files in `folder` (reads touch a file) until the rest fit in
    `cap_bytes`, never `keep`; return the bytes removed."""
    files = _cached_files(folder)
    total, freed = sum(size for _, size, _ in files), 0
    for _, size, path in files:
        if total - freed <= cap_bytes:
            break
        if path != keep:
            path.unlink(missing_ok=True)
            freed += size
    return freed


def clean_slots(cache_dir: str | Path) -> tuple[int, int]:
    """Empty the slots cache under `cache_dir` (`python -m bench.prepare --clean`): (files, bytes) removed."""
    files = _cached_files(slots_folder(cache_dir))
    for _, _, path in files:
        path.unlink(missing_ok=True)
    for leftover in slots_folder(cache_dir).glob("*.tmp"):  # killed writes
        leftover.unlink(missing_ok=True)
    return len(files), sum(size for _, size, _ in files)


def cached_slots(
    sketch: NWSketch,
    keys: torch.Tensor,
    cache_dir: str | Path | None,
    tag: str,
    extra: Optional[dict[str, Any]] = None,
    chunk: int = 65536,
    groups: Optional[torch.Tensor] = None,
    cap_bytes: Optional[int] = None,
) -> torch.Tensor:
    """Return int32 slots [N, L] of `keys` under `sketch`, from `cache_dir` when computed before.

    The cache holds at most `cap_bytes` (None: no cap): after a new file is written, the least recently used
    others are removed until the folder fits (slots larger than the cap alone are not cached). A cached file that
    cannot be read or does not hold int32 [N, L] slots in range is recomputed and rewritten, with one warning."""
    path = None if cache_dir is None else slots_folder(cache_dir) / f"{_cache_key(sketch, keys, tag, extra or {})}.pt"
    return _cached(path, sketch, len(keys), lambda: features_to_slots(sketch, keys, chunk, groups), cap_bytes)


def _cached(path: Optional[Path], sketch: NWSketch, n: int, compute: Callable[[], torch.Tensor],
            cap_bytes: Optional[int]) -> torch.Tensor:
    """The slots at `path` when they are there and sound (marked as used), else `compute()`, written to `path`
    (when it fits `cap_bytes`, evicting the least recently used others)."""
    if path is not None and path.is_file():
        cached = _read_slots(path, sketch, n)
        if cached is not None:
            path.touch()  # its last use: what eviction goes by
            return cached
    slots = compute()
    if path is not None and (cap_bytes is None or slots.numel() * 4 <= cap_bytes):
        atomic_write(path, lambda f: torch.save(slots.cpu(), f))
        if cap_bytes is not None:
            evict_slots(path.parent, cap_bytes, keep=path)
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


def sketch_and_slots(spec: Any, data: Any, *, seed: int, device: torch.device | str, cache_dir: Optional[str],
                     model: Optional[torch.nn.Module] = None, chunk_rows: int = CHUNK_ROWS,
                     cache_cap_bytes: Optional[int] = None) -> tuple[NWSketch, torch.Tensor]:
    """Return an empty sketch shaped by `spec` (the `sketch` config group as a plain object: family, depth,
    width, bits, bandwidth, decay, key) and the int32 slots [N, L] of `data`'s training items on `device`
    (model features are not cached: they change as the model learns; the cache holds `cache_cap_bytes` at most).
    Above `chunk_rows` training items the raw or projected keys are made and hashed chunk by chunk
    (`ChunkedKeys`), never as one [N, d] matrix."""
    groups = label_groups(data, spec.key)
    extra = {"key": asdict(spec.key), "rows": data.num_train}
    if spec.key.input != "model" and data.num_train > chunk_rows:  # never the whole [N, d] key matrix at once
        keys = ChunkedKeys(data, spec.key, seed, min(chunk_rows, HASH_CHUNK_ROWS))
        sketch = build_sketch(keys.dim, spec.family, spec.depth, spec.width, spec.bits, spec.bandwidth, spec.decay,
                              seed=seed, device=device)
        return sketch, chunked_slots(sketch, keys, cache_dir, data.name, extra, groups, cache_cap_bytes).to(device)
    keys = hash_keys(data, spec.key, seed=seed, model=model)
    sketch = build_sketch(keys.shape[1], spec.family, spec.depth, spec.width, spec.bits, spec.bandwidth, spec.decay,
                          seed=seed, device=device)
    where = None if spec.key.input == "model" else cache_dir
    slots = cached_slots(sketch, keys, where, tag=data.name, extra=extra, groups=groups, cap_bytes=cache_cap_bytes)
    return sketch, slots.to(device)


class ChunkedKeys:
    """The hash keys of `data`'s training items (raw or projection input), made `chunk_rows` rows at a time.

    The same keys as `hash_keys`: the column statistics `normalize` needs come from a first pass over the chunks
    (float64 sums) and reach `sketch.feature_keys` as a two-row reference with exactly that mean and standard
    deviation, so the library's one normalisation code path is kept."""

    def __init__(self, data: Any, key: Any, seed: int, chunk_rows: int) -> None:
        self.data, self.key, self.seed, self.chunk_rows = data, key, seed, chunk_rows
        self.tables = _embedding_tables(data.cardinalities, key.embed_dim, seed) if data.x_cat_train.shape[1] else []
        self.reference = self._reference()
        width = self.reference.shape[1]
        self.proj = None
        if key.input == "projection":
            self.proj = torch.randn(width, key.proj_dim, generator=_generator(seed + 202)) / key.proj_dim**0.5
            width = key.proj_dim
        label = data.num_classes if data.task == "multiclass" else 1
        self.dim = width + (label if key.with_label else 0)

    def _reference(self) -> torch.Tensor:
        total = sq = None
        for start in range(0, self.data.num_train, self.chunk_rows):
            x = _inputs(self.data, self.key, self.seed, slice(start, start + self.chunk_rows), self.tables).double()
            total = x.sum(0) if total is None else total + x.sum(0)
            sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        mean = total / self.data.num_train
        std = (sq / self.data.num_train - mean * mean).clamp_min(0).sqrt()
        return torch.stack([mean - std, mean + std]).cpu()  # mean `mean`, population std `std`

    def rows(self, rows: slice | torch.Tensor) -> torch.Tensor:
        """The float32 keys of the training items `rows` (a slice or an index tensor)."""
        x = _inputs(self.data, self.key, self.seed, rows, self.tables)
        keys = feature_keys(x, self.key.normalize, reference=self.reference.to(x.device))
        if self.proj is not None:
            keys = keys @ self.proj.to(keys.device)
        if self.key.with_label:
            y = self.data.y_train[rows]
            keys = torch.cat([keys, _label_columns(y, self.data.task, self.data.num_classes, self.key.label_scale)], 1)
        return keys.float().contiguous()


def chunked_slots(sketch: NWSketch, keys: ChunkedKeys, cache_dir: Optional[str], tag: str, extra: dict[str, Any],
                  groups: Optional[torch.Tensor] = None, cap_bytes: Optional[int] = None) -> torch.Tensor:
    """`cached_slots` for keys made chunk by chunk: int32 slots [N, L], from `cache_dir` when computed before."""
    n = keys.data.num_train
    probe = keys.rows(torch.arange(0, n, max(1, n // 1000)))
    key = _cache_key(sketch, probe, tag, extra, shape=[n, keys.dim])
    path = None if cache_dir is None else slots_folder(cache_dir) / f"{key}.pt"

    def compute() -> torch.Tensor:
        out = torch.empty(n, sketch.depth, dtype=torch.int32)
        for start in range(0, n, keys.chunk_rows):
            rows = slice(start, start + keys.chunk_rows)
            group = None if groups is None else groups[rows]
            out[rows] = features_to_slots(sketch, keys.rows(rows), groups=group).cpu()
        return out

    return _cached(path, sketch, n, compute, cap_bytes)


class ModelRekey:
    """`input=model`: re-hash the model's penultimate features every `key.rehash_every` epochs.

    It remembers each item's last observed loss (`feedback`, the loop's sampler feedback), and at the start of
    every `rehash_every`-th epoch (`on_epoch`, charged to the fair clock by the loop) it hashes the current model's
    features and calls `sampler.rekey`: new slots, and the sketch rebuilt from those last losses under them.
    Memory: one float and one flag per item (the slots already hold L ints per item)."""

    def __init__(self, sampler: Any, model: torch.nn.Module, data: Any, key: Any, *, seed: int,
                 update: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        self.sampler, self.model, self.data, self.key, self.seed = sampler, model, data, key, seed
        self._update = update
        n, device = data.num_train, sampler.device
        self.last = torch.zeros(n, device=device)
        self.seen = torch.zeros(n, dtype=torch.bool, device=device)

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Pass the feedback on to the sampler and remember the finite losses."""
        self._update(indices, losses)
        idx, values = indices.to(self.last.device), losses.detach().to(self.last.device, self.last.dtype)
        finite = torch.isfinite(values)
        self.last[idx[finite]] = values[finite]
        self.seen[idx[finite]] = True

    def on_epoch(self, epoch: int) -> None:
        """Re-hash at the start of every `rehash_every`-th epoch after the first."""
        if epoch == 0 or epoch % self.key.rehash_every:
            return
        keys = hash_keys(self.data, self.key, seed=self.seed, model=self.model)
        slots = features_to_slots(self.sampler.sketch, keys, groups=label_groups(self.data, self.key))
        seen = torch.nonzero(self.seen).squeeze(1)
        self.sampler.rekey(slots.to(self.sampler.device), seen, self.last[seen])

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last.cpu().clone(), "seen": self.seen.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last = state["last"].to(self.last.device)
        self.seen = state["seen"].to(self.seen.device)


def model_head(model: torch.nn.Module) -> torch.nn.Module:
    """The module whose input is the model's penultimate features (`model.embed`): the MLPs' last layer, timm's
    classifier."""
    if hasattr(model, "net") and isinstance(model.net, torch.nn.Sequential):
        return model.net[-1]
    if hasattr(model, "model") and hasattr(model.model, "get_classifier"):
        return model.model.get_classifier()
    raise ValueError(f"sketch.key.follow needs a model whose head is known (bench.models), got {type(model).__name__}")


class ForwardRekey:
    """`follow=true`: re-key every trained batch from the penultimate features of its own training forward.

    A forward pre-hook on the model's head keeps the features of the last training forward (detached; no extra
    pass). `feedback(idx, losses)` (the loop's sampler feedback, inside the sampler's share of the clock) turns
    them into slots and moves the batch's items there (`sampler.move`) before the losses are inserted, so they
    land in the buckets of what the model now thinks of those items. The features are centred by a running mean
    (momentum `MOMENTUM`, from the first batch on) and hashed by a second hash of the sketch's family, depth and
    bits over the feature dimension, into the sketch's width (with the class folded in when `label_buckets`).
    Items never trained on keep their input keys. State: the running mean (the hash is rebuilt from the seed)."""

    MOMENTUM = 0.05

    def __init__(self, sampler: Any, model: torch.nn.Module, data: Any, key: Any, *, seed: int,
                 update: Callable[[torch.Tensor, torch.Tensor], None]) -> None:
        if not hasattr(sampler, "move"):
            raise ValueError(f"sketch.key.follow needs a sampler that can move items (nws), got {type(sampler).__name__}")
        self.sampler, self.data, self.key, self.seed = sampler, data, key, seed
        self._groups = label_groups(data, key)  # every item's class, or None: fixed, so made once, not per step
        self._update = update
        self._features: Optional[torch.Tensor] = None
        self._keyer: Optional[NWSketch] = None
        self.mean: Optional[torch.Tensor] = None
        self._handle = model_head(model).register_forward_pre_hook(self._hook())

    def _hook(self) -> Callable[[torch.nn.Module, tuple], None]:
        """The pre-hook: a plain function (a deep copy of the model, e.g. the loop's warm-up twin, shares it
        instead of copying this object), keeping the features of training forwards only (not evaluation)."""
        def keep(module: torch.nn.Module, inputs: tuple) -> None:
            if module.training and torch.is_grad_enabled():
                self._features = inputs[0].detach()
        return keep

    def _slots(self, features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        x = features.reshape(features.shape[0], -1).float()
        if self._keyer is None:
            sk = self.sampler.sketch
            hash_ = make_hash(sk.hash.config()["family"], x.shape[1], sk.depth, sk.hash.bits,
                              getattr(sk.hash, "bandwidth", 1.0), seed=self.seed + 303, device=sk.device)
            self._keyer = NWSketch(hash_, width=sk.width)
        batch_mean = x.mean(0)
        self.mean = batch_mean if self.mean is None else self.mean.lerp_(batch_mean, self.MOMENTUM)
        keys = (x - self.mean).to(self._keyer.device)
        groups = None if self._groups is None else self._groups[idx].to(self._keyer.device)
        return self._keyer.slots(keys, groups)

    def feedback(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        """Move the batch's items to the slots of their training features, then pass the feedback on."""
        features, self._features = self._features, None
        if features is not None and features.shape[0] == indices.shape[0]:
            idx = indices.to(self.sampler.device)
            self.sampler.move(idx, self._slots(features, idx).to(torch.int32))
        self._update(indices, losses)

    def on_epoch(self, epoch: int) -> None:
        """Nothing between epochs: the sampler re-indexes moved items itself."""

    def state_dict(self) -> dict[str, Any]:
        return {"mean": None if self.mean is None else self.mean.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = None if state["mean"] is None else state["mean"].to(self.sampler.device)
