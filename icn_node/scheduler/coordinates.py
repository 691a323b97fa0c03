"""Network coordinates: the value a node announces so others can estimate RTTs to it.

A :class:`Coordinate` is a point of Vivaldi's space with height (Dabek et al., SIGCOMM 2004):
a 2-D vector plus a height, in milliseconds. The predicted round-trip time between two nodes is

    ||a.vec - b.vec|| + a.height + b.height

(the height models a node's access link, which every path from it crosses). ``error`` is the
node's own estimate of its relative error, in ``[0, MAX_ERROR]``; a fresh node starts at
``MAX_ERROR``. The Vivaldi update that moves a coordinate lives in :mod:`icn_node.netmap.core`;
this module only holds the value, so the scheduler and the wire read it without the netmap.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from icn_node.codec import Document
from icn_node.scheduler import _checks as chk

__all__ = ["MAX_COMPONENT_MS", "MAX_ERROR", "MIN_HEIGHT_MS", "Coordinate"]

MAX_ERROR = 1.5
"""A coordinate's error is clamped to this (and a fresh node starts here)."""
MAX_COMPONENT_MS = 1_000_000.0
"""Bound on every component (ms): far beyond any real RTT, so a hostile document cannot make
arithmetic overflow."""
MIN_HEIGHT_MS = 0.01
"""Heights stay positive: at least this (ms)."""


@dataclass(frozen=True, slots=True)
class Coordinate(Document):
    """A Vivaldi coordinate with height (milliseconds) and its error estimate."""

    vec: tuple[float, float] = (0.0, 0.0)
    height: float = MIN_HEIGHT_MS
    error: float = MAX_ERROR

    def __post_init__(self) -> None:
        lim = MAX_COMPONENT_MS
        x = chk.number("coordinate.vec[0]", self.vec[0], lo=-lim, hi=lim)
        y = chk.number("coordinate.vec[1]", self.vec[1], lo=-lim, hi=lim)
        object.__setattr__(self, "vec", (x, y))
        h = chk.number("coordinate.height", self.height, lo=0.0, hi=lim)
        object.__setattr__(self, "height", h)
        e = chk.number("coordinate.error", self.error, lo=0.0, hi=MAX_ERROR)
        object.__setattr__(self, "error", e)

    def distance_ms(self, other: Coordinate) -> float:
        """The round-trip time these two coordinates predict (ms)."""
        dx = self.vec[0] - other.vec[0]
        dy = self.vec[1] - other.vec[1]
        return math.hypot(dx, dy) + self.height + other.height
