"""The benchmark's entry point: train one model with one sampler on one dataset, timed fairly.

    python -m bench.run                                   # the main job: defaults in conf/config.yaml
    python -m bench.run sampler=uniform dataset=kdd04     # pick axes
    python -m bench.run -m sampler=uniform,history,nws seed=0,1,2          # a sweep (basic launcher)
    python -m bench.run -m hydra/launcher=joblib sketch.width=256,1024     # local parallel jobs
    python -m bench.report results                        # tables and plots of every finished run

A run's identity is a hash of its resolved config (`bench.results.run_id`). A finished run's row is kept
at `<paths.results_dir>/runs/<run_id>.json`, so re-running a sweep skips finished jobs and resumes killed
ones from `<paths.results_dir>/ckpt/<run_id>.pt` (`resume=false` starts over). Bad config values stop the
run before training with one line naming the key (exit status 2).
"""
from __future__ import annotations

import logging
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from . import data as datasets  # noqa: E402
from .checkpoint import checkpoint_path, load_checkpoint, save_checkpoint  # noqa: E402
from .config import METRICS, ConfigError, register_configs, validate, validate_against_data  # noqa: E402
from .logger import RunLogger  # noqa: E402
from .results import read_rows, row_path, run_id, write_row  # noqa: E402
from .sampling import build_sampler  # noqa: E402
from .train import TrainSpec, TrainState, final_metric, train  # noqa: E402

log = logging.getLogger("bench.run")
register_configs()
REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """Return the repository's HEAD commit (with '+dirty' when the tree has changes), or 'unknown'."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=5)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def resolve_device(name: str) -> torch.device:
    """Return the torch device for `device=auto|cpu|cuda` (auto: cuda when available)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("<device='cuda'> is not allowed: no CUDA device is visible; use device=cpu or device=auto")
    return torch.device(name)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


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
    try:
        data = datasets.load(cfg.dataset.name, root=cfg.dataset.root, **cfg.dataset.options)
    except (ValueError, TypeError) as exc:  # unknown name or option
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> is not allowed: {exc}") from None
    except RuntimeError as exc:  # cannot be prepared here (offline, missing tool)
        raise ConfigError(f"<dataset.name={cfg.dataset.name!r}> could not be loaded: {exc}") from None
    if cfg.dataset.train_size is not None or cfg.dataset.test_size is not None:
        data = data.subset(cfg.dataset.train_size or data.num_train, cfg.dataset.test_size or data.num_test, seed=0)
    return data.to(device)


def run(cfg: DictConfig, out_dir: Optional[Path] = None) -> dict[str, Any]:
    """Run (or skip, or resume) the job described by `cfg` and return its result row.

    `out_dir` receives this run's logs and a copy of its row (default: Hydra's output directory)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    rid = run_id(resolved)
    results_dir = Path(cfg.paths.results_dir).absolute()
    done = row_path(results_dir, rid)
    out = Path(out_dir) if out_dir is not None else output_dir()
    if cfg.resume and done.is_file():
        row = read_rows(done)[0]
        log.info(f"run {rid} already finished: skipping, row at {done} <resume=true>")
        write_row(out, row)
        return row
    if cfg.trainer.threads:
        torch.set_num_threads(cfg.trainer.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # model init and dropout; samplers use their own generators
    data = load_data(cfg, device)
    validate_against_data(cfg, data.num_train, data.task)
    log.info(f"dataset {data.name}: {data.num_train} train / {data.num_test} test rows, task {data.task} <dataset={cfg.dataset.name}>")
    model = instantiate(cfg.model, input_shape=data.input_shape, cardinalities=data.cardinalities, num_outputs=data.num_outputs).to(device)
    optimizer = instantiate(cfg.trainer.optimizer)(model.parameters())
    steps_per_epoch = math.ceil(data.num_train / cfg.trainer.batch_size)
    scheduler = _schedule(cfg.trainer.schedule, optimizer, steps_per_epoch * cfg.trainer.epochs, cfg.trainer.optimizer.lr)
    sampler, setup_s = build_sampler(cfg.sampler, cfg.sketch, data, model, task=data.task, batch_size=cfg.trainer.batch_size,
                                     steps_per_epoch=steps_per_epoch, epochs=cfg.trainer.epochs, seed=cfg.seed, device=device,
                                     cache_dir=cfg.dataset.root)
    log.info(f"sampler {cfg.sampler.name} ({sampler.cost}); setup {setup_s:.2f}s <sampler={cfg.sampler.name}>")
    spec = TrainSpec(task=data.task, epochs=cfg.trainer.epochs, steps_per_epoch=steps_per_epoch,
                     evals_per_epoch=cfg.trainer.evals_per_epoch, target_metric=cfg.trainer.target_metric,
                     target=cfg.trainer.target, max_time_s=cfg.trainer.max_time_s, eval_batch_size=cfg.trainer.eval_batch_size,
                     checkpoint_every_s=cfg.trainer.checkpoint_every_s, checkpoint_every_steps=cfg.trainer.checkpoint_every_steps,
                     warmup_steps=cfg.trainer.warmup_steps)
    ckpt = checkpoint_path(results_dir, rid)
    state, resumed = TrainState(setup_s=setup_s), False
    if cfg.resume and ckpt.is_file():
        state, resumed = load_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler), True
        log.info(f"resuming run {rid} from step {state.step} (epoch {state.epoch}) <resume=true>")

    def save(st: TrainState) -> None:
        save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, state=st)

    w = cfg.logger.wandb
    with RunLogger(out, config=resolved, mode=w.mode, project=w.project, entity=w.entity, tags=list(w.tags),
                   name=f"{cfg.dataset.name}-{cfg.sampler.name}-s{cfg.seed}-{rid}", group=cfg.dataset.name) as logger:
        bar = _progress(cfg, spec, state.step)
        state = train(model, optimizer, scheduler, sampler, data, spec, device=device, batch_size=cfg.trainer.batch_size,
                      state=state, resumed=resumed, checkpoint=save,
                      on_eval=lambda p: (logger.log(p, step=p["step"]), bar.set_postfix(metric=f"{p['metric']:.4f}")),
                      on_step=lambda s: bar.update(1))
        bar.close()
        row = result_row(cfg, rid, data, state, sampler, device)
        logger.summary(row)
    write_row(results_dir, row)
    write_row(out, row)
    ckpt.unlink(missing_ok=True)
    return row


def _progress(cfg: DictConfig, spec: TrainSpec, initial: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=spec.epochs * spec.steps_per_epoch, initial=initial, desc=f"{cfg.dataset.name}/{cfg.sampler.name}",
                unit="step", disable=not cfg.progress, leave=False, file=sys.stderr)


def result_row(cfg: DictConfig, rid: str, data: Any, state: TrainState, sampler: Any, device: torch.device) -> dict[str, Any]:
    """Return the result row of a finished run (fields documented in bench.results)."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    clock = state.setup_s + state.train_s
    return {
        "run_id": rid, "status": "done", "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "dataset": cfg.dataset.name, "model": cfg.model._target_.rsplit(".", 1)[-1], "sampler": cfg.sampler.name,
        "seed": cfg.seed, "task": data.task,
        **{f"sketch_{k}": cfg.sketch[k] for k in ("family", "depth", "width", "bits", "bandwidth", "decay")},
        "target_metric": cfg.trainer.target_metric, "target": cfg.trainer.target,
        "higher_is_better": METRICS[cfg.trainer.target_metric],
        "reached_target": state.time_to_target_s is not None, "time_to_target_s": state.time_to_target_s,
        "steps_to_target": state.steps_to_target, "final_metric": final_metric(state), "best_metric": state.best_metric,
        "final_loss": state.curve[-1].get("test_loss") if state.curve else None,
        "train_time_s": clock, "eval_time_s": state.eval_s, "sampler_time_s": state.sampler_s, "setup_time_s": state.setup_s,
        "sampler_overhead": (state.sampler_s + state.setup_s) / clock if clock > 0 else None,
        "steps": state.step, "epochs": state.epoch, "stopped_by_time": state.stopped_by_time,
        "skipped_nonfinite": int(getattr(sampler, "skipped_nonfinite", 0)),
        "device": device_name(device), "torch_version": torch.__version__, "git_commit": git_commit(),
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
    print(summary_table(row))
    print(f"row: {row_path(Path(cfg.paths.results_dir).absolute(), row['run_id'])}")
    return row["final_metric"]


if __name__ == "__main__":
    main()
