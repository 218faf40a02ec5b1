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


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The ledger of every test (and of every subprocess a test starts, which inherits the
    environment) lives in a temporary directory, never in the user's own state directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVITYSMITH_TRACK_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(autouse=True)
def _no_delivery_carries_over() -> Iterator[None]:
    """After each test, stop its background senders, so that a retry still running against
    a stopped emulator cannot log into (or send during) the next test."""
    yield
    close_all()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port, stopped after the test."""
    with Emulator() as emu:
        yield emu
