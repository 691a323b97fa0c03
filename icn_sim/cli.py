"""``icnd-sim``: run scenarios under every variant and print the comparison.

    icnd-sim scenarios/ml-batch.toml [--nodes N] [--tasks T] [--seed S] [--variants a,b]
             [--out DIR] [--sweep N,N,...] [--no-plots]

For each scenario: one run per variant (placement weights, ask everyone or a sample), a
Markdown table on stdout with the exact command, ``DIR/<scenario>.json`` and ``.md`` beside it,
and PNG plots when matplotlib is installed. A progress bar on stderr while it runs (when stderr
is a terminal, or with ``--progress``). Exit status: 0; 1 when a task was lost or a trust
rule broken; 2 for a bad scenario or usage.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from icn_sim.engine import Simulation
from icn_sim.report import figures, plot, sweep_table, table, write_json
from icn_sim.scenario import Scenario, ScenarioError, Variant, load_scenario

__all__ = ["main", "run_scenario"]


def _bar(label: str, out: TextIO) -> Callable[[int, int, float], None]:
    t0 = time.perf_counter()

    def show(done: int, total: int, sim_t: float) -> None:
        frac = done / total if total else 1.0
        filled = int(24 * frac)
        wall = time.perf_counter() - t0
        out.write(
            f"\r{label[:36]:<36} [{'#' * filled}{'.' * (24 - filled)}] {done:,}/{total:,} "
            f"t={sim_t:,.0f}s wall {wall:,.0f}s "
        )
        out.flush()

    return show


def _one(sc: Scenario, v: Variant) -> dict[str, Any]:
    return figures(Simulation(sc, v).run())


def run_scenario(
    sc: Scenario,
    variants: Sequence[Variant],
    *,
    progress: TextIO | None = None,
    sweep: Sequence[int] = (),
    jobs: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``sc`` under each variant, and the sweep of node counts under the scenario's
    ``sweep_variant`` (else the last variant; the same tasks per node); returns the rows and
    the sweep points. With ``jobs`` > 1 the runs go to that many processes (each run is
    deterministic on its own, so the figures do not change); the progress bar then becomes a
    line per finished run."""
    per_node = sc.workload.tasks / sc.nodes.count
    named = [v for v in sc.variants if v.name == sc.sweep_variant]
    last = named[0] if named else variants[-1]
    runs: list[tuple[Scenario, Variant]] = [(sc, v) for v in variants]
    reuse = {}
    for n in sweep:
        if n == sc.nodes.count and last in variants:
            reuse[n] = variants.index(last)  # that variant's row is this point
        else:
            runs.append((sc.scaled(nodes=n, tasks=max(1, round(per_node * n))), last))
    results: list[dict[str, Any]] = []
    if jobs > 1:
        import concurrent.futures as cf
        import multiprocessing as mp

        with cf.ProcessPoolExecutor(jobs, mp_context=mp.get_context("fork")) as pool:
            futures = [pool.submit(_one, s, v) for s, v in runs]
            for (s, v), fut in zip(runs, futures, strict=True):
                results.append(fut.result())
                if progress:
                    r = results[-1]
                    progress.write(
                        f"{s.name} N={s.nodes.count:,} {v.name}: {r['completed']:,} done, "
                        f"wall {r['wall_s']:.1f} s\n"
                    )
    else:
        for s, v in runs:
            label = f"{s.name} N={s.nodes.count:,} {v.name}"
            bar = _bar(label, progress) if progress else None
            results.append(figures(Simulation(s, v, progress=bar).run()))
            if progress:
                progress.write("\n")
    rows = results[: len(variants)]
    extra = iter(results[len(variants) :])
    points = [rows[reuse[n]] if n in reuse else next(extra) for n in sweep]
    return rows, points


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="icnd-sim",
        description="Simulate a cooperative on icnd's own cores and compare placement variants.",
    )
    ap.add_argument("scenarios", nargs="+", type=Path, help="scenario TOML files")
    ap.add_argument("--nodes", type=int, help="override the node count (submitters, rate scaled)")
    ap.add_argument("--tasks", type=int, help="override the number of tasks")
    ap.add_argument("--seed", type=int, help="override the scenario's seed")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a scenario key before validation, e.g. network.cpu_scale=0 (repeatable)",
    )
    ap.add_argument("--variants", help="comma-separated variant names to run (default: all)")
    ap.add_argument(
        "--sweep",
        help="node counts for the background-against-N figures (default: the scenario's sweep)",
    )
    ap.add_argument("--no-sweep", action="store_true", help="skip the background sweep")
    ap.add_argument("--out", type=Path, default=Path("results/sim"), help="results folder")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--progress", action="store_true", help="draw the progress bar on any stderr")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(shlex.quote(a) for a in ["icnd-sim", *argv])
    try:
        scenarios = [load_scenario(p, args.set) for p in args.scenarios]
        sweep_arg = None
        if args.sweep:
            try:
                sweep_arg = [int(x) for x in args.sweep.split(",") if x]
            except ValueError:
                raise ScenarioError(
                    f"--sweep: expected node counts like 100,1000: {args.sweep}"
                ) from None
    except ScenarioError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 2
    progress = sys.stderr if (args.progress or sys.stderr.isatty()) else None
    args.out.mkdir(parents=True, exist_ok=True)
    status = 0
    print(f"command: {command}")
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.system()}")
    for sc in scenarios:
        if args.nodes or args.tasks:
            sc = sc.scaled(nodes=args.nodes, tasks=args.tasks)
        if args.seed is not None:
            sc = replace(sc, seed=args.seed)
        variants = list(sc.variants)
        if args.variants:
            wanted = [w.strip() for w in args.variants.split(",")]
            unknown = [w for w in wanted if w not in {v.name for v in variants}]
            if unknown:
                known = ", ".join(v.name for v in variants)
                print(
                    f"Error: {sc.source}: no variant {unknown[0]!r} (known: {known})",
                    file=sys.stderr,
                )
                return 2
            variants = [v for v in variants if v.name in wanted]
        sweep = [] if args.no_sweep else (sweep_arg if sweep_arg is not None else list(sc.sweep))
        t0 = time.perf_counter()
        rows, points = run_scenario(
            sc, variants, progress=progress, sweep=sweep, jobs=max(1, args.jobs)
        )
        wall = time.perf_counter() - t0
        text = [
            f"## {sc.name}: {sc.nodes.count:,} nodes, {sc.workload.tasks:,} tasks, "
            f"seed {sc.seed} ({sc.source})",
            "",
            table(rows),
        ]
        if points:
            text += ["", f"Background against N ({points[0]['variant']}):", "", sweep_table(points)]
        text += ["", f"wall time {wall:,.1f} s; command: {command}"]
        print()
        print("\n".join(text))
        doc = {
            "scenario": sc.name,
            "source": sc.source,
            "seed": sc.seed,
            "nodes": sc.nodes.count,
            "tasks": sc.workload.tasks,
            "command": command,
            "wall_s": wall,
            "rows": rows,
            "sweep": points,
        }
        write_json(args.out / f"{sc.name}.json", doc)
        (args.out / f"{sc.name}.md").write_text("\n".join(text) + "\n")
        print(f"results: {args.out / (sc.name + '.json')}")
        if not args.no_plots:
            made = plot(args.out, sc.name, rows, points)
            if isinstance(made, str):
                print(made)
            else:
                print("plots: " + ", ".join(str(p) for p in made))
        if any(r["lost"] or r["trust_violations"] for r in rows + points):
            status = 1
    return status
