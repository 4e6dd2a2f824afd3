"""Resumable sweeps and exact resume: kill real runs and sweeps, run the same command again, lose nothing.

The properties under test:
- a job's identity is a hash of its resolved config (seed included, locations excluded), so re-running a
  `-m` sweep skips finished jobs, resumes the killed one from its checkpoint and reruns the rest: one row
  per job, none lost, none twice;
- a run killed after a checkpoint and resumed ends, on the CPU with the same seed, bit for bit where an
  uninterrupted run ends (curve metrics, final metric and loss, steps), whatever the sampler or schedule;
- checkpoints are written atomically: a save killed half-way leaves the previous checkpoint, stray temporary
  files are ignored, an unreadable checkpoint is reported and the run starts over;
- determinism: the same seed gives the same metrics, another seed other metrics.
"""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import bench.run as bench_run
from bench.train.checkpoint import checkpoint_path
from bench.config.errors import ConfigError
from bench.results.rows import ResultRow, read_rows, row_path
from bench.results.identity import experiment_id, group_id, run_id

from test_run import TINY, tiny


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


class Killed(BaseException):
    """Stands in for SIGKILL inside the test process: nothing catches it, as nothing survives a kill."""


def _env() -> dict[str, str]:
    # One thread per process: two runs side by side on two cores must not fight over them.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bench.run", *args], cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: int = 240) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0) -> None:
    """SIGKILL `proc` as soon as `ready()` holds (polled every 5 ms); fail if it exits first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before it could be killed:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the moment to kill the run")
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _metrics(row: ResultRow) -> dict:
    """What must not change when a run is killed and resumed: everything but clocks and timestamps."""
    curve = [{k: v for k, v in p.items() if k != "time_s"} for p in row.curve]
    keys = ("final_metric", "final_loss", "best_metric", "steps", "epochs", "steps_to_target", "skipped_nonfinite", "run_id")
    return {"curve": curve, **{k: getattr(row, k) for k in keys}}


def _row(results: Path, rid: str) -> ResultRow:
    return read_rows(row_path(results, rid))[0]


# -- a sweep killed mid-way ------------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_sweep_rerun_gives_one_row_per_job_none_lost_none_twice(compose, tmp_path):
    results, sweep = tmp_path / "results", tmp_path / "sweep"
    samplers, seeds = ["uniform", "history", "nws"], [0, 1]
    args = ["-m", *tiny(",".join(samplers)), f"seed={','.join(map(str, seeds))}", "+dataset.options.n_test=100",
            "trainer.epochs=3", "trainer.checkpoint_every_steps=3", f"paths.results_dir={results}",
            f"paths.data_dir={tmp_path / 'data'}", f"hydra.sweep.dir={sweep}"]
    runs = results / "runs"

    # the identities the sweep must end with: one per job, computed from the composed configs
    expected = set()
    for sampler, seed in itertools.product(samplers, seeds):
        cfg = compose([*tiny(sampler), f"seed={seed}", "+dataset.options.n_test=100", "trainer.epochs=3",
                       "trainer.checkpoint_every_steps=3", f"paths.data_dir={tmp_path / 'other-cache'}"])
        expected.add(run_id(OmegaConf.to_container(cfg, resolve=True)))
    assert len(expected) == 6

    first = _start(args, cwd=tmp_path)
    _kill_when(first, lambda: runs.is_dir() and len(list(runs.glob("*.json"))) >= 2)
    before = {p.stem: p.read_text() for p in runs.glob("*.json")}
    assert 2 <= len(before) < len(expected), "the sweep must be killed with jobs left to run"
    # the job killed mid-way (a finished job may also still have its checkpoint: killed right after its row)
    killed_ckpts = {p.stem for p in (results / "ckpt").glob("*.pt")} - set(before)

    out, err = _finish(_start(args, cwd=tmp_path))
    files = sorted(runs.glob("*.json"))
    assert {p.stem for p in files} == expected and len(files) == len(expected)
    for p in files:  # each row whole, under its own id
        assert json.loads(p.read_text())["run_id"] == p.stem
    assert not list((results / "ckpt").glob("*.pt"))  # finished (and skipped) runs remove their checkpoints
    for rid, text in before.items():  # finished jobs were skipped, not trained again
        assert f"run {rid} already finished: skipping" in out
        assert (runs / f"{rid}.json").read_text() == text
    for rid in killed_ckpts:  # the job killed mid-way continued from its checkpoint
        assert f"resuming run {rid}" in out
    assert out.count("already finished: skipping") == len(before)
    assert {r.run_id for r in read_rows(sweep)} == expected  # every job folder holds its row
    assert "[sweep] finished" in err


def test_run_killed_right_after_its_row_is_skipped_and_its_checkpoint_removed(compose, monkeypatch, tmp_path, caplog):
    cfg = compose([*tiny("history"), "trainer.checkpoint_every_steps=3"])
    write_row, written = bench_run.write_row, []

    def die_after_the_results_row(where, row):
        written.append(write_row(where, row))
        raise Killed  # before the copy in the run folder and before the checkpoint is removed

    with monkeypatch.context() as m:
        m.setattr(bench_run, "write_row", die_after_the_results_row)
        with pytest.raises(Killed):
            bench_run.run(cfg, out_dir=tmp_path / "out")
    rid = written[0].stem
    assert checkpoint_path(cfg.paths.results_dir, rid).is_file()
    with caplog.at_level("INFO", logger="bench.run"):
        bench_run.run(cfg, out_dir=tmp_path / "out")
    assert f"run {rid} already finished: skipping" in caplog.text
    assert not checkpoint_path(cfg.paths.results_dir, rid).exists() and (tmp_path / "out" / "runs" / f"{rid}.json").is_file()


# -- one run killed mid-way, through the real entry point ------------------------------------------------
@pytest.mark.slow
def test_killed_run_resumes_bit_identical_through_the_cli(tmp_path):
    # nws with a one-cycle schedule: the sketch, the sampler's generator and the scheduler all carry state
    common = [*tiny("nws"), "dataset.options.n=1500", "trainer.batch_size=32", "trainer.epochs=3",
              "trainer.schedule=onecycle", "trainer.checkpoint_every_steps=4", f"paths.data_dir={tmp_path / 'data'}"]
    ref_dir, res_dir = tmp_path / "reference", tmp_path / "resumed"
    reference = _start([*common, f"paths.results_dir={ref_dir}", f"hydra.run.dir={tmp_path / 'out-ref'}"], cwd=tmp_path)
    args = [*common, f"paths.results_dir={res_dir}", f"hydra.run.dir={tmp_path / 'out'}"]
    killed = _start(args, cwd=tmp_path)
    ckpts = res_dir / "ckpt"
    _kill_when(killed, lambda: ckpts.is_dir() and any(ckpts.glob("*.pt")))
    (ckpt,) = ckpts.glob("*.pt")
    rid = ckpt.stem
    assert not row_path(res_dir, rid).exists()
    # a save killed half-way leaves a temporary file behind: it must be ignored, then cleaned up
    (ckpts / f"{rid}.99999.tmp").write_bytes(b"half a checkpoint")

    out, _ = _finish(_start(args, cwd=tmp_path))
    assert f"resuming run {rid} from step" in out
    _finish(reference)
    assert _metrics(_row(res_dir, rid)) == _metrics(_row(ref_dir, rid))
    assert not list(ckpts.iterdir())


# -- exact resume, in process, for every sampler and schedule --------------------------------------------
def _kill_after_checkpoint(monkeypatch, at_step: int) -> None:
    save = bench_run.save_checkpoint

    def save_then_die(path, **parts):
        save(path, **parts)
        if parts["state"].step >= at_step:
            raise Killed

    monkeypatch.setattr(bench_run, "save_checkpoint", save_then_die)


def _interrupted_and_reference(compose, monkeypatch, tmp_path, overrides: list[str], at_step: int, caplog) -> tuple[dict, dict]:
    ref_cfg = compose([*overrides, f"paths.results_dir={tmp_path / 'reference'}"])
    reference = bench_run.run(ref_cfg, out_dir=tmp_path / "out-ref")
    cfg = compose(overrides)
    rid = run_id(OmegaConf.to_container(cfg, resolve=True))
    with monkeypatch.context() as m:
        _kill_after_checkpoint(m, at_step)
        with pytest.raises(Killed):
            bench_run.run(cfg, out_dir=tmp_path / "out")
    results = Path(cfg.paths.results_dir)
    assert checkpoint_path(results, rid).is_file() and not row_path(results, rid).exists()
    with caplog.at_level("INFO", logger="bench.run"):
        bench_run.run(cfg, out_dir=tmp_path / "out")
    assert f"resuming run {rid} from step {at_step}" in caplog.text
    assert not checkpoint_path(results, rid).exists()
    return _row(results, rid), _row(tmp_path / "reference", reference.run_id)


@pytest.mark.parametrize("sampler,extra,at_step", [
    ("nws", ["trainer.schedule=onecycle"], 4),
    ("nws", ["trainer.schedule=cosine", "sketch.decay=0.9"], 7),
    ("history", ["model.dropout=0.2"], 4),  # dropout draws from the global generator: it is checkpointed too
    ("uniform", ["trainer.schedule=onecycle"], 7),
    ("loss", ["sampler.pool_size=256"], 4),
    ("infobatch", [], 13),  # in the second epoch, after pruning
    ("static", ["sampler.proxy_steps=5"], 4),
    ("nws", [], 10),  # after the last step of the first epoch: the next epoch must not repeat it
    ("nws", ["sampler.refresh_every=1", "sketch.key.label_buckets=true"], 7),  # masses every step, label buckets
    ("nws_full", ["sketch.key.input=model"], 13),  # the full estimator, after the re-hash of the model's features
    ("nws", ["sketch.key.follow=true"], 13),  # batches re-keyed from their training forward, moves re-indexed per epoch
    ("nws", ["sketch.key.input=model"], 10),  # at the epoch boundary: the resumed run re-hashes, as the reference did
    ("stream_filter", ["sampler.warmup=200"], 7),  # past its warm-up
    ("selective_backprop", [], 7),
])
def test_killed_run_resumes_bit_identical(compose, monkeypatch, tmp_path, caplog, sampler, extra, at_step):
    overrides = [*tiny(sampler), "trainer.epochs=2", "trainer.evals_per_epoch=3", "trainer.checkpoint_every_steps=1",
                 f"paths.data_dir={tmp_path / 'data'}", *extra]
    resumed, reference = _interrupted_and_reference(compose, monkeypatch, tmp_path, overrides, at_step, caplog)
    assert _metrics(resumed) == _metrics(reference)
    assert resumed.steps == 2 * 10 and resumed.epochs == 2


def test_save_killed_half_way_keeps_the_previous_checkpoint(compose, monkeypatch, tmp_path, caplog):
    overrides = [*tiny("nws"), "trainer.epochs=2", "trainer.checkpoint_every_steps=3", f"paths.data_dir={tmp_path / 'data'}"]
    cfg = compose(overrides)
    rid = run_id(OmegaConf.to_container(cfg, resolve=True))
    ckpt = checkpoint_path(cfg.paths.results_dir, rid)
    save, saves = torch.save, []

    def die_while_writing(obj, f, *args, **kwargs):
        saves.append(Path(getattr(f, "name", f)).parent == ckpt.parent)  # other saves: e.g. the cache of hashed inputs
        if sum(saves) == 2:  # the second checkpoint: half the bytes reach the disk, then the process dies
            f.write(b"PK\x03\x04 truncated")
            raise Killed
        return save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", die_while_writing)
        with pytest.raises(Killed):
            bench_run.run(cfg, out_dir=tmp_path / "out")
    # the visible checkpoint is still the whole first one
    assert torch.load(ckpt, weights_only=False)["state"]["step"] == 3
    assert [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]
    with caplog.at_level("INFO", logger="bench.run"):
        row = bench_run.run(cfg, out_dir=tmp_path / "out")
    assert f"resuming run {rid} from step 3" in caplog.text
    reference = bench_run.run(compose([*overrides, f"paths.results_dir={tmp_path / 'reference'}"]), out_dir=tmp_path / "out-ref")
    assert _metrics(_row(Path(cfg.paths.results_dir), rid)) == _metrics(_row(tmp_path / "reference", reference.run_id))
    assert row.steps == 20


def test_unreadable_checkpoint_is_reported_and_the_run_starts_over(compose, tmp_path, caplog):
    overrides = [*tiny("history"), "trainer.checkpoint_every_steps=3"]
    cfg = compose(overrides)
    rid = run_id(OmegaConf.to_container(cfg, resolve=True))
    ckpt = checkpoint_path(cfg.paths.results_dir, rid)
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"\x00" * 100)  # e.g. a disk that lost the data of a renamed file
    with caplog.at_level("INFO", logger="bench.run"):
        row = bench_run.run(cfg, out_dir=tmp_path / "out")
    assert "cannot be read" in caplog.text and f"starting run {rid} over" in caplog.text
    assert "resuming run" not in caplog.text
    reference = bench_run.run(compose([*overrides, f"paths.results_dir={tmp_path / 'reference'}"]), out_dir=tmp_path / "b")
    assert _metrics(row) == _metrics(reference) and not ckpt.exists()


def test_checkpoint_of_another_run_is_a_one_line_error(compose, monkeypatch, tmp_path):
    # a checkpoint under this run's id that does not fit it (e.g. written by older code): stop, say what to do
    cfg = compose([*tiny("nws"), "trainer.checkpoint_every_steps=3"])
    other = compose([*tiny("history"), "trainer.checkpoint_every_steps=3", f"paths.results_dir={tmp_path / 'other'}"])
    with monkeypatch.context() as m:
        _kill_after_checkpoint(m, 3)
        with pytest.raises(Killed):
            bench_run.run(other, out_dir=tmp_path / "out")
    rid = run_id(OmegaConf.to_container(cfg, resolve=True))
    (src,) = (tmp_path / "other" / "ckpt").glob("*.pt")
    checkpoint_path(cfg.paths.results_dir, rid).parent.mkdir(parents=True)
    src.rename(checkpoint_path(cfg.paths.results_dir, rid))
    with pytest.raises(ConfigError) as info:
        bench_run.run(cfg, out_dir=tmp_path / "out")
    msg = str(info.value)
    assert msg.startswith("<resume=true> cannot continue from") and "resume=false" in msg and "\n" not in msg
    cfg.resume = False  # resume=false starts over and replaces it
    assert bench_run.run(cfg, out_dir=tmp_path / "out").steps == 10


# -- identity and determinism ----------------------------------------------------------------------------
def test_run_identity_ignores_locations_and_includes_the_seed(compose, tmp_path):
    def rid(*extra: str) -> str:
        return run_id(OmegaConf.to_container(compose([*TINY, *extra]), resolve=True))

    base = rid()
    assert rid(f"paths.data_dir={tmp_path / 'elsewhere'}", f"paths.results_dir={tmp_path / 'r2'}",
               "logger=offline", "progress=true", "resume=false") == base
    assert rid("seed=1") != base and rid("sketch.width=128") != base


@pytest.mark.parametrize("sampler", ["nws", "history"])
def test_same_seed_same_metrics_other_seed_other_metrics(compose, tmp_path, sampler):
    def metrics(seed: int, where: str) -> dict:
        cfg = compose([*tiny(sampler), f"seed={seed}", "trainer.epochs=2", f"paths.results_dir={tmp_path / where}"])
        row = bench_run.run(cfg, out_dir=tmp_path / f"out-{where}")
        return _metrics(_row(tmp_path / where, row.run_id))

    a, b, c = metrics(0, "a"), metrics(0, "b"), metrics(1, "c")
    assert a == b
    assert [p["metric"] for p in a["curve"]] != [p["metric"] for p in c["curve"]]


@pytest.mark.parametrize("sampler", ["uniform", "static", "loss", "history", "infobatch"])
def test_a_sampler_that_reads_no_sketch_keeps_its_id_when_sketch_settings_change(compose, sampler):
    def ids(*extra: str) -> tuple[str, str, str]:
        resolved = OmegaConf.to_container(compose([*tiny(sampler), *extra]), resolve=True)
        return run_id(resolved), group_id(resolved), experiment_id(resolved)

    base = ids()
    assert ids("sketch.width=128", "sketch.depth=2", "sketch.bits=2", "sketch.key.with_label=true") == base
    assert ids("sketch=pstable") == base
    assert ids("trainer.optimizer.lr=0.01")[0] != base[0]  # what it does read still counts


def test_group_id_drops_the_seed_and_experiment_id_the_sampler_too(compose):
    def ids(sampler: str, *extra: str) -> tuple[str, str, str]:
        resolved = OmegaConf.to_container(compose([*tiny(sampler), *extra]), resolve=True)
        return run_id(resolved), group_id(resolved), experiment_id(resolved)

    nws0, nws1, uni0 = ids("nws", "seed=0"), ids("nws", "seed=1"), ids("uniform", "seed=0")
    assert nws0[0] != nws1[0] and nws0[1] == nws1[1] and nws0[2] == nws1[2]  # seeds: one group
    assert nws0[1] != uni0[1] and nws0[2] == uni0[2]  # samplers: different groups, one experiment
    assert ids("nws", "sketch.width=128")[2] == nws0[2]  # sketch settings are the sampler's, not the experiment's
    assert ids("nws", "trainer.optimizer.lr=0.01")[2] != nws0[2]  # a different lr is another experiment
