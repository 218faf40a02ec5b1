"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from activitysmith_track._dispatch import close_all
from activitysmith_track.emulator import Emulator

# Shared CI machines stall now and then: a slow example is not a failure, a wrong one is.
# No example database: a run never depends on what an earlier run stored.
settings.register_profile("activitysmith-track", deadline=None, database=None)
settings.load_profile("activitysmith-track")


@pytest.fixture(autouse=True)
def _no_delivery_carries_over() -> Iterator[None]:
    """After each test, stop its background senders, so that a retry still running against
    a stopped emulator cannot log into (or send during) the next test."""
    yield
    close_all()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port, stopped after the test."""
    with Emulator(fast=True) as emu:
        yield emu
