"""The one serialiser of run configurations: typed dataclasses to JSON and back.

Every run folder holds the ``config.json`` that reproduces it (:func:`to_jsonable`), and
``--resume`` rebuilds the typed config from it (:func:`from_jsonable`), checking each value against
the field's type hint so that a hand-edited file gives one line naming the field, not a failure
deep inside a training loop. Configs are plain data, never pickled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import numpy as np

T = TypeVar("T")


def to_jsonable(obj: Any) -> Any:
    """``obj`` as JSON-ready data: dataclasses become dicts of their fields, paths strings, tuples lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot write a {type(obj).__qualname__} into a JSON config: {obj!r}")


def dumps(obj: Any) -> str:
    """``to_jsonable(obj)`` as indented JSON text."""
    return json.dumps(to_jsonable(obj), indent=1) + "\n"


def from_jsonable(cls: type[T], data: Any, where: str = "config") -> T:
    """Rebuild a value of type ``cls`` (a dataclass, or any hint :func:`to_jsonable` produces) from JSON data.

    Missing dataclass fields take their defaults; unknown keys and values of the wrong type are a
    ``ValueError`` naming the field path.
    """
    return _convert(cls, data, where)


def loads(cls: type[T], text: str, where: str = "config") -> T:
    """``cls`` rebuilt from JSON text (:func:`dumps`' inverse); invalid JSON or a bad field is one
    ``ValueError`` line naming ``where`` (the file) and the field."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{where} is not valid JSON: {err}") from None
    return from_jsonable(cls, data, where)


def _convert(hint: Any, value: Any, where: str) -> Any:
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object for {hint.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(hint)
        fields = {f.name: f for f in dataclasses.fields(hint) if f.init}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)} for {hint.__name__}")
        kwargs = {name: _convert(hints[name], value[name], f"{where}.{name}") for name in fields if name in value}
        try:
            return hint(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from None
    if origin in (Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ValueError as err:
                errors.append(str(err))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {hint}")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ValueError(f"{where}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
        _, item = typing.get_args(hint) or (str, Any)
        return {k: _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Path or (isinstance(hint, type) and issubclass(hint, os.PathLike)):
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a path string, got {type(value).__name__}")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is type(None):
        if value is not None:
            raise ValueError(f"{where}: expected null, got {value!r}")
        return None
    raise ValueError(f"{where}: cannot read a value of type {hint} from JSON")


def differences(stored: Any, current: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two JSON-ready values differ (NaN equals NaN)."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for key in list(stored) + [k for k in current if k not in stored]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in stored or key not in current:
                out.append(path)
            else:
                out += differences(stored[key], current[key], path)
        return out
    same = stored == current or (
        isinstance(stored, float) and isinstance(current, float) and math.isnan(stored) and math.isnan(current)
    )
    return [] if same else [prefix or "(value)"]


def _at(data: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def resumed(cls: type[T], stored: Any, current: T, keep: Sequence[str], where: str) -> tuple[T, list[str]]:
    """The configuration a resumed run continues with: the ``stored`` one (JSON data of a
    ``config.json``), except the dotted paths in ``keep``, which come from ``current``.

    Returns the merged config and one line per other option in which ``current`` differs and which
    is therefore ignored, e.g. ``"env (stored 'mp/Maze-v0', here 'CartPole-v1')"``.
    """
    merged = to_jsonable(from_jsonable(cls, stored, where))
    here = to_jsonable(current)
    kept = lambda path: any(path == k or path.startswith(k + ".") for k in keep)  # noqa: E731
    ignored = [f"{d} (stored {_at(merged, d)!r}, here {_at(here, d)!r})" for d in differences(merged, here)
               if not kept(d)]
    for key in keep:
        node_m, node_h, parts = merged, here, key.split(".")
        for part in parts[:-1]:
            node_m, node_h = node_m.get(part), node_h.get(part)
            if not isinstance(node_m, dict) or not isinstance(node_h, dict):
                break
        else:
            if parts[-1] in node_h:
                node_m[parts[-1]] = node_h[parts[-1]]
    return from_jsonable(cls, merged, where), ignored
