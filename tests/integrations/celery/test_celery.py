"""Celery with a Redis broker and two real worker processes, checked on the emulator."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
from _support import activities_of, ended_activity, sent_states, wait_for
from celery import chain, chord, shared_task

from activitysmith_track import stream_key_from, tracked_steps
from activitysmith_track.emulator import Emulator

TIMEOUT = 60


def key_for(task_id: str) -> str:
    return stream_key_from(f"celery-{task_id}")


def root_of(result: Any) -> str:
    while result.parent is not None:
        result = result.parent
    return str(result.id)


def done_seconds(subtitle: str) -> int:
    assert subtitle.startswith("Done in "), subtitle
    return int(subtitle.removeprefix("Done in ").removesuffix("s"))


def all_text(emu: Emulator) -> str:
    return json.dumps([r.body for r in emu.requests])


def test_a_retried_task_is_one_activity_showing_its_retries(etl: Any, emu: Emulator) -> None:
    result = etl.flaky.delay(2)
    assert result.get(timeout=TIMEOUT) == "ok"
    record = ended_activity(emu, key_for(result.id))
    assert len(activities_of(emu, key_for(result.id))) == 1
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Retrying 1/3: ConnectionError" in subtitles
    assert "Retrying 2/3: ConnectionError" in subtitles
    assert record.state["color"] == "green"  # the final attempt succeeded
    assert record.state["subtitle"].startswith("Done")
    assert record.state["title"] == "Flaky"
    assert len(etl.attempts(result.id)) == 3
    # The exception's text (a host, a customer) never reaches the phone by default.
    assert "4711" not in all_text(emu)


def test_retries_never_show_as_failures(etl: Any, emu: Emulator) -> None:
    result = etl.flaky.delay(1)
    result.get(timeout=TIMEOUT)
    record = ended_activity(emu, key_for(result.id))
    assert all(s.get("color") != "red" for s in sent_states(record))
    assert [e.endpoint.split()[0] for e in record.history].count("DELETE") == 1


def test_a_failing_task_ends_failed_naming_the_exception_type(etl: Any, emu: Emulator) -> None:
    result = etl.explode.delay()
    with pytest.raises(ValueError, match="IBAN"):
        result.get(timeout=TIMEOUT)
    record = ended_activity(emu, key_for(result.id))
    assert record.state["color"] == "red"
    assert record.state["subtitle"] == "Failed after 0s: ValueError"
    assert "IBAN" not in all_text(emu)


def test_the_final_attempt_decides_the_outcome(etl: Any, emu: Emulator) -> None:
    result = etl.always_times_out.delay()
    with pytest.raises(TimeoutError):
        result.get(timeout=TIMEOUT)
    record = ended_activity(emu, key_for(result.id))
    assert len(activities_of(emu, key_for(result.id))) == 1
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Retrying 1/1: TimeoutError" in subtitles
    assert record.state["color"] == "red"
    assert "TimeoutError" in record.state["subtitle"]
    assert "secret-token" not in all_text(emu)


def test_a_chain_on_two_workers_is_one_activity_with_its_steps(etl: Any, emu: Emulator) -> None:
    result = chain(etl.extract.s(), etl.transform.s(pause=1.5), etl.load.s()).apply_async()
    assert result.get(timeout=TIMEOUT) == 60
    root = root_of(result)
    ran = etl.attempts(root)
    assert [r.split("@")[0] for r in ran] == ["extract", "transform", "load"]
    assert {r.split("@")[1] for r in ran} == {"w1", "w2"}  # the steps ran on both workers
    key = key_for(root)
    record = ended_activity(emu, key)
    assert len(activities_of(emu, key)) == 1
    assert record.state["title"] == "Extract → Transform → Load"
    assert record.state["number_of_steps"] == 3
    assert record.state["current_step"] == 3
    assert record.state["color"] == "green"
    begun = [(s.get("current_step"), s.get("subtitle")) for s in sent_states(record)]
    steps_seen = [step for step, _ in begun]
    assert steps_seen == sorted(steps_seen)  # never went back
    assert (1, "Extract") in begun
    assert (2, "Transform") in begun
    assert (3, "Load") in begun
    # The whole run's time, though the process that ended it ran only the last step.
    assert done_seconds(record.state["subtitle"]) >= 1


def test_a_failing_chain_step_ends_the_run_as_failed_there(etl: Any, emu: Emulator) -> None:
    result = chain(etl.extract.s(), etl.transform.s(fail=True), etl.load.s()).apply_async()
    with pytest.raises(KeyError):
        result.get(timeout=TIMEOUT)
    key = key_for(root_of(result))
    record = ended_activity(emu, key)
    assert len(activities_of(emu, key)) == 1
    assert record.state["color"] == "red"
    assert record.state["current_step"] == 2
    assert record.state["subtitle"] == "Failed at Transform: KeyError"


def test_a_chord_is_one_activity(etl: Any, emu: Emulator) -> None:
    result = chord([etl.part.s(1), etl.part.s(2), etl.part.s(3)], etl.total.s()).apply_async()
    assert result.get(timeout=TIMEOUT) == 6
    group_id = result.parent.id
    key = key_for(group_id)
    record = ended_activity(emu, key)
    assert len(activities_of(emu, key)) == 1
    assert record.state["number_of_steps"] == 2
    assert record.state["current_step"] == 2
    assert record.state["color"] == "green"
    steps_seen = [s.get("current_step") for s in sent_states(record)]
    assert steps_seen == sorted(steps_seen)


def test_a_group_inside_a_chain_is_one_parallel_step(etl: Any, emu: Emulator) -> None:
    canvas = chain(etl.extract.s(), chord([etl.part.si(1), etl.part.si(2)], etl.total.s()))
    result = canvas.apply_async()
    assert result.get(timeout=TIMEOUT) == 3
    key = key_for(root_of(result))
    record = ended_activity(emu, key)
    assert len(activities_of(emu, key)) == 1
    assert record.state["title"] == "Extract → Part x2 → Total"
    assert record.state["current_step"] == 3


def test_tracked_steps_above_the_task_decorator_tracks_the_task(etl: Any, emu: Emulator) -> None:
    result = etl.report.delay()
    assert result.get(timeout=TIMEOUT) == "sent"
    record = ended_activity(emu, key_for(result.id))
    assert record.state["title"] == "Nightly report"
    assert record.state["number_of_steps"] == 2
    assert record.state["current_step"] == 2
    assert record.state["color"] == "green"
    assert (2, "render") in [
        (s.get("current_step"), s.get("subtitle")) for s in sent_states(record)
    ]


def test_tracked_steps_over_a_shared_task_warns_clearly() -> None:
    @shared_task
    def nightly() -> None: ...

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decorated = tracked_steps("Nightly")(nightly)
    assert decorated is nightly
    (warning,) = caught
    assert "shared_task" in str(warning.message)
    assert "track_celery" in str(warning.message)


def test_a_task_revoked_while_running_ends_cancelled(etl: Any, emu: Emulator) -> None:
    result = etl.slow_export.delay()
    wait_for(lambda: etl.attempts(result.id), what="the task to start")
    wait_for(lambda: emu.stream_activity(key_for(result.id)), what="its activity to start")
    result.revoke(terminate=True)
    record = ended_activity(emu, key_for(result.id))
    assert record.state["color"] == "orange"
    assert record.state["subtitle"].startswith("Cancelled")
    assert len(activities_of(emu, key_for(result.id))) == 1
