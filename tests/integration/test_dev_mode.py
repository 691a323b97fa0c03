"""``icnd dev``: started as a user would, driven with the icnctl line it prints, then stopped
by a signal; every process it started must be gone and its temp dir removed."""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SUMWAT = ROOT / "examples" / "sum.wat"
READY_TIMEOUT_S = 40.0


class DevProcess:
    """``icnd dev`` as a child process, its stdout read line by line on a thread."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("ICN_SOCKET", "ICN_CONFIG")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "icn_dev.icnd", "dev", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str, timeout: float = READY_TIMEOUT_S) -> str:
        """The first line (stripped) starting with ``prefix``; fails with everything seen."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.stop(signal.SIGTERM)
                raise AssertionError(
                    f"no line starting {prefix!r}; stdout:\n"
                    + "\n".join(self.seen)
                    + f"\nstderr:\n{self.stderr}"
                )
            self.seen.append(line)
            if line.strip().startswith(prefix):
                return line.strip()

    def children(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]

    def stop(self, signum: int) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            return self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    @property
    def stderr(self) -> str:
        if self.proc.poll() is None or self.proc.stderr is None:
            return "(still running)"
        return self.proc.stderr.read()


def icnctl(command: str, *extra: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command)
    return subprocess.run([*argv, *extra], capture_output=True, text=True, timeout=timeout)


def ready(dev: DevProcess) -> tuple[Path, str]:
    """The state dir and node0's icnd.sock ``icnctl`` line, once the command has printed all."""
    state = dev.wait_for("state in ").split()[2]
    line = dev.wait_for("icnctl:").removeprefix("icnctl:").strip()
    dev.wait_for("Ctrl-C stops")
    return Path(state), line


def assert_all_gone(dev: DevProcess, pids: list[int], state: Path, code: int) -> None:
    assert code == 0, dev.stderr
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    assert not alive, f"still running after icnd dev stopped: {alive}"
    assert not state.exists(), f"{state} was not removed"


def test_dev_cooperative_runs_a_task_and_ctrl_c_stops_everything():
    dev = DevProcess("--nodes", "2")
    try:
        state, line = ready(dev)
        assert line.endswith("node status") and "--socket" in line
        pids = dev.children()
        assert len(pids) == 2, pids

        r = icnctl(line)
        assert r.returncode == 0, r.stderr
        assert "peers:    1" in r.stdout, r.stdout

        # The printed line with another command: a task placed on the dev cooperative.
        base = line.removesuffix("node status")
        r = icnctl(base, "compute", "submit", str(SUMWAT), "--arg", "10", "--cpu", "0.5", "--wait")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "state: completed" in r.stdout and "55" in r.stdout, r.stdout

        # The open mesh the command promises, in the config it wrote.
        cfg = tomllib.loads((state / "node1.toml").read_text())
        assert cfg["mesh"]["open"] is True and cfg["compute"]["executor"] is True
    except BaseException:
        dev.stop(signal.SIGTERM)
        raise
    assert_all_gone(dev, pids, state, dev.stop(signal.SIGINT))


def test_dev_single_node_serves_rpc_and_metrics_and_sigterm_stops_it():
    dev = DevProcess()
    try:
        state, line = ready(dev)
        (metrics,) = [x for x in dev.seen if x.strip().startswith("metrics:")]
        pids = dev.children()
        assert len(pids) == 1, pids

        r = icnctl(line)
        assert r.returncode == 0, r.stderr
        assert "peers:    0" in r.stdout
        url = metrics.split()[1]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        assert "icn_node_info{" in body
    except BaseException:
        dev.stop(signal.SIGTERM)
        raise
    assert_all_gone(dev, pids, state, dev.stop(signal.SIGTERM))


def test_dev_stops_the_rest_and_exits_1_when_a_node_dies():
    dev = DevProcess("--nodes", "2")
    try:
        state, _ = ready(dev)
        pids = dev.children()
        os.kill(pids[1], signal.SIGKILL)
        code = dev.proc.wait(20)
    except BaseException:
        dev.stop(signal.SIGTERM)
        raise
    stderr = dev.stderr
    assert code == 1, stderr
    assert "exited on its own (status -9); stopping the rest" in stderr
    assert not [pid for pid in pids if psutil.pid_exists(pid)]
    assert not state.exists()


def test_icnd_console_script_offers_dev_and_the_daemon_module_does_not():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["icnd"] == "icn_dev.icnd:main"
    r = subprocess.run(
        [sys.executable, "-m", "icn_dev.icnd", "--help"], capture_output=True, text=True
    )
    assert r.returncode == 0 and " dev " in r.stdout and " run " in r.stdout, r.stdout
    # What LocalCluster and unit files start stays the daemon alone.
    r = subprocess.run(
        [sys.executable, "-m", "icn_node.daemon", "dev"], capture_output=True, text=True
    )
    assert r.returncode == 2, r.stdout + r.stderr
