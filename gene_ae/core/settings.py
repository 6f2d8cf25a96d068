"""Typed config sections: the one check every section ([model], [data], [train]) runs when it is built.

Each section is a dataclass: a field's annotation is its type, and the class's LIMITS table gives every numeric
field its allowed range (shard_tools.options.Range, the class the command lines parse with). `check_fields`
enforces both, so a value from TOML, from `--set` or from a library caller is refused in one line naming
`section.key` and the range.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from typing import Any

from shard_tools.options import Range

_KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def field_types(cls: type) -> dict[str, Any]:
    """Field name -> its annotation resolved to a type (bool, int, float, str or tuple[int, ...])."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def check_fields(cfg: Any, section: str) -> None:
    """Refuse a field of the wrong type or out of its LIMITS range, as `section.key: must be ..., got ...`.

    bool is an int subclass and NaN compares false with everything, so both are tested for explicitly. An
    integer given for a float field becomes a float; a list given for a tuple field (JSON) becomes a tuple."""
    limits: dict[str, Range] = getattr(cfg, "LIMITS", {})
    for key, kind in field_types(type(cfg)).items():
        if key in getattr(cfg, "OWN_CHECKS", ()):  # structured fields the section parses and checks itself
            continue
        name, value, limit = f"{section}.{key}", getattr(cfg, key), limits.get(key)
        if typing.get_origin(kind) is tuple:
            items = value if isinstance(value, list | tuple) else None
            if items is None or not all(_is_int(v) for v in items):
                raise ValueError(f"{name}: must be a list of integers, got {show_value(value)}")
            value = tuple(int(v) for v in items)
            if limit is not None and any(v not in limit for v in value):
                raise ValueError(f"{name}: must be a list of integers each {limit}, got {show_value(value)}")
        else:
            value = _typed(name, value, kind, limit)
            if limit is not None and value not in limit:
                raise ValueError(f"{name}: must be {limit}, got {show_value(value)}")
        setattr(cfg, key, value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _typed(name: str, value: Any, kind: type, limit: Range | None) -> Any:
    if kind is bool or kind is str:
        ok = isinstance(value, kind)
    elif kind is int:
        ok = _is_int(value)
    elif kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and _finite(value)
    else:
        raise TypeError(f"{name}: config fields are bool, int, float, str or tuple[int, ...], not {kind}")
    if not ok:
        raise ValueError(f"{name}: must be {_KINDS[kind]}{f' {limit}' if limit else ''}, got {show_value(value)}")
    return kind(value)


def _finite(value: numbers.Real) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def show_value(value: Any) -> str:
    """A value for a one-line message: repr escapes newlines; long ones are cut."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
