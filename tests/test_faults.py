"""Faults a run must survive: non-finite losses, and W&B without a key, a network, a package or a working service.

Non-finite losses (bench.train.loop's policy): a NaN/inf per-sample loss is left out of the weighted mean and
dropped (and counted) by the sampler; when the gradient is not finite the optimizer step is skipped and
counted, so the model never takes a NaN. W&B (bench.results.logger): every failure is one warning and a fallback
(online -> offline -> disabled), the local files go on, `finish` is always called and never raises, and a
failure of the run itself propagates unchanged.
"""
from __future__ import annotations

import math
import sys
import time
import warnings

import pytest
import torch
from torch import nn

import bench.build.parts as bench_build
import bench.run as bench_run
from bench import data as datasets
from bench.results.logger import RunLogger
from bench.build.models import MLP
from bench.results.rows import read_rows
from bench.train.loop import TrainSpec, train, weighted_loss
from sketch.samplers import HistorySampler, NWSSampler

from test_run import tiny


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensor ops: see conftest.one_thread


# -- non-finite losses -----------------------------------------------------------------------------------
def test_weighted_loss_leaves_out_non_finite_terms():
    w = torch.tensor([1.0, 2.0, 0.5, 1.0])
    losses = torch.tensor([1.0, 1.0, 4.0, 3.0])
    loss, bad = weighted_loss(w, losses)
    assert int(bad) == 0 and torch.equal(loss, (w * losses).mean())
    loss, bad = weighted_loss(w, torch.tensor([1.0, float("nan"), 4.0, float("inf")]))
    assert int(bad) == 2 and loss.item() == pytest.approx((1.0 + 2.0) / 2)
    loss, bad = weighted_loss(w, torch.full((4,), float("nan")))
    assert int(bad) == 4 and math.isnan(loss.item())  # nothing to learn from: the step will be skipped


class NaNLogits(nn.Module):
    """Wraps a model: on the listed training calls, the first `rows` rows of the batch get NaN logits."""

    def __init__(self, inner: nn.Module, bad_calls: set[int], rows: int = 2) -> None:
        super().__init__()
        self.inner, self.bad_calls, self.rows, self.calls = inner, bad_calls, rows, 0

    def forward(self, x_num: torch.Tensor, x_cat: torch.Tensor) -> torch.Tensor:
        out = self.inner(x_num, x_cat)
        if not self.training:
            return out
        self.calls += 1
        if self.calls not in self.bad_calls:
            return out
        bad = (torch.arange(out.shape[0]) < self.rows).unsqueeze(1)
        return torch.where(bad, torch.full_like(out, float("nan")), out)


def _parameters_finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize("sampler_cls", [HistorySampler, NWSSampler])
def test_nan_logits_for_some_samples_are_skipped_and_training_goes_on(sampler_cls):
    data = datasets.synthetic(n=400, d=8, seed=0)
    torch.manual_seed(0)
    model = NaNLogits(MLP(data.input_shape, data.cardinalities, data.num_outputs, hidden=[16]), bad_calls={2, 5, 9})
    if sampler_cls is NWSSampler:
        sampler = NWSSampler.from_features(data.x_num_train, batch_size=50, rows=4, bits=3, width=32, seed=0)
    else:
        sampler = HistorySampler(data.num_train, 50, seed=0)
    spec = TrainSpec(task=data.task, epochs=2, steps_per_epoch=8, evals_per_epoch=2, target_metric="accuracy", target=0.9,
                     max_time_s=None, eval_batch_size=4096, checkpoint_every_s=0, checkpoint_every_steps=0, warmup_steps=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        state = train(model, optimizer, None, sampler, data, spec, device=torch.device("cpu"), batch_size=50)
    assert state.step == 16 and state.epoch == 2
    assert sampler.skipped_nonfinite == 3 * 2  # the sampler dropped and counted the six NaN losses
    assert state.skipped_steps == 0  # masked rows send no gradient back through the wrapper: every step is taken
    assert _parameters_finite(model) and math.isfinite(state.last_loss)
    assert all(math.isfinite(p["metric"]) and math.isfinite(p["train_loss"]) for p in state.curve[1:])


def _with_nan_features(rows: int):
    load = datasets.load

    def load_poisoned(name, root=None, **options):
        d = load(name, root=root, **options)
        d.x_num_train[:rows] = float("nan")  # a few corrupt training rows: their losses and gradients are NaN
        return d

    return load_poisoned


def test_nan_inputs_skip_the_poisoned_steps_and_the_row_counts_them(compose, monkeypatch, tmp_path):
    monkeypatch.setattr(bench_build.datasets, "load", _with_nan_features(rows=30))
    cfg = compose([*tiny("history"), "trainer.epochs=2"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = bench_run.run(cfg, out_dir=tmp_path / "out")
    (stored,) = read_rows(tmp_path / "results")
    assert stored.steps == 20 and stored.skipped_nonfinite > 0 and stored.skipped_steps > 0
    assert stored.skipped_steps < stored.steps  # clean batches still train
    assert math.isfinite(row.final_metric) and row.final_metric > 0.3 and math.isfinite(row.final_loss)
    skips = [w for w in caught if "skipped the optimizer step" in str(w.message)]
    assert len(skips) == 1  # one warning, the rest are counted


# -- W&B faults ------------------------------------------------------------------------------------------
class FakeRun:
    """A stand-in W&B run that records what was called and can fail on request."""

    def __init__(self, fail: str = "") -> None:
        self.fail, self.logged, self.finished = fail, [], []
        self.summary: dict = {}

    def log(self, metrics, step=None):
        if self.fail == "log":
            raise ConnectionResetError("wandb service went away")
        self.logged.append((step, metrics))

    def finish(self, exit_code=0):
        self.finished.append(exit_code)
        if self.fail == "finish":
            raise OSError("cannot flush the run")


@pytest.fixture
def fake_wandb(monkeypatch):
    """Patch wandb.init: mode -> exception to raise or a FakeRun to return; records the modes tried."""
    import wandb

    plan: dict = {"tried": []}

    def init(*, mode, settings, **kwargs):
        plan["tried"].append(mode)
        plan["init_timeout"] = settings.init_timeout
        outcome = plan.get(mode, FakeRun())
        if isinstance(outcome, Exception):
            raise outcome
        plan["run"] = outcome
        return outcome

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    return plan


def _fallback_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if "W&B" in str(w.message) or "wandb" in str(w.message)]


def test_online_without_a_key_falls_back_to_offline_once_and_the_run_completes(compose, monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc
    cfg = compose([*tiny("uniform"), "logger=online"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = bench_run.run(cfg, out_dir=tmp_path / "out")
    assert _fallback_warnings(caught) == ["no W&B API key (WANDB_API_KEY or ~/.netrc): logging offline <logger.wandb.mode=online>"]
    assert row.steps == 10 and read_rows(tmp_path / "results")
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))  # `wandb sync` can upload it later
    import wandb

    assert wandb.run is None  # finished


def test_failing_online_init_falls_back_to_offline(fake_wandb, tmp_path):
    fake_wandb["online"] = ConnectionError("no route to api.wandb.ai\nConsider increasing the init_timeout setting")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunLogger(tmp_path, config={}, mode="online", init_timeout_s=12.5) as logger:
            logger.log({"metric": 0.5}, step=1)
    assert fake_wandb["tried"] == ["online", "offline"] and logger.mode == "offline"
    assert fake_wandb["init_timeout"] == 12.5  # W&B's own default would stall each job 90 s without a network
    (msg,) = _fallback_warnings(caught)
    assert "W&B online init failed (ConnectionError: no route to api.wandb.ai); trying offline" in msg and "\n" not in msg
    assert fake_wandb["run"].logged == [(1, {"metric": 0.5})] and fake_wandb["run"].finished == [0]


def test_when_every_init_fails_wandb_is_disabled_and_local_files_go_on(compose, fake_wandb, tmp_path):
    fake_wandb["online"] = ConnectionError("offline")
    fake_wandb["offline"] = PermissionError("read-only file system")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = bench_run.run(compose([*tiny("uniform"), "logger=online"]), out_dir=tmp_path / "out")
    assert fake_wandb["tried"] == ["online", "offline"] and len(_fallback_warnings(caught)) == 2
    assert row.steps == 10 and (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == len(row.curve)


def test_missing_wandb_package_disables_wandb(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.warns(UserWarning, match="wandb cannot be imported"):
        logger = RunLogger(tmp_path, config={}, mode="offline")
    with logger:
        logger.log({"metric": 1.0}, step=0)
    assert logger.mode == "disabled" and (tmp_path / "metrics.jsonl").is_file()


@pytest.mark.parametrize("fail", ["log", "finish"])
def test_wandb_failing_mid_run_or_at_finish_loses_no_result(compose, fake_wandb, tmp_path, fail):
    fake_wandb["online"] = FakeRun(fail=fail)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        row = bench_run.run(compose([*tiny("uniform"), "logger=online"]), out_dir=tmp_path / "out")
    assert len(_fallback_warnings(caught)) == 1
    assert [r.run_id for r in read_rows(tmp_path / "results")] == [row.run_id]
    assert fake_wandb["online"].finished == ([1] if fail == "log" else [0])  # finished once, also after a failed log
    assert (tmp_path / "out" / "metrics.jsonl").read_text().count("\n") == len(row.curve)


def test_training_failure_finishes_wandb_and_propagates(compose, fake_wandb, monkeypatch, tmp_path):
    def broken_train(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(bench_run, "train", broken_train)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        bench_run.run(compose([*tiny("uniform"), "logger=online"]), out_dir=tmp_path / "out")
    assert fake_wandb["run"].finished == [1]  # finished, marked failed
    assert not (tmp_path / "results" / "runs").exists()  # no row for a failed run


def test_real_wandb_run_is_finished_when_the_block_fails(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    with pytest.raises(ValueError, match="boom"):
        with RunLogger(tmp_path, config={"a": 1}, mode="offline") as logger:
            assert wandb.run is not None
            raise ValueError("boom")
    assert wandb.run is None and logger._run is None
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_real_online_init_without_a_network_falls_back_within_the_timeout(monkeypatch, tmp_path):
    # A key but no route to W&B (or a key W&B rejects): the real wandb.init fails within init_timeout_s.
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    start = time.monotonic()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with RunLogger(tmp_path / "run", config={}, mode="online", init_timeout_s=3) as logger:
            logger.log({"metric": 0.5}, step=1)
    assert time.monotonic() - start < 60
    assert logger.mode == "offline" and len(_fallback_warnings(caught)) == 1
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
