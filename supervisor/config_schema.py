"""Turn a YAML mapping into a typed config dataclass, with errors that name the YAML path.

Why not a validation library: the config types are small dataclasses, and the one thing users need
from errors (the exact path, the bad key, the valid keys) is easiest to get right here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from supervisor.errors import ConfigError

T = TypeVar("T")


def parse_dataclass(cls: type[T], data: Any, path: str) -> T:
    """Build ``cls`` from ``data``; unknown keys, missing required keys and wrong types are errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping, got {_kind(data)}", path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    keys = {f.metadata.get("key", f.name): f for f in fields.values()}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        f = keys.get(key)
        if f is None:
            valid = ", ".join(sorted(keys)) or "none"
            raise ConfigError(f"unknown key {key!r} (valid keys: {valid})", _join(path, str(key)))
        kwargs[f.name] = convert(hints[f.name], value, _join(path, key))
    for key, f in keys.items():
        if f.name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required key {key!r}", path)
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(str(exc), path) from None


def convert(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, path)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"must be one of {', '.join(map(repr, allowed))}, got {value!r}", path)
        return value
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"must be a list, got {_kind(value)}", path)
        return [convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _key, item = get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"must be a mapping, got {_kind(value)}", path)
        return {str(k): convert(item, v, _join(path, str(k))) for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return parse_dataclass(tp, value, path)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"must be true or false, got {value!r}", path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be an integer, got {value!r}", path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"must be a number, got {value!r}", path)
        return float(value)
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"must be a string, got {_kind(value)}", path)
        return str(value)
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__)
