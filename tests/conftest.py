"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from activitysmith_track.emulator import Emulator

# Shared CI machines stall now and then: a slow example is not a failure, a wrong one is.
# No example database: every run, here and in CI, starts from the same state.
settings.register_profile("activitysmith-track", deadline=None, database=None)
settings.load_profile("activitysmith-track")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port, stopped after the test."""
    with Emulator() as emu:
        yield emu
