"""Structured configs (dataclass schemas in Hydra's ConfigStore) and the semantic checks run before training.

The schemas (the top level's included: `RunConfig`) make a misspelled key or a value of the wrong type fail when
Hydra composes the config
(`composition_error` turns Hydra's message into one line); the checks in `validate` catch keys added with
`+` that the schema does not know and values of the right type but out of range (width 0, bandwidth <= 0,
a target outside [0, 1], a batch larger than the dataset, ...) and raise `ConfigError` with one line naming
the key, the value and what is allowed. `bench.run` prints that line and exits with status 2 before training.

    from bench.config.schemas import register_configs, validate
    register_configs()   # done by bench.run at import
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sketch import SHAPE_CHECKS, check_sketch_options
from sketch._keys import KEY_MODES
from sketch.samplers import SAMPLERS, sketch_defaults

from ..build.models import MODELS
from ..data import TensorData
from ..train.metrics import METRICS, metrics_for
from ..build.inputs import check_sampler_options, reads, sampler_options, sampler_schema
from .derive import parameter, schema_from_signature
from .errors import ConfigError, not_allowed, reported_as

__all__ = ["RunConfig", "TOP_LEVEL", "register_configs", "validate", "validate_against_data"]

KEY_INPUTS = ("raw", "projection", "model")
DEVICES = ("auto", "cpu", "cuda")
SCHEDULES = ("constant", "cosine", "onecycle", "linear")
WANDB_MODES = ("online", "offline", "disabled")
MAX_SEED = 2**32 - 1  # the seeds of torch and numpy generators; offsets of it seed the hashes (bench.build.features)


@dataclass
class DatasetConfig:
    name: str = MISSING  # registry name in bench.data (python -m bench.prepare --list)
    root: str = "${paths.data_dir}"  # where prepared datasets are cached
    train_size: Optional[int] = None  # use a fixed subset of this many training rows (None: all)
    test_size: Optional[int] = None  # likewise for the test rows
    options: dict = field(default_factory=dict)  # dataset builder options (e.g. synthetic n, d; hub max_rows)
    metric: str = "accuracy"  # the dataset's natural target metric
    target: Optional[float] = None  # the dataset's default time-to-target threshold (null: none; reports use uniform's)
    label_noise: float = 0.0  # fraction in [0, 1) of training labels replaced by a wrong one (fixed seed; test set clean)


TABLE_METRICS = {"binary": "auc", "multiclass": "accuracy", "regression": "mse"}  # metric=auto, by the table's task


@dataclass
class TableDatasetConfig(DatasetConfig):
    """Your own table (`dataset=table`): read by `bench.data`'s `table` loader, cached and identified by its content.

    `dataset.label` names the column to predict; `dataset.target` stays what it is for every dataset, the
    time-to-target threshold. The file's path is not part of the run id (the content's fingerprint is)."""

    name: str = "table"  # what rows, W&B and reports call this table (name it to tell tables apart)
    path: Optional[str] = None  # the table: a CSV, TSV, Parquet or JSON-lines file, or a folder saved with save_to_disk
    label: Optional[str] = None  # the column to predict (the target column)
    task: str = "auto"  # auto (from the label column: see the log line), binary, multiclass or regression
    categorical: Optional[list] = None  # columns embedded as categories (null: auto, the string and bool columns)
    drop: list = field(default_factory=list)  # columns to ignore (ids, free text, leaks)
    test_path: Optional[str] = None  # a separate test table with the same columns (null: split path)
    test_fraction: float = 0.2  # the share of rows held out for testing (a fixed random split) without test_path
    nan: str = "error"  # missing or infinite numeric features: error (say where), drop (those rows) or zero (the mean)
    metric: str = "auto"  # auto: auc (binary), accuracy (multiclass), mse (regression); or any metric of the task


def is_table(dataset: DictConfig) -> bool:
    """Whether a `dataset` config node is a table of the user's (`dataset=table`)."""
    return OmegaConf.get_type(dataset) is TableDatasetConfig


def table_options(dataset: DictConfig) -> dict[str, Any]:
    """The `table` loader's options (bench.data) from a `dataset=table` config node."""
    node = OmegaConf.to_container(dataset, resolve=True)
    keys = ("path", "label", "task", "categorical", "drop", "test_path", "test_fraction", "nan")
    return {k: node[k] for k in keys}


@dataclass
class ModelConfig:
    _target_: str = MISSING  # a model class in bench.build.models taking input_shape, cardinalities, num_outputs


def _model_schema(cls: type) -> type:
    """The schema of a bench.build.models class: its `_target_` and its `option_checks` with the constructor's defaults."""
    params = {name: parameter(cls, name) for name in cls.option_checks}
    return schema_from_signature(f"{cls.__name__}Config", params, ModelConfig, fixed={"_target_": f"bench.build.models.{cls.__name__}"})


MODEL_SCHEMAS = {name: _model_schema(cls) for name, cls in MODELS.items()}


_NWS = sketch_defaults("nws")  # the library's defaults of the default sampler (NWSSampler.from_features)


@dataclass
class KeyConfig:
    input: str = "raw"  # what is hashed: raw (flattened input, categorical fields through a fixed random embedding), projection (a fixed random projection of raw) or model (the model's penultimate features, re-hashed every rehash_every epochs)
    normalize: str = _NWS["keys"]  # how inputs become keys (sketch.feature_keys): center, standardize (also unit variance) or none
    proj_dim: int = 64  # output dimension of the fixed random projection (input=projection)
    embed_dim: int = 4  # per-field width of the fixed random embedding of categorical fields
    with_label: bool = False  # append the (scaled) one-hot label to the hashed vector: it tilts the angles
    label_scale: float = 1.0  # scale of the appended label
    label_buckets: bool = True  # one set of buckets per class (sketch groups) where the task has classes: an item's estimate pools only its own class (frozen by development tuning, docs/TUNING.md); a regression task has one set
    rehash_every: int = 1  # input=model: re-hash the model's features at the start of every this many epochs (counted in the clock)
    follow: bool = False  # re-key each trained batch from the penultimate features its training forward computed (a forward hook; no extra pass): items move to the buckets of what the model now thinks of them, items never trained on keep their input keys


@dataclass
class SketchConfig:
    """The sketch a sketch-reading sampler is built on. In a composed config each unset value is the library's
    default for the run's sampler (`${sketch_default:KEY}`, `sketch.samplers.sketch_defaults(name)`: NWS's from
    `NWSSampler.from_features`, the stream filter's the lineage's): `--cfg job --resolve` shows the values. The
    Python defaults below are NWS's (for building this object by hand)."""

    family: str = _NWS["family"]  # hash family: srp (angular kernel) or pstable (L2 kernel)
    depth: int = _NWS["depth"]  # rows L: more rows, lower variance
    width: int = _NWS["width"]  # buckets per row W: more buckets, less aliasing
    bits: int = _NWS["bits"]  # concatenated hashes per row K: more bits, narrower kernel
    bandwidth: float = _NWS["bandwidth"]  # bucket width r of pstable hashing (ignored by srp)
    decay: float = _NWS["decay"]  # forgetting factor in (0, 1] applied at each update (1: keep all, as the paper)
    key: KeyConfig = field(default_factory=KeyConfig)


@dataclass
class SamplerConfig:
    """Base of the sampler schemas, which `bench.build.inputs.sampler_schema` derives from each sampler's constructor
    (its options, defaults and types) and setup function: `python -m bench.run sampler=NAME --cfg job` shows them."""

    name: str = MISSING  # the registry name (sketch.samplers.SAMPLERS), set by the schema of each sampler


@dataclass
class OptimizerConfig:
    _target_: str = "torch.optim.Adam"  # any torch.optim class
    _partial_: bool = True  # the harness adds the parameters
    lr: float = 1e-3  # learning rate


@dataclass
class TrainerConfig:
    batch_size: int = 512  # samples per step
    epochs: int = 3  # budget in epochs (steps per epoch = ceil(N / batch) for every sampler)
    max_time_s: Optional[float] = None  # budget in fair-clock seconds (None: no limit)
    evals_per_epoch: int = 4  # evaluations on the test split per epoch (excluded from the clock)
    target_metric: str = "${dataset.metric}"  # accuracy, auc, logloss or mse
    target: Optional[float] = "${dataset.target}"  # type: ignore[assignment]  # time-to-target threshold (null: none)
    schedule: str = "constant"  # learning-rate schedule per step: constant, cosine, onecycle or linear (decay to 0)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoint_every_s: float = 60.0  # write a resumable checkpoint this often (fair-clock seconds; 0: never)
    checkpoint_every_steps: int = 0  # also checkpoint every this many steps (0: never)
    eval_batch_size: int = 4096  # batch size for evaluation
    warmup_steps: int = 1  # untimed forward/backward passes on a throwaway copy before the clock starts
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    probe_size: int = 2048  # training items in the proxy-quality probe run at each evaluation (0: no probe)


@dataclass
class WandbConfig:
    mode: str = "offline"  # online, offline (sync later with `wandb sync`) or disabled
    project: str = "nws-bench"  # W&B project
    entity: Optional[str] = None  # W&B team or user (None: the key's default)
    tags: list = field(default_factory=list)  # extra tags (sampler:, dataset: and model: tags are always added)
    group: Optional[str] = None  # W&B group (null: the experiment `<dataset>-<experiment_id>`, which a report compares)
    job_type: str = "train"  # W&B job type
    init_timeout_s: float = 30.0  # give up on an online W&B start after this long (no network) and log offline


@dataclass
class LoggerConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class PathsConfig:
    data_dir: str = "${oc.env:NWS_DATA,${oc.env:HOME,.}/.cache/nws-bench/data}"  # prepared-dataset cache
    results_dir: str = "results"  # result rows and checkpoints, keyed by run id (stable across re-runs)
    slots_cache_gb: float = 2.0  # GiB the NWS slots cache (<data_dir>/slots/) may hold; least recently used files go first


@dataclass
class RunConfig:
    """The top level of conf/config.yaml (`defaults: [base_config, ...]`): its groups and its own keys, so a
    misspelled top-level key or a wrong type fails like a nested one. The groups' schemas are their own."""

    dataset: Any = MISSING
    model: Any = MISSING
    sampler: Any = MISSING
    sketch: Any = MISSING
    trainer: Any = MISSING
    logger: Any = MISSING
    paths: Any = MISSING
    seed: int = 0  # seeds model init, the sampler's generator and the sketch's hash functions
    device: str = "auto"  # auto (cuda when available), cpu or cuda
    resume: bool = True  # skip a finished run; continue a killed or preempted one from its checkpoint
    progress: bool = True  # show progress bars
    memory_budget_gb: Optional[float] = None  # GiB a run's sketch and slots may take (null: half the available memory; bench.config.preflight)
    plugins: list = field(default_factory=list)  # your modules that register samplers, imported first (command line only: plugins=[my_samplers])


TOP_LEVEL = tuple(f.name for f in dataclasses.fields(RunConfig))


def register_configs() -> None:
    """Store the schemas so that conf/*.yaml files can extend them (`defaults: [base_<group>]`), and each registered
    sampler as the option `sampler=<name>` (its options and defaults from its constructor: `--cfg job` shows them)."""
    cs = ConfigStore.instance()
    cs.store(group="dataset", name="base_dataset", node=DatasetConfig)
    cs.store(group="dataset", name="base_table", node=TableDatasetConfig)
    for name, schema in MODEL_SCHEMAS.items():
        cs.store(group="model", name=f"base_{name}", node=schema)
    cs.store(group="sketch", name="base_sketch", node=_sketch_node())
    for name in SAMPLERS:  # `sampler=<name>`: every registered sampler, a plugin's too (no YAML file needed)
        cs.store(group="sampler", name=name, node=sampler_schema(name, SamplerConfig))
    cs.store(group="trainer", name="base_trainer", node=TrainerConfig)
    cs.store(group="logger", name="base_logger", node=LoggerConfig)
    cs.store(group="paths", name="base_paths", node=PathsConfig)
    cs.store(name="base_config", node=RunConfig)
    if not OmegaConf.has_resolver("samplers"):  # `${samplers:}`: every registered sampler, for a sweep file's axis
        OmegaConf.register_new_resolver("samplers", lambda: ",".join(SAMPLERS))
    if not OmegaConf.has_resolver("sketch_default"):  # `${sketch_default:KEY}`: the run's sampler's default
        OmegaConf.register_new_resolver("sketch_default", _sketch_default)


def _sketch_node() -> DictConfig:
    """`SketchConfig` whose shape and key mode follow the run's sampler (`${sketch_default:KEY}`) unless set."""
    node = OmegaConf.structured(SketchConfig)
    for key in SHAPE_CHECKS:
        node[key] = f"${{sketch_default:{key}}}"
    node.key.normalize = "${sketch_default:keys}"
    return node


def _sketch_default(key: str, _root_: DictConfig) -> Any:
    name = OmegaConf.select(_root_, "sampler.name", default=None)
    return sketch_defaults(name if name in SAMPLERS else "nws")[key]


# -- semantic checks ---------------------------------------------------------------------------------
def _int_at_least(cfg: DictConfig, key: str, low: int) -> None:
    v = _get(cfg, key)
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        not_allowed(key, v, f"an integer >= {low}")


def _positive(cfg: DictConfig, key: str, allow_none: bool = False) -> None:
    v = _get(cfg, key)
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        not_allowed(key, v, "a finite number > 0" + (" or null" if allow_none else ""))


def _one_of(cfg: DictConfig, key: str, allowed: tuple[str, ...] | dict) -> None:
    v = _get(cfg, key)
    if v not in allowed:
        not_allowed(key, v, "one of " + ", ".join(allowed))


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _known_keys(node: DictConfig, prefix: str) -> None:
    """Fail on a key that a schema-typed node does not declare (added with `+`, so Hydra let it through).

    Model and optimizer nodes may carry extra keys: they are their target's keyword arguments, which the
    target itself checks when it is built. The sampler's keys are its schema's."""
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema) or ("_target_" in node and not prefix.startswith("sampler.")):
        return
    fields = [f.name for f in dataclasses.fields(schema)]
    for key in node.keys():
        if key not in fields:
            not_allowed(f"{prefix}{key}", OmegaConf.select(node, str(key), throw_on_resolution_failure=False),
                  f"{prefix.rstrip('.')} has no such key; its keys: {', '.join(f for f in fields if not f.startswith('_'))}")
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key):
            continue
        if isinstance(node[key], DictConfig):
            _known_keys(node[key], f"{prefix}{key}.")


def _validate_model(cfg: DictConfig) -> None:
    """A bench.build.models class's hyperparameters, checked by its own constructor checks (other targets check theirs
    when built)."""
    cls = next((c for c in MODELS.values() if cfg.model._target_ == f"bench.build.models.{c.__name__}"), None)
    if cls is None:
        return
    options = {k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if not k.startswith("_")}
    with reported_as("model", options, fallback=f"model={cls.__name__}"):
        cls.check_options(**options)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError naming the first config key unknown to its schema or value out of its allowed range."""
    for key in cfg.keys():  # added with `+` (Hydra lets that through a schema)
        if key not in TOP_LEVEL and key != "hydra":
            not_allowed(str(key), OmegaConf.select(cfg, str(key), throw_on_resolution_failure=False),
                  f"the config has no such key; its keys: {', '.join(TOP_LEVEL)}")
    for group in ("dataset", "model", "sampler", "sketch", "trainer", "logger", "paths"):
        if group in cfg:
            _known_keys(cfg[group], f"{group}.")
    for key in ("resume", "progress"):
        if not isinstance(cfg.get(key, True), bool):
            not_allowed(key, cfg[key], "true or false")
    _positive(cfg, "paths.slots_cache_gb")
    if "memory_budget_gb" in cfg:
        _positive(cfg, "memory_budget_gb", allow_none=True)
    _one_of(cfg, "device", DEVICES)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or not 0 <= cfg.seed <= MAX_SEED:
        not_allowed("seed", cfg.seed, f"an integer in [0, {MAX_SEED}] (2**32 - 1)")
    for key in ("paths.results_dir", "paths.data_dir"):
        if not str(_get(cfg, key) or "").strip():
            not_allowed(key, _get(cfg, key), "a folder path (not empty: it would write into the working directory)")
    _one_of(cfg, "sampler.name", tuple(SAMPLERS))
    shape = {k: v for k, v in OmegaConf.to_container(cfg.sketch, resolve=True).items() if k in SHAPE_CHECKS}
    with reported_as("sketch", shape):  # the library's checks: one owner per allowed range
        check_sketch_options(**shape)
    for key in ("sketch.key.proj_dim", "sketch.key.embed_dim", "sketch.key.rehash_every"):
        _int_at_least(cfg, key, 1)
    _one_of(cfg, "sketch.key.input", KEY_INPUTS)
    _one_of(cfg, "sketch.key.normalize", KEY_MODES)  # sketch.feature_keys modes
    cls = SAMPLERS[cfg.sampler.name]
    if cfg.sketch.key.input == "model" and "sketch" in reads(cfg.sampler.name) and not hasattr(cls, "rekey"):
        not_allowed("sketch.key.input", "model", f"raw or projection for sampler={cfg.sampler.name} (it cannot re-hash "
              f"the model's features as they change)")
    _int_at_least(cfg, "trainer.batch_size", 1)
    _int_at_least(cfg, "trainer.epochs", 1)
    _int_at_least(cfg, "trainer.evals_per_epoch", 1)
    _int_at_least(cfg, "trainer.eval_batch_size", 1)
    _int_at_least(cfg, "trainer.warmup_steps", 0)
    _int_at_least(cfg, "trainer.checkpoint_every_steps", 0)
    _int_at_least(cfg, "trainer.probe_size", 0)
    _positive(cfg, "trainer.max_time_s", allow_none=True)
    _positive(cfg, "trainer.optimizer.lr")
    if cfg.trainer.threads is not None:
        _int_at_least(cfg, "trainer.threads", 1)
    cp = cfg.trainer.checkpoint_every_s
    if isinstance(cp, bool) or not isinstance(cp, (int, float)) or not math.isfinite(cp) or cp < 0:
        not_allowed("trainer.checkpoint_every_s", cp, "a number >= 0 (0: never)")
    _one_of(cfg, "trainer.schedule", SCHEDULES)
    table = is_table(cfg.dataset)
    _one_of(cfg, "trainer.target_metric", (*METRICS, "auto") if table else METRICS)  # a table's auto: bench.build.parts
    if cfg.trainer.target_metric in METRICS:
        _validate_target(cfg.trainer.target, METRICS[cfg.trainer.target_metric])
    if table:
        _validate_table(cfg)
    for key in ("dataset.train_size", "dataset.test_size"):
        if _get(cfg, key) is not None:
            _int_at_least(cfg, key, 1)
    with reported_as("dataset", {}, fallback=f"dataset.label_noise={cfg.dataset.label_noise!r}"):  # its owner's check
        TensorData.check_label_noise(cfg.dataset.label_noise)
    _one_of(cfg, "logger.wandb.mode", WANDB_MODES)
    _positive(cfg, "logger.wandb.init_timeout_s")
    _validate_model(cfg)
    _validate_sampler(cfg)


def _validate_target(t: Any, metric: Any) -> None:
    if t is None:
        return
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
        not_allowed("trainer.target", t, "a finite number or null")
    if metric.bounded and not (0 <= t <= 1):
        not_allowed("trainer.target", t, f"a number in [0, 1] for {metric.name}")
    if not metric.bounded and t < 0:
        not_allowed("trainer.target", t, f"a number >= 0 for {metric.name}")


def _validate_table(cfg: DictConfig) -> None:
    """A table's options, checked by the table loader's own checks (bench.data.check_table_options). A missing
    path or label is reported where the table is read (bench.build.parts.resolved_config), so `dataset=table` alone
    composes and validates like every group option."""
    from ..data import TableError, check_table_options

    options = table_options(cfg.dataset)
    try:
        check_table_options(**{**options, "path": options["path"] or ".", "label": options["label"] or "?"})
    except TableError as exc:
        raise ConfigError(exc.config_line()) from None
    if cfg.dataset.metric != "auto":
        _one_of(cfg, "dataset.metric", (*METRICS, "auto"))


def _validate_sampler(cfg: DictConfig) -> None:
    """The sampler's options, checked by the sampler's own constructor checks (one owner per allowed range)."""
    options = sampler_options(OmegaConf.to_container(cfg.sampler, resolve=True))
    with reported_as("sampler", options, fallback=f"sampler={cfg.sampler.name}"):
        check_sampler_options(cfg.sampler.name, options)


def validate_against_data(cfg: DictConfig, num_train: int, task: str, y_test: Any = None) -> None:
    """Checks that need the dataset: batch size vs rows, metric vs task (the sampler checks its own sizes when built),
    and, given the test labels, that the target metric can be computed on the test split (AUC needs both classes)."""
    if cfg.trainer.batch_size > num_train:
        not_allowed("trainer.batch_size", cfg.trainer.batch_size, f"an integer in [1, {num_train}] (the training rows)")
    allowed = metrics_for(task)
    if cfg.trainer.target_metric not in allowed:
        not_allowed("trainer.target_metric", cfg.trainer.target_metric, f"one of {', '.join(allowed)} for a {task} dataset")
    _validate_target(cfg.trainer.target, METRICS[cfg.trainer.target_metric])  # again: a table's metric was auto
    if cfg.trainer.target_metric == "auc" and y_test is not None:
        positive = int((y_test > 0.5).sum())
        negative = int(y_test.numel()) - positive
        if not (positive and negative):
            others = ", ".join(m for m in allowed if m != "auc")
            not_allowed("trainer.target_metric", "auc", f"AUC needs both classes in the test split, which has {positive} "
                  f"positive and {negative} negative rows; use {others}, or a test split with both classes")
