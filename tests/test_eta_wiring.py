"""ETA end to end, on the emulator and a fake clock: a job that ran before says when it will
finish, a bar says how long it has left, an ETA never adds a request, a countdown counts down
to the expected end, and a run is recorded once it succeeded (also by a process that exits
right after its block)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import api_requests, paths

from activitysmith_track import Dispatcher, Settings, ValidationError, live_activity
from activitysmith_track._history import History, identity
from activitysmith_track._retry import RetryPolicy
from activitysmith_track._store import forget_stores
from activitysmith_track.emulator import Emulator
from activitysmith_track.testing import FakeClock

STEPS = ["extract", "transform", "load"]


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    yield
    forget_stores()


def settings_for(emulator: Emulator, state: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "base_url": emulator.base_url,
        "api_key": "ask_eta_test",
        "debounce": 0.0,
        "flush_timeout": 5.0,
        "retry": RetryPolicy(initial_backoff=0.01, max_backoff=0.05),
        "requests_per_minute": 100_000,
        "state_dir": str(state),
        "history": True,
    }
    options.update(overrides)
    return Settings(**options)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(emulator: Emulator, clock: FakeClock, tmp_path: Path) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(settings_for(emulator, tmp_path), clock=clock)
    yield dispatcher
    dispatcher.close()


def subtitles(emulator: Emulator) -> list[str | None]:
    return [
        r.body["content_state"].get("subtitle")
        for r in api_requests(emulator)
        if isinstance(r.body, dict) and not r.path.endswith("/end")
    ]


def nightly(
    settings: Settings, dispatcher: Dispatcher, clock: FakeClock, seconds: tuple[float, ...]
) -> None:
    """One run of the nightly job, each step taking its seconds on the clock."""
    with live_activity("Nightly ETL", steps=STEPS, settings=settings, dispatcher=dispatcher) as la:
        assert dispatcher.quiet()
        for spent in seconds:
            la.step()
            assert dispatcher.quiet()
            clock.advance(spent)


def test_a_job_that_ran_before_tells_when_it_will_finish(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    nightly(settings, timed, clock, (60, 300, 100))
    assert subtitles(emulator) == [None, "extract", "transform", "load"]  # a first run
    emulator.reset()

    nightly(settings, timed, clock, (60, 300, 100))
    assert subtitles(emulator) == [
        "usually 8 min · ~8 min left",  # the start: 460 s expected
        "extract · usually 8 min · ~8 min left",
        "transform · usually 8 min · ~7 min left",  # 300 + 100 s
        "load · usually 8 min · ~2 min left",  # 100 s
    ]
    job = identity(title="Nightly ETL", step_names=STEPS, local=True)  # an emulator's run
    expectation = History(tmp_path).expected(job)
    assert expectation is not None
    assert expectation.runs == 2


def test_a_run_slower_than_usual_says_so(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    nightly(settings, timed, clock, (60, 300, 100))
    emulator.reset()
    with live_activity("Nightly ETL", steps=STEPS, settings=settings, dispatcher=timed) as la:
        la.step()
        assert timed.quiet()  # the start answered: a clock jump would time it out on the wire
        clock.advance(60)
        la.step()  # transform, usually 300 s
        assert timed.quiet()
        clock.advance(500)
        la.update(subtitle="transform: retrying a batch")  # something to send
        assert timed.quiet()
    assert subtitles(emulator)[-1] == "transform: retrying a batch · running long · ~2 min left"


def test_a_bar_says_how_long_it_has_left(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    with live_activity("Resize photos", total=1000, settings=settings, dispatcher=timed) as la:
        for _ in range(4):
            assert timed.quiet()
            la.advance(20)
            clock.advance(2.0)
        assert timed.quiet()
    # 10 photos a second once the rate can tell: 940 left after the fourth send.
    assert subtitles(emulator)[-1] == "~2 min left"


def test_the_eta_never_adds_a_request(emulator: Emulator, tmp_path: Path) -> None:
    def run(eta: bool) -> tuple[int, list[str | None]]:
        emulator.reset()
        clock = FakeClock()
        dispatcher = Dispatcher(settings_for(emulator, tmp_path), clock=clock)
        settings = settings_for(emulator, tmp_path, update_burst=3, update_interval=60)
        try:
            with live_activity(
                "Count", total=500, eta=eta, settings=settings, dispatcher=dispatcher
            ) as la:
                assert dispatcher.quiet()  # the start went out before the first item
                for _ in range(100):
                    la.advance(5)
                    clock.advance(1.5)
                    assert dispatcher.quiet()
        finally:
            dispatcher.close()
        return len(api_requests(emulator)), subtitles(emulator)

    (with_eta, shown), (without, plain) = run(True), run(False)
    assert with_eta == without
    assert without == 1 + 3 + 2 + 1  # start, a burst of 3, one a minute for 150 s, the end
    assert any(text and text.endswith("left") for text in shown)  # the ETA was there
    assert not any(plain)


def test_a_countdown_counts_down_to_the_expected_end(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)

    def run() -> dict[str, Any]:
        emulator.reset()
        with live_activity(
            "Nightly ETL", steps=STEPS, eta="countdown", settings=settings, dispatcher=timed
        ) as la:
            assert timed.quiet()
            start = api_requests(emulator)[0].body
            for spent in (60, 300, 100):
                la.step()
                clock.advance(spent)
        assert isinstance(start, dict)
        state: dict[str, Any] = start["content_state"]
        return state

    first = run()
    assert first["type"] == "timer"
    assert first["counts_down"] is False  # no history yet: counting up
    assert "duration_seconds" not in first
    second = run()
    assert second["counts_down"] is True
    assert second["duration_seconds"] == 460
    assert second["subtitle"] == "usually 8 min"


def test_a_failed_run_is_not_recorded(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    with (
        pytest.raises(OSError, match="disk full"),
        live_activity("Nightly ETL", steps=STEPS, settings=settings, dispatcher=timed) as la,
    ):
        la.step()
        assert timed.quiet()
        clock.advance(5)
        raise OSError("disk full")
    assert paths(emulator)[-1] == "end"
    assert History(tmp_path).runs(identity(title="Nightly ETL", step_names=STEPS, local=True)) == []


def test_no_history_when_it_is_off(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path, history=False)
    nightly(settings, timed, clock, (1, 2, 3))
    nightly(settings, timed, clock, (1, 2, 3))
    job = identity(title="Nightly ETL", step_names=STEPS, local=True)
    assert History(tmp_path).runs(job) == []
    shown = [r.body["content_state"].get("subtitle") or "" for r in api_requests(emulator)]
    assert shown
    assert not any("usually" in text for text in shown)  # the second run knows nothing


SCRIPT = textwrap.dedent("""
    import sys, time
    from activitysmith_track import live_activity

    with live_activity("Nightly ETL", steps=["extract", "transform", "load"]) as la:
        for _ in range(3):
            la.step()
            time.sleep(0.05)
    # the script ends here: the interpreter exits right after the block
""")


def test_a_process_that_exits_right_after_its_block_records_its_run(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = {
        "ACTIVITYSMITH_BASE_URL": emulator.base_url,
        "ACTIVITYSMITH_TRACK_STATE_DIR": str(tmp_path),
        "ACTIVITYSMITH_TRACK_HISTORY": "1",
        "ACTIVITYSMITH_TRACK_DEBOUNCE": "0",
    }
    import os

    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    job = identity(title="Nightly ETL", step_names=STEPS, local=True)  # an emulator's run
    (run,) = History(tmp_path).runs(job)
    assert run.total is not None
    assert run.total >= 0.15
    assert [step.name for step in run.steps] == STEPS


def test_a_first_countdown_counts_down_from_the_duration_given(
    emulator: Emulator, timed: Dispatcher, tmp_path: Path
) -> None:
    settings = settings_for(emulator, tmp_path)
    with live_activity(
        "Backup", eta="countdown", duration_seconds=600, settings=settings, dispatcher=timed
    ):
        assert timed.quiet()
    start = api_requests(emulator)[0].body
    assert isinstance(start, dict)
    assert start["content_state"]["counts_down"] is True
    assert start["content_state"]["duration_seconds"] == 600


def test_the_eta_option_is_checked_at_the_call() -> None:
    with pytest.raises(ValidationError, match="eta"):
        live_activity("Job", eta="soon")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="timer"):
        live_activity("Job", total=10, type="progress", eta="countdown")
    la = live_activity("Job", steps=["a", "b"], eta="countdown")
    assert la.state.type == "timer"
