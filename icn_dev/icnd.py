"""The ``icnd`` console script: the daemon's own commands plus ``icnd dev``.

``icn_node.daemon`` holds ``init``, ``run``, ``check-config`` and ``version`` and imports
nothing of the developer tooling (tests/test_layers.py). ``icnd dev`` starts real daemons
through :mod:`icn_dev.cluster`, so it lives here, above both, and is added to the daemon's
Typer app only when the console script runs. ``python -m icn_node.daemon`` (what
``LocalCluster`` starts, and what a unit file may name) stays the daemon alone.
"""

from __future__ import annotations

from icn_node import daemon

from .dev import dev


def main() -> None:
    daemon.app.command("dev")(dev)
    daemon.main()


if __name__ == "__main__":
    main()
