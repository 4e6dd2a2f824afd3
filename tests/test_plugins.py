"""A sampler written outside the project (the README's example, in a temporary module) runs through the harness like ours: registered by
its class decorator, imported with `plugins=[...]`, its typed option validated in one line, swept by
`sampler=all`, written to a row and reported."""
from __future__ import annotations

import os
import subprocess
import sys
import re
from pathlib import Path

import pytest

from bench.config.errors import ConfigError
from bench.config.plugins import expand_all_samplers, load_plugins, plugin_modules
from bench.results.rows import read_rows
from sketch.samplers import SAMPLERS, FeedbackSampler, register

from conftest import REPO
from test_run import tiny

def readme_plugin() -> str:
    """The README's example plugin module (so the README's recipe is what this test runs)."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return next(b for b in blocks if '@register("power_loss"' in b)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_samplers.py").write_text(readme_plugin())
    return tmp_path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": os.pathsep.join([str(cwd), str(REPO)])}
    return subprocess.run([sys.executable, "-m", "bench.run", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow
def test_a_plugin_sampler_runs_validates_sweeps_and_reports_like_ours(plugin_dir):
    results = plugin_dir / "results"
    base = [*tiny("power_loss")[1:], f"paths.results_dir={results}"]
    bad = _run(["plugins=[my_samplers]", "sampler=power_loss", "sampler.power=-1", *base], plugin_dir)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: <sampler.power=-1.0> is not allowed: power must be a finite number > 0")
    ok = _run(["-m", "plugins=[my_samplers]", "sampler=power_loss", "sampler.power=2", "seed=0,1", *base,
               f"hydra.sweep.dir={plugin_dir / 'sweep'}"], plugin_dir)
    assert ok.returncode == 0, ok.stderr[-2000:]
    rows = read_rows(results)
    assert sorted(r.seed for r in rows) == [0, 1] and {r.sampler for r in rows} == {"power_loss"}
    assert rows[0].sampler_options == {"power": 2.0, "mix": 0.1} and rows[0].final_metric > 0.3
    report = subprocess.run([sys.executable, "-m", "bench.report", str(results)], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0 and "power_loss" in report.stdout


def test_a_plugin_sampler_composes_validates_and_trains_in_process(plugin_dir, compose, monkeypatch, tmp_path):
    """The fast version of the end-to-end test: the same path (`load_plugins`, then the schemas registered again),
    composed and run here."""
    from bench.config.schemas import register_configs, validate
    from bench.run import run

    monkeypatch.syspath_prepend(str(plugin_dir))
    try:
        load_plugins(["my_samplers"])
        register_configs()
        with pytest.raises(ConfigError, match=r"^<sampler.power=-1.0> is not allowed: power must be"):
            validate(compose(tiny("power_loss", "sampler.power=-1")))
        cfg = compose(tiny("power_loss", "sampler.power=2"))
        validate(cfg)
        row = run(cfg, out_dir=tmp_path / "out")
        assert row.sampler == "power_loss" and row.sampler_options == {"power": 2.0, "mix": 0.1}
        assert row.final_metric > 0.3 and "sketch" not in row.config  # it reads no sketch: not in its identity
    finally:  # this process's registry as it was
        SAMPLERS.pop("power_loss", None)
        sys.modules.pop("my_samplers", None)


def test_plugins_are_parsed_from_the_command_line_and_a_missing_one_is_one_line(plugin_dir, monkeypatch):
    assert plugin_modules(["sampler=x", "plugins=[a,pkg.b]"]) == ["a", "pkg.b"]
    assert plugin_modules(["plugins=a"]) == ["a"] and plugin_modules(["seed=1"]) == []
    with pytest.raises(ConfigError, match=r"^<plugins=\[no_such_module_here\]> is not allowed: cannot import"):
        load_plugins(["no_such_module_here"])
    with pytest.raises(ConfigError, match="module names"):
        plugin_modules(["plugins=[1a]"])
    monkeypatch.syspath_prepend(str(plugin_dir))
    try:
        assert load_plugins(["my_samplers"]) == ["power_loss"]
        assert expand_all_samplers(["-m", "sampler=all"])[1] == "sampler=" + ",".join(SAMPLERS)
    finally:  # this process's registry as it was
        SAMPLERS.pop("power_loss", None)
        sys.modules.pop("my_samplers", None)


def test_register_refuses_a_taken_name_an_unknown_input_and_a_non_sampler():
    with pytest.raises(ValueError, match="registered already"):
        @register("uniform")
        class Other(FeedbackSampler):
            pass
    with pytest.raises(ValueError, match="inputs must be names from"):
        register("x", inputs=("model",))
    with pytest.raises(TypeError, match="FeedbackSampler subclass"):
        register("y")(dict)
    with pytest.raises(ValueError, match="lower-case"):
        register("All")
