"""Field checks shared by the scheduler's value types.

Every check takes the field's dotted name and raises :class:`~icn_node.errors.ResourceError`
whose message starts with that name, so an operator (or a peer's bad announcement) can be traced
to the exact field. ``bool`` is never accepted where a number is expected, although Python makes
``True`` an ``int``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from icn_node.errors import ResourceError


def number(name: str, value: Any, *, lo: float, hi: float, lo_open: bool = False) -> float:
    """A finite real in ``[lo, hi]`` (``(lo, hi]`` when ``lo_open``), returned as ``float``."""
    # Fast path (the scoring loop builds offers): a float in range; NaN fails the comparisons
    # and inf fails ``v - v == 0``.
    if (
        type(value) is float
        and value <= hi
        and value - value == 0.0
        and (lo < value if lo_open else lo <= value)
    ):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResourceError(f"{name}: expected a number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or math.isinf(v):
        raise ResourceError(f"{name}: must be finite, got {value!r}")
    if v < lo or (lo_open and v == lo):
        bound = "greater than" if lo_open else "at least"
        raise ResourceError(f"{name}: must be {bound} {lo:g}, got {value!r}")
    if v > hi:
        raise ResourceError(f"{name}: must be at most {hi:g}, got {value!r}")
    return v


def integer(name: str, value: Any, *, lo: int, hi: int) -> int:
    """An ``int`` in ``[lo, hi]``; a float with an integral value is accepted (JSON has no int)."""
    if isinstance(value, bool):
        raise ResourceError(f"{name}: expected an integer, got bool")
    if isinstance(value, float):
        if not value.is_integer():
            raise ResourceError(f"{name}: expected an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        raise ResourceError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < lo:
        raise ResourceError(f"{name}: must be at least {lo}, got {value}")
    if value > hi:
        raise ResourceError(f"{name}: must be at most {hi}, got {value}")
    return value


def text(name: str, value: Any, *, max_len: int = 256, allow_empty: bool = False) -> str:
    """A ``str`` of at most ``max_len`` characters, non-empty unless ``allow_empty``."""
    if not isinstance(value, str):
        raise ResourceError(f"{name}: expected a string, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ResourceError(f"{name}: must not be empty")
    if len(value) > max_len:
        raise ResourceError(f"{name}: longer than {max_len} characters")
    return value


def boolean(name: str, value: Any) -> bool:
    """A real ``bool`` (not 0/1)."""
    if not isinstance(value, bool):
        raise ResourceError(f"{name}: expected a bool, got {type(value).__name__}")
    return value


def fixed_bytes(name: str, value: Any, length: int) -> bytes:
    """Exactly ``length`` bytes, from ``bytes`` (wire form) or a hex string (JSON form)."""
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise ResourceError(f"{name}: not a hex string") from None
    if isinstance(value, bytearray | memoryview):
        value = bytes(value)
    if not isinstance(value, bytes):
        raise ResourceError(
            f"{name}: expected {length} bytes or {2 * length} hex digits, "
            f"got {type(value).__name__}"
        )
    if len(value) != length:
        raise ResourceError(f"{name}: expected {length} bytes, got {len(value)}")
    return value


def hash32(name: str, value: Any) -> bytes:
    """A 32-byte hash, from ``bytes`` (wire form) or a 64-digit hex string (JSON form)."""
    return fixed_bytes(name, value, 32)


def mapping(name: str, value: Any) -> Mapping[str, Any]:
    """A dict-like value (what ``from_dict`` receives)."""
    if not isinstance(value, Mapping):
        raise ResourceError(f"{name}: expected a mapping, got {type(value).__name__}")
    return value


def sequence(name: str, value: Any, *, max_len: int) -> list[Any]:
    """A list or tuple of at most ``max_len`` items (a ``str``/``bytes`` is not a sequence here)."""
    if not isinstance(value, list | tuple):
        raise ResourceError(f"{name}: expected a list, got {type(value).__name__}")
    if len(value) > max_len:
        raise ResourceError(f"{name}: more than {max_len} items")
    return list(value)
