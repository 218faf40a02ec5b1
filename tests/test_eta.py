"""ETA, pure: the rate smoothed as tqdm smooths it, forecasts from past runs, the text and its
steadiness, on exact clock readings (no threads, no clock, no I/O)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tqdm.std import EMA

from activitysmith_track._errors import ArgumentTypeError, ValidationError
from activitysmith_track._eta import (
    MAX_LEFT,
    RECENT_RUNS,
    TEXT_LIMIT,
    Display,
    EtaMode,
    EtaView,
    Expectation,
    Forecast,
    Foresight,
    Rate,
    Run,
    StepExpectation,
    StepTime,
    approx,
    duration_text,
    eta_mode,
    eta_text,
    expectation_from,
    history_forecast,
    median,
    run_from_marks,
)
from activitysmith_track._state import ActivityState, Position, plan


def fed(readings: Sequence[tuple[float, float]], rate: Rate | None = None) -> Rate:
    rate = rate or Rate()
    for count, now in readings:
        rate = rate.fed(count, now)
    return rate


# -- the rate ----------------------------------------------------------------------------------


def test_the_rate_is_the_ratio_of_two_moving_averages_computed_by_hand() -> None:
    # Intervals (dn, dt): (10, 1), (20, 1), (10, 2); alpha 0.3, beta 0.7.
    #   dn: 3, then 0.3*20 + 0.7*3 = 8.1, then 0.3*10 + 0.7*8.1 = 8.67
    #   dt: 0.3, then 0.3*1 + 0.7*0.3 = 0.51, then 0.3*2 + 0.7*0.51 = 0.957
    # Both are divided by 1 - 0.7**3 = 0.657 (the start-up correction), which cancels.
    rate = fed([(0, 0.0), (10, 1.0), (30, 2.0), (40, 4.0)])

    dn, dt = rate.smoothed() or (0.0, 0.0)
    assert dn == pytest.approx(8.67 / 0.657)
    assert dt == pytest.approx(0.957 / 0.657)
    assert rate.per_second == pytest.approx(8.67 / 0.957)  # 9.0596 items a second
    assert rate.left(100) == pytest.approx(60 / (8.67 / 0.957))  # 6.62 s for the last 60


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.5, max_value=1e4, allow_nan=False),
            st.floats(min_value=0.01, max_value=600, allow_nan=False),
        ),
        min_size=2,
        max_size=30,
    ),
    st.sampled_from([0.1, 0.3, 0.5, 1.0]),
)
def test_the_rate_agrees_with_tqdms_own_moving_average(
    intervals: list[tuple[float, float]], smoothing: float
) -> None:
    ema_dn, ema_dt = EMA(smoothing), EMA(smoothing)
    rate = Rate(smoothing=smoothing).fed(0, 0.0)
    count, now = 0.0, 0.0
    for dn, dt in intervals:
        ema_dn(dn)
        ema_dt(dt)
        count, now = count + dn, now + dt
        rate = rate.fed(count, now)

    assert rate.smoothed() == pytest.approx((ema_dn(), ema_dt()))
    assert rate.per_second == pytest.approx(ema_dn() / ema_dt())


def test_no_estimate_from_fewer_than_two_intervals_with_progress() -> None:
    assert Rate().left(10) is None
    assert fed([(0, 0.0)]).left(10) is None
    assert fed([(0, 0.0), (1, 1.0)]).left(10) is None
    assert fed([(0, 0.0), (1, 1.0), (2, 2.0)]).left(10) == pytest.approx(8.0)


def test_no_estimate_without_progress() -> None:
    stalled = fed([(5, 0.0), (5, 10.0), (5, 20.0), (5, 30.0)])
    assert stalled.intervals == 0
    assert stalled.per_second is None
    assert stalled.left(10) is None


def test_a_stall_is_carried_into_the_next_interval() -> None:
    # 1 item a second, then nothing for 8 s, then 2 more items: the interval is 2 items in
    # 10 s (tqdm measures from its last redraw too), not 2 items in the last 2 s.
    stalled = fed([(0, 0.0), (1, 1.0), (2, 2.0), (2, 6.0), (2, 10.0), (4, 12.0)])
    steady = fed([(0, 0.0), (1, 1.0), (2, 2.0), (4, 12.0)])

    assert stalled.intervals == 3
    assert stalled.smoothed() == pytest.approx(steady.smoothed())
    # dn: 0.3, 0.51, 0.3*2 + 0.7*0.51 = 0.957; dt: 0.3, 0.51, 0.3*10 + 0.7*0.51 = 3.357
    assert stalled.per_second == pytest.approx(0.957 / 3.357)


def test_readings_at_the_same_moment_keep_their_count_for_the_next_interval() -> None:
    rate = fed([(0, 0.0), (1, 1.0), (3, 1.0), (4, 2.0)])
    # (3, 1.0) has no time: its items go into the interval that ends at (4, 2.0).
    assert rate.intervals == 2
    assert rate.count == 4
    # dn: 0.3*1 = 0.3, then 0.3*3 + 0.7*0.3 = 1.11; dt: 0.3, then 0.51
    assert rate.per_second == pytest.approx(1.11 / 0.51)


def test_a_count_set_back_starts_afresh() -> None:
    rate = fed([(0, 0.0), (50, 1.0), (100, 2.0), (10, 3.0)])
    assert rate.intervals == 0
    assert rate.left(100) is None
    rate = fed([(20, 4.0), (30, 5.0)], rate)
    assert rate.per_second == pytest.approx(10.0)


def test_smoothing_zero_is_the_average_since_the_first_reading() -> None:
    rate = fed([(0, 0.0), (10, 1.0), (30, 2.0), (40, 4.0)], Rate(smoothing=0))
    assert rate.per_second == pytest.approx(10.0)
    assert rate.left(100) == pytest.approx(6.0)


def test_smoothing_one_is_the_last_interval_alone() -> None:
    rate = fed([(0, 0.0), (10, 1.0), (30, 2.0), (40, 4.0)], Rate(smoothing=1))
    assert rate.per_second == pytest.approx(5.0)


def test_the_time_left_never_goes_below_zero_nor_past_the_longest_estimate() -> None:
    done = fed([(0, 0.0), (5, 1.0), (12, 2.0)])
    assert done.left(10) == 0.0
    crawling = fed([(0, 0.0), (1, 1000.0), (2, 2000.0)])  # one item every 1000 s
    assert crawling.left(1e4) is None  # ten million seconds: not an estimate
    assert crawling.left(2 + MAX_LEFT / 1000) == pytest.approx(MAX_LEFT)


@pytest.mark.parametrize("smoothing", [-0.1, 1.5, math.nan, True, "0.3"])
def test_a_smoothing_outside_zero_to_one_is_refused(smoothing: object) -> None:
    with pytest.raises(ValidationError, match="smoothing"):
        Rate(smoothing=smoothing)  # type: ignore[arg-type]


# -- the option --------------------------------------------------------------------------------


def test_the_eta_option() -> None:
    assert eta_mode(True) is EtaMode.TEXT
    assert eta_mode(False) is None
    assert eta_mode("countdown") is EtaMode.COUNTDOWN
    assert eta_mode(EtaMode.COUNTDOWN) is EtaMode.COUNTDOWN
    with pytest.raises(ValidationError, match="'countdown'"):
        eta_mode("count-down")
    with pytest.raises(ArgumentTypeError, match="eta"):
        eta_mode(1)


# -- text ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "left", "usual"),
    [
        (3, "5 s", "5 s"),
        (12, "10 s", "10 s"),
        (20, "15 s", "20 s"),
        (44, "45 s", "45 s"),
        (59, "1 min", "1 min"),
        (95, "2 min", "2 min"),
        (299, "5 min", "5 min"),
        (720, "10 min", "12 min"),
        (1500, "25 min", "25 min"),
        (3500, "1 h", "58 min"),
        (4800, "1 h 20 min", "1 h 20 min"),
        (7140, "2 h", "2 h"),
        (40000, "11 h", "11 h 10 min"),
        (200000, "2 days", "2 days"),
    ],
)
def test_durations_are_rounded_to_their_bucket(seconds: float, left: str, usual: str) -> None:
    assert duration_text(approx(seconds)) == left
    assert duration_text(approx(seconds, usual=True)) == usual


@pytest.mark.parametrize(
    ("arguments", "text"),
    [
        ({"left": 240}, "~4 min left"),
        ({"left": 45}, "~45 s left"),
        ({"left": 0}, "almost done"),
        ({"left": 300, "usual": 720}, "usually 12 min · ~5 min left"),
        ({"left": 300, "usual": 720, "late": True}, "running long · ~5 min left"),
        ({"left": None, "usual": 720, "late": True}, "longer than usual (12 min)"),
        ({"left": None, "usual": 720}, "usually 12 min"),
        ({"left": None}, None),
        ({"left": 300, "usual": 720, "countdown": True}, "usually 12 min"),
        (
            {"left": None, "usual": 720, "late": True, "countdown": True},
            "longer than usual (12 min)",
        ),
        ({"left": 300, "countdown": True}, None),  # the timer shows the time left
        ({"left": 4800, "usual": 5400, "late": True}, "running long · ~1 h 20 min left"),
        ({"left": None, "usual": 5400, "late": True}, "longer than usual (1 h 30 min)"),
        ({"left": 1500, "usual": 2700}, "usually 45 min · ~25 min left"),
        # Too long with both parts: the time left alone.
        ({"left": 4800, "usual": 5400}, "~1 h 20 min left"),
    ],
)
def test_the_eta_text(arguments: dict[str, object], text: str | None) -> None:
    assert eta_text(**arguments) == text  # type: ignore[arg-type]


@given(
    st.one_of(st.none(), st.floats(min_value=0, max_value=MAX_LEFT)),
    st.one_of(st.none(), st.floats(min_value=0.001, max_value=1e9)),
    st.booleans(),
    st.booleans(),
)
def test_the_text_never_exceeds_its_limit(
    left: float | None, usual: float | None, late: bool, countdown: bool
) -> None:
    bucket = None if left is None else approx(left)
    text = eta_text(bucket, usual=usual, late=late, countdown=countdown)
    assert text is None or len(text) <= TEXT_LIMIT
    if bucket is not None and not countdown:
        assert text is not None  # the time left always fits


def test_an_estimate_wavering_around_a_bucket_edge_keeps_its_text() -> None:
    # 4.5 min is the edge between "~4 min" and "~5 min": estimates either side of it.
    display = Display()
    shown = []
    for raw in (272, 268, 271, 266, 273, 269, 274):
        display = display.next(Forecast(left=raw), elapsed=0)
        shown.append(display.left)
    assert shown == [300] * 7


def test_a_falling_estimate_steps_down_once_per_bucket() -> None:
    display = Display()
    shown = []
    for raw in range(320, 60, -7):  # a job running down at a steady pace, read every 7 s
        display = display.next(Forecast(left=raw), elapsed=0)
        shown.append(display.left)
    changes = [b for a, b in itertools.pairwise(shown) if a != b]
    assert changes == [240, 180, 120, 60]  # never back up, never twice in a bucket
    assert shown[0] == 300


def test_running_long_turns_on_past_the_threshold_and_off_only_when_back_on_time() -> None:
    display = Display()
    # usual 100 s; elapsed + left projected to 110, 120, 105, 99
    steps = [(60, 50, False), (70, 50, True), (75, 30, True), (79, 20, False)]
    for elapsed, left, late in steps:
        display = display.next(Forecast(left=left, usual=100), elapsed=elapsed)
        assert display.late is late, (elapsed, left)


def test_almost_done_below_five_seconds() -> None:
    assert Display().next(Forecast(left=4.9), elapsed=0).left == 0
    assert eta_text(0) == "almost done"


# -- runs and expectations -----------------------------------------------------------------------


def steps(*items: tuple[int, str | None, float]) -> tuple[StepTime, ...]:
    return tuple(StepTime(index=i, name=n, seconds=s) for i, n, s in items)


def test_run_from_marks() -> None:
    marks = [(12.0, 1, "extract"), (42.0, 2, "transform"), (102.0, 3, "load")]
    run = run_from_marks(marks, started_at=10.0, ended_at=112.0)
    assert run == Run(
        total=102.0, steps=steps((1, "extract", 30), (2, "transform", 60), (3, "load", 10))
    )


def test_a_step_begun_twice_adds_up_and_the_time_before_the_first_step_is_no_steps() -> None:
    marks = [(0.0, 0, None), (5.0, 1, "a"), (8.0, 2, "b"), (10.0, 1, "a"), (11.0, 2, "b")]
    run = run_from_marks(marks, started_at=0.0, ended_at=15.0, complete=False)
    assert run == Run(total=None, steps=steps((1, "a", 4), (2, "b", 6)))


def test_the_expectation_is_the_median_of_several_runs() -> None:
    runs = [  # newest first
        Run(total=130, steps=steps((1, "extract", 20), (2, "load", 110))),
        Run(total=100, steps=steps((1, "extract", 10), (2, "load", 90))),
        Run(total=700, steps=steps((1, "extract", 600), (2, "load", 100))),  # one bad night
        Run(total=90, steps=steps((1, "extract", 12), (2, "load", 78))),
    ]
    expectation = expectation_from(runs)
    assert expectation == Expectation(
        total=115,  # (100 + 130) / 2
        steps=(
            StepExpectation(index=1, name="extract", seconds=16, runs=4),
            StepExpectation(index=2, name="load", seconds=95, runs=4),
        ),
        runs=4,
    )


def test_only_the_recent_runs_count() -> None:
    runs = [Run(total=10.0)] * RECENT_RUNS + [Run(total=1000.0)] * 5
    expectation = expectation_from(runs)
    assert expectation is not None
    assert expectation.total == 10.0
    assert expectation.runs == RECENT_RUNS


def test_parts_of_runs_add_up_to_the_usual_duration() -> None:
    runs = [Run(total=None, steps=steps((1, "a", 30))), Run(total=None, steps=steps((2, "b", 60)))]
    expectation = expectation_from(runs)
    assert expectation is not None
    assert expectation.total is None
    assert expectation.usual == 90
    assert expectation_from([]) is None


def test_median() -> None:
    assert median([3]) == 3
    assert median([5, 1, 3]) == 3
    assert median([4, 1, 3, 2]) == 2.5


# -- forecasts from the history ------------------------------------------------------------------

NIGHTLY = Expectation(
    total=600,
    steps=(
        StepExpectation(index=1, name="extract", seconds=120, runs=5),
        StepExpectation(index=2, name="transform", seconds=300, runs=5),
        StepExpectation(index=3, name="load", seconds=180, runs=5),
    ),
    runs=5,
)
PLAN = ("extract", "transform", "load")


def test_a_run_on_time_has_the_rest_of_its_step_and_the_steps_after_it_left() -> None:
    forecast = history_forecast(NIGHTLY, plan=PLAN, step=2, elapsed=220, in_step=100)
    assert forecast == Forecast(left=200 + 180, usual=600, over=False)
    before = history_forecast(NIGHTLY, plan=PLAN, step=0, elapsed=3, in_step=3)
    assert before.left == 600


def test_a_run_slower_than_usual_is_estimated_from_the_remaining_steps_only() -> None:
    # transform usually takes 300 s; it has taken 420 so far.
    forecast = history_forecast(NIGHTLY, plan=PLAN, step=2, elapsed=560, in_step=420)
    assert forecast == Forecast(left=180, usual=600, over=True)
    text = eta_text(approx(180), usual=600, late=True)
    assert text == "running long · ~3 min left"


def test_the_last_step_slower_than_usual_has_no_estimate_but_says_so() -> None:
    forecast = history_forecast(NIGHTLY, plan=PLAN, step=3, elapsed=700, in_step=200)
    assert forecast == Forecast(left=None, usual=600, over=True)
    display = Display().next(forecast, elapsed=700)
    assert eta_text(display.left, usual=600, late=display.late) == "longer than usual (10 min)"


def test_never_negative() -> None:
    for in_step in (0, 100, 119, 120, 121, 10_000):
        forecast = history_forecast(NIGHTLY, plan=PLAN, step=1, elapsed=in_step, in_step=in_step)
        assert forecast.left is not None
        assert forecast.left >= 0


def test_a_step_added_at_run_time_is_expected_to_take_the_median_step() -> None:
    grown = (*PLAN, "notify")
    forecast = history_forecast(NIGHTLY, plan=grown, step=3, elapsed=420, in_step=0)
    assert forecast.left == 180 + 180  # load, then notify (the median step: 180)
    # Stepping past the plan adds steps too: the fifth step of a plan of three.
    past = history_forecast(NIGHTLY, plan=PLAN, step=5, elapsed=700, in_step=10, step_name="mail")
    assert past.left == 170


def test_reordered_steps_are_matched_by_name() -> None:
    reordered = ("transform", "extract", "load")
    forecast = history_forecast(NIGHTLY, plan=reordered, step=1, elapsed=100, in_step=100)
    assert forecast.left == (300 - 100) + 120 + 180


def test_a_renamed_step_is_matched_by_its_number() -> None:
    renamed = ("extract", "clean up", "load")
    forecast = history_forecast(NIGHTLY, plan=renamed, step=2, elapsed=200, in_step=80)
    assert forecast.left == (300 - 80) + 180


def test_unnamed_steps_are_matched_by_number() -> None:
    expectation = expectation_from(
        [Run(total=60, steps=steps((1, None, 10), (2, None, 20), (3, None, 30)))]
    )
    assert expectation is not None
    forecast = history_forecast(expectation, plan=(None, None, None), step=2, elapsed=15, in_step=5)
    assert forecast.left == 15 + 30


def test_without_steps_the_usual_duration_less_the_elapsed_time() -> None:
    expectation = Expectation(total=600, runs=3)
    assert history_forecast(expectation, plan=(), step=0, elapsed=200, in_step=200) == Forecast(
        left=400, usual=600
    )
    late = history_forecast(expectation, plan=(), step=0, elapsed=650, in_step=650)
    assert late == Forecast(left=None, usual=600, over=True)


def test_a_rate_in_the_current_step_replaces_the_historys_guess_for_it() -> None:
    forecast = history_forecast(NIGHTLY, plan=PLAN, step=2, elapsed=500, in_step=400, step_left=30)
    assert forecast == Forecast(left=30 + 180, usual=600, over=False)


# -- one activity's foresight --------------------------------------------------------------------


def started(state: ActivityState, at: float = 0.0) -> ActivityState:
    return attrs.evolve(state, started_at=at)


def test_a_progress_bar_shows_the_time_left_once_the_rate_can_tell() -> None:
    state = started(plan("Resize photos", total=10_000)[0])
    foresight = Foresight()
    texts = []
    for count, now in [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0), (130, 13.0)]:
        foresight = foresight.observe(state, Position(count=count), now)
        texts.append(foresight.view.text)
    # 10 items a second throughout: 998 s left at the third reading, 987 s at the last.
    assert texts == [None, None, "~15 min left", "~15 min left", "~15 min left"]
    assert foresight.rate.left(10_000) == pytest.approx(987.0)


def test_a_progress_bar_set_by_percentage_has_a_rate_too() -> None:
    state = started(plan("Upload", total=None, type="progress")[0])
    foresight = Foresight()
    for percent, now in [(0, 0.0), (1, 60.0), (2, 120.0)]:
        foresight = foresight.observe(state, Position(percent=percent), now)
    assert foresight.view.text == "~1 h 40 min left"  # 98 % at 1 % a minute: 5880 s


def test_the_text_does_not_change_with_time_alone() -> None:
    state = started(plan("Resize photos", total=1000)[0])
    foresight = Foresight()
    for count, now in [(0, 0.0), (10, 1.0), (20, 2.0)]:
        foresight = foresight.observe(state, Position(count=count), now)
    again = foresight.observe(state, Position(count=20), 500.0)
    assert again is foresight


def test_a_job_with_history_shows_the_usual_duration_and_its_steps() -> None:
    state = started(plan("Nightly ETL", steps=list(PLAN))[0])
    foresight = Foresight(expectation=NIGHTLY)
    view = foresight.observe(state, Position(step=0), 0.0).view
    assert view == EtaView(text="usually 10 min · ~10 min left")
    foresight = foresight.observe(state, Position(step=1, step_name="extract"), 1.0, step_since=1.0)
    foresight = foresight.observe(
        state, Position(step=2, step_name="transform"), 121.0, step_since=121.0
    )
    assert foresight.view.text == "usually 10 min · ~8 min left"  # 300 + 180 s
    foresight = foresight.observe(
        state, Position(step=2, step_name="transform", note="rows 40%"), 241.0, step_since=121.0
    )
    assert foresight.view.text == "usually 10 min · ~6 min left"  # 180 + 180 s


def test_a_run_slower_than_usual_says_so() -> None:
    state = started(plan("Nightly ETL", steps=list(PLAN))[0])
    foresight = Foresight(expectation=NIGHTLY, first_step=0)
    position = Position(step=2, step_name="transform")
    foresight = foresight.observe(state, position, 121.0, step_since=121.0)
    foresight = foresight.observe(state, attrs.evolve(position, note="x"), 540.0, step_since=121.0)
    assert foresight.view.text == "running long · ~3 min left"
    last = Position(step=3, step_name="load")
    foresight = foresight.observe(state, last, 545.0, step_since=545.0)
    foresight = foresight.observe(state, attrs.evolve(last, note="y"), 800.0, step_since=545.0)
    assert foresight.view.text == "longer than usual (10 min)"


def test_a_counted_step_without_history_shows_nothing() -> None:
    # The count says how long the step has left, not the job.
    state = started(plan("Nightly ETL", steps=list(PLAN), total=100)[0])
    foresight = Foresight()
    for count, now in [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]:
        foresight = foresight.observe(
            state, Position(step=1, step_name="extract", count=count), now, step_since=0.0
        )
    assert foresight.view.text is None


def test_a_counted_step_with_history_uses_its_rate_for_the_step() -> None:
    state = started(plan("Nightly ETL", steps=list(PLAN), total=100)[0])
    foresight = Foresight(expectation=NIGHTLY)
    for count, now in [(0, 0.0), (10, 1.0), (20, 2.0), (30, 3.0)]:
        foresight = foresight.observe(
            state, Position(step=1, step_name="extract", count=count), now, step_since=0.0
        )
    # 70 items at 10 a second: 7 s of extract, then transform and load as usual (480 s).
    assert foresight.view.text == "usually 10 min · ~8 min left"


def test_a_new_step_starts_a_new_rate() -> None:
    state = started(plan("Nightly ETL", steps=list(PLAN), total=100)[0])
    foresight = Foresight(expectation=NIGHTLY)
    for count, now in [(0, 0.0), (10, 1.0), (20, 2.0)]:
        foresight = foresight.observe(
            state, Position(step=1, step_name="extract", count=count), now, step_since=0.0
        )
    assert foresight.rate.intervals == 2
    foresight = foresight.observe(
        state, Position(step=2, step_name="transform", count=0), 3.0, step_since=3.0
    )
    assert foresight.rate.intervals == 0


def test_a_countdown_aims_at_the_expected_end() -> None:
    state = started(plan("Nightly ETL", steps=list(PLAN), type="timer")[0], at=100.0)
    foresight = Foresight(mode=EtaMode.COUNTDOWN, expectation=NIGHTLY)
    view = foresight.observe(state, Position(), 100.0).view
    assert view == EtaView(text="usually 10 min", countdown_until=700.0)
    # Late in the last step, nothing left to estimate: the countdown is at zero.
    foresight = foresight.observe(
        state, Position(step=3, step_name="load"), 900.0, step_since=600.0
    )
    assert foresight.view == EtaView(text="longer than usual (10 min)", countdown_until=900.0)


def test_a_countdown_without_history_is_left_to_the_timer() -> None:
    state = started(plan("Nightly ETL", type="timer")[0])
    view = Foresight(mode=EtaMode.COUNTDOWN).observe(state, Position(), 0.0).view
    assert view == EtaView()


def test_a_pipeline_step_counts_the_usual_time_of_the_steps_before_it() -> None:
    # A process that runs "load" alone, 40 s in: the job is 420 + 40 s in, on time.
    state = started(plan("ETL", steps=list(PLAN), stream_key="etl", step=3)[0])
    foresight = Foresight(expectation=NIGHTLY)
    position = Position(step=3, step_name="load")
    foresight = foresight.observe(state, position, 40.0, step_since=0.0)
    assert foresight.first_step == 3
    assert foresight.view.text == "usually 10 min · ~2 min left"
    assert not foresight.display.late


def test_a_slow_pipeline_step_is_late_for_the_whole_job() -> None:
    # "load" alone, counted: 0.3 items a second, 133 s left after 200 s in the step. The job
    # is then 420 (extract and transform, as usual) + 200 + 133 = 753 s long: running long,
    # though this process alone has run for only 200 s.
    state = started(plan("ETL", steps=list(PLAN), stream_key="etl", step=3, total=100)[0])
    foresight = Foresight(expectation=NIGHTLY)
    for count, now in [(0, 0.0), (30, 100.0), (60, 200.0)]:
        position = Position(step=3, step_name="load", count=count)
        foresight = foresight.observe(state, position, now, step_since=0.0)
    assert foresight.display.late
    assert foresight.view.text == "running long · ~2 min left"
