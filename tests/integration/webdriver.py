"""A few calls of the W3C WebDriver protocol, over urllib, to drive Debian's headless chromium.

No selenium or playwright: the dashboard test needs a session, navigation, a script to read
the DOM, element text and a screenshot, which are each one HTTP request to chromedriver. The
browser comes from Debian (``chromium``, ``chromium-driver``); :func:`ensure_browser` installs
them with apt-get when it can (root, apt present) and says why not otherwise. Nothing is
downloaded from anywhere else.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from icn_dev.cluster import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C key of an element reference
ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900")


def ensure_browser(timeout: float = 900.0) -> str | None:
    """Install Debian's chromium and its driver if missing (root with apt-get only, best
    effort); None when both are there, else why the browser test cannot run."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return (
            f"{CHROMIUM} or {CHROMEDRIVER} is missing and cannot be installed here "
            "(needs root and apt-get): apt-get install chromium chromium-driver"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    r = None
    # A fresh container may have no package lists yet: on failure, update them and try again.
    for argv in (
        [apt, "install", "-y", *PACKAGES],
        [apt, "update"],
        [apt, "install", "-y", *PACKAGES],
    ):
        try:
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"{' '.join(argv)} took over {timeout:.0f} s"
        if CHROMIUM.exists() and CHROMEDRIVER.exists():
            return None
    assert r is not None
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    return f"apt-get install {' '.join(PACKAGES)} failed ({r.returncode}): {' / '.join(tail)}"


class WebDriverError(Exception):
    pass


class Browser:
    """One chromedriver process (started and stopped here, by pid) and one session."""

    def __init__(self, profile_dir: Path) -> None:
        self.port = free_port()
        self.log_path = profile_dir / "chromedriver.log"
        self.driver = subprocess.Popen(
            [str(CHROMEDRIVER), f"--port={self.port}", f"--log-path={self.log_path}"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own group: the browsers it starts end with it
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.session: str | None = None
        try:
            self._wait_ready()
            caps = {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": str(CHROMIUM),
                    "args": [*ARGS, f"--user-data-dir={profile_dir / 'profile'}"],
                },
            }
            out = self._call("POST", "/session", {"capabilities": {"alwaysMatch": caps}})
            self.session = out["sessionId"]
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.poll() is not None:
                raise WebDriverError(f"chromedriver exited with {self.driver.returncode}")
            try:
                if self._call("GET", "/status").get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise WebDriverError(f"chromedriver did not answer on port {self.port} in {timeout} s")

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 60.0) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise WebDriverError(f"{method} {path}: {e.code} {e.read()[:500]!r}") from None

    def _session(self, method: str, path: str, body: Any = None) -> Any:
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self._session("POST", "/url", {"url": url})

    def script(self, source: str, *args: Any) -> Any:
        """Run ``source`` (a function body; ``arguments`` holds ``args``) in the page."""
        return self._session("POST", "/execute/sync", {"script": source, "args": list(args)})

    def texts(self, css: str) -> list[str]:
        """The rendered text of every element ``css`` selects."""
        found = self._session("POST", "/elements", {"using": "css selector", "value": css})
        return [self._session("GET", f"/element/{e[ELEMENT]}/text") for e in found]

    def click(self, css: str) -> None:
        """Click the first element ``css`` selects."""
        found = self._session("POST", "/element", {"using": "css selector", "value": css})
        self._session("POST", f"/element/{found[ELEMENT]}/click", {})

    def title(self) -> str:
        return self._session("GET", "/title")

    def screenshot(self) -> bytes:
        return base64.b64decode(self._session("GET", "/screenshot"))

    def close(self) -> None:
        if self.session is not None:
            try:
                self._call("DELETE", f"/session/{self.session}", timeout=10)
            except (OSError, WebDriverError):
                pass
            self.session = None
        if self.driver.poll() is None:
            # The group is chromedriver's own (start_new_session): it and what it started.
            os.killpg(self.driver.pid, signal.SIGTERM)
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.driver.pid, signal.SIGKILL)
                self.driver.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
