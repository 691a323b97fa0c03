"""``make demo``: a local cooperative of real icnd processes placing and running real tasks.

Six ``icnd`` processes on 127.0.0.1 (keys, configs and trust tables generated in a temp dir):
``coop``, a member that submits but does not execute, and executors ``a``–``e`` with different
advertised capacities and the seed's trust figures (0.9/0.7/0.5/0.8/0.2; each executor trusts
``coop`` as much as ``coop`` trusts it, so ``e`` is below the 0.3 execution threshold and
declines). Every task is submitted with ``icnctl``; for each one the demo shows the offers
``coop`` received with its own scores, the winner, the placement latency and the result. It
stops every process it started, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .cluster import LocalCluster

ROOT = Path(__file__).resolve().parent.parent
NEEDED = "icn_compute_placement_data_transfer_needed_bytes_total"
SAVED = "icn_compute_placement_data_transfer_saved_bytes_total"
EXAMPLES = ROOT / "examples"
LETTERS = ["coop", "a", "b", "c", "d", "e"]
TRUST = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.8, "e": 0.2}
# Advertised capacity per executor: (cpu cores, memory MB); the host caps what it cannot give.
CAPACITY = {
    "a": (2.0, 4096),
    "b": (1.0, 2048),
    "c": (2.0, 8192),
    "d": (1.0, 1024),
    "e": (2.0, 4096),
}
REGION = {"a": "eu-west", "b": "eu-west", "c": "us-east", "d": "eu-north", "e": "us-east"}


def node_config(i: int, dids: list[str]) -> dict[str, Any]:
    name = LETTERS[i]
    by_name = dict(zip(LETTERS, dids, strict=True))
    common = {"compute": {"announce_interval_s": 2.0}}
    if name == "coop":
        return {
            **common,
            "node": {"region": "eu-west"},
            "compute": {"executor": False, "announce_interval_s": 2.0},
            "trust": {"default": 0.0, "peers": {by_name[k]: v for k, v in TRUST.items()}},
        }
    cpu, mem = CAPACITY[name]
    return {
        **common,
        "node": {"region": REGION[name]},
        "capacity": {"cpu_cores": cpu, "memory_mb": mem},
        "trust": {"default": 0.0, "peers": {by_name["coop"]: TRUST[name]}},
    }


def say(text: str = "") -> None:
    print(text, flush=True)


class Demo:
    def __init__(self, cluster: LocalCluster) -> None:
        self.c = cluster
        self.names = {n.did: LETTERS[n.index] for n in cluster.nodes}

    def name(self, did: str | None) -> str:
        return self.names.get(did or "", did or "-")

    def icnctl(self, *args: str, timeout: float = 120.0) -> tuple[int, str, str]:
        r = self.c.icnctl(0, *args, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            peers = self.c.rpc(0, "node.status")["peers"]
            live = self.c.rpc(0, "compute.executors")["executors"]
            if peers >= 5 and len(live) >= 5:
                say(f"  mesh: coop sees {peers} peers; {len(live)} executors announced")
                return
            time.sleep(0.25)
        raise SystemExit("the cooperative did not come together in time; see the logs")

    def run(self, title: str, args: list[str], expect: str) -> bool:
        say(f"\n── {title}")
        say("   $ icnctl compute submit " + " ".join(args))
        code, out, err = self.icnctl("--json", "compute", "submit", *args, "--wait")
        if not out.strip():
            say(f"   icnctl failed (exit {code}): {err.strip()}")
            return False
        data = json.loads(out)
        st, res = data["status"], data["result"]
        self.show_placement(st)
        if res is not None:
            self.show_result(res)
        ok = st["state"] == expect
        say(f"   {'✓' if ok else '✗'} expected {expect}, got {st['state']}")
        return ok

    def show_placement(self, st: dict[str, Any]) -> None:
        say(f"   task {st['task'][:16]}…  protocol {st['protocol']}  attempt {st['attempt']}")
        offers = sorted(st.get("offers") or [], key=lambda o: -o["score"])
        if offers:
            for o in offers:
                mark = "  ← winner" if o["executor"] == st.get("executor") else ""
                say(
                    f"     offer from {self.name(o['executor']):4}  score {o['score']:.3f}  "
                    f"cost {o.get('cost', '-')}{mark}"
                )
        elif st["protocol"] == "legacy":
            say(f"     first claim granted to {self.name(st.get('executor'))}")
        t = st.get("timings") or {}
        if "claimed" in t and "negotiation_started" in t:
            say(
                f"     placement latency (request → claim accepted): "
                f"{(t['claimed'] - t['negotiation_started']) * 1000:.0f} ms"
            )

    def show_result(self, res: dict[str, Any]) -> None:
        where = self.name(res.get("executor"))
        say(f"   result: {res['state']} on {where}, fuel {res['fuel_used']:,}")
        if res.get("message"):
            say(f"     {res['message']}")
        if res.get("stdout"):
            say("     stdout: " + res["stdout"].strip().replace("\n", " | ")[:200])
        for o in res.get("outputs") or []:
            say(f"     output {o['name']}: blob {o['blob'][:16]}…")

    def run_near_data(self, root: Path, holder: str, size: int) -> bool:
        """Put a dataset on ``holder`` only, then submit a task that reads it as its input:
        the request carries the input's size, so ``holder`` wins and the bytes stay put."""
        say(f"\n── Compute goes to data: a {size / 1e6:.1f} MB dataset held by {holder} only")
        data = root / "dataset.txt"
        line = b"compute goes to data, not data to compute\n"
        data.write_bytes(line * (size // len(line)))
        i = LETTERS.index(holder)
        r = self.c.icnctl(i, "--json", "blob", "put", str(data))
        if r.returncode != 0:
            say(f"   icnctl blob put on {holder} failed: {r.stderr.strip()}")
            return False
        blob = json.loads(r.stdout)["blob"]
        say(f"   $ icnctl blob put dataset.txt      (on {holder})  → blob {blob[:16]}…")
        args = [
            str(EXAMPLES / "wordcount.wat"), "--input", f"data={blob}", "--arg", "data",
            "--cpu", "0.5", "--memory", "128", "--fuel", str(60 * size),
        ]  # fmt: skip
        say("   $ icnctl compute submit " + " ".join(args))
        before = self.metrics()
        end = time.monotonic() + 10
        while True:  # coop hears of the new blob within a second (batched announcements)
            code, out, err = self.icnctl("--json", "compute", "submit", *args, "--wait")
            if code == 0 or "no node is known to hold" not in err or time.monotonic() > end:
                break
            time.sleep(0.3)
        if not out.strip():
            say(f"   icnctl failed (exit {code}): {err.strip()}")
            return False
        st, res = json.loads(out)["status"], json.loads(out)["result"]
        self.show_placement(st)
        if res is not None:
            self.show_result(res)
        after = self.metrics()
        moved = after.get(NEEDED, 0) - before.get(NEEDED, 0)
        saved = after.get(SAVED, 0) - before.get(SAVED, 0)
        say(
            f"   moved {moved:,.0f} bytes (the module) instead of the {data.stat().st_size:,} byte "
            "input; "
            f"saved against a locality-blind pick: {saved:,.0f} bytes"
        )
        ok = st["state"] == "completed" and self.name(st.get("executor")) == holder
        say(f"   {'✓' if ok else '✗'} expected the holder {holder} to run it")
        return ok

    def metrics(self) -> dict[str, float]:
        import urllib.request

        addr = self.c.rpc(0, "node.status")["listen"]["metrics"]
        body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read().decode()
        out: dict[str, float] = {}
        for line in body.splitlines():
            if not line.startswith("#") and " " in line:
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def run_failing(self, title: str, args: list[str]) -> bool:
        say(f"\n── {title}")
        say("   $ icnctl compute submit " + " ".join(args))
        code, out, err = self.icnctl("--json", "compute", "submit", *args, "--wait", timeout=180)
        if not out.strip():
            say(f"   icnctl failed (exit {code}): {err.strip()}")
            return False
        st = json.loads(out)["status"]
        say(
            f"   task {st['task'][:16]}…  state {st['state']} ({st.get('reason') or '-'}) after "
            f"{st['attempt']} attempt(s); every executor declined: none has a GPU"
        )
        return st["state"] == "failed"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs, databases)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="icn-demo-"))
    text = root / "poem.txt"
    text.write_text(
        "the cooperative shares its machines\nnobody outside gets in\n"
        "tasks go where they fit best\nresults come home\n"
    )
    ok = True
    say(f"icnd demo: 6 real icnd processes on 127.0.0.1 (state in {root})")
    cluster = LocalCluster(root, len(LETTERS), node_config=node_config, topology="star")
    try:
        with cluster:
            cluster.start_all()
            demo = Demo(cluster)
            for n in cluster.nodes:
                name = LETTERS[n.index]
                role = (
                    "submitter"
                    if name == "coop"
                    else (
                        f"executor, {CAPACITY[name][0]:g} cores / {CAPACITY[name][1]} MB, "
                        f"{REGION[name]}, coop trusts it {TRUST[name]}"
                    )
                )
                say(f"  {name:4} {n.did[:28]}…  {role}")
            demo.wait_ready()
            sumwat = str(EXAMPLES / "sum.wat")
            ok &= demo.run(
                "A task with a resource profile: negotiated placement",
                [sumwat, "--arg", "1000", "--cpu", "1", "--memory", "256"],
                "completed",
            )
            ok &= demo.run(
                "A bigger task that only roomy executors can fit",
                [sumwat, "--arg", "100000", "--cpu", "2", "--memory", "3000", "--fuel", "5000000"],
                "completed",
            )
            ok &= demo.run(
                "A task without a profile: the legacy first-claim protocol",
                [sumwat, "--arg", "10"],
                "completed",
            )
            ok &= demo.run(
                "A task that reads an input blob and writes an output file",
                [
                    str(EXAMPLES / "wordcount.wat"),
                    "--input",
                    f"poem.txt={text}",
                    "--arg",
                    "poem.txt",
                    "--cpu",
                    "0.5",
                    "--memory",
                    "128",
                    "--region",
                    "us-east",
                ],
                "completed",
            )
            ok &= demo.run(
                "An infinite loop stopped by its fuel limit",
                [
                    str(EXAMPLES / "infinite.wat"),
                    "--fuel",
                    "20000000",
                    "--cpu",
                    "0.5",
                    "--memory",
                    "64",
                ],
                "fuel_exhausted",
            )
            ok &= demo.run_near_data(root, "d", 20_000_000)
            ok &= demo.run_failing(
                "A GPU task: no executor here has a GPU", [sumwat, "--profile", "gpu"]
            )
            say("\n── The cooperative's placement counters (coop's Prometheus endpoint)")
            metrics = cluster.rpc(0, "node.status")["listen"]["metrics"]
            import urllib.request

            body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5).read().decode()
            for line in body.splitlines():
                if line.startswith(
                    (
                        "icn_compute_placement_offers_received_total",
                        "icn_compute_tasks_finished_total",
                        "icn_compute_tasks_submitted_total",
                        "icn_compute_placement_duration_seconds_count",
                        "icn_compute_placement_duration_seconds_sum",
                        NEEDED,
                        SAVED,
                        "icn_compute_placement_data_local_total",
                        "icn_compute_placement_with_data_total",
                    )
                ):
                    say("   " + line)
            say("\nstopping every icnd process the demo started …")
    except KeyboardInterrupt:
        ok = False
    finally:
        if args.keep:
            say(f"state and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    say("demo " + ("finished: every task ended as expected" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
