"""Preemption and concurrent runs, with real signals to real `python -m bench.run` processes.

The properties under test:
- SIGTERM (SLURM preemption, `kill`, `docker stop`) or SIGINT (Ctrl-C) ends a run after the step it lands in: the
  checkpoint of that step is written (even with no periodic checkpoints), W&B is finished marked preempted, the
  process says so in one line and exits with 128 + the signal's number (143, 130); the same command resumes, and
  ends bit for bit where an uninterrupted run ends;
- in a `-m` sweep the finished jobs keep their rows and the rest of the sweep is not started; the same command
  skips the finished jobs, resumes the stopped one and runs the rest;
- under torchrun every rank stops after the same step, also a rank that got no signal;
- one process per run: a second process on a run that a live process holds says so in one line, exits 75 and
  writes nothing; a lock left by a killed process is taken over.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bench.run as bench_run
from bench.train.checkpoint import STOP, Preempted, StopSignal, exit_status, stop_point
from bench.train.lock import RunLocked, acquire, lock_path
from bench.results.logger import RunLogger
from bench.results.rows import read_rows
from bench.train.loop import TrainState

from test_resume import _metrics
from test_run import tiny

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread

# a run of a few hundred steps with no periodic checkpoint: the only checkpoint is the one the signal asks for
LONG = [*tiny("nws"), "dataset.options.n=1500", "trainer.batch_size=32", "trainer.epochs=4", "trainer.schedule=onecycle",
        "trainer.checkpoint_every_steps=0", "trainer.checkpoint_every_s=0"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
            **extra}


def _start(args: list[str], cwd: Path, module: tuple[str, ...] = ("-m", "bench.run"), **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *module, *args], cwd=cwd, env=_env(**env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for(ready, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Return as soon as `ready()` holds (polled every 5 ms); fail if `proc` ends first."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) too early:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out")
        time.sleep(0.005)


def _training(metrics: Path):
    """Ready once the run's first evaluation (step 0, just before the first step) is in its metrics.jsonl."""
    return lambda: metrics.is_file() and metrics.stat().st_size > 0


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _records(wandb_file: Path) -> list:
    """The records of a W&B transaction log (.wandb: LevelDB-style 32 KiB blocks of framed protobuf records)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf, out = wandb_file.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST fragment
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
            buf = b""
    return out


# -- one run, SIGTERM ------------------------------------------------------------------------------------------
def test_sigterm_checkpoints_the_step_finishes_wandb_preempted_and_the_same_command_resumes_bit_identical(compose, tmp_path):
    where = [f"paths.data_dir={tmp_path / 'data'}"]
    results = tmp_path / "results"
    args = [*LONG, *where, "logger=offline", f"paths.results_dir={results}"]
    first = _start([*args, f"hydra.run.dir={tmp_path / 'out1'}"], cwd=tmp_path, WANDB_MODE="offline")
    _wait_for(_training(tmp_path / "out1" / "metrics.jsonl"), first)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)

    assert first.returncode == 143 == exit_status(signal.SIGTERM), err[-3000:]
    (ckpt,) = (results / "ckpt").glob("*.pt")
    step = torch.load(ckpt, weights_only=False)["state"]["step"]
    assert 1 <= step < 4 * 47  # stopped mid-run, after a whole step
    assert _lines(err)[-1] == (f"stopped: SIGTERM after step {step} of the run; checkpoint {ckpt} written; "
                               f"run the same command to resume (exit status 143)")
    assert "Traceback" not in err and not list((results / "runs").glob("*.json"))
    # W&B was finished, marked preempted: the offline log holds the evaluations, the preempting mark and the exit
    (log,) = (tmp_path / "out1" / "wandb").glob("offline-run-*/run-*.wandb")
    kinds = [r.WhichOneof("record_type") for r in _records(log)]
    assert "history" in kinds and "preempting" in kinds
    assert [r.exit.exit_code for r in _records(log) if r.WhichOneof("record_type") == "exit"] == [143]

    second = _start([*args, "logger=disabled", f"hydra.run.dir={tmp_path / 'out2'}"], cwd=tmp_path)
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err[-3000:]
    assert f"resuming run {ckpt.stem} from step {step}" in out
    (resumed,) = read_rows(results)
    # the same run uninterrupted, here (one thread, as the subprocesses): bit for bit the same curve and metrics
    bench_run.run(compose([*LONG, *where, f"paths.results_dir={tmp_path / 'reference'}"]), out_dir=tmp_path / "out-ref")
    (uninterrupted,) = read_rows(tmp_path / "reference")
    assert _metrics(resumed) == _metrics(uninterrupted) and resumed.steps == 4 * 47
    assert not list((results / "ckpt").iterdir()) and not list((results / "locks").iterdir())


# -- a sweep, SIGINT -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigint_in_a_sweep_keeps_finished_rows_starts_no_more_jobs_and_the_same_command_completes_it(tmp_path):
    results, sweep = tmp_path / "results", tmp_path / "sweep"
    args = ["-m", *LONG, "trainer.epochs=2", "seed=0,1,2", f"paths.data_dir={tmp_path / 'data'}",
            f"paths.results_dir={results}", f"hydra.sweep.dir={sweep}"]
    first = _start(args, cwd=tmp_path)
    _wait_for(_training(sweep / "1" / "metrics.jsonl"), first)  # job 0 finished, job 1 training
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=120)

    assert first.returncode == 130, err[-3000:]
    (finished,) = read_rows(results)
    (ckpt,) = (results / "ckpt").glob("*.pt")
    assert finished.seed == 0 and ckpt.stem != finished.run_id
    assert _lines(err)[-1].startswith("stopped: SIGINT after step ") and ("of job #1 of the sweep; checkpoint "
                                                                         f"{ckpt} written; the jobs after it were not started") in _lines(err)[-1]
    assert not (sweep / "2").exists()  # job 2 never started

    out, err = _start(args, cwd=tmp_path).communicate(timeout=300)
    assert "Traceback" not in err
    rows = read_rows(results)
    assert sorted(r.seed for r in rows) == [0, 1, 2] and all(r.steps == 2 * 47 for r in rows)
    assert f"run {finished.run_id} already finished: skipping" in out and f"resuming run {ckpt.stem} from step" in out
    assert next(r for r in rows if r.run_id == finished.run_id).timestamp == finished.timestamp  # not trained again


# -- torchrun: every rank stops after the same step --------------------------------------------------------------
def _worker_of(parent: int, rank: int) -> int:
    """The pid of torchrun's worker process of `rank`."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                env = (proc / "environ").read_bytes().split(b"\0")
                if f"RANK={rank}".encode() in env:
                    return int(proc.name)
        except (OSError, ValueError, IndexError):
            continue
    raise LookupError(f"no worker of rank {rank} under {parent}")


@pytest.mark.slow
def test_sigterm_to_one_torchrun_rank_stops_every_rank_after_the_same_step_and_the_rerun_resumes(tmp_path):
    args = ["--standalone", "--nproc_per_node=2", "-m", "bench.run", *[o for o in LONG if not o.startswith("trainer.batch")],
            "trainer.batch_size=64", "trainer.epochs=20", "logger=disabled", f"paths.results_dir={tmp_path / 'results'}",
            f"paths.data_dir={tmp_path / 'data'}"]
    first = _start([*args, f"hydra.run.dir={tmp_path / 'out1'}"], cwd=tmp_path, module=("-m", "torch.distributed.run"))
    _wait_for(_training(tmp_path / "out1" / "metrics.jsonl"), first, timeout=240)
    ranks = [_worker_of(first.pid, r) for r in range(2)]
    os.kill(ranks[1], signal.SIGTERM)  # rank 1 only: rank 0 (which writes the checkpoint) gets none
    _, err = first.communicate(timeout=240)
    (ckpt,) = (tmp_path / "results" / "ckpt").glob("*.pt")
    step = torch.load(ckpt, weights_only=False)["state"]["step"]
    assert f"stopped: SIGTERM after step {step} of the run; checkpoint {ckpt} written" in err, err[-3000:]
    # rank 0 got no signal, yet wrote the checkpoint of the step rank 1 stopped after (their all_reduce agreed on it);
    # the workers exit 143, torchrun itself reports a failed child (1)
    assert "exitcode  : 143" in err and first.returncode == 1, err[-3000:]

    out, err = _start([*args, f"hydra.run.dir={tmp_path / 'out2'}"], cwd=tmp_path,
                      module=("-m", "torch.distributed.run")).communicate(timeout=600)
    (row,) = read_rows(tmp_path / "results")
    assert f"resuming run {ckpt.stem} from step {step}" in out, err[-3000:]
    assert row.world_size == 2 and row.sketch_in_sync is True and row.steps == 20 * 24


# -- one process per run ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_second_process_on_a_live_run_says_so_exits_75_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    args = [*tiny("nws"), f"paths.results_dir={results}", f"paths.data_dir={tmp_path / 'data'}"]
    first = _start([*args, f"hydra.run.dir={tmp_path / 'out1'}"], cwd=tmp_path)
    locks = results / "locks"

    def holds() -> bool:  # the lock file carries its holder once it is taken
        try:
            return any(json.loads(p.read_text() or "{}").get("pid") == first.pid for p in locks.glob("*.lock"))
        except (OSError, ValueError):
            return False

    _wait_for(holds, first)
    first.send_signal(signal.SIGSTOP)  # alive, holding the run, making no progress
    try:
        second = _start([*args, f"hydra.run.dir={tmp_path / 'out2'}"], cwd=tmp_path)
        out, err = second.communicate(timeout=120)
    finally:
        first.send_signal(signal.SIGCONT)
    (lock,) = locks.glob("*.lock")
    assert second.returncode == 75, err[-3000:]
    assert _lines(err)[-1].startswith(f"error: run {lock.stem} is already running in process {first.pid} on "
                                      f"{socket.gethostname()} (since ")
    assert f"not started here (lock {lock}); run the command again when it has ended" in _lines(err)[-1]
    assert not list((results / "runs").glob("*.json")) and not (tmp_path / "out2" / "metrics.jsonl").exists()

    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err[-3000:]
    assert [r.run_id for r in read_rows(results)] == [lock.stem] and not list(locks.iterdir())


HOLDER = """
import fcntl, json, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": "then"}).encode())
print("locked", flush=True)
time.sleep(600)
"""


def test_a_lock_left_by_a_killed_process_is_taken_over(compose, tmp_path, caplog):
    cfg = compose(tiny("history"))
    rid = bench_run.run_id(bench_run.resolved_config(cfg))
    path = lock_path(Path(cfg.paths.results_dir).absolute(), rid)
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(RunLocked, match=f"run {rid} is already running in process {holder.pid} on elsewhere"):
        acquire(cfg.paths.results_dir, rid)  # alive: refused
    holder.kill()
    holder.wait(timeout=30)
    with caplog.at_level("WARNING", logger="bench.train.lock"):
        row = bench_run.run(cfg, out_dir=tmp_path / "out")  # killed: its lock is stale
    assert f"took over the lock of run {rid} from process {holder.pid} on elsewhere (since then)" in caplog.text
    assert row.run_id == rid and read_rows(tmp_path / "results") and not path.exists()


@pytest.mark.slow
def test_a_sweep_leaves_a_job_another_process_runs_to_it_runs_the_rest_and_exits_75(compose, tmp_path):
    results, data = tmp_path / "results", tmp_path / "data"
    cfg = compose([*tiny("uniform"), "seed=0", f"paths.data_dir={data}"])
    rid = bench_run.run_id(bench_run.resolved_config(cfg))
    path = lock_path(results.absolute(), rid)
    path.parent.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"  # job seed=0 is "running" in another process
    args = ["-m", *tiny("uniform"), "seed=0,1", f"paths.results_dir={results}", f"paths.data_dir={data}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    try:
        sweep = _start(args, cwd=tmp_path)
        _, err = sweep.communicate(timeout=240)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert sweep.returncode == 75, err[-3000:]
    assert _lines(err)[-1] == (f"error: 1 job(s) of this sweep were left to the processes running them ({rid}); run the "
                               f"same command again when they have ended (exit status 75)")
    assert [r.seed for r in read_rows(results)] == [1]  # the other job ran
    out, err = _start(args, cwd=tmp_path).communicate(timeout=240)  # the holder is gone: its lock is stale
    assert sorted(r.seed for r in read_rows(results)) == [0, 1] and "Traceback" not in err


# -- the parts, in this process --------------------------------------------------------------------------------
def test_the_first_signal_is_a_request_a_quick_repeat_is_the_same_one_and_handlers_are_restored():
    signals = StopSignal()
    before = signal.getsignal(signal.SIGTERM)
    signals.install()
    try:
        signal.raise_signal(signal.SIGTERM)
        assert signals.signum == signal.SIGTERM
        signal.raise_signal(signal.SIGTERM)  # delivered twice (process group + torchrun's forward): still one request
        assert signals.signum == signal.SIGTERM
    finally:
        signals.uninstall()
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_point_saves_the_state_of_the_whole_step_then_raises_preempted():
    signals, saved = StopSignal(), []
    check = stop_point(saved.append, Path("ckpt.pt"), torch.device("cpu"), signals)
    check(TrainState(step=3))
    assert saved == []  # no request: nothing happens
    signals.signum = signal.SIGINT
    with pytest.raises(Preempted) as info:
        check(TrainState(step=4))
    assert [s.step for s in saved] == [4] and info.value.exit_code == 130 and info.value.step == 4
    assert STOP.signum is None  # the process-wide flag was not touched


def test_a_preempted_run_finishes_wandb_marked_preempting_with_its_exit_code(tmp_path, monkeypatch):
    import wandb

    class Run:
        marks, finished, summary = [], [], {}

        def mark_preempting(self):
            self.marks.append(True)

        def finish(self, exit_code=0):
            self.finished.append(exit_code)

        def log(self, *args, **kwargs):
            pass

    monkeypatch.setattr(wandb, "init", lambda **kwargs: Run())
    with pytest.raises(Preempted):
        with RunLogger(tmp_path, config={}, mode="offline"):
            raise Preempted(signal.SIGTERM, 7, tmp_path / "x.pt")
    assert Run.marks == [True] and Run.finished == [143]
