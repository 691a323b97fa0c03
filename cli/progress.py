"""A progress line on stderr for transfers that take more than a second.

The daemon reports a streaming call's progress as notifications (``{"phase", "done", "total"}``,
see docs/PROTOCOL.md); :class:`ProgressBar` is the ``on_notify`` that draws them. It draws
nothing during the first second, nothing when stderr is not a terminal and nothing with
``--json``, so scripts and logs never see it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import typer

SHOW_AFTER_S = 1.0
REDRAW_S = 0.1
BAR_WIDTH = 24


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressBar:
    """Draws ``progress`` notifications as one line on ``out``, redrawn in place."""

    def __init__(
        self,
        label: str,
        enabled: bool,
        *,
        clock: Callable[[], float] = time.monotonic,
        out: TextIO | None = None,
    ) -> None:
        self.label = label
        self.enabled = enabled
        self._clock = clock
        self._out = out if out is not None else sys.stderr
        self._start = clock()
        self._last_draw = -1e18
        self._phase: str | None = None
        self._phase_start = (self._start, 0)  # (time, bytes done) when the phase began
        self.drawn = False

    def __call__(self, method: str, params: Any) -> None:
        if method != "progress" or not isinstance(params, dict):
            return
        now = self._clock()
        phase = str(params.get("phase", ""))
        done = int(params.get("done") or 0)
        if phase != self._phase:
            self._phase, self._phase_start = phase, (now, done)
        if not self.enabled or now - self._start < SHOW_AFTER_S:
            return
        if now - self._last_draw < REDRAW_S:
            return
        self._last_draw = now
        line = self.render(phase, done, params.get("total"), now)
        self._out.write("\r\033[K" + line)
        self._out.flush()
        self.drawn = True

    def render(self, phase: str, done: int, total: int | None, now: float) -> str:
        if phase == "fetch":
            return f"{self.label}: fetching from the cooperative… {now - self._start:.0f} s"
        if phase == "sync":
            return f"{self.label}: {human_bytes(done)}, writing to disk…"
        since, done_then = self._phase_start
        rate = (done - done_then) / (now - since) if now > since else 0.0
        speed = f"{human_bytes(rate)}/s"
        if not total:
            return f"{self.label}: {human_bytes(done)}  {speed}"
        part = min(1.0, done / total)
        fill = int(part * BAR_WIDTH)
        bar = "█" * fill + "░" * (BAR_WIDTH - fill)
        return (
            f"{self.label} {bar} {part * 100:3.0f}%  {human_bytes(done)}/{human_bytes(total)}"
            f"  {speed}"
        )

    def close(self) -> None:
        if self.drawn:
            self._out.write("\r\033[K")
            self._out.flush()
            self.drawn = False


@contextmanager
def progress_bar(ctx: typer.Context, label: str, allowed: bool = True) -> Iterator[ProgressBar]:
    """A bar for one call: drawn only on a terminal, never with --json (or when not
    ``allowed``, e.g. while the blob itself goes to that terminal)."""
    bar = ProgressBar(label, allowed and not ctx.obj.json and sys.stderr.isatty())
    try:
        yield bar
    finally:
        bar.close()
