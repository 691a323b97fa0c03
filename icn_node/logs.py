"""structlog set-up: one processor chain chosen at start-up.

Console rendering on a terminal, JSON lines otherwise (systemd and Docker never run on a
terminal); ``--log-format`` overrides. Values are bound as keys, never formatted into messages.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: structlog.typing.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)


class LimitedLog:
    """Warnings about other nodes' traffic, rate-limited per event: at most ``lines`` per
    ``window_s`` seconds of each event are logged; the rest are counted, and the next line
    logged for that event carries ``suppressed=N`` (what was not shown since). A member
    flooding garbage then costs a few log lines, not one per message."""

    def __init__(
        self,
        logger: structlog.typing.FilteringBoundLogger,
        clock: Callable[[], float],
        *,
        lines: int = 10,
        window_s: float = 10.0,
    ) -> None:
        self._log = logger
        self._clock = clock
        self.lines = lines
        self.window_s = window_s
        self._windows: dict[str, tuple[float, int, int]] = {}  # event -> (start, shown, hidden)

    def warning(self, event: str, **fields: Any) -> None:
        now = self._clock()
        start, shown, hidden = self._windows.get(event, (now, 0, 0))
        if now - start >= self.window_s:
            start, shown = now, 0
        if shown < self.lines:
            if hidden:
                fields["suppressed"] = hidden
            self._log.warning(event, **fields)
            self._windows[event] = (start, shown + 1, 0)
        else:
            self._windows[event] = (start, shown, hidden + 1)
