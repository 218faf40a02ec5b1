"""Helpers for testing code that uses activitysmith-track, without a network or an account.

:func:`running_emulator` starts a local :class:`~activitysmith_track.emulator.Emulator` and
points the library at it through the environment, so code under test needs no changes::

    from activitysmith_track.testing import running_emulator

    def test_job_reports_progress():
        with running_emulator() as emu:
            run_my_job()
        (activity,) = emu.activities.values()
        assert activity.status == "ended"

The emulator has the account's production limits by default (4 live activities at once, 60
requests a minute), so a test sees the 429s the service would give. A suite that starts many
activities, or is not about limits, passes ``fast=True`` to turn both off.

With pytest, wrap :func:`emulator_fixture` in a fixture of your own (pytest itself is not a
dependency of this library)::

    import pytest
    from activitysmith_track.testing import emulator_fixture

    emulator = pytest.fixture(emulator_fixture)          # production limits

    @pytest.fixture
    def fast_emulator():                                 # no limits
        yield from emulator_fixture(fast=True)

    def test_something(emulator):
        ...
        assert emulator.requests[-1].status == 200
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from activitysmith_track.emulator import Emulator

__all__ = ["FakeClock", "emulator_fixture", "rendered", "running_emulator"]

_ENV_BASE_URL = "ACTIVITYSMITH_BASE_URL"
_ENV_API_KEY = "ACTIVITYSMITH_API_KEY"
_ENV_HISTORY = "ACTIVITYSMITH_TRACK_HISTORY"
_TEST_KEY = "ask_test_emulator"


@contextmanager
def running_emulator(
    *, set_env: bool = True, fast: bool = False, **options: Any
) -> Iterator[Emulator]:
    """Run an emulator for the duration of the block and yield it.

    ``fast=True`` turns off the capacity limit and the request budget (both on by default,
    as on the service). Other ``options`` go to :class:`~activitysmith_track.emulator.Emulator`
    (``max_live_activities=2``, ``requests_per_minute=None``, ``api_key=...``). With
    ``set_env`` (the default) ``ACTIVITYSMITH_BASE_URL`` points at the emulator and
    ``ACTIVITYSMITH_API_KEY`` is set to the emulator's key (a dummy one when it takes any),
    and the run history is off (``ACTIVITYSMITH_TRACK_HISTORY=0``, unless already set) so
    that a test sees the same texts however often it ran before; all restored afterwards.
    """
    with Emulator(fast=fast, **options) as emu:
        if not set_env:
            yield emu
            return
        names = (_ENV_BASE_URL, _ENV_API_KEY, _ENV_HISTORY)
        saved = {name: os.environ.get(name) for name in names}
        os.environ[_ENV_BASE_URL] = emu.base_url
        os.environ[_ENV_API_KEY] = emu.api_key or saved[_ENV_API_KEY] or _TEST_KEY
        os.environ.setdefault(_ENV_HISTORY, "0")
        try:
            yield emu
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def emulator_fixture(*, fast: bool = False, **options: Any) -> Iterator[Emulator]:
    """A generator to wrap with ``pytest.fixture``: yields a running emulator, env pointed at it.

    ``pytest.fixture(emulator_fixture)`` gives a per-test emulator with production limits.
    For one without limits, write a fixture that delegates (pytest ignores parameters that
    have defaults, so they stay yours)::

        @pytest.fixture
        def emulator():
            yield from emulator_fixture(fast=True)

    ``pytest.fixture(scope="module")(emulator_fixture)`` and ``emulator.reset()`` between
    tests give a faster shared one; ``options`` go to the emulator as in
    :func:`running_emulator`.
    """
    with running_emulator(fast=fast, **options) as emu:
        yield emu


class FakeClock:
    """A monotonic clock that moves only when told, for tests of time (budgets, debounce,
    retries, countdowns) that run instantly and exactly.

    Hand it to a :class:`~activitysmith_track.Dispatcher` (``Dispatcher(clock=clock)``) and
    the dispatcher to ``live_activity(..., dispatcher=...)``: every wait of the dispatcher is
    measured on it, and :meth:`advance` wakes the dispatcher to look again::

        clock = FakeClock()
        dispatcher = Dispatcher(clock=clock)
        with live_activity("Job", total=10, dispatcher=dispatcher) as la:
            la.advance()
            clock.advance(1.0)   # past the debounce: the update goes out now

    A request on the wire is timed on this clock too: advancing it past the request's
    timeouts while one is in flight counts as that request timing out. Let what is on the
    wire arrive first (``la.flush()``) before a long jump.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()
        self._watchers: list[Callable[[], None]] = []

    def __call__(self) -> float:
        return self._now

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever the clock moves."""
        with self._lock:
            self._watchers.append(callback)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake whoever waits on it."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward, not by {seconds!r}")
        with self._lock:
            self._now += seconds
            watchers = list(self._watchers)
        for callback in watchers:
            callback()


def rendered(activity: Any) -> dict[str, dict[str, Any]]:
    """Every request ``activity`` would send now, by what it would be sent as.

    Keys: ``"start"`` and ``"change"`` (the running state, as the activity's start and update
    requests), ``"success"`` and ``"failure"`` (the final state of each outcome, as its end
    request). Each value is ``{"operation": "start" | "update" | "end" | "stream_put" |
    "stream_delete", "body": <the exact JSON, without activity_id>}``. Nothing is sent: for
    tests that check what an activity shows, without a server.
    """
    import attrs

    from activitysmith_track._render import final, render
    from activitysmith_track._state import Ending, Job, Outcome, operation

    state, position = activity._lane.read()
    now = state.started_at or 0.0
    target = state.target
    running = render(state, position, now)
    bodies = {}
    for name, job in (("start", Job.START), ("change", Job.CHANGE)):
        op = operation(target, job)
        bodies[name] = {"operation": op.value, "body": running.body(op)}
    for name, outcome in (("success", Outcome.SUCCESS), ("failure", Outcome.FAILURE)):
        ended = state
        if ended.ending is None:
            ending = Ending(outcome=outcome, at=now, error="Error: example")
            ended = attrs.evolve(state, ending=ending)
        op = operation(target, ended.end_job())
        bodies[name] = {"operation": op.value, "body": final(ended, position).body(op)}
    return bodies
