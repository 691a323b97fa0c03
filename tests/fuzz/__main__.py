"""The long fuzz run behind ``make fuzz``: many cases per target, in-process, in chunks.

    python -m tests.fuzz [--cases 1000000] [--targets frames,messages,config] [--seed N]

The cases are shared among the targets by their ``share``. Each target runs in chunks of
``--chunk`` cases, each a fresh hypothesis run with its own seed (``--seed`` plus the chunk's
number), so memory stays bounded and any chunk can be replayed alone with ``--only-chunk``.
A case slower than ``--deadline-ms`` fails as a crash; a case stuck for ``--hang-s`` ends the
run with every thread's stack (exit 3). A crash is shrunk by hypothesis, printed, and counted;
the run goes on with the next chunk. Prints a table of the figures; exit 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import resource
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings

from .targets import TARGETS, Target, fuzz_settings


@dataclass
class Figures:
    target: Target
    cases: int = 0
    accepted: int = 0
    rejected: int = 0
    crashes: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Watchdog:
    """Ends the process with every thread's stack when one case runs longer than ``hang_s``
    (a case stuck in a loop never reaches hypothesis's deadline check)."""

    def __init__(self, hang_s: float) -> None:
        self.hang_s = hang_s
        self.started = time.monotonic()
        self.busy = False
        threading.Thread(target=self._watch, daemon=True, name="fuzz-watchdog").start()

    def begin(self) -> None:
        self.started = time.monotonic()
        self.busy = True

    def end(self) -> None:
        self.busy = False

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            if self.busy and time.monotonic() - self.started > self.hang_s:
                print(f"\nHANG: one case has run for over {self.hang_s:.0f} s", file=sys.stderr)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(3)


def run_chunk(
    fig: Figures, cases: int, chunk_seed: int, deadline_ms: int, dog: Watchdog
) -> str | None:
    """``cases`` cases of one target; the crash report, if one was found."""
    check: Callable[[Any], bool] = fig.target.check

    @settings(
        fuzz_settings(cases, deadline_ms),
        database=None,
        phases=(Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @seed(chunk_seed)
    @given(fig.target.strategy)
    def one(case: Any) -> None:
        dog.begin()
        try:
            accepted = check(case)
        finally:
            dog.end()
        fig.cases += 1
        if accepted:
            fig.accepted += 1
        else:
            fig.rejected += 1

    try:
        one()
    except Exception as e:  # a crash (or a group of distinct ones), shrunk, example noted
        return "".join(traceback.format_exception(e)).strip()
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n")[0])
    default_cases = int(os.environ.get("ICN_FUZZ_CASES", "1000000"))
    p.add_argument("--cases", type=int, default=default_cases, help="cases in all (1,000,000)")
    p.add_argument("--targets", default=",".join(t.name for t in TARGETS))
    p.add_argument("--chunk", type=int, default=5000, help="cases per hypothesis run")
    p.add_argument("--seed", type=int, default=1, help="first chunk's seed")
    p.add_argument("--only-chunk", type=int, help="replay this chunk number alone")
    p.add_argument("--deadline-ms", type=int, default=1000, help="per-case deadline")
    p.add_argument("--hang-s", type=float, default=60.0, help="a case this long ends the run")
    args = p.parse_args(argv)

    chosen = [t for t in TARGETS if t.name in args.targets.split(",")]
    if not chosen:
        p.error(f"no such target; known: {', '.join(t.name for t in TARGETS)}")
    total_share = sum(t.share for t in chosen)
    dog = Watchdog(args.hang_s)
    figures = []
    started = time.monotonic()
    for target in chosen:
        fig = Figures(target)
        figures.append(fig)
        want = round(args.cases * target.share / total_share)
        chunks = range((want + args.chunk - 1) // args.chunk)
        if args.only_chunk is not None:
            chunks = range(args.only_chunk, args.only_chunk + 1)
        t0 = time.monotonic()
        for i in chunks:
            n = min(args.chunk, want - i * args.chunk) if args.only_chunk is None else args.chunk
            crash = run_chunk(fig, n, args.seed + i, args.deadline_ms, dog)
            if crash:
                fig.crashes.append(crash)
                print(f"\nCRASH in {target.name}, chunk {i} (replay: --targets {target.name} "
                      f"--seed {args.seed} --only-chunk {i} --chunk {args.chunk}):\n{crash}\n",
                      file=sys.stderr, flush=True)  # fmt: skip
            done = fig.cases
            rate = done / max(time.monotonic() - t0, 1e-9)
            print(f"{target.name}: {done:,}/{want:,} cases, {rate:,.0f}/s", file=sys.stderr,
                  flush=True)  # fmt: skip
        fig.seconds = time.monotonic() - t0
    print_table(figures, time.monotonic() - started, argv)
    return 1 if any(f.crashes for f in figures) else 0


def print_table(figures: list[Figures], seconds: float, argv: list[str] | None) -> None:
    rows = [("target", "cases", "accepted", "rejected (clean)", "crashes", "time", "cases/s")]
    for f in figures:
        rows.append(
            (
                f.target.name,
                f"{f.cases:,}",
                f"{f.accepted:,}",
                f"{f.rejected:,}",
                str(len(f.crashes)),
                f"{f.seconds:,.0f} s",
                f"{f.cases / max(f.seconds, 1e-9):,.0f}",
            )
        )
    total = sum(f.cases for f in figures)
    rows.append(
        (
            "total",
            f"{total:,}",
            f"{sum(f.accepted for f in figures):,}",
            f"{sum(f.rejected for f in figures):,}",
            str(sum(len(f.crashes) for f in figures)),
            f"{seconds:,.0f} s",
            f"{total / max(seconds, 1e-9):,.0f}",
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    command = " ".join(["python -m tests.fuzz", *(argv if argv is not None else sys.argv[1:])])
    print("\n".join(lines))
    print(f"\npeak RSS {peak_mb:,.0f} MB; Python {sys.version.split()[0]}; command: {command}")
    for f in figures:
        print(f"  {f.target.name}: {f.target.about}")


if __name__ == "__main__":
    sys.exit(main())
