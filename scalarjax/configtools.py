"""Typed configuration plumbing shared by every config class: coercion of YAML values to the
dataclass field types, ``from_dict`` and safe YAML reading.

A leaf module (it imports only :mod:`scalarjax.errors`), so the model config, the scalar
transforms' configs and the run config all build on it without importing each other.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from scalarjax.errors import ConfigKeyError, ConfigTypeError, InputError


def _coerce(value: Any, typ: Any, path: str) -> Any:
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[...]
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], path)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigTypeError(f"{path}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(typ)
        return tuple(_coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value))
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigTypeError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigTypeError(f"{path}: expected an integer, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigTypeError(f"{path}: expected true or false, got {value!r}")
        return value
    if typ is dict:
        if not isinstance(value, Mapping):
            raise ConfigTypeError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigTypeError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def from_dict(cls, data: Mapping[str, Any], path: str = "model"):
    """Build a frozen dataclass from a mapping; unknown keys and wrong types name their path."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigKeyError(f"{path}: unknown key(s) {unknown}; known: {sorted(names)}")
    return cls(**{k: _coerce(v, hints[k], f"{path}.{k}") for k, v in data.items()})


def split_kind(data: Any, registry: Mapping[str, type], path: str, what: str) -> tuple[type, dict]:
    """``{kind: K, **settings}`` → ``(registry[K], settings)``: the tagged-union form of the backbone
    and transform configs. A missing ``kind`` is a :class:`ConfigTypeError`, an unknown one an
    :class:`InputError` naming ``path`` and the known kinds (``what`` names the family in the message)."""
    if not isinstance(data, Mapping) or "kind" not in data:
        raise ConfigTypeError(f"{path}: expected a {what} name or a mapping with a 'kind' key, got {data!r}")
    data = dict(data)
    kind = data.pop("kind")
    if kind not in registry:
        raise InputError(f"{path}: unknown {what} {kind!r}; choose one of {tuple(registry)}")
    return registry[kind], data


def read_yaml(path):
    """The YAML document at ``path`` (``{}`` when empty); invalid YAML is an :class:`InputError` naming the file."""
    import yaml

    with open(path) as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(err).split())[:200]})") from None
