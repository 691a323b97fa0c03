import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def short_tmp():
    """A short temp dir: Unix socket paths must stay under ~108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="icn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
