"""The one error boundary: every check's error becomes ONE line naming the config key at fault, the value and what
is allowed (`<key=value> is not allowed: ...`), which `bench.run` prints before exiting with status 2.

    raise not_allowed("trainer.batch_size", 0, "an integer >= 1")      # ConfigError
    with reported_as("sampler", options): cls.check_options(**options)  # a constructor's ValueError -> ConfigError
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Optional, Sequence

__all__ = ["ConfigError", "not_allowed", "config_error", "reported_as", "composition_error"]


# keys that were options once, with what replaces them (appended to the "has no key" line)
RETIRED_KEYS = {"sampler.proposal": "the full estimator is its own sampler now: use sampler=nws_full "
                                    "(proposal=sketch is sampler=nws)"}


class ConfigError(ValueError):
    """A config value out of range: the message is one line naming the key, the value and what is allowed."""


def not_allowed(key: str, value: Any, allowed: str) -> None:
    """Raise the one-line ConfigError for `key=value`, saying what is `allowed`."""
    raise ConfigError(f"<{key}={value!r}> is not allowed: {allowed}")


def config_error(exc: BaseException, group: str, options: Mapping[str, Any]) -> Optional[str]:
    """Return `<group.key=value> is not allowed: ...` when a constructor's one-line error names one of `options`
    (its message starts with the option's name), else None."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    first = text.split(" ", 1)[0]
    if first in options:
        return f"<{group}.{first}={options[first]!r}> is not allowed: {text}"
    return None


@contextmanager
def reported_as(group: str, options: Mapping[str, Any], fallback: Optional[str] = None) -> Iterator[None]:
    """Turn a ValueError/TypeError raised inside into the ConfigError of the `group` option it names (its message
    starts with the option's name), else into `<fallback> is not allowed: <message>` (default `<group=...>`)."""
    try:
        yield
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        line = config_error(exc, group, options)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(line or f"<{fallback or group}> is not allowed: {first}") from None


# -- Hydra's composition errors, in one line -------------------------------------------------------------------
def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _override_for(key: str, overrides: Sequence[str]) -> str:
    """Return the last command-line override that sets `key` (`key=value`), or `key` when none does."""
    for o in reversed(overrides):
        name, _, _ = o.partition("=")
        if name.lstrip("+~") == key:
            return o.lstrip("+~")
    return key


def composition_error(exc: BaseException, overrides: Sequence[str]) -> str:
    """Return one line for an exception Hydra raised while composing `overrides` (a misspelled key, a value of
    the wrong type, an unknown group option, a syntax error): the override it concerns and what is allowed."""
    missing = getattr(exc, "missing_cfg_file", None)
    if missing and getattr(exc, "options", None):
        group, _, option = missing.rpartition("/")
        for o in overrides:  # an option with a slash in it (a file path) is not a subgroup
            key, _, value = o.lstrip("+~").partition("=")
            if missing == f"{key}/{value}":
                group, option = key, value
        choices = [o for o in exc.options if not o.startswith("base_")]  # type: ignore[attr-defined]
        where = ("the registered samplers; plugins=[your_module] adds yours" if group == "sampler" else f"conf/{group}/")
        line = f"<{group}={option}> is not allowed: one of {', '.join(choices)} ({where})"
        if group == "dataset" and ("/" in option or "." in option):
            line += f"; for a table of your own: dataset=table dataset.path={option} dataset.label=COLUMN"
        return line
    cause = exc.__cause__
    key = getattr(cause, "full_key", None)
    if key:
        merging = "Error merging override "
        first = str(exc).splitlines()[0] if str(exc) else ""
        override = first[len(merging):] if first.startswith(merging) else _override_for(key, overrides)
        schema = getattr(cause, "object_type", None)
        reason = str(cause).splitlines()[0]
        if "is not a valid bool" in reason:  # OmegaConf would also take yes/no/on/off/1/0 (bench.config.preflight refuses those)
            reason = "true or false"
        if dataclasses.is_dataclass(schema) and reason.startswith("Key "):
            parent = key.rpartition(".")[0] or "the config"
            known = ", ".join(f.name for f in dataclasses.fields(schema) if not f.name.startswith("_"))
            retired = f"; {RETIRED_KEYS[key]}" if key in RETIRED_KEYS else ""
            return f"<{override}> is not allowed: {parent} has no key {key.rpartition('.')[2]!r}; its keys: {known}{retired}"
        hint = ("; a table's target column is dataset.label" if key == "dataset.target" and "convert" in reason else "")
        return f"<{override}> is not allowed: {reason}{hint}"
    line = _one_line(exc) + (f" ({_one_line(cause)})" if cause is not None else "")
    if "LexerNoViableAlt" in line or "token recognition error" in line:  # e.g. an unquoted non-ASCII value
        bad = next((o for o in overrides if not o.isascii()), None)
        if bad is None:
            return line + "; quote a value with spaces or special characters: 'key=\"value\"'"
        key, _, value = bad.partition("=")
        return (f"<{bad}> is not allowed: Hydra's override grammar reads unquoted values in ASCII only; quote it: "
                f"'{key}=\"{value}\"'")
    return line
