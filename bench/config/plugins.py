"""The user's own samplers: modules named by `plugins=[...]` on the command line, imported before the config is
composed, so that a sampler class they register (`@sketch.samplers.register`) runs, sweeps, validates, logs and
reports exactly like ours; and `sampler=all`, every registered sampler, theirs included.

    python -m bench.run plugins=[my_samplers] sampler=mine sampler.my_option=2
    python -m bench.run -m plugins=[my_samplers] sampler=all seed=0,1,2

A module is imported by name the way `import` finds it (the working directory is on the path under
`python -m`; elsewhere set PYTHONPATH). Plugins are read from the command line only: a config file is composed
after the samplers must exist. Sweep files name every sampler with `sampler: ${samplers:}` (a resolver that
`bench.config.schemas.register_configs` adds).
"""
from __future__ import annotations

import importlib
from typing import Iterable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from sketch.samplers import SAMPLERS

from .errors import ConfigError

__all__ = ["plugin_modules", "load_plugins", "expand_all_samplers"]


def plugin_modules(argv: Sequence[str]) -> list[str]:
    """The module names of the last `plugins=...` override in `argv` (a list `[a,b]` or one name)."""
    lines = [a for a in argv if a.lstrip("+").split("=", 1)[0] == "plugins"]
    if not lines:
        return []
    try:
        value = OverridesParser.create().parse_overrides([lines[-1].lstrip("+")])[0].value()
    except HydraException as exc:
        raise ConfigError(f"<{lines[-1]}> is not allowed: a list of module names, e.g. plugins=[my_samplers] "
                          f"({str(exc).splitlines()[0]})") from None
    names = value if isinstance(value, list) else [value]
    bad = next((n for n in names if not isinstance(n, str) or not all(p.isidentifier() for p in n.split("."))), None)
    if bad is not None:
        raise ConfigError(f"<{lines[-1]}> is not allowed: module names such as my_samplers or pkg.samplers, got {bad!r}")
    return list(names)


def load_plugins(modules: Iterable[str]) -> list[str]:
    """Import `modules` (registering their samplers) and return the names of the samplers they added."""
    before = set(SAMPLERS)
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"<plugins=[{name}]> is not allowed: cannot import module {name!r} ({exc}); run from "
                              f"the folder that holds it or add that folder to PYTHONPATH") from None
    return [n for n in SAMPLERS if n not in before]


def expand_all_samplers(argv: Sequence[str]) -> list[str]:
    """`argv` with `sampler=all` replaced by every registered sampler (`sampler=uniform,static,...`)."""
    every = ",".join(SAMPLERS)
    return [f"{a.split('=', 1)[0]}={every}" if a.lstrip("+") == "sampler=all" else a for a in argv]
