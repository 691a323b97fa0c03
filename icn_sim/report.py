"""Figures of a run, from the cores' own records: the table, the JSON file and the plots.

Every task figure is read off the :class:`~icn_node.compute.TaskRecord` its submitter persisted
and every job off the :class:`~icn_node.compute.JobRecord` its executor persisted, as the daemon
stores them in SQLite:

* **lost**: tasks submitted whose latest record is not final when the run ends;
* **trust violations**: a job an executor accepted from a submitter it trusts below
  ``min_trust_execute``, or a task a submitter had run on an executor it trusts below it
  (trust from the scenario's tables, the ones the cores were given);
* **wait**: claim accepted (``started_at``) minus submission; **placement latency**: claim
  accepted minus the last round's start (``negotiation_started_at``); **makespan**: first
  submission to last final record;
* **messages per placement**: the placement messages sent (requests, offers, declines, claims,
  replies, ``task_claimed``; a gossip counts once per member it reaches) per task placed;
* **background**: per node, the floods every member relays (announcements, gossiped
  requests, direct messages routed through the mesh) and the mesh keepalives, in bytes and
  frames per second, in and out;
* **Gini** of the tasks completed per executor (0: perfectly even; every executor counts).

Plots need matplotlib (``pip install 'icnd[sim]'``); without it they are skipped with a note.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from icn_node.scheduler.tasks import TaskState
from icn_sim.engine import PLACEMENT_TAGS, Outcome

__all__ = ["figures", "gini", "percentile", "plot", "table", "write_json"]

GB = 1e9


def percentile(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``xs``; NaN when empty."""
    if not xs:
        return math.nan
    s = sorted(xs)
    k = min(len(s) - 1, max(0, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def gini(values: Sequence[float]) -> float:
    """Gini coefficient of non-negative ``values`` (0 when all equal or all zero)."""
    xs = sorted(values)
    n = len(xs)
    total = sum(xs)
    if n == 0 or total == 0:
        return 0.0
    cum = sum((i + 1) * x for i, x in enumerate(xs))
    return (2.0 * cum) / (n * total) - (n + 1.0) / n


def trust_violations(o: Outcome) -> int:
    bad = 0
    for executor, job in o.jobs:  # a job record exists once its executor accepted the claim
        if o.trust(executor, job.spec.submitter) < o.min_trust:
            bad += 1
    for rec in o.records.values():
        ran = rec.result.executor if rec.result is not None else None
        for ex in {rec.executor, ran} - {None}:
            assert ex is not None
            if rec.state is not TaskState.PENDING and o.trust(rec.spec.submitter, ex) < o.min_trust:
                bad += 1
    return bad


def figures(o: Outcome) -> dict[str, Any]:
    """One row of the table (and of the JSON file)."""
    recs = list(o.records.values())
    final = [r for r in recs if r.state.is_final]
    completed = [r for r in final if r.state is TaskState.COMPLETED]
    lost = o.submitted - len(final)
    waits = [r.started_at - r.submitted_at for r in recs if r.started_at is not None]
    place = [
        r.started_at - r.negotiation_started_at
        for r in recs
        if r.started_at is not None and r.negotiation_started_at is not None
    ]
    if final:
        first = min(r.submitted_at for r in recs)
        last = max(r.finished_at or r.updated_at for r in final)
        makespan = last - first
    else:
        makespan = math.nan
    per_exec: Counter[str] = Counter()
    for r in completed:
        if r.result is not None:
            per_exec[r.result.executor] += 1
    load = [per_exec.get(d, 0) for d in o.executors]
    placement_msgs = sum(n for tag, n in o.msgs.items() if tag in PLACEMENT_TAGS)
    t = max(o.sim_time, 1e-9)
    return {
        "variant": o.variant,
        "nodes": o.nodes,
        "tasks": o.submitted,
        "completed": len(completed),
        "failed": len(final) - len(completed),
        "lost": lost,
        "trust_violations": trust_violations(o),
        "bytes_moved": o.bytes_moved,
        "makespan_s": makespan,
        "wait_p50_s": percentile(waits, 50),
        "wait_p99_s": percentile(waits, 99),
        "placement_p50_ms": percentile(place, 50) * 1000.0,
        "placement_p99_ms": percentile(place, 99) * 1000.0,
        "placements": o.placements,
        "messages_per_placement": placement_msgs / o.placements if o.placements else math.nan,
        "bg_bytes_per_s_per_node": o.bg_bytes / o.nodes / t,
        "bg_msgs_per_s_per_node": o.bg_msgs / o.nodes / t,
        "cpu_per_node": o.cpu_busy_s / o.nodes / t,
        "gini": gini(load),
        "sim_time_s": o.sim_time,
        "wall_s": o.wall_s,
        "events": o.events,
        "messages": dict(sorted(o.msgs.items())),
        "message_bytes": dict(sorted(o.msg_bytes.items())),
        "core_counts": dict(sorted(o.metrics.items())),
        "waits": waits,
        "load": sorted(load, reverse=True),
    }


COLUMNS = (
    ("variant", "variant", "{}"),
    ("nodes", "N", "{:,}"),
    ("completed", "done", "{:,}"),
    ("failed", "failed", "{:,}"),
    ("lost", "lost", "{}"),
    ("trust_violations", "trust viol.", "{}"),
    ("bytes_moved", "moved GB", "{:,.1f}"),
    ("makespan_s", "makespan s", "{:,.0f}"),
    ("wait_p50_s", "wait p50 s", "{:.2f}"),
    ("wait_p99_s", "wait p99 s", "{:.2f}"),
    ("placement_p50_ms", "place p50 ms", "{:,.0f}"),
    ("placement_p99_ms", "place p99 ms", "{:,.0f}"),
    ("messages_per_placement", "msgs/place", "{:,.1f}"),
    ("bg_bytes_per_s_per_node", "bg B/s/node", "{:,.0f}"),
    ("bg_msgs_per_s_per_node", "bg msg/s/node", "{:,.1f}"),
    ("cpu_per_node", "CPU/node", "{:.1%}"),
    ("gini", "Gini", "{:.2f}"),
    ("wall_s", "wall s", "{:.1f}"),
)


def _cell(key: str, fmt: str, row: dict[str, Any]) -> str:
    v = row[key]
    if key == "bytes_moved":
        v = v / GB
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return fmt.format(v)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table, one row per variant."""
    head = [c[1] for c in COLUMNS]
    body = [[_cell(k, f, r) for k, _, f in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(head)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for b in body:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(b, widths, strict=True))
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sweep_table(points: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| N | bg B/s/node | bg msg/s/node | CPU/node | msgs/place |",
        "|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p['nodes']:,} | {p['bg_bytes_per_s_per_node']:,.0f} | "
            f"{p['bg_msgs_per_s_per_node']:,.1f} | {p['cpu_per_node']:.1%} | "
            f"{p['messages_per_placement']:,.1f} |"
        )
    return "\n".join(lines)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("waits", "load")}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def write_json(path: Path, doc: dict[str, Any]) -> None:
    doc = dict(doc)
    doc["rows"] = [_public(r) for r in doc.get("rows", [])]
    doc["sweep"] = [_public(r) for r in doc.get("sweep", [])]
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def plot(
    out: Path, name: str, rows: Sequence[dict[str, Any]], sweep: Sequence[dict[str, Any]]
) -> list[Path] | str:
    """Write the PNGs; returns their paths, or a note when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plots skipped: matplotlib is not installed (pip install 'icnd[sim]')"
    paths: list[Path] = []

    def save(fig: Any, what: str) -> None:
        p = out / f"{name}-{what}.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        w = sorted(r["waits"])
        if w:
            ax.plot(w, [(i + 1) / len(w) for i in range(len(w))], label=r["variant"])
    ax.set_xscale("symlog", linthresh=0.1)
    ax.set_xlabel("wait: submission to claim accepted (s)")
    ax.set_ylabel("fraction of tasks")
    ax.set_title(f"{name}: wait CDF")
    ax.legend(fontsize=8)
    save(fig, "wait-cdf")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.bar([r["variant"] for r in rows], [r["bytes_moved"] / GB for r in rows])
    ax.set_ylabel("bytes moved (GB)")
    ax.set_title(f"{name}: data moved to executors")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    save(fig, "bytes-moved")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.plot(range(len(r["load"])), r["load"], label=f"{r['variant']} (Gini {r['gini']:.2f})")
    ax.set_xlabel("executors, busiest first")
    ax.set_ylabel("tasks completed")
    ax.set_title(f"{name}: load per executor")
    ax.legend(fontsize=8)
    save(fig, "executor-load")

    if sweep:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ns = [p["nodes"] for p in sweep]
        ax.plot(ns, [p["bg_bytes_per_s_per_node"] / 1000 for p in sweep], "o-", label="kB/s")
        ax.plot(ns, [p["bg_msgs_per_s_per_node"] for p in sweep], "s-", label="frames/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("nodes")
        ax.set_ylabel("per node, in + out")
        ax.set_title(f"{name}: background cost against N ({sweep[0]['variant']})")
        ax.legend()
        save(fig, "background")
    return paths
