"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from activitysmith_track.emulator import Emulator


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port, stopped after the test."""
    with Emulator() as emu:
        yield emu
