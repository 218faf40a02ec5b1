"""The state values and the plan from arguments: pure, no threads, no emulator."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from activitysmith_track import ActivityType, Color, Operation, UsageError, ValidationError
from activitysmith_track._state import (
    ActivityState,
    Countdown,
    Ending,
    Job,
    Outcome,
    Target,
    infer_type,
    operation,
    plan,
)

# -- one table decides the request ----------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "job", "expected"),
    [
        (Target(), Job.START, Operation.START),
        (Target(), Job.CHANGE, Operation.UPDATE),
        (Target(), Job.END, Operation.END),
        (Target(stream_key="k"), Job.START, Operation.STREAM_PUT),
        (Target(stream_key="k"), Job.CHANGE, Operation.STREAM_PUT),
        (Target(stream_key="k"), Job.HAND_ON, Operation.STREAM_PUT),
        (Target(stream_key="k"), Job.END, Operation.STREAM_DELETE),
    ],
)
def test_operation_table(target: Target, job: Job, expected: Operation) -> None:
    assert operation(target, job) is expected


def test_a_manual_activity_cannot_be_handed_on() -> None:
    with pytest.raises(UsageError, match="stream"):
        operation(Target(), Job.HAND_ON)


def test_the_end_job_follows_the_ending() -> None:
    state, _ = plan("Job", stream_key="k", steps=2, step=1)
    assert state.target.hand_on
    assert state.end_job() is Job.END
    handed = attrs.evolve(state, ending=Ending(outcome=Outcome.SUCCESS, at=0, hand_on=True))
    assert handed.end_job() is Job.HAND_ON


# -- the plan: what type and defaults follow from the arguments ------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"steps": 3}, ActivityType.SEGMENTED_PROGRESS),
        ({"steps": ["a", "b"]}, ActivityType.SEGMENTED_PROGRESS),
        ({"total": 10}, ActivityType.PROGRESS),
        ({"metrics": {"rows": 1}}, ActivityType.METRICS),
        ({"fields": {"message": "Disk low"}}, ActivityType.ALERT),
        ({"fields": {"value": "$1,240"}}, ActivityType.VALUE),
        ({"fields": {"percentage": 5}}, ActivityType.PROGRESS),
        ({"fields": {"duration_seconds": 60}}, ActivityType.TIMER),
        ({}, ActivityType.TIMER),
        ({"type": "stats", "metrics": {"a": 1}}, ActivityType.STATS),
    ],
)
def test_the_type_follows_from_the_arguments(
    kwargs: dict[str, Any], expected: ActivityType
) -> None:
    state, _ = plan("Job", **kwargs)
    assert state.kind is expected


def test_infer_type_is_the_one_rule_for_fields() -> None:
    assert infer_type(steps=False, total=False, metrics=False, fields={"current_step": 1}) is (
        ActivityType.SEGMENTED_PROGRESS
    )
    assert infer_type(steps=False, total=False, metrics=False, fields={}) is ActivityType.TIMER


def test_plan_defaults_make_a_startable_state() -> None:
    timer, _ = plan("Job")
    assert timer.base.content_state.counts_down is False
    countdown, _ = plan("Job", fields={"duration_seconds": 90})
    assert countdown.countdown == Countdown(left=90.0)
    progress, _ = plan("Job", type="progress")
    assert progress.base.content_state.percentage == 0
    steps, position = plan("Job", steps=["a", "b", "c"])
    assert steps.planned_steps == 3
    assert position.step == 0


def test_a_pipeline_step_begins_at_its_step_and_hands_on_unless_last() -> None:
    state, position = plan("ETL", stream_key="etl", steps=["e", "t", "l"], step="t")
    assert (position.step, position.step_name) == (2, "t")
    assert state.target == Target(stream_key="etl", hand_on=True)
    last, _ = plan("ETL", stream_key="etl", steps=["e", "t", "l"], step=3)
    assert not last.target.hand_on


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": []}, "steps"),
        ({"steps": ["ok", ""]}, "steps[1]"),
        ({"total": 0}, "total"),
        ({"total": float("inf")}, "total"),
        ({"total": float("nan")}, "total"),
        ({"step": 1}, "step"),
        ({"stream_key": "k", "steps": 2, "step": 3}, "step"),
        ({"stream_key": "bad key"}, "stream_key"),
        ({"type": "gauge"}, "type"),
        ({"fields": {"colour": "red"}}, "colour"),
    ],
)
def test_bad_arguments_name_their_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        plan("Job", **kwargs)
    assert caught.value.field == field


@pytest.mark.parametrize("title", ["", "   ", "x" * 257, "nul\x00", "lone \ud800"])
def test_titles_the_service_could_not_store_are_refused(title: str) -> None:
    with pytest.raises(ValidationError) as caught:
        plan(title)
    assert caught.value.field == "title"


# -- countdowns ----------------------------------------------------------------------------------


def test_a_paused_countdown_keeps_the_time_that_was_left() -> None:
    countdown = Countdown(left=600.0).started(1000.0)
    assert countdown.left_at(1100.0) == 500.0
    paused = countdown.paused(1100.0)
    assert paused.left_at(5000.0) == 500.0  # time passes, nothing counts down
    resumed = paused.resumed(5000.0)
    assert resumed.left_at(5050.0) == 450.0


def test_a_countdown_before_its_start_does_not_run() -> None:
    assert Countdown(left=60.0).left_at(10**9) == 60.0


def test_states_are_frozen() -> None:
    state, _ = plan("Job", steps=2)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        state.total = 3  # type: ignore[misc]
    assert isinstance(state, ActivityState)


def test_end_look_colours_are_checked_when_built() -> None:
    from activitysmith_track import EndLook

    assert EndLook(color="blue").color is Color.BLUE
    with pytest.raises(ValidationError, match="color"):
        EndLook(color="chartreuse")
    with pytest.raises(ValidationError, match="subtitle"):
        EndLook(subtitle="{nope}")
