"""Prefect runs in-process against its own ephemeral server (a temporary SQLite database)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from activitysmith_track.emulator import Emulator

# Before Prefect is imported: a private home, no telemetry, quiet logs.
_home = tempfile.mkdtemp(prefix="prefect-home-")
os.environ["PREFECT_HOME"] = _home
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["ACTIVITYSMITH_TRACK_DEBOUNCE"] = "0"
os.environ.pop("ACTIVITYSMITH_API_KEY", None)


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def emu(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    with Emulator() as emulator:
        monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", emulator.base_url)
        yield emulator
