"""Structured-config schemas derived from constructor signatures, so every default lives in one place: the
constructor whose argument it is.

    Schema = schema_from_signature("MLPConfig", MLP, ["hidden", "dropout", "embed_dim"], base=ModelConfig,
                                   fixed={"_target_": "bench.build.models.MLP"})

Each named parameter becomes a field with the constructor's default and an OmegaConf-compatible type from its
hint (int, float, bool, str, optionally None; anything else - lists, unions - is `Any`, which the constructor
checks itself). Used for the sampler schemas (bench.registry) and the model schemas (bench.config.schemas).
"""
from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import field
from typing import Any, Callable, Iterable, Mapping, Optional

__all__ = ["parameter", "config_type", "schema_from_signature", "defaulted_parameters"]

_PRIMITIVES = (int, float, bool, str)


def parameter(fn_or_cls: Any, name: str) -> inspect.Parameter:
    """The parameter `name` of a function, or of the constructor of `cls` or of its nearest base that takes it,
    with its annotation resolved to a type."""
    owners = [k for k in fn_or_cls.__mro__ if "__init__" in vars(k)] if inspect.isclass(fn_or_cls) else [fn_or_cls]
    for owner in owners:
        fn = owner.__init__ if inspect.isclass(owner) else owner
        params = inspect.signature(fn).parameters
        if name in params:
            return params[name].replace(annotation=typing.get_type_hints(fn).get(name, Any))
    raise TypeError(f"{getattr(fn_or_cls, '__name__', fn_or_cls)} takes no parameter {name!r}")


def defaulted_parameters(fn: Callable, skip: Iterable[str] = ()) -> list[str]:
    """The names of `fn`'s parameters that have defaults (not *args/**kwargs), except `skip`."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in kinds and p.default is not inspect.Parameter.empty and p.name not in set(skip)]


def config_type(hint: Any) -> Any:
    """The OmegaConf-compatible type of a hint: a primitive, Optional of one, else Any."""
    if hint in _PRIMITIVES:
        return hint
    args = typing.get_args(hint)
    rest = [a for a in args if a is not type(None)]
    if len(rest) == 1 and rest[0] in _PRIMITIVES and type(None) in args:
        return Optional[rest[0]]
    return Any


def _field(default: Any) -> Any:
    if isinstance(default, (list, tuple)):  # a mutable config default: a fresh list per instance
        return field(default_factory=lambda d=tuple(default): list(d))
    return field(default=default)


def schema_from_signature(name: str, params: Mapping[str, inspect.Parameter], base: type,
                          fixed: Optional[Mapping[str, Any]] = None) -> type:
    """A dataclass named `name` extending `base`: `fixed` fields (their types from `base`) with the given values,
    then one field per parameter with its default. A parameter without a default is an error: a config must be
    able to leave every option out."""
    fields = [(k, {f.name: f.type for f in dataclasses.fields(base)}.get(k, Any), field(default=v))
              for k, v in (fixed or {}).items()]
    for key, p in params.items():
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{name}: option {key!r} has no default in its signature")
        fields.append((key, config_type(p.annotation), _field(p.default)))
    return dataclasses.make_dataclass(name, fields, bases=(base,))
