"""SIGKILL during SQLite and blob writes leaves the stores consistent (issue 10).

One real icnd is SIGKILLed at random points (seeded) of a burst of ``compute.submit`` calls
(the node runs the tasks too, so both the ``tasks`` and the ``jobs`` tables are being written)
and of ``icnctl blob put`` of a 16 MiB file streamed through a passed descriptor (when the
daemon's temporary file reaches a random size, or its full size: during the fsync, rename or
answer), then started again. After each start: it answers, ``compute.list`` decodes every
record and holds every task whose submission was acknowledged, ``PRAGMA integrity_check`` is
ok, every row of both tables decodes, every blob file hashes to its name (acknowledged puts
among them), and no temporary file or run directory the kill left is still there. ``make chaos``
runs 20 iterations with 64 MiB puts.
"""

from __future__ import annotations

import random

import pytest

from icn_dev.chaos import Figures, Plan, StoreCrasher

pytestmark = pytest.mark.integration


def test_sigkill_during_sqlite_and_blob_writes_leaves_stores_consistent(short_tmp):
    plan = Plan(store_iterations=8, store_blob_mb=16)
    fig = Figures()
    StoreCrasher(short_tmp, plan, random.Random(11), fig).run()
    assert fig.store_problems == []
    assert fig.tracebacks == []
    assert (fig.store_sqlite_kills, fig.store_blob_kills) == (4, 4)
    assert fig.store_acked_tasks > 0  # the bursts got through before the kills
    assert fig.store_put_kills["mid-write"] >= 1  # its partial file was cleared at the start
