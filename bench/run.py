"""The benchmark's entry point: train one model with one sampler on one dataset, timed fairly.

    python -m bench.run                                   # the main job: defaults in conf/config.yaml
    python -m bench.run sampler=uniform dataset=kdd04     # pick axes
    python -m bench.run -m sampler=uniform,history,nws seed=0,1,2          # a sweep (basic launcher)
    python -m bench.run -m hydra/launcher=local_parallel sketch.width=256,1024     # local parallel jobs
    python -m bench.report results                        # tables and plots of every finished run

`run(cfg)` reads top to bottom: identity -> skip if finished -> build (data, model, optimizer, sampler) ->
resume if a checkpoint exists -> train -> write the row. A run's identity is a hash of the config keys that
decide what it computes (`bench.results.identity`). A finished run's row is kept at
`<paths.results_dir>/runs/<run_id>.json`, so re-running a sweep skips finished jobs and resumes killed ones from
`<paths.results_dir>/ckpt/<run_id>.pt` (`resume=false` starts over). The command line, validation and the
one-line errors (exit status 2) are `bench.config.cli`'s.
"""
from __future__ import annotations

import functools
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sketch.distributed import distributed_update

from .build.features import ForwardRekey, ModelRekey
from .build.inputs import RunContext, sampler_options
from .build.parts import (build, build_sampler, layout, load_data, oversized, resolved_config, restore, schedule,
                          steps_per_epoch, train_spec)
from .config.errors import ConfigError
from .config.preflight import usable_threads
from .config.schemas import validate_against_data
from .results.identity import experiment_id, group_id, identity, run_id
from .results.logger import Progress, run_logger
from .results.provenance import device_name, git_commit
from .results.rows import ResultRow, read_rows, row_path, write_row
from .train.checkpoint import checkpoint_path, periodic, remove_checkpoint, save_checkpoint, stop_point
from .train.distributed import DistEnv, barrier, broadcast_object, layout_fields, main_first
from .train.lock import acquire
from .train.loop import TrainSpec, TrainState, final_metric, train
from .train.probe import Probe
from .train.timing import STALL_FACTOR, find_stalls

__all__ = ["run", "output_dir", "result_row"]

log = logging.getLogger("bench.run")


def output_dir() -> Path:
    """This run's Hydra output folder (the working directory outside Hydra, e.g. in tests)."""
    return Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()


def run(cfg: DictConfig, out_dir: Optional[Path] = None) -> ResultRow:
    """Run (or skip, or resume) the job described by `cfg` and return its result row.

    `out_dir` receives this run's logs and a copy of its row (default: Hydra's output directory).
    Under torchrun every rank calls it: the ranks train one data-parallel job; rank 0 writes the results."""
    env = layout(cfg)
    resolved = resolved_config(cfg)  # a table: prepared, its content fingerprint in, its path out (bench.build.parts)
    if env.distributed:
        resolved["world_size"] = env.world_size  # another job than the single-process run (single ids unchanged)
    rid = run_id(resolved)
    results_dir = Path(cfg.paths.results_dir).absolute()
    out = Path(out_dir) if out_dir is not None else output_dir()
    finished = _finished_row(cfg, rid, results_dir, out, env)
    if finished is not None:
        return finished

    threads, notes = usable_threads(cfg.trainer.threads)  # held to the cores; the warning goes into the row
    for note in notes:
        log.warning(note)
    if threads:
        torch.set_num_threads(threads)
    device = env.device
    if cfg.trainer.batch_size % env.world_size:
        raise ConfigError(f"<trainer.batch_size={cfg.trainer.batch_size}> is not allowed: it is the global batch and "
                          f"must be divisible by the number of ranks (WORLD_SIZE={env.world_size})")
    local_batch = cfg.trainer.batch_size // env.world_size  # each rank trains on its slice of the global batch
    torch.manual_seed(cfg.seed)  # model init and dropout; samplers use their own generators
    with main_first():  # rank 0 prepares the dataset cache first
        data = load_data(cfg, device)
    validate_against_data(cfg, data.num_train, data.task, data.y_test)
    for note in oversized(cfg, data):  # accepted, but not what was asked for: said once, and kept in the row
        log.warning(note)
        notes.append(note)
    log.info(f"dataset {data.name}: {data.num_train} train / {data.num_test} test rows, task {data.task} <dataset={cfg.dataset.name}>")

    model = build(cfg.model, "model", input_shape=data.input_shape, cardinalities=data.cardinalities,
                  num_outputs=data.num_outputs).to(device)
    optimizer = build(cfg.trainer.optimizer, "trainer.optimizer", model.parameters())
    spec = train_spec(cfg, data.task, steps_per_epoch(data.num_train, cfg.trainer.batch_size))
    scheduler = schedule(cfg.trainer.schedule, optimizer, spec.steps_per_epoch * spec.epochs, cfg.trainer.optimizer.lr)
    ctx = RunContext(data=data, model=model, batch_size=local_batch, steps_per_epoch=spec.steps_per_epoch,
                     epochs=spec.epochs, seed=cfg.seed, device=device, cache_dir=cfg.dataset.root,
                     cache_cap_bytes=int(cfg.paths.slots_cache_gb * 2**30),
                     num_replicas=env.world_size, rank=env.rank)
    sampler, setup_s = build_sampler(cfg, ctx)
    log.info(f"sampler {cfg.sampler.name}; setup {setup_s:.2f}s <sampler={cfg.sampler.name}>")  # its cost: docs
    trained = model
    if env.distributed:
        trained = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    feedback = functools.partial(distributed_update, sampler) if env.distributed else None
    rekey = model_rekey(cfg, ctx, sampler, env)  # sketch.key.input=model: the model's features re-hashed between epochs
    parts = {"rekey": rekey} if rekey else {}
    probe = Probe(data, cfg.trainer.probe_size, cfg.trainer.eval_batch_size) if cfg.trainer.probe_size else None

    lock = acquire(results_dir, rid)  # one process per run: RunLocked while another live process runs it (bench.train.lock)
    finished = _finished_row(cfg, rid, results_dir, out, env)  # it may have finished elsewhere while this one set up
    if finished is not None:
        lock.release()
        return finished
    ckpt = checkpoint_path(results_dir, rid)
    restored = None
    if cfg.resume and ckpt.is_file():
        restored = restore(ckpt, rid, log, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, extra=parts)
    state, resumed = (restored, True) if restored is not None else (TrainState(setup_s=setup_s), False)

    def save(st: TrainState) -> None:
        if env.is_main:  # the bare model: no "module." prefix, loadable by any world size
            save_checkpoint(ckpt, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, state=st, extra=parts)

    with run_logger(out, cfg, resolved, rid, enabled=env.is_main) as logger:  # W&B id = run id: a resumed run continues it
        bar = _progress(cfg, spec, state.step, env)
        state = train(trained, optimizer, scheduler, sampler, data, spec, device=device, batch_size=local_batch,
                      state=state, resumed=resumed, checkpoint=periodic(save, ckpt), feedback=rekey.feedback if rekey else feedback,
                      on_epoch=rekey.on_epoch if rekey else None,
                      probe=functools.partial(probe.measure, model, sampler) if probe else None,
                      on_eval=lambda p: (logger.log_eval(p), bar.evaluated(p)),
                      on_step=lambda s: bar.update(1), stop=stop_point(save, ckpt, device))
        bar.close()
        row = result_row(cfg, resolved, data, spec, state, sampler, device, {**layout_fields(env, sampler), "warnings": notes})
        if env.is_main:
            logger.summary(row.to_dict())
    if env.is_main:
        write_row(results_dir, row)
        write_row(out, row)
        remove_checkpoint(ckpt)
    lock.release()
    barrier()  # the next job of a sweep starts once rank 0 has written this one's row
    return row


def model_rekey(cfg: DictConfig, ctx: RunContext, sampler: Any, env: DistEnv) -> Optional[ModelRekey | ForwardRekey]:
    """The re-hash of the model's features for a sampler that hashes them (`sketch.key.input=model`), or the re-key
    of each trained batch from its training forward (`sketch.key.follow`), else None."""
    if ctx.sketch is None or (ctx.sketch.key.input != "model" and not ctx.sketch.key.follow):
        return None
    if ctx.sketch.key.follow:
        if env.distributed:
            raise ConfigError("<sketch.key.follow=true> is not allowed under torchrun: each rank sees only its own "
                              "batch's features; use sketch.key.follow=false")
        try:
            return ForwardRekey(sampler, ctx.model, ctx.data, ctx.sketch.key, seed=cfg.seed, update=sampler.update)
        except ValueError as exc:
            raise ConfigError(f"<sketch.key.follow=true> is not allowed: {exc}") from exc
    if env.distributed:
        raise ConfigError("<sketch.key.input=model> is not allowed under torchrun: the re-hash would need every rank's "
                          "losses; use input=raw or input=projection")
    return ModelRekey(sampler, ctx.model, ctx.data, ctx.sketch.key, seed=cfg.seed, update=sampler.update)


def _finished_row(cfg: DictConfig, rid: str, results_dir: Path, out: Path, env: DistEnv) -> Optional[ResultRow]:
    """The row of this run when it finished before (and `resume` is on), copied to this run's folder; else None."""
    done = row_path(results_dir, rid)
    rows = read_rows(done) if cfg.resume and done.is_file() else []  # a row that cannot be read: one warning, run again
    if not broadcast_object(bool(rows)):  # rank 0 decides: all ranks skip or none
        return None
    row = rows[0] if rows else read_rows(done)[0]
    log.info(f"run {rid} already finished: skipping, row at {done} <resume=true>")
    if env.is_main:
        write_row(out, row)
        remove_checkpoint(checkpoint_path(results_dir, rid))  # left behind when killed right after its row
    return row


def _progress(cfg: DictConfig, spec: TrainSpec, initial: int, env: DistEnv) -> Progress:
    return Progress(f"{cfg.dataset.name}/{cfg.sampler.name}", spec.epochs * spec.steps_per_epoch, spec.target_metric,
                    initial=initial, enabled=cfg.progress and env.is_main)


def result_row(cfg: DictConfig, resolved: dict, data: Any, spec: TrainSpec, state: TrainState, sampler: Any,
               device: torch.device, layout: dict[str, Any]) -> ResultRow:
    """Return the typed result row of a finished run."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    clock = state.setup_s + state.train_s
    ident = identity(resolved)
    layout = {"skipped_nonfinite": int(getattr(sampler, "skipped_nonfinite", 0)), **layout}  # summed over ranks there
    stalls = find_stalls(state.curve)
    if stalls.count:
        log.warning(f"{stalls.count} evaluation interval(s) ran over {STALL_FACTOR:g}x the median per-step time "
                    f"({stalls.seconds:.1f} s lost): the machine was busy; robust_time_to_target_s discounts it")
    return ResultRow(
        run_id=run_id(resolved), group_id=group_id(resolved), experiment_id=experiment_id(resolved),
        timestamp=time.strftime("%Y-%m-%dT%H:%M:%S"), dataset=cfg.dataset.name,
        model=cfg.model._target_.rsplit(".", 1)[-1], sampler=cfg.sampler.name, seed=cfg.seed, task=data.task,
        sampler_options=sampler_options(ident["sampler"]), sketch=ident.get("sketch"),
        target_metric=spec.target_metric, target=spec.target,
        reached_target=state.time_to_target_s is not None, time_to_target_s=state.time_to_target_s,
        steps_to_target=state.steps_to_target, final_metric=final_metric(state), best_metric=state.best_metric,
        final_loss=state.curve[-1].get("test_loss") if state.curve else None,
        train_time_s=clock, eval_time_s=state.eval_s, probe_time_s=state.probe_s, sampler_time_s=state.sampler_s,
        setup_time_s=state.setup_s,
        sampler_overhead=(state.sampler_s + state.setup_s) / clock if clock > 0 else None,
        steps=state.step, epochs=state.epoch, steps_per_epoch=spec.steps_per_epoch, evals_per_epoch=spec.evals_per_epoch,
        stopped_by_time=state.stopped_by_time, skipped_steps=state.skipped_steps,
        interval_step_s=stalls.interval_step_s, median_step_s=stalls.median_step_s, stalls=stalls.count,
        stall_s=stalls.seconds, robust_time_to_target_s=stalls.robust_time(state.steps_to_target, state.setup_s),
        device=device_name(device) + ("" if device.type == "cuda" else f", {torch.get_num_threads()} threads"),
        torch_version=torch.__version__, git_commit=git_commit(), overrides=overrides, config=ident, curve=state.curve,
        **layout,
    )


if __name__ == "__main__":
    from bench.config.cli import cli
    from bench.run import run as run_job  # by its module's name, so that a launcher's worker processes can import it

    cli(run_job)
