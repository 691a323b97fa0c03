"""The short fuzz pass (``make test``): a few hundred cases per target; ``make fuzz`` runs a
million (see docs/RELIABILITY.md). ICN_FUZZ_EXAMPLES sets the cases per target."""

from __future__ import annotations

import pytest
from hypothesis import given

from .targets import TARGETS, Target, fuzz_settings


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_no_input_crashes(target: Target) -> None:
    @fuzz_settings()
    @given(target.strategy)
    def run(case: object) -> None:
        target.check(case)

    run()
