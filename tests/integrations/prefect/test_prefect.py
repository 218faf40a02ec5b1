"""Prefect flow runs in-process, with their ephemeral server, checked on the emulator."""

from __future__ import annotations

import json
from typing import Any

import pytest
from _support import activities_of, sent_states
from prefect import flow, task

from activitysmith_track import current_activity, stream_key_from
from activitysmith_track.emulator import ActivityRecord, Emulator
from activitysmith_track.prefect import track_flow, track_task

attempts: dict[str, int] = {}


def shown_now() -> None:
    """Wait until the run's activity shows this task's step: states that follow each other
    quickly are merged (the newest wins), which would hide steps from the test."""
    la = current_activity()
    if la:  # a falsy no-op handle outside a tracked flow
        assert la.flush(10)


@track_task
@task
def extract() -> list[int]:
    shown_now()
    return [1, 2, 3]


@track_task
@task(retries=2, retry_delay_seconds=1)
def transform(rows: list[int], failures: int) -> list[int]:
    attempts["transform"] = attempts.get("transform", 0) + 1
    shown_now()
    if attempts["transform"] <= failures:
        raise ConnectionError("warehouse db-7.internal refused customer 4711")
    return [r * 10 for r in rows]


@track_task("Load rows")
@task
def load(rows: list[int]) -> int:
    shown_now()
    if not rows:
        raise ValueError("nothing to load for customer 4711")
    return sum(rows)


@track_flow("Nightly ETL", steps=["extract", "transform", "load"])
@flow
def nightly_etl(failures: int = 0, empty: bool = False) -> int:
    rows = extract()
    rows = transform(rows, failures)
    return load([] if empty else rows)


@track_flow
@flow(name="quick-sync")
def quick_sync() -> str:
    return extract.submit().result() and "ok"


def only_activity(emu: Emulator) -> ActivityRecord:
    (record,) = emu.activities.values()
    assert record.status == "ended"
    return record


def run_key(state: Any) -> str:
    return stream_key_from(f"prefect-{state.state_details.flow_run_id}")


@pytest.fixture(autouse=True)
def _fresh_attempts() -> None:
    attempts.clear()


def test_a_flow_run_is_one_activity_with_its_tasks_as_steps(emu: Emulator) -> None:
    state = nightly_etl(return_state=True)
    assert state.result() == 60
    record = only_activity(emu)
    assert record.stream_key == run_key(state)
    assert record.state["title"] == "Nightly ETL"
    assert record.state["current_step"] == 3
    assert record.state["color"] == "green"
    shown = [(s.get("current_step"), s.get("subtitle")) for s in sent_states(record)]
    assert (1, "Extract") in shown
    assert (2, "Transform") in shown
    assert (3, "Load rows") in shown


def test_a_retried_task_shows_as_a_retry_not_a_failure(emu: Emulator) -> None:
    state = nightly_etl(failures=1, return_state=True)
    assert state.result() == 60
    assert attempts["transform"] == 2
    record = only_activity(emu)
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Retrying 1/2: ConnectionError" in subtitles
    assert "Transform · retry 1/2" in subtitles
    assert all(s.get("color") != "red" for s in sent_states(record))
    assert record.state["color"] == "green"
    assert "4711" not in json.dumps([r.body for r in emu.requests])


def test_a_task_out_of_retries_fails_the_run_at_its_step(emu: Emulator) -> None:
    state = nightly_etl(failures=5, return_state=True)
    assert state.is_failed()
    record = only_activity(emu)
    assert record.state["color"] == "red"
    assert record.state["current_step"] == 2
    # The end names what the phone showed last: the step, on its last attempt.
    assert record.state["subtitle"] == "Failed at Transform · retry 2/2: ConnectionError"
    assert len(activities_of(emu, run_key(state))) == 1


def test_a_failing_task_names_its_exception_type_only(emu: Emulator) -> None:
    state = nightly_etl(empty=True, return_state=True)
    assert state.is_failed()
    record = only_activity(emu)
    assert record.state["subtitle"] == "Failed at Load rows: ValueError"
    assert "4711" not in json.dumps([r.body for r in emu.requests])


def test_bare_decorators_use_the_flow_name_and_a_timer(emu: Emulator) -> None:
    state = quick_sync(return_state=True)
    assert state.result() == "ok"
    record = only_activity(emu)
    assert record.state["title"] == "Quick sync"
    assert record.state["type"] == "timer"
    assert "Extract" in [s.get("subtitle") for s in sent_states(record)]


def test_a_task_called_outside_a_tracked_flow_sends_nothing(emu: Emulator) -> None:
    @flow
    def untracked() -> list[int]:
        return extract()

    assert untracked() == [1, 2, 3]
    assert emu.requests == []


@track_flow
@flow(name="interrupted-sync")
def interrupted_sync() -> None:
    extract()
    raise KeyboardInterrupt


def test_a_crashed_flow_run_ends_failed_as_crashed(emu: Emulator) -> None:
    with pytest.raises(KeyboardInterrupt):
        interrupted_sync()
    record = only_activity(emu)
    assert record.state["color"] == "red"
    assert record.state["subtitle"] == "Failed at Extract: crashed"


@track_task
@task
def which_activity() -> str | None:
    la = current_activity()
    return la.title if la else None


@track_flow("Report")
@flow
def report() -> tuple[str | None, str | None]:
    la = current_activity()
    return (la.title if la else None), which_activity()


def test_the_run_is_the_current_activity_in_the_flow_and_its_tasks(emu: Emulator) -> None:
    assert report() == ("Report", "Report")
    assert not current_activity()  # and no longer once the run is over
