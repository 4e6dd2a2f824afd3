"""The checks before anything starts: every job of a sweep composed and validated, its folders proven writable, its
sketch's memory held to a budget. `python -m bench.run` calls `preflight(argv)` before Hydra starts; a problem is
ONE line and exit status 2, before any data is loaded or any job of a sweep starts, listing every bad value:

    python -m bench.run -m sketch.width=64,-1 sampler.mix=0.5,2
    error: 2 bad values in this sweep of 4 jobs: <sketch.width=-1> is not allowed: an integer >= 1; <sampler.mix=2> ...

The jobs are the ones Hydra's basic sweeper will run: the command line's sweeps and the sweep file's
`hydra.sweeper.params` (`-m sweep=paper`), the command line winning over the file. Every combination is checked,
except beyond MAX_COMPOSITIONS combinations of config-group choices (each is a composition, ~0.1 s) or
MAX_COMBINATIONS of values, where each choice or value is checked once (with the other axes at their first); then
every job's sketch is held to the budget if any job's sampler reads one. For each job:
- composition (a misspelled key, a wrong type, an unknown group option) and `bench.config.schemas.validate` (the ranges,
  whose owners are the constructors);
- booleans on the command line take only true or false (OmegaConf alone would read yes/no/on/off/1/0);
- where the dataset's size is known before loading (its prepared cache's metadata, the generator's options, or
  KNOWN_ROWS for the offline datasets), the checks that need it (`validate_against_data`: batch size, metric);
- memory: for a sampler that reads the sketch, `sketch_bytes`: the table (depth x width x 2 float32), the hash
  parameters, the slots (N x depth int32, where N is known), the native draw's index and the peak while hashing,
  against `memory_budget_gb` (GiB; default: BUDGET_FRACTION of the memory available now, or of a
  SLURM launcher's `mem_gb`), and depth x width < 2**31 (the slots are int32);
- folders: results (with runs/ and ckpt/), the data cache (`dataset.root`) and Hydra's output folder can be created
  and written to, checked without creating anything; `preflight` then creates the results and data folders.

`usable_threads` holds `trainer.threads` to the cores this process may use (bench.run records the warning in the row).

    from bench.config.preflight import check_command_line, preflight, usable_threads
    check_command_line(["-m", "sweep=sketch_grid"])    # raises ConfigError (one line) or returns the jobs' configs
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.nodes import BooleanNode

from sketch.samplers import SAMPLERS, NWSSampler

from .. import data as datasets
from ..build.inputs import reads
from .errors import ConfigError, composition_error
from .schemas import validate, validate_against_data

__all__ = ["check_command_line", "preflight", "usable_threads", "available_cores", "available_memory", "Budget",
           "memory_budget", "sketch_memory", "sketch_bytes", "train_rows", "folder_problem", "group_options",
           "KNOWN_ROWS", "KNOWN_DIMS", "CONF_DIR"]

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GIB = 1024**3
BUDGET_FRACTION = 0.5  # of the available memory: the data, the model and the hashing need the rest
MAX_COMBINATIONS = 1000  # of values: beyond it, every value of every axis once
# Dimension of the raw hash keys of the offline datasets whose inputs are all numeric (the hash parameters' size).
KNOWN_DIMS = {"digits": 64, "mnist": 784, "mnist_subset": 784, "fashion_mnist": 784, "california_housing": 8, "kdd04": 74}
HASH_CHUNK = 65536  # rows hashed at once (sketch.samplers.features_to_slots' default chunk)
OPTIONAL_GROUPS = ("experiment", "sweep")  # `optional` in conf/config.yaml: an unknown name must be refused here
MAX_COMPOSITIONS = 16  # of config-group choices (each composed, ~0.1 s): beyond it, every choice once
# Training rows and task of the offline datasets with their default options (README's table), for sizes before the
# dataset is prepared; a prepared cache's metadata takes precedence.
KNOWN_ROWS = {"movielens100k": (80_000, "binary"), "kdd04": (115_991, "binary"), "adult": (39_074, "binary"),
              "california_housing": (16_512, "regression"), "mnist": (60_000, "multiclass"),
              "mnist_subset": (8_000, "multiclass"), "fashion_mnist": (60_000, "multiclass"), "digits": (1_438, "multiclass")}


# -- the machine ----------------------------------------------------------------------------------------------
def available_cores() -> int:
    """The CPU cores this process may use: its affinity mask, capped by a cgroup (container) CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def usable_threads(requested: Optional[int]) -> tuple[Optional[int], list[str]]:
    """(threads to use, warnings): `requested` held to `available_cores()`; None stays None (torch's default)."""
    if requested is None:
        return None, []
    cores = available_cores()
    if requested <= cores:
        return requested, []
    return cores, [f"<trainer.threads={requested}> is more than the {cores} cores this process may use: using {cores}"]


def available_memory() -> Optional[int]:
    """Bytes of memory available to a new allocation now (psutil if installed, else /proc/meminfo); None if unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass(frozen=True)
class Budget:
    """The bytes a run's sketch and slots may take (None: unknown, not checked) and where that number comes from."""

    bytes: Optional[int]
    source: str


def memory_budget(cfg: DictConfig, available: Optional[int], launcher: Optional[DictConfig] = None) -> Budget:
    """`memory_budget_gb` when set; else BUDGET_FRACTION of a SLURM launcher's `mem_gb` (the job's machine, not this
    one; `launcher` or cfg's `hydra.launcher`), else of `available` bytes."""
    gb = cfg.get("memory_budget_gb")
    if gb is not None:
        return Budget(int(gb * GIB), f"memory_budget_gb={gb}")
    if launcher is None:
        launcher = OmegaConf.select(cfg, "hydra.launcher", default=None)
    if launcher is not None and "slurm" in str(launcher.get("_target_", "")).lower() and launcher.get("mem_gb"):
        return Budget(int(BUDGET_FRACTION * launcher.mem_gb * GIB), f"half of hydra.launcher.mem_gb={launcher.mem_gb}; "
                      f"set memory_budget_gb to change it")
    if available is None:
        return Budget(None, "")
    return Budget(int(BUDGET_FRACTION * available), f"half of the {available / GIB:.1f} GiB available here; "
                  f"set memory_budget_gb to change it")


# -- the job's data and sketch, before loading ---------------------------------------------------------------
def train_rows(cfg: DictConfig) -> tuple[Optional[int], Optional[str]]:
    """(training rows, task) of the configured dataset before it is loaded, or (None, None) where unknown: the
    generator's options (synthetic), the prepared cache's metadata, or KNOWN_ROWS; `dataset.train_size` caps it."""
    from ..data._cache import read_meta

    spec = datasets.DATASETS.get(cfg.dataset.name)
    if spec is None:
        return None, None
    try:
        options = OmegaConf.to_container(cfg.dataset.options, resolve=True)
    except Exception:  # an interpolation that does not resolve: the job reports it
        return None, None
    rows = task = None
    if not spec.cached:
        given = {**spec.options, **options}
        rows, task = given.get("n"), given.get("task")
    elif getattr(spec, "fingerprint", None) is None:  # a dataset of the user's files would be read to find its cache
        try:
            meta = read_meta(datasets.cache_path(cfg.dataset.name, cfg.dataset.root, **options))
        except (TypeError, ValueError, OSError):
            meta = None
        if meta and isinstance(meta.get("rows"), dict):
            rows, task = meta["rows"].get("train"), meta.get("task")
        elif not options and cfg.dataset.name in KNOWN_ROWS:
            rows, task = KNOWN_ROWS[cfg.dataset.name]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        return None, None
    if isinstance(cfg.dataset.train_size, int):
        rows = min(rows, cfg.dataset.train_size)
    return rows, task


def _gib(n: float) -> str:
    """A byte count for people: GiB, MiB or KiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def sketch_bytes(depth: int, width: int, bits: int, rows: Optional[int] = None, dim: Optional[int] = None,
                 native: bool = False) -> dict[str, int]:
    """Bytes a sketch sampler allocates, by part (a part whose size is unknown is left out): the table (depth x
    width x [sum, count] float32), the hash parameters (dim x depth x bits float32), the slots (rows x depth int32),
    with `native` (sampler=nws) the native draw's index (one int32 item order per row, rows x depth, plus per
    bucket its start and size int32 and count and 3-float state float32: 24 bytes), and `hashing peak`, the peak while
    the slots are computed (a chunk of <= HASH_CHUNK rows x depth x bits: int64 codes + float32 projections), or
    while the native index is built (int64 sizes and starts per bucket), whichever is larger; it is freed after."""
    parts = {"sketch table": depth * width * 2 * 4}
    if dim:
        parts["hash parameters"] = dim * depth * bits * 4
    if rows:
        parts["slots"] = rows * depth * 4
    build = 0
    if native and rows:
        parts["native draw index"] = rows * depth * 4 + depth * width * 24
        build = depth * width * 16
    if rows:
        parts["hashing peak"] = max(min(rows, HASH_CHUNK) * depth * bits * 12, build)
    return parts


def sketch_memory(cfg: DictConfig, rows: Optional[int], budget: Budget, named: tuple[str, ...] = (),
                  always: bool = False) -> Optional[str]:
    """One line when the sketch of a sampler that reads it (`always`: of any sampler) does not fit: depth x width >=
    2**31, or `sketch_bytes` over `budget` (the slots, the native index and the hashing peak left out when `rows` is
    None, and the line says so); None when it fits. The line names the keys in `named` among depth and width (else
    both)."""
    if not always and "sketch" not in reads(cfg.sampler.name):
        return None
    depth, width = cfg.sketch.depth, cfg.sketch.width
    keys = [k for k in ("sketch.depth", "sketch.width") if k in named] or ["sketch.depth", "sketch.width"]
    what = "<" + " ".join(f"{k}={depth if k.endswith('depth') else width}" for k in keys) + "> is not allowed"
    dim = KNOWN_DIMS.get(cfg.dataset.name) if cfg.sketch.key.input == "raw" else None
    parts = sketch_bytes(depth, width, cfg.sketch.bits, rows, dim, native=issubclass(SAMPLERS[cfg.sampler.name], NWSSampler))
    total = sum(parts.values())
    if budget.bytes is None or total <= budget.bytes:
        if depth * width >= 2**31:
            return f"{what}: depth x width = {depth * width:,} must be < 2**31 (the slots are int32)"
        return None
    text = " + ".join(f"{name if name != 'slots' else f'slots of {rows:,} rows'} {_gib(n)}" for name, n in parts.items())
    if not rows:
        text += f"; its slots not counted: the size of dataset {cfg.dataset.name} is unknown before loading"
    return f"{what}: it needs {_gib(total)} ({text}), over the memory budget of {_gib(budget.bytes)} ({budget.source})"


# -- folders --------------------------------------------------------------------------------------------------
def folder_problem(path: str | Path, create: bool = False) -> Optional[str]:
    """Why `path` cannot be a folder this process writes to, or None when it can. Without `create` nothing is left
    behind: a missing folder is judged by its nearest existing parent (a probe file is written there and removed)."""
    path = Path(path).expanduser().absolute()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{path} is a file, not a folder" if existing == path else f"{path} cannot be created: {existing} is a file"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"{path} cannot be created ({exc.strerror or exc})"
        existing = path
    try:
        fd, probe = tempfile.mkstemp(prefix=".nws-write-probe-", dir=existing)
        os.write(fd, b"x")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = f"{path} is not writable" if existing == path else f"{path} cannot be created: {existing} is not writable"
        return f"{where} ({exc.strerror or exc})"
    return None


def _folders(cfg: DictConfig, hydra: Optional[DictConfig], multirun: bool) -> Iterator[tuple[str, Any, list[Path], bool]]:
    """(key, value, folders, whether preflight creates them) of what a job writes to (`hydra`: its Hydra node)."""
    results = Path(cfg.paths.results_dir)
    yield "paths.results_dir", cfg.paths.results_dir, [results, results / "runs", results / "ckpt"], True
    data_key = "paths.data_dir" if cfg.dataset.root == cfg.paths.get("data_dir") else "dataset.root"
    yield data_key, cfg.dataset.root, [Path(cfg.dataset.root)], True
    key = "sweep.dir" if multirun else "run.dir"
    try:
        out = OmegaConf.select(hydra, key, default=None) if hydra is not None else None
    except Exception:  # resolvers only Hydra's runtime knows: Hydra reports it
        out = None
    if out is not None:
        yield f"hydra.{key}", out, [Path(out)], False


def _raw(node: Any, key: str) -> Any:
    """The unresolved value at `key` (an interpolation stays text: nothing is resolved), or None."""
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return None
        node = node._get_node(part, validate_access=False, throw_on_missing_key=False)
    return node._value() if node is not None else None


def _folder_errors(cfg: DictConfig, hydra: Optional[DictConfig], multirun: bool, create: bool, seen: dict) -> list[str]:
    """One line per folder key of `cfg` that cannot be written (`seen`: the answers so far, per folder setting)."""
    settings = (create, multirun, *(_raw(cfg, k) for k in ("paths.results_dir", "paths.data_dir", "dataset.root")),
                *(_raw(hydra, k) for k in ("run.dir", "sweep.dir")))
    if settings not in seen:
        seen[settings] = _resolve_folder_errors(cfg, hydra, multirun, create, seen)
    return seen[settings]


def _resolve_folder_errors(cfg: DictConfig, hydra: Optional[DictConfig], multirun: bool, create: bool,
                           seen: dict) -> list[str]:
    errors = []
    for key, value, paths, creatable in _folders(cfg, hydra, multirun):
        make = create and creatable
        for path in paths:
            if (path, make) not in seen:
                seen[(path, make)] = folder_problem(path, create=make)
            problem = seen[(path, make)]
            if problem:
                errors.append(f"<{key}={value}> is not allowed: a folder this process can write to; {problem}")
                break
    return errors


# -- the jobs of a command line -------------------------------------------------------------------------------
class _Composer:
    """Composes conf/config.yaml as Hydra does, once per set of config-group choices: a job's other (value)
    overrides are applied to a copy with Hydra's own function, in Hydra's order (after the defaults list)."""

    def __enter__(self) -> "_Composer":
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra
        from hydra.core.override_parser.overrides_parser import OverridesParser

        self._context = initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3")
        self._context.__enter__()
        self.loader = GlobalHydra.instance().config_loader()
        self._parser = OverridesParser.create(config_loader=self.loader)
        self._cache: dict[tuple[str, ...], Any] = {}
        return self

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(*exc)

    def parse(self, overrides: list[str]) -> list[Any]:
        try:
            parsed = self._parser.parse_overrides(list(overrides))
        except HydraException as exc:
            raise ConfigError(composition_error(exc, overrides)) from None
        for o in parsed:
            _check_optional_group(o)
        return parsed

    def compose(self, overrides: list[str]) -> DictConfig:
        from hydra import compose

        try:
            return compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        except HydraException as exc:
            raise ConfigError(composition_error(exc, overrides)) from None

    def is_choice(self, o: Any) -> bool:
        """A config-group choice (or a Hydra setting): part of the composition, not a value set after it."""
        return o.package is not None or o.is_hydra_override() or self.loader.repository.group_exists(o.key_or_group)

    def job(self, overrides: list[str]) -> tuple[DictConfig, list[Any], DictConfig]:
        """The composed config of one job of a sweep (without its Hydra node), its value overrides (parsed) and its
        Hydra node (shared by the jobs of one set of choices: Hydra settings are choices here)."""
        parsed = self.parse(overrides)
        values = [o for o in parsed if not self.is_choice(o)]
        try:
            from hydra._internal.config_loader_impl import ConfigLoaderImpl

            apply = ConfigLoaderImpl._apply_overrides_to_config
        except (ImportError, AttributeError):  # another Hydra: compose each job whole (slower, the same result)
            cfg = self.compose(overrides)
            return cfg, values, cfg.hydra
        choices = tuple(line for o, line in zip(parsed, overrides) if self.is_choice(o))
        if choices not in self._cache:
            try:
                composed = self.compose(list(choices))
                hydra = composed.hydra
                with open_dict(composed):
                    del composed["hydra"]  # copied for every job otherwise
                self._cache[choices] = (composed, hydra)
            except ConfigError as exc:
                self._cache[choices] = exc
        if isinstance(self._cache[choices], ConfigError):
            raise self._cache[choices]
        base, hydra = self._cache[choices]
        cfg = copy.deepcopy(base)
        try:
            apply(values, cfg)
        except HydraException as exc:
            raise ConfigError(composition_error(exc, overrides)) from None
        return cfg, values, hydra

    def sweep(self, overrides: list[str]) -> tuple[list[list[str]], bool]:
        """The override lists of the jobs of the sweep `overrides` to check, as Hydra's basic sweeper makes them, and
        whether they are all of its jobs (see `_settings`)."""
        parsed = self.parse(overrides)
        plain = [line for o, line in zip(parsed, overrides) if not o.is_sweep_override()]
        sweeper = self.compose(plain).hydra.sweeper  # Hydra reads the sweeper's params from this composition
        basic = str(sweeper.get("_target_", "")).endswith("BasicSweeper")
        lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()] if basic else []
        lines += overrides  # the command line wins: a later override of a key replaces the file's
        parsed = self.parse(lines)
        odd = next((line for o, line in zip(parsed, lines) if o.is_sweep_override() and not o.is_discrete_sweep()), None)
        if odd is not None:
            if basic:
                raise ConfigError(f"<{odd}> is not allowed: the basic sweeper takes value lists (a,b,c), choice(...), "
                                  f"range(...) and glob(...)")
            return [plain], False  # a sweeper plugin expands it: its jobs are checked by Hydra one by one
        try:
            axes = _axes(parsed)
        except HydraException as exc:
            raise ConfigError(composition_error(exc, lines)) from None
        choice = [self.is_choice(self.parse(a[:1])[0]) for a in axes]
        groups, all_groups = _settings(axes, [i for i, c in enumerate(choice) if c], MAX_COMPOSITIONS)
        values, all_values = _settings(axes, [i for i, c in enumerate(choice) if not c], MAX_COMBINATIONS)
        jobs = [[{**g, **v}.get(i, a[0]) for i, a in enumerate(axes)] for g in groups for v in values]
        return jobs, all_groups and all_values


def group_options(group: str) -> list[str]:
    """The options of config group `group` (conf/<group>/, subfolders as `sub/name`), sorted."""
    root = CONF_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _check_optional_group(o: Any) -> None:
    """Refuse an `experiment=` or `sweep=` value with no file: those groups are optional in conf/config.yaml, so
    Hydra would silently run the default job instead (and the row would still carry the unknown name)."""
    group = o.key_or_group.lstrip("+~")
    if group not in OPTIONAL_GROUPS or o.is_delete() or o.package is not None:
        return
    values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
    choices = group_options(group)
    for value in values:
        if value not in choices and value != "null":
            raise ConfigError(f"<{group}={value}> is not allowed: one of {', '.join(choices)} (conf/{group}/)")


def _settings(axes: list[list[str]], which: list[int], most: int) -> tuple[list[dict[int, str]], bool]:
    """The settings of the axes `which` to check ({axis: override}; an axis left out is at its first value): every
    combination, or beyond `most` of them each value once (the others at their first). And whether all are there."""
    swept = [i for i in which if len(axes[i]) > 1]
    if math.prod(len(axes[i]) for i in swept) <= most:
        return [dict(zip(swept, combo)) for combo in itertools.product(*(axes[i] for i in swept))], True
    return [{}] + [{i: v} for i in swept for v in axes[i][1:]], False


def _axes(parsed: list[Any]) -> list[list[str]]:
    """One list of `key=value` per key, as Hydra's BasicSweeper.split_arguments makes them: in first-seen order, a
    later override of a key replacing its values; a plain override is a list of one."""
    axes: dict[str, list[str]] = {}
    for o in parsed:
        key = o.get_key_element()
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes[key] = [f"{key}={v}" for v in values]
    return list(axes.values())


def _bool_errors(cfg: DictConfig, values: list[Any]) -> list[str]:
    """Command-line values for boolean keys that are not true or false (`resume=no`, `progress=1`)."""
    errors = []
    for o in values:
        if o.is_delete():
            continue
        parent, _, leaf = o.key_or_group.rpartition(".")
        node = OmegaConf.select(cfg, parent, default=None) if parent else cfg
        target = node._get_node(leaf) if isinstance(node, DictConfig) and leaf in node else None
        if isinstance(target, BooleanNode) and not isinstance(o.value(), bool):
            errors.append(f"<{o.input_line.lstrip('+')}> is not allowed: true or false")
    return errors


def _job_errors(cfg: DictConfig, values: list[Any], hydra: Optional[DictConfig], multirun: bool,
                available: Optional[int], sketch_read: bool, seen: dict) -> list[str]:
    """Everything wrong with one composed job that can be known before loading its data (`sketch_read`: hold its
    sketch to the budget even if its own sampler does not read it)."""
    try:
        validate(cfg)
    except ConfigError as exc:
        return [str(exc)]
    errors = _bool_errors(cfg, values)
    rows, task = train_rows(cfg)
    if rows is not None and task is not None:
        try:
            validate_against_data(cfg, rows, task)
        except ConfigError as exc:
            errors.append(str(exc))
    named = tuple(o.key_or_group for o in values)
    budget = memory_budget(cfg, available, hydra.get("launcher") if hydra is not None else None)
    memory = sketch_memory(cfg, rows, budget, named, always=sketch_read)
    if memory:
        errors.append(memory)
    return errors + _folder_errors(cfg, hydra, multirun, create=False, seen=seen)


def _command_line(argv: list[str]) -> Optional[tuple[list[str], bool]]:
    """(overrides, multirun), or None for a command line with other Hydra flags (--cfg, --help, ...): Hydra's own."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return None
    overrides = [a for a in argv if not a.startswith("-")]
    return overrides, len(overrides) < len(argv)


def _checked(argv: list[str]) -> tuple[list[tuple[DictConfig, Optional[DictConfig]]], bool]:
    """The (config, Hydra node) of every job `argv` runs, checked (see check_command_line), and whether it is a sweep."""
    parsed = _command_line(argv)
    if parsed is None:
        return [], False
    overrides, multirun = parsed
    errors: dict[str, None] = {}  # ordered, each line once (a bad value shared by several jobs is one line)
    available, seen = available_memory(), {}
    with _Composer() as composer:
        if multirun:
            job_lists, complete = composer.sweep(overrides)
            jobs = []
            for job in job_lists:
                try:
                    jobs.append(composer.job(job))
                except ConfigError as exc:
                    errors[str(exc)] = None
        else:
            job_lists, complete = [overrides], True
            cfg = composer.compose(overrides)
            jobs = [(cfg, [o for o in composer.parse(overrides) if not composer.is_choice(o)], cfg.hydra)]
        # with each config-group choice checked once only (not every combination), the sketch of every job is held to
        # the budget when some job's sampler reads one: a product sweep runs each of those sketches with that sampler
        sketch_read = not complete and any("sketch" in reads(c.sampler.name) for c, _, _ in jobs
                                           if c.sampler.get("name") in SAMPLERS)
        for cfg, values, hydra in jobs:
            errors.update(dict.fromkeys(_job_errors(cfg, values, hydra, multirun, available, sketch_read, seen)))
    if len(errors) == 1:
        raise ConfigError(next(iter(errors)))
    if errors:
        scope = f"sweep of {len(job_lists)} jobs" if multirun else "run"
        raise ConfigError(f"{len(errors)} bad values in this {scope}: " + "; ".join(errors))
    return [(cfg, hydra) for cfg, _, hydra in jobs], multirun


def check_command_line(argv: list[str]) -> list[DictConfig]:
    """Compose and check every job `argv` runs (see the module docstring) and return their configs; raise
    ConfigError with ONE line listing every bad value found. Nothing is created. A command line with other Hydra
    flags (--cfg, --help, ...) is Hydra's business: nothing is checked and nothing returned."""
    return [cfg for cfg, _ in _checked(argv)[0]]


def preflight(argv: list[str]) -> list[DictConfig]:
    """`check_command_line(argv)`, then create the results folders (runs/, ckpt/) and the data cache folder of every
    job and prove them writable; raise ConfigError (one line) on a problem. Returns the jobs' configs."""
    jobs, multirun = _checked(argv)
    seen: dict = {}
    errors = dict.fromkeys(e for cfg, hydra in jobs for e in _folder_errors(cfg, hydra, multirun, True, seen))
    if errors:
        raise ConfigError("; ".join(errors))
    return [cfg for cfg, _ in jobs]
