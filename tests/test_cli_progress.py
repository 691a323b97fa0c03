"""icnctl's progress line: drawn from the daemon's progress notifications, only after a second,
only on a terminal and never with --json."""

from __future__ import annotations

import io
from types import SimpleNamespace

from icn_cli.progress import ProgressBar, human_bytes, progress_bar

MiB = 1 << 20


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def note(phase: str, done: int, total: int | None = None) -> dict:
    return {"request": 1, "phase": phase, "done": done, "total": total}


def test_nothing_is_drawn_in_the_first_second_then_a_bar_with_rate():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar("put big.bin", True, clock=clock, out=out)
    clock.t += 0.5
    bar("progress", note("read", 10 * MiB, 100 * MiB))
    assert out.getvalue() == ""  # under a second: a quick put shows nothing
    clock.t += 1.0
    bar("progress", note("read", 60 * MiB, 100 * MiB))
    # 50 MiB moved in the 1 s since the phase began
    assert out.getvalue() == (
        "\r\033[Kput big.bin " + "█" * 14 + "░" * 10 + "  60%  60.0 MiB/100.0 MiB  50.0 MiB/s"
    )
    bar("progress", note("read", 61 * MiB, 100 * MiB))  # redrawn at most every 0.1 s
    assert out.getvalue().count("\r") == 1
    clock.t += 0.5
    bar("progress", note("sync", 100 * MiB, 100 * MiB))
    assert out.getvalue().endswith("\r\033[Kput big.bin: 100.0 MiB, writing to disk…")
    bar.close()
    assert out.getvalue().endswith("\r\033[K")  # the line is cleared for what follows


def test_unknown_totals_and_fetches_are_shown_without_a_bar():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar("get 0123456789ab", True, clock=clock, out=out)
    bar("progress", note("fetch", 0))
    clock.t += 3
    bar("progress", note("fetch", 0))
    assert out.getvalue().endswith("get 0123456789ab: fetching from the cooperative… 3 s")
    clock.t += 1
    bar("progress", note("write", 2048))
    assert out.getvalue().endswith("get 0123456789ab: 2.0 KiB  0 B/s")  # its phase just began


def test_a_disabled_bar_and_other_notifications_draw_nothing():
    clock, out = Clock(), io.StringIO()
    bar = ProgressBar("put x", False, clock=clock, out=out)
    clock.t += 5
    bar("progress", note("read", 5, 10))
    ProgressBar("put x", True, clock=clock, out=out)("something.else", note("read", 5, 10))
    bar.close()
    assert out.getvalue() == ""


def test_the_bar_is_off_with_json_or_when_stderr_is_not_a_terminal(monkeypatch):
    ctx = SimpleNamespace(obj=SimpleNamespace(json=False))
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    with progress_bar(ctx, "put x") as bar:
        assert not bar.enabled

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    with progress_bar(ctx, "put x") as bar:
        assert bar.enabled
    with progress_bar(ctx, "get x", allowed=False) as bar:  # the blob goes to this terminal
        assert not bar.enabled
    ctx.obj.json = True
    with progress_bar(ctx, "put x") as bar:
        assert not bar.enabled


def test_human_bytes():
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * MiB, 3 << 30, 5000 << 30)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "5000.0 GiB",
    ]
