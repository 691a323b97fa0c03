import shutil
import tempfile
from pathlib import Path

import pytest
import trio

from icn_node.config import Config
from icn_node.identity import init_data_dir
from icn_node.node import Node


@pytest.fixture
def short_tmp():
    """A short temp dir: Unix socket paths must stay under ~108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="icn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def lone_node(short_tmp):
    """One real node in-process (``Node.run``: mesh, blob store, compute, RPC registry, the
    metrics endpoint with the dashboard on 127.0.0.1:0), alone."""
    identity = init_data_dir(short_tmp / "d")
    config = Config().replace(
        node={"data_dir": str(short_tmp / "d")},
        mesh={"listen": "127.0.0.1:0"},
        metrics={"listen": "127.0.0.1:0"},
    )
    async with trio.open_nursery() as nursery:
        yield await nursery.start(Node(config, identity).run)
        nursery.cancel_scope.cancel()
