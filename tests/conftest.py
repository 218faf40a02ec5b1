"""Fixtures and helpers shared by the test modules.

``emulator`` is a fresh emulator (fast mode: no capacity limit, no request budget) for one
test; ``emu`` is the same emulator with the library pointed at it through the environment,
with short intervals so tests need not wait: no debounce, a 5 s flush bound and no account
budget. Tests about limits build their own ``Emulator()`` with the production defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

from activitysmith_track._dispatch import close_all
from activitysmith_track.emulator import Emulator, RecordedRequest

# Shared CI machines stall now and then: a slow example is not a failure, a wrong one is.
# No example database: a run never depends on what an earlier run stored.
settings.register_profile("activitysmith-track", deadline=None, database=None)
settings.load_profile("activitysmith-track")

# Environment variables every test starts without, so the machine's own setup never leaks in.
_CLEARED = (
    "ACTIVITYSMITH_API_KEY",
    "ACTIVITYSMITH_BASE_URL",
    "ACTIVITYSMITH_TRACK_DISABLED",
    "ACTIVITYSMITH_TRACK_STRICT",
    "ACTIVITYSMITH_TRACK_PREVIEW",
    "ACTIVITYSMITH_TRACK_DEBOUNCE",
    "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT",
    "ACTIVITYSMITH_TRACK_REQUESTS_PER_MINUTE",
    "ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE",
    "ACTIVITYSMITH_TRACK_SIGNALS",
)
# Every test starts without run history (a test about it turns it on): the same job run by
# many tests would otherwise change what later tests see in their subtitles.
_SET = {"ACTIVITYSMITH_TRACK_HISTORY": "0"}


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The ledger of every test (and of every subprocess a test starts, which inherits the
    environment) lives in a temporary directory, never in the user's own state directory."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ACTIVITYSMITH_TRACK_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        yield


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts from the library's defaults, and leaves no sender running behind,
    so that a retry still running against a stopped emulator cannot log into (or send
    during) the next test."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in _SET.items():
        monkeypatch.setenv(name, value)
    yield
    close_all()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator on a free loopback port (fast mode), stopped after the test."""
    with Emulator(fast=True) as emu:
        yield emu


@pytest.fixture
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The emulator, with the library pointed at it and short intervals for tests."""
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "5")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_REQUESTS_PER_MINUTE", "100000")
    return emulator


# -- helpers (import them: ``from conftest import api_requests``) ------------------------------


def api_requests(emu: Emulator) -> list[RecordedRequest]:
    """The Live Activity requests the emulator received, in order."""
    return [r for r in emu.requests if r.path.startswith("/live-activity")]


def paths(emu: Emulator) -> list[str]:
    """The last path segment of each request: start, update, end, or the stream key."""
    return [r.path.rsplit("/", 1)[-1] for r in api_requests(emu)]


def bodies(emu: Emulator, kind: str) -> list[dict[str, Any]]:
    """The JSON bodies of the requests whose path ends with ``kind`` (``"start"``...)."""
    return [r.body for r in api_requests(emu) if r.path.endswith(kind) and isinstance(r.body, dict)]


def last_body(emu: Emulator, kind: str) -> dict[str, Any]:
    """The body of the last request whose path ends with ``kind``."""
    found = bodies(emu, kind)
    if not found:
        raise AssertionError(f"no {kind} request in {paths(emu)}")
    return found[-1]


def only_activity(emu: Emulator) -> Any:
    """The one activity the emulator holds (fails if there are more or none)."""
    activities = list(emu.activities.values())
    assert len(activities) == 1, [a.state for a in activities]
    return activities[0]
