"""The benchmark's entry point: train one model with one sampler on one dataset, timed fairly.

    python -m bench.run                                   # the main job: defaults in conf/config.yaml
    python -m bench.run sampler=uniform dataset=kdd04     # pick axes
    python -m bench.run -m sampler=uniform,history,nws seed=0,1,2          # a sweep (basic launcher)
    python -m bench.run -m hydra/launcher=joblib sketch.width=256,1024     # local parallel jobs
    python -m bench.report results                        # tables and plots of every finished run

A run's identity is a hash of its resolved config (`bench.results.run_id`). A finished run's row is kept
at `<paths.results_dir>/runs/<run_id>.json`, so re-running a sweep skips finished jobs and resumes killed
ones from `<paths.results_dir>/ckpt/<run_id>.pt` (`resume=false` starts over; an unreadable checkpoint is
reported and the run starts over). Bad config values (and Hydra's composition errors: misspelled keys, wrong
types, unknown group options) stop the run before training with one line naming the key (exit status 2).
"""
from __future__ import annotations

import functools
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.errors import HydraException, InstantiationException  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from . import data as datasets  # noqa: E402
from .distributed import DistEnv, barrier, broadcast_object, cleanup, init_distributed, main_first  # noqa: E402
from .checkpoint import CheckpointError, checkpoint_path, load_checkpoint, remove_checkpoint, save_checkpoint  # noqa: E402
from .config import METRICS, ConfigError, composition_error, register_configs, validate, validate_against_data  # noqa: E402
from .logger import RunLogger  # noqa: E402
from .provenance import device_name, git_commit  # noqa: E402
from .results import read_rows, row_path, run_id, write_row  # noqa: E402
from .sampling import build_sampler  # noqa: E402
from .train import TrainSpec, TrainState, final_metric, train  # noqa: E402
from sketch.distributed import distributed_update, feedback_mode, sync_check  # noqa: E402

log = logging.getLogger("bench.run")
register_configs()
REPO = Path(__file__).resolve().parent.parent






def output_dir() -> Path:
    try:
        return Path(HydraConfig.get().runtime.output_dir)
    except ValueError:  # called outside @hydra.main (tests)
        return Path.cwd()


def _schedule(name: str, optimizer: torch.optim.Optimizer, total_steps: int, lr: float) -> Optional[Any]:
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    return None


def load_data(cfg: DictConfig, device: torch.device) -> Any:
    """Load (preparing on first use) the configured dataset, take the configured subset, move it to `device`."""
    if cfg.dataset.name not in datasets.DATASETS:
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> is not allowed: one of {', '.join(datasets.DATASETS)}")
    options = OmegaConf.to_container(cfg.dataset.options, resolve=True)
    try:
        data = datasets.load(cfg.dataset.name, root=cfg.dataset.root, **options)
    except (ValueError, TypeError) as exc:  # unknown option or value out of range
        raise ConfigError(f"<dataset.options={options}> is not allowed: {exc}") from None
    except RuntimeError as exc:  # cannot be prepared here (offline, missing tool)
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> could not be loaded: {exc}") from None
    if cfg.dataset.train_size is not None or cfg.dataset.test_size is not None:
        data = data.subset(cfg.dataset.train_size or data.num_train, cfg.dataset.test_size or data.num_test, seed=0)
    return data.to(device)


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


def resume_state(ckpt: Path, rid: str, **parts: Any) -> Optional[TrainState]:
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


def run(cfg: DictConfig, out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run (or skip, or resume) the job described by `cfg` and return its result row.

    `out_dir` receives this run's logs and a copy of its row (default: Hydra's output directory).
    Under torchrun every rank calls it: the ranks train one data-parallel job; rank 0 writes the results."""
    env = _dist_env(cfg)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if env.distributed:
        resolved["world_size"] = env.world_size  # another job than the single-process run (single ids unchanged)
    rid = run_id(resolved)
    results_dir = Path(cfg.paths.results_dir).absolute()
    done = row_path(results_dir, rid)
    out = Path(out_dir) if out_dir is not None else output_dir()
    if broadcast_object(bool(cfg.resume and done.is_file())):  # rank 0 decides: all ranks skip or none
        row = read_rows(done)[0]
        log.info(f"run {rid} already finished: skipping, row at {done} <resume=true>")
        if env.is_main:
            write_row(out, row)
            remove_checkpoint(checkpoint_path(results_dir, rid))  # left behind when killed right after its row
        return row
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    device = env.device
    if cfg.trainer.batch_size % env.world_size:
        raise ConfigError(f"<trainer.batch_size={cfg.trainer.batch_size}> is not allowed: it is the global batch and "
                          f"must be divisible by the number of ranks (WORLD_SIZE={env.world_size})")
    local_batch = cfg.trainer.batch_size // env.world_size  # each rank trains on its slice of the global batch
    torch.manual_seed(cfg.seed)  # model init and dropout; samplers use their own generators
    with main_first():  # rank 0 prepares the dataset cache first
        data = load_data(cfg, device)
    validate_against_data(cfg, data.num_train, data.task)
    log.info(f"dataset {data.name}: {data.num_train} train / {data.num_test} test rows, task {data.task} <dataset={cfg.dataset.name}>")
    model = build(cfg.model, "model", input_shape=data.input_shape, cardinalities=data.cardinalities, num_outputs=data.num_outputs).to(device)
    optimizer = build(cfg.trainer.optimizer, "trainer.optimizer", model.parameters())
    steps_per_epoch = math.ceil(data.num_train / cfg.trainer.batch_size)
    scheduler = _schedule(cfg.trainer.schedule, optimizer, steps_per_epoch * cfg.trainer.epochs, cfg.trainer.optimizer.lr)
    sampler, setup_s = build_sampler(cfg.sampler, cfg.sketch, data, model, task=data.task, batch_size=local_batch,
                                     steps_per_epoch=steps_per_epoch, epochs=cfg.trainer.epochs, seed=cfg.seed,
                                     device=device, cache_dir=cfg.dataset.root, num_replicas=env.world_size, rank=env.rank)
    trained = model
    if env.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    feedback = functools.partial(distributed_update, sampler) if env.distributed else None
    log.info(f"sampler {cfg.sampler.name} ({sampler.cost}); setup {setup_s:.2f}s <sampler={cfg.sampler.name}>")
    spec = TrainSpec(task=data.task, epochs=cfg.trainer.epochs, steps_per_epoch=steps_per_epoch,
                     evals_per_epoch=cfg.trainer.evals_per_epoch, target_metric=cfg.trainer.target_metric,
                     target=cfg.trainer.target, max_time_s=cfg.trainer.max_time_s, eval_batch_size=cfg.trainer.eval_batch_size,
                     checkpoint_every_s=cfg.trainer.checkpoint_every_s, checkpoint_every_steps=cfg.trainer.checkpoint_every_steps,
                     warmup_steps=cfg.trainer.warmup_steps)
    ckpt = checkpoint_path(results_dir, rid)
    restored = None
    if cfg.resume and ckpt.is_file():
        restored = resume_state(ckpt, rid, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler)
    state, resumed = (restored, True) if restored is not None else (TrainState(setup_s=setup_s), False)

    def save(st: TrainState) -> None:
        if env.is_main:  # the bare model: no "module." prefix, loadable by any world size
            save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, state=st)

    w = cfg.logger.wandb
    with RunLogger(out, config=resolved, mode=w.mode if env.is_main else "disabled", project=w.project, entity=w.entity, tags=list(w.tags),
                   name=f"{cfg.dataset.name}-{cfg.sampler.name}-s{cfg.seed}-{rid}", group=cfg.dataset.name,
                   init_timeout_s=w.init_timeout_s) as logger:
        bar = _progress(cfg, spec, state.step, env)
        state = train(trained, optimizer, scheduler, sampler, data, spec, device=device, batch_size=local_batch,
                      state=state, resumed=resumed, checkpoint=save, feedback=feedback,
                      on_eval=lambda p: (logger.log(p, step=p["step"]), bar.set_postfix(metric=f"{p['metric']:.4f}")),
                      on_step=lambda s: bar.update(1))
        bar.close()
        row = result_row(cfg, rid, data, state, sampler, device)
        row.update(_dist_fields(env, sampler))
        if env.is_main:
            logger.summary(row)
    if env.is_main:
        write_row(results_dir, row)
        write_row(out, row)
        remove_checkpoint(ckpt)
    barrier()  # the next job of a sweep starts once rank 0 has written this one's row
    return row


def _dist_env(cfg: DictConfig) -> DistEnv:
    """This process's place in a torchrun job (one process: world_size 1); a bad device is a ConfigError."""
    try:
        return init_distributed(cfg.device)
    except ValueError as exc:
        raise ConfigError(f"<device={cfg.device!r}> is not allowed: {exc}") from None


def _dist_fields(env: DistEnv, sampler: Any) -> dict[str, Any]:
    """Row fields of a data-parallel run: the layout, whether the NWS sketches stayed identical, and the
    non-finite losses dropped on all ranks (per rank under the all-reduce path, so summed)."""
    if not env.distributed:
        return {"world_size": 1}
    fields: dict[str, Any] = {"world_size": env.world_size}
    if feedback_mode(sampler) == "reduce":
        skipped = torch.tensor([float(sampler.skipped_nonfinite)], device=env.device)
        torch.distributed.all_reduce(skipped)
        fields["skipped_nonfinite"] = int(skipped.item())
        fields["sketch_in_sync"] = sync_check(sampler.sketch)
    return fields


def _progress(cfg: DictConfig, spec: TrainSpec, initial: int, env: DistEnv) -> Any:
    from tqdm import tqdm

    return tqdm(total=spec.epochs * spec.steps_per_epoch, initial=initial, desc=f"{cfg.dataset.name}/{cfg.sampler.name}",
                unit="step", disable=not (cfg.progress and env.is_main), leave=False, file=sys.stderr)


def result_row(cfg: DictConfig, rid: str, data: Any, state: TrainState, sampler: Any, device: torch.device) -> dict[str, Any]:
    """Return the result row of a finished run (fields documented in bench.results)."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    clock = state.setup_s + state.train_s
    return {
        "run_id": rid, "status": "done", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "dataset": cfg.dataset.name, "model": cfg.model._target_.rsplit(".", 1)[-1], "sampler": cfg.sampler.name,
        "seed": cfg.seed, "task": data.task,
        **{f"sketch_{k}": cfg.sketch[k] for k in ("family", "depth", "width", "bits", "bandwidth", "decay")},
        **{f"sampler_{k}": cfg.sampler.get(k) for k in ("mix", "pool_size", "refresh_every")},
        "target_metric": cfg.trainer.target_metric, "target": cfg.trainer.target,
        "higher_is_better": METRICS[cfg.trainer.target_metric],
        "reached_target": state.time_to_target_s is not None, "time_to_target_s": state.time_to_target_s,
        "steps_to_target": state.steps_to_target, "final_metric": final_metric(state), "best_metric": state.best_metric,
        "final_loss": state.curve[-1].get("test_loss") if state.curve else None,
        "train_time_s": clock, "eval_time_s": state.eval_s, "sampler_time_s": state.sampler_s, "setup_time_s": state.setup_s,
        "sampler_overhead": (state.sampler_s + state.setup_s) / clock if clock > 0 else None,
        "steps": state.step, "epochs": state.epoch, "stopped_by_time": state.stopped_by_time,
        "skipped_nonfinite": int(getattr(sampler, "skipped_nonfinite", 0)), "skipped_steps": state.skipped_steps,
        "device": device_name(device) + ("" if device.type == "cuda" else f", {torch.get_num_threads()} threads"),
        "torch_version": torch.__version__, "git_commit": git_commit(),
        "config_hash": rid, "overrides": overrides, "curve": state.curve,
    }


def summary_table(row: dict[str, Any]) -> str:
    """Return a short markdown table of one run's result."""
    ttt = row["time_to_target_s"]
    cells = [
        ("dataset / sampler", f"{row['dataset']} / {row['sampler']} (seed {row['seed']})"),
        (f"final {row['target_metric']}", f"{row['final_metric']:.4f}"),
        (f"best {row['target_metric']}", f"{row['best_metric']:.4f}" if row["best_metric"] is not None else "—"),
        (f"time to {row['target_metric']} {'>=' if row['higher_is_better'] else '<='} {row['target']}",
         f"{ttt:.2f} s (step {row['steps_to_target']})" if ttt is not None else "not reached"),
        ("train time (fair clock)", f"{row['train_time_s']:.2f} s over {row['steps']} steps"),
        ("sampler overhead", f"{100 * (row['sampler_overhead'] or 0):.1f} % (setup {row['setup_time_s']:.2f} s)"),
        ("eval time (excluded)", f"{row['eval_time_s']:.2f} s"),
        ("device / torch / commit", f"{row['device']} / {row['torch_version']} / {row['git_commit']}"),
    ]
    return "\n".join(["| what | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in cells]])


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    """Hydra entry: validate, run, print the table; return the final target metric (for sweepers)."""
    try:
        validate(cfg)
        row = run(cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if not row.get("world_size", 1) > 1 or torch.distributed.get_rank() == 0:  # rank 0 speaks for the job
        print(summary_table(row))
        print(f"row: {row_path(Path(cfg.paths.results_dir).absolute(), row['run_id'])}")
    return row["final_metric"]


def check_command_line(argv: list[str]) -> None:
    """Compose the command line's config the way Hydra will, once per sweep value, and raise ConfigError with
    one line for what Hydra would report in several (a misspelled key, a wrong type, an unknown group option).

    Only plain overrides (and -m/--multirun) are checked; other Hydra flags, sweeps it cannot enumerate and
    anything unexpected are left to Hydra itself."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as exc:
        raise ConfigError(composition_error(exc, overrides)) from None
    multirun = len(overrides) < len(argv)
    sweeps: dict[int, list[str]] = {}
    for i, o in enumerate(parsed):
        if multirun and o.is_sweep_override():
            try:
                sweeps[i] = list(o.sweep_string_iterator())
            except HydraException:  # interval or glob sweeps: for a sweeper plugin to expand
                plain = [x for j, x in enumerate(overrides) if j != i and not parsed[j].is_sweep_override()]
                if _compose(plain).hydra.sweeper._target_.endswith("BasicSweeper"):
                    raise ConfigError(f"<{overrides[i]}> is not allowed: the basic sweeper takes value lists (a,b,c), "
                                      f"choice(...) and range(...)") from None
                return
    first = [f"{o.get_key_element()}={sweeps[i][0]}" if i in sweeps else overrides[i] for i, o in enumerate(parsed)]
    variants = [first] + [first[:i] + [f"{parsed[i].get_key_element()}={v}"] + first[i + 1:] for i in sweeps for v in sweeps[i][1:]]
    for variant in variants:
        _compose(variant)


def _compose(overrides: list[str]) -> DictConfig:
    """Compose conf/config.yaml with `overrides` and Hydra's own config; a Hydra error becomes a one-line ConfigError."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except HydraException as exc:
        raise ConfigError(composition_error(exc, overrides)) from None


def cli() -> None:
    """`python -m bench.run ...`: check the command line (one line and exit status 2 when it does not compose),
    then hand over to Hydra."""
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception:  # the check itself tripped on something unforeseen: Hydra reports what is wrong, if anything
        pass
    main()
    cleanup()  # the process group lives for the whole process (all jobs of a sweep); not on errors (see cleanup)


if __name__ == "__main__":
    cli()
