"""Every ``icnctl`` command's ``--help`` shows an example of that command, and shell completion
is offered on the root command and works without a daemon."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from icn_cli.main import app
from typer.testing import CliRunner

NO_DAEMON = {"ICN_SOCKET": "/nonexistent/icnd.sock", "ICN_CONFIG": "/nonexistent/icnd.toml"}


def command_paths() -> list[tuple[str, ...]]:
    """Every command and group under the root (the root too, as ``()``), by Click's own API,
    so that groups loaded on demand are walked like the rest."""
    root = typer.main.get_command(app)
    paths: list[tuple[str, ...]] = []

    def walk(cmd, path: tuple[str, ...], ctx) -> None:
        paths.append(path)
        for name in cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else []:
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            walk(sub, (*path, name), sub.context_class(sub, parent=ctx, info_name=name))

    walk(root, (), root.context_class(root, info_name="icnctl"))
    return paths


PATHS = command_paths()


def test_the_walk_finds_every_group_and_the_nested_commands():
    assert {("node",), ("compute",), ("blob",), ("mesh",), ("topology",)} <= set(PATHS)
    assert ("node", "status") in PATHS and ("compute", "verify") in PATHS
    assert len(PATHS) >= 25


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "icnctl")
def test_help_has_an_example_of_the_command_itself(path):
    r = CliRunner().invoke(app, [*path, "--help"], env=NO_DAEMON, terminal_width=200)
    assert r.exit_code == 0, r.output
    examples = [line for line in r.output.splitlines() if "Example:" in line]
    assert examples, f"`icnctl {' '.join(path)} --help` shows no 'Example:' line:\n{r.output}"
    text = " ".join(examples)
    assert "icnctl" in text and " ".join(path) in text, (
        f"the example does not show `{' '.join(path)}`: {text}"
    )


@pytest.mark.parametrize("path", [p for p in PATHS if p], ids=lambda p: " ".join(p))
def test_completion_options_are_on_the_root_only(path):
    r = CliRunner().invoke(app, [*path, "--help"], env=NO_DAEMON, terminal_width=200)
    assert "--install-completion" not in r.output, r.output


def test_the_root_offers_completion():
    r = CliRunner().invoke(app, ["--help"], env=NO_DAEMON, terminal_width=200)
    assert "--install-completion" in r.output and "--show-completion" in r.output


def icnctl_script() -> Path:
    script = Path(sys.executable).with_name("icnctl")
    if not script.is_file():
        pytest.skip("icnctl is not installed beside this interpreter (pip install -e .)")
    return script


def test_completion_script_and_completions_need_no_daemon():
    """Completion runs icnctl with _ICNCTL_COMPLETE set; the root callback (which finds the
    socket, reading --config) is not run, so a missing daemon or config does not matter."""
    script = icnctl_script()
    env = {**os.environ, **NO_DAEMON}
    shown = subprocess.run(
        [script, "--show-completion", "bash"], capture_output=True, text=True, env=env, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "_ICNCTL_COMPLETE=complete_bash" in shown.stdout
    for words, cword, expected in [
        ("icnctl no", "1", {"node"}),
        ("icnctl compute s", "2", {"submit", "status"}),
    ]:
        r = subprocess.run(
            [script],
            capture_output=True,
            text=True,
            timeout=60,
            env={
                **env,
                "_ICNCTL_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": cword,
            },
        )
        assert r.returncode == 0, r.stderr
        assert set(r.stdout.split()) == expected, (words, r.stdout, r.stderr)
