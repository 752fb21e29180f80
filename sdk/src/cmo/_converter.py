"""One converter between state values (dict, dataclass, pydantic model) and JSON-shaped data."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

__all__ = ["from_json", "to_json"]

T = TypeVar("T")


def to_json(value: Any) -> Any:
    """A state value as JSON-shaped data (dicts, lists, str, numbers, bool, None)."""
    if hasattr(value, "model_dump") and callable(value.model_dump):  # pydantic v2 model
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {_key(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable state; use dict, dataclass or pydantic")


def from_json(data: Any, type_: type[T] | Any) -> T:
    """Rebuild a value of `type_` from JSON-shaped data (dict and Any return the data as is)."""
    if type_ is Any or type_ is None or type_ is dict or type_ is object:
        return typing.cast(T, data)
    if hasattr(type_, "model_validate"):  # pydantic v2 model
        return typing.cast(T, typing.cast(Any, type_).model_validate(data))
    if dataclasses.is_dataclass(type_) and isinstance(type_, type):
        if not isinstance(data, dict):
            raise TypeError(f"{type_.__name__} needs a JSON object, got {type(data).__name__}")
        hints = get_type_hints(type_)
        fields = {f.name for f in dataclasses.fields(type_) if f.init}
        unknown = set(data) - fields
        if unknown:
            raise TypeError(f"{type_.__name__} has no field(s) {sorted(unknown)}")
        return typing.cast(T, type_(**{k: from_json(v, hints.get(k, Any)) for k, v in data.items()}))
    origin = get_origin(type_)
    if origin in (list, tuple) and isinstance(data, list):
        args = get_args(type_) or (Any,)
        items = [from_json(v, args[0]) for v in data]
        return typing.cast(T, items if origin is list else tuple(items))
    if origin is dict and isinstance(data, dict):
        value_type = (get_args(type_) or (Any, Any))[1]
        return typing.cast(T, {k: from_json(v, value_type) for k, v in data.items()})
    if origin in (Union, types.UnionType):
        for arg in get_args(type_):
            if arg is type(None) and data is None:
                return typing.cast(T, None)
        candidates = [a for a in get_args(type_) if a is not type(None)]
        if len(candidates) == 1:
            return typing.cast(T, from_json(data, candidates[0]))
    return typing.cast(T, data)


def _key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"state dict keys must be strings, got {type(key).__name__}")
    return key
