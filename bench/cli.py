"""`python -m bench.run`: check the command line, run the job (or each job of a sweep), print its table.

    python -m bench.run sampler=history dataset=kdd04
    python -m bench.run -m sampler=uniform,nws seed=0,1,2

Every user error ends here as one line on stderr and exit status 2, before training: a command line that does
not compose (a misspelled key, a wrong type, an unknown group option: checked for every sweep value before the
first job), a value out of range (`bench.config.validate`), a part that cannot be built (`bench.build`).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import hydra
import torch
from hydra.errors import HydraException
from omegaconf import DictConfig

from .config import ConfigError, composition_error, register_configs, validate
from .distributed import cleanup
from .overrides import NotEnumerable, job_variants, parse

__all__ = ["cli", "main", "check_command_line", "CONF_DIR"]

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

register_configs()


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> Optional[float]:
    """Hydra entry: validate, run, print the table; return the final target metric (for sweepers)."""
    from .run import run

    try:
        validate(cfg)
        row = run(cfg)
    except ConfigError as exc:
        _fail(exc)
    if row.world_size == 1 or torch.distributed.get_rank() == 0:  # rank 0 speaks for the job
        print(row.summary_table())
        print(f"row: {row.path(cfg.paths.results_dir)}")
    return row.final_metric


def check_command_line(argv: list[str]) -> None:
    """Compose the command line's config the way Hydra will, for every sweep value, and raise ConfigError with
    one line for what Hydra would report in several (a misspelled key, a wrong type, an unknown group option).

    Only plain overrides (and -m/--multirun) are checked; a command line with other Hydra flags, and sweeps a
    sweeper plugin expands (intervals, globs), are left to Hydra itself."""
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith("-")]
    multirun = len(overrides) < len(argv)
    try:
        variants = job_variants(overrides) if multirun else [overrides]
    except NotEnumerable as exc:
        plain = [line for o, line in zip(parse(overrides), overrides) if not o.is_sweep_override()]
        if _compose(plain).hydra.sweeper._target_.endswith("BasicSweeper"):
            raise ConfigError(f"<{exc.override}> is not allowed: the basic sweeper takes value lists (a,b,c), choice(...) "
                              f"and range(...)") from None
        return
    except HydraException as exc:
        raise ConfigError(composition_error(exc, overrides)) from None
    for variant in variants:
        _compose(variant)


def _compose(overrides: list[str]) -> DictConfig:
    """Compose conf/config.yaml with `overrides` and Hydra's own config; a Hydra error becomes a one-line ConfigError."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except HydraException as exc:
        raise ConfigError(composition_error(exc, overrides)) from None


def _fail(exc: ConfigError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)


def cli() -> None:
    """`python -m bench.run ...`: offline defaults for the Hugging Face libraries, the command-line check (one line
    and exit status 2 when it does not compose), then Hydra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read when `datasets` is first imported (lazily, in bench.data)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        check_command_line(sys.argv[1:])
    except ConfigError as exc:
        _fail(exc)
    main()
    cleanup()  # the process group lives for the whole process (all jobs of a sweep); not on errors (see cleanup)
