"""Helpers for testing code that uses activitysmith-track, without a network or an account.

:func:`running_emulator` starts a local :class:`~activitysmith_track.emulator.Emulator` and
points the library at it through the environment, so code under test needs no changes::

    from activitysmith_track.testing import running_emulator

    def test_job_reports_progress():
        with running_emulator() as emu:
            run_my_job()
        (activity,) = emu.activities.values()
        assert activity.status == "ended"

With pytest, wrap :func:`emulator_fixture` in a fixture of your own (pytest itself is not a
dependency of this library)::

    import pytest
    from activitysmith_track.testing import emulator_fixture

    emulator = pytest.fixture(emulator_fixture)

    def test_something(emulator):
        ...
        assert emulator.requests[-1].status == 200
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from activitysmith_track.emulator import Emulator

__all__ = ["emulator_fixture", "running_emulator"]

_ENV_BASE_URL = "ACTIVITYSMITH_BASE_URL"
_ENV_API_KEY = "ACTIVITYSMITH_API_KEY"
_TEST_KEY = "ask_test_emulator"


@contextmanager
def running_emulator(*, set_env: bool = True, **options: Any) -> Iterator[Emulator]:
    """Run an emulator for the duration of the block and yield it.

    ``options`` go to :class:`~activitysmith_track.emulator.Emulator`. With ``set_env`` (the
    default) ``ACTIVITYSMITH_BASE_URL`` points at the emulator and ``ACTIVITYSMITH_API_KEY`` is
    set to the emulator's key (a dummy one when it takes any), both restored afterwards.
    """
    with Emulator(**options) as emu:
        if not set_env:
            yield emu
            return
        saved = {name: os.environ.get(name) for name in (_ENV_BASE_URL, _ENV_API_KEY)}
        os.environ[_ENV_BASE_URL] = emu.base_url
        os.environ[_ENV_API_KEY] = emu.api_key or saved[_ENV_API_KEY] or _TEST_KEY
        try:
            yield emu
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def emulator_fixture() -> Iterator[Emulator]:
    """A generator to wrap with ``pytest.fixture``: yields a running emulator, env pointed at it.

    Use ``pytest.fixture(emulator_fixture)`` for a per-test emulator, or
    ``pytest.fixture(scope="module")(emulator_fixture)`` and call ``emulator.reset()`` between
    tests for a faster shared one.
    """
    with running_emulator() as emu:
        yield emu
