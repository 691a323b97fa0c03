"""Field checks shared by the job dataclasses. Each raises ValueError starting "<field>: "."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType


def check_int(
    name: str, value: object, *, minimum: int, maximum: int | None = None, optional: bool = False
) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        none = " or None" if optional else ""
        raise ValueError(f"{name}: expected an int{none}, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f"..{maximum}" if maximum is not None else " or more"
        raise ValueError(f"{name}: must be {minimum}{upper}, got {value}")


def check_timeout(name: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: expected a number or None, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: must be finite and > 0, got {value}")


def check_strings(name: str, value: object) -> tuple[str, ...]:
    """A sequence of str without NUL bytes, as a tuple."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"{name}: expected a sequence of strings")
    items = tuple(value)
    if not all(isinstance(a, str) for a in items):
        raise ValueError(f"{name}: expected a sequence of strings")
    if any("\0" in a for a in items):
        raise ValueError(f"{name}: an item contains a NUL byte")
    return items


def check_env(name: str, value: object) -> Mapping[str, str]:
    """Environment variables, as a read-only copy."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{name}: expected a mapping of str to str")
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"{name}: {key!r} is not a valid variable name")
        if not isinstance(item, str) or "\0" in item:
            raise ValueError(f"{name}: the value of {key} must be a string without NUL")
    return MappingProxyType(dict(value))
