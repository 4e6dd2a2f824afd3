"""Shared fixtures: offline environment, a Hydra `compose` helper, and tiny data."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


@pytest.fixture
def compose(tmp_path: Path) -> Callable:
    """Return compose(overrides) -> DictConfig of conf/config.yaml, with results under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from bench.config.schemas import register_configs

    register_configs()

    def _compose(overrides: list[str] = (), hydra_cfg: bool = False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=[f"paths.results_dir={tmp_path / 'results'}", *overrides],
                                 return_hydra_config=hydra_cfg)

    yield _compose
    GlobalHydra.instance().clear()


@pytest.fixture
def one_thread():
    """Run a test on one torch thread, restored afterwards. Tiny tensor ops gain nothing from a second thread,
    and on a shared 2-core machine multi-threaded ops stall on a descheduled worker (tests got 10-60x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def saved_and_loaded(state: dict) -> dict:
    """`state` after a round trip through torch.save / torch.load in memory (what a checkpoint file does to it)."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)
