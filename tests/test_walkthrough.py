"""A newcomer's walk through the README: every fenced shell command that needs no network, GPU, container or
cluster runs as written, at the smallest size (one epoch of a few hundred rows, one seed), exits 0 and writes
what the README says (result rows; the report's report.md). The files a command names (a table, a plugin
module, a published zip) are made first, in the exact form the README describes. Slow: it runs every command.

    python -m pytest -m slow tests/test_walkthrough.py -s
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.results.rows import read_rows

from conftest import REPO
from lineage_files import write_folder, write_zip

SMALL = ["dataset.train_size=600", "dataset.test_size=300", "trainer.batch_size=64", "trainer.epochs=1", "trainer.evals_per_epoch=1",
         "trainer.probe_size=0", "logger=disabled", "progress=false"]
# What is left out, and why (each is covered elsewhere or needs what this machine lacks).
SKIPPED = {
    "make ": "the set-up commands themselves (CI runs them)",
    "reproduce.sh": "the whole protocol (minutes to hours); tests/test_protocol.py checks its sweeps",
    "sweep=": "named sweeps of tens to hundreds of jobs; tests/test_config.py composes each",
    "torchrun": "two processes; tests/test_distributed.py runs torchrun",
    "slurm": "a cluster",
    "docker": "a container engine",
}


def readme_commands() -> list[str]:
    """Every command line of the README's ```bash blocks, comments stripped."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def skip_reason(command: str) -> str | None:
    return next((why for key, why in SKIPPED.items() if key in command), None)


def runnable(command: str, results: Path, home: Path) -> list[str]:
    """The command as argv at the smallest size: this interpreter, one seed, a few hundred rows, results in `results`."""
    text = command.replace("$HOME", str(home)).replace("~/", f"{home}/")  # the walk's home, not this process's
    argv = shlex.split(text)
    if argv[0].endswith("python"):
        argv[0] = sys.executable
    if argv[1:3] == ["-m", "bench.run"]:
        argv = [re.sub(r"^seed=[\d,]+$", "seed=0", a) for a in argv]
        argv += [*SMALL, f"paths.results_dir={results}"]
    if argv[1:3] == ["-m", "bench.report"]:
        argv = [*argv[:3], str(results)]
    return argv


def make_named_files(home: Path) -> None:
    """The files the README's commands name: a churn table, the plugin module, published-layout lineage data."""
    g = np.random.default_rng(0)
    frame = pd.DataFrame({"tenure": g.integers(1, 72, 600), "plan": g.choice(["a", "b", "c"], 600),
                          "spend": g.normal(50, 20, 600)})
    frame["churned"] = (frame.spend + g.normal(0, 10, 600) > 55).astype(int)
    frame.to_parquet(home / "churn.parquet")
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (home / "my_samplers.py").write_text(next(b for b in blocks if "@register(" in b))
    write_zip(home / "Criteo_x1.zip", "criteo_x1", rows=600, folder="Criteo_x1")
    write_folder(home / "Avazu_x4", "avazu_x4", rows=600)


@pytest.mark.slow
def test_every_readme_command_that_can_run_here_runs_at_the_smallest_size(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    make_named_files(home)
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": os.pathsep.join([str(home), str(REPO)]),
           "WANDB_MODE": "disabled", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "NWS_DATA": os.environ.get("NWS_DATA", str(Path.home() / ".cache" / "nws-bench" / "data"))}
    ran, skipped = [], []
    results = tmp_path / "results"  # one results folder for the walk, as the README's commands share `results`
    for command in readme_commands():
        if skip_reason(command):
            skipped.append(command)
            continue
        before = len(read_rows(results)) if results.exists() else 0
        argv = runnable(command, results, home)
        proc = subprocess.run(argv, cwd=home, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
        if argv[1:3] == ["-m", "bench.run"]:
            assert len(read_rows(results)) > before, f"{command}: no new result row in {results}"
        if argv[1:3] == ["-m", "bench.report"]:
            assert (results / "report.md").is_file(), f"{command}: no report.md"
        ran.append(command)
    print(f"\nran {len(ran)} README commands, skipped {len(skipped)}: " + "; ".join(skipped))
    assert len(ran) >= 8
