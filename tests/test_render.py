"""Rendering is pure: values and a clock reading in, payloads out. No threads, no emulator."""

from __future__ import annotations

import attrs
import pytest

from activitysmith_track import Color, EndLook, Operation
from activitysmith_track._render import (
    check,
    describe_error,
    final,
    format_count,
    format_elapsed,
    render,
    trim,
    where,
)
from activitysmith_track._state import ActivityState, Ending, Looks, Outcome, Position, plan

T0 = 1000.0


def started(state: ActivityState, at: float = T0) -> ActivityState:
    countdown = state.countdown.started(at) if state.countdown is not None else None
    return attrs.evolve(state, started_at=at, countdown=countdown)


def ended(
    state: ActivityState, outcome: Outcome, at: float, error: str | None = None
) -> ActivityState:
    return attrs.evolve(state, ending=Ending(outcome=outcome, at=at, error=error))


# -- running states -------------------------------------------------------------------------------


def test_steps_show_the_step_begun_and_its_name() -> None:
    state, _ = plan("Backup", steps=["snapshot", "upload", "verify"])
    shown = render(started(state), Position(step=2, step_name="upload"), T0).content_state
    assert (shown.current_step, shown.number_of_steps, shown.subtitle) == (2, 3, "upload")


def test_stepping_past_the_plan_grows_the_count() -> None:
    state, _ = plan("Backup", steps=2)
    shown = render(started(state), Position(step=4), T0).content_state
    assert (shown.current_step, shown.number_of_steps) == (4, 4)


def test_items_counted_show_in_the_subtitle_of_other_types() -> None:
    state, _ = plan("Backup", steps=["extract"])
    state = attrs.evolve(started(state), total=3000)
    shown = render(state, Position(step=1, step_name="extract", count=1200), T0).content_state
    assert shown.subtitle == "extract · 1,200/3,000"
    open_ended = render(started(plan("Job")[0]), Position(count=7), T0).content_state
    assert open_ended.subtitle == "7 done"


def test_a_progress_bar_with_a_total_shows_the_count_as_value() -> None:
    state, _ = plan("Rows", total=200)
    shown = render(started(state), Position(count=50), T0).content_state
    assert (shown.value, shown.upper_limit, shown.percentage) == (50, 200, None)
    assert shown.subtitle is None  # no stale "50/200" text: the bar says it
    over = render(started(state), Position(count=250), T0).content_state
    assert over.value == 200  # a count past the total fills the bar, no more


def test_a_percentage_set_directly_wins_without_a_total() -> None:
    state, _ = plan("Copy", type="progress")
    shown = render(started(state), Position(percent=40), T0).content_state
    assert (shown.percentage, shown.value, shown.upper_limit) == (40, None, None)


def test_a_countdown_sends_the_seconds_left_at_the_request_time() -> None:
    state = started(plan("Deploy", fields={"duration_seconds": 600})[0])
    assert render(state, Position(), T0 + 0.5).content_state.duration_seconds == 599.5
    assert render(state, Position(), T0 + 120).content_state.duration_seconds == 480
    # An expired countdown still sends a valid duration (above 0).
    assert render(state, Position(), T0 + 10_000).content_state.duration_seconds == 1


def test_a_paused_countdown_renders_frozen() -> None:
    state = started(plan("Deploy", fields={"duration_seconds": 600})[0])
    assert state.countdown is not None
    paused = attrs.evolve(state, countdown=state.countdown.paused(T0 + 100))
    shown = render(paused, Position(), T0 + 900).content_state
    assert (shown.duration_seconds, shown.is_running) == (500, False)


def test_render_never_reads_a_clock() -> None:
    state = started(plan("Deploy", fields={"duration_seconds": 600})[0])
    assert render(state, Position(), T0 + 60) == render(state, Position(), T0 + 60)


# -- final states ---------------------------------------------------------------------------------


def test_success_shows_every_step_done_in_green() -> None:
    state = started(plan("Backup", steps=3)[0])
    shown = final(ended(state, Outcome.SUCCESS, T0 + 192), Position(step=1)).content_state
    assert (shown.current_step, shown.number_of_steps) == (3, 3)
    assert shown.subtitle == "Done in 3m 12s"
    assert shown.color is Color.GREEN
    assert shown.step_color is Color.GREEN


def test_failure_names_the_step_and_the_error() -> None:
    state = started(plan("Backup", steps=["snapshot", "upload"])[0])
    ending = ended(state, Outcome.FAILURE, T0 + 5, error="OSError: disk full")
    shown = final(ending, Position(step=2, step_name="upload")).content_state
    assert shown.subtitle == "Failed at upload: OSError: disk full"
    assert shown.current_step == 2
    assert shown.color is Color.RED


def test_a_progress_success_is_100_percent() -> None:
    state = started(plan("Rows", total=10)[0])
    shown = final(ended(state, Outcome.SUCCESS, T0), Position(count=3)).content_state
    assert (shown.percentage, shown.value, shown.upper_limit) == (100, None, None)


def test_timers_freeze_at_the_end() -> None:
    up = started(plan("Job")[0])
    assert final(ended(up, Outcome.SUCCESS, T0 + 5), Position()).content_state.is_running is False
    down = started(plan("Job", fields={"duration_seconds": 60})[0])
    shown = final(ended(down, Outcome.SUCCESS, T0 + 15), Position()).content_state
    assert (shown.is_running, shown.duration_seconds) == (False, 45)


def test_end_overrides_win_over_the_look() -> None:
    state = started(plan("Backup", steps=2)[0])
    ending = attrs.evolve(
        state,
        ending=Ending(outcome=Outcome.SUCCESS, at=T0, overrides={"subtitle": "3 GB copied"}),
    )
    assert final(ending, Position(step=1)).content_state.subtitle == "3 GB copied"


def test_a_custom_look_and_its_template() -> None:
    looks = Looks(success=EndLook(subtitle="Step {step}/{steps} in {elapsed}", color="blue"))
    state = started(plan("Backup", steps=2, looks=looks)[0])
    shown = final(ended(state, Outcome.SUCCESS, T0 + 61), Position(step=2)).content_state
    assert (shown.subtitle, shown.color) == ("Step 2/2 in 1m 01s", Color.BLUE)


def test_a_hand_on_sends_the_state_as_it_is() -> None:
    state = started(plan("ETL", stream_key="etl", steps=["e", "t"], step=1)[0])
    handed = attrs.evolve(state, ending=Ending(outcome=Outcome.SUCCESS, at=T0 + 9, hand_on=True))
    shown = final(handed, Position(step=1, step_name="e")).content_state
    assert (shown.current_step, shown.subtitle, shown.color) == (1, "e", None)


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        (Position(step=0), "before the first step"),
        (Position(step=2, step_name="load"), "at load"),
        (Position(step=2), "at step 2 of 3"),
    ],
)
def test_where_a_step_job_stopped(position: Position, expected: str) -> None:
    state = started(plan("ETL", steps=3)[0])
    assert where(state, position, T0) == expected


def test_where_a_bar_or_a_timer_stopped() -> None:
    bar = started(plan("Rows", total=200)[0])
    assert where(bar, Position(count=50), T0) == "at 25%"
    timer = started(plan("Job")[0])
    assert where(timer, Position(), T0 + 75) == "after 1m 15s"


# -- the texts ------------------------------------------------------------------------------------


def test_error_text_is_cleaned_and_never_raises() -> None:
    class Nasty(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert describe_error(Nasty(), None, True) == "Nasty"
    assert describe_error(OSError("bad\x00 \ud800"), None, True) == "OSError: bad ?"
    assert describe_error(OSError("secret"), None, False) == "OSError"
    assert describe_error(SystemExit("stop"), None, True) == "exit code 1: stop"
    assert describe_error(SystemExit(3), None, True) == "exit code 3"


def test_formatting_helpers() -> None:
    assert format_elapsed(42) == "42s"
    assert format_elapsed(187) == "3m 07s"
    assert format_elapsed(7500) == "2h 05m"
    assert format_count(1200) == "1,200"
    assert format_count(2.5) == "2.5"
    assert trim("a\n  b") == "a b"
    assert trim("x" * 100) == "x" * 63 + "…"


# -- sendable: what check() guarantees -----------------------------------------------------------


def test_check_accepts_what_every_request_will_carry() -> None:
    for kwargs in (
        {"steps": 3},
        {"total": 5},
        {"fields": {"duration_seconds": 30}},
        {"stream_key": "k", "steps": 2, "step": 1},
        {"metrics": {"rows": 1}},
    ):
        state, position = plan("Job", **kwargs)  # type: ignore[arg-type]
        check(state, position)


def test_check_applies_each_operation_s_own_rules() -> None:
    from activitysmith_track import ValidationError

    many_tags = [f"t{i}" for i in range(25)]
    manual, position = plan("Job", extras={"tags": many_tags})
    with pytest.raises(ValidationError, match="tags"):
        check(manual, position)  # legacy update and end take at most 20 tags
    stream, position = plan("Job", stream_key="k", extras={"tags": many_tags})
    check(stream, position)  # stream PUT and DELETE set no maximum
    payload = render(stream, position, T0)
    assert len(payload.body(Operation.STREAM_PUT)["tags"]) == 25
