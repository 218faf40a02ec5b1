"""Foresight, pure: how long an activity has left, from its rate and from its past runs.

Nothing here reads a clock, does I/O or starts a thread: every function is given the time it
is about, and every value is frozen (the next one is derived with ``attrs.evolve``), so the
sender can keep one per activity and tests can replay any sequence of readings exactly.

The pieces, from the bottom up:

* :class:`Rate` smooths the pace of a count the way tqdm does: an exponential moving average
  (smoothing factor 0.3 by default) of the items done between two readings and, separately,
  of the seconds between them; the rate is the ratio of the two. It answers the seconds left
  to a total, or ``None`` while it cannot tell.
* :class:`Run` is what one finished run leaves behind (its duration, and each step's);
  :func:`expectation_from` turns the recent runs of a job into an :class:`Expectation`
  (medians), and :func:`history_forecast` says how long the current run has left from it.
* :func:`approx`, :func:`duration_text` and :func:`eta_text` turn seconds into the short text
  shown after the step name ("~4 min left", "usually 12 min · ~5 min left"), in buckets
  coarse enough not to jitter, with :class:`Display` adding hysteresis between updates.
* :class:`Foresight` ties them together for one activity: fed the state and position the
  sender is about to render, it answers an :class:`EtaView` (the text, and for
  ``eta="countdown"`` the moment the countdown reaches zero).

An ETA never causes a request: the sender asks for a view only when it is about to send
because the state changed, and a view asked again for an unchanged state and position is the
view given last time, so the text cannot change on its own between two changes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence

import attrs

from activitysmith_track._errors import ValidationError
from activitysmith_track._model import ActivityType
from activitysmith_track._state import ActivityState, Position, eta_choice

__all__ = [
    "LATE_FACTOR",
    "MAX_LEFT",
    "RECENT_RUNS",
    "SMOOTHING",
    "TEXT_LIMIT",
    "Display",
    "EtaMode",
    "EtaView",
    "Expectation",
    "Forecast",
    "Foresight",
    "Mark",
    "Rate",
    "Run",
    "StepExpectation",
    "StepTime",
    "approx",
    "duration_text",
    "eta_mode",
    "eta_text",
    "expectation_from",
    "history_forecast",
    "median",
    "run_from_marks",
]

# tqdm's default smoothing factor: 0 is the average speed since the start, 1 the speed over
# the last interval alone.
SMOOTHING = 0.3
# Intervals with progress a rate needs before it answers: one interval is a single sample of
# a pace that is often uneven at the start (imports, connections, warm caches).
MIN_INTERVALS = 2
# Longer than this is not an estimate worth showing (a rate near zero, a stalled job).
MAX_LEFT = 30 * 86400.0
# How many recent runs the medians are taken over (the history keeps as many).
RECENT_RUNS = 20
# The longest ETA text: the issue's own example, "usually 12 min · ~5 min left", is 28
# characters; after a step name and " · " it leaves 33 characters of a 64-character subtitle.
TEXT_LIMIT = 32
# A run counts as "running long" once its projected duration passes the usual one by this
# factor, and as back on time only once the projection is within the usual duration again
# (hysteresis: a projection hovering around the threshold must not flip the text).
LATE_FACTOR = 1.15
_ON_TIME_FACTOR = 1.0
# A raw estimate below this shows as "almost done".
_ALMOST_DONE = 5.0
# A new bucket replaces the one shown only when the estimate is this share of a bucket's
# width away from the shown value (so an estimate near a bucket's edge does not flip).
_HYSTERESIS = 0.75
_SEP = " · "

# (below this many seconds, buckets this wide): the estimate of the time left.
_LEFT_BUCKETS: tuple[tuple[float, int], ...] = (
    (15, 5),
    (60, 15),
    (600, 60),
    (3600, 300),
    (36000, 600),
    (172800, 3600),
    (math.inf, 86400),
)
# Finer buckets for the usual duration: it is constant through a run, so it cannot jitter,
# and "usually 12 min" says more than "usually 10 min".
_USUAL_BUCKETS: tuple[tuple[float, int], ...] = (
    (60, 5),
    (3600, 60),
    (172800, 600),
    (math.inf, 86400),
)


# -- the option ------------------------------------------------------------------------------


class EtaMode(enum.Enum):
    """What ``live_activity(eta=...)`` asks for: the text in the subtitle, or a countdown."""

    TEXT = "text"  # eta=True: "~4 min left" after the step name
    COUNTDOWN = "countdown"  # eta="countdown": a timer counting down to the expected end


def eta_mode(value: object) -> EtaMode | None:
    """The mode an ``eta=`` argument asks for: ``True`` the text, ``False`` nothing,
    ``"countdown"`` a countdown timer. Anything else is refused, naming the choices."""
    choice = eta_choice(value)
    return EtaMode(choice) if choice is not None else None


# -- the rate ---------------------------------------------------------------------------------


def _check_smoothing(_inst: object, _attr: object, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValidationError("smoothing", "must be a number from 0 to 1", value)


@attrs.frozen(kw_only=True)
class Rate:
    """The smoothed pace of a count, from successive ``(count, now)`` readings.

    As in tqdm, the items done between two readings (``dn``) and the seconds between them
    (``dt``) are averaged separately, each with an exponential moving average that weighs
    the newest interval by ``smoothing`` (the average is corrected for its start at zero by
    dividing by ``1 - (1 - smoothing) ** intervals``); the rate is their ratio. Because both
    are averaged, a long interval weighs as much as the items it saw: the rate is not thrown
    off by the irregular gaps between sends (a burst of quick ones, then one every couple of
    minutes). ``smoothing=0`` is the plain average since the first reading.

    Only an interval with progress counts. A reading without progress (the count unchanged,
    or no time passed) keeps the last reading with progress as the start of the interval, so
    a stall is in the next interval's seconds once the count moves again, as it is in tqdm
    (which measures from its last redraw). A count that goes down (a bar set back) starts
    afresh.
    """

    smoothing: float = attrs.field(default=SMOOTHING, validator=_check_smoothing)
    min_intervals: int = MIN_INTERVALS
    count: float | None = None  # the latest reading
    at: float | None = None
    since_count: float = 0.0  # the last reading with progress: where the next interval starts
    since_at: float = 0.0
    first_count: float = 0.0  # the first reading: where the plain average starts
    first_at: float = 0.0
    dn: float = 0.0  # the moving averages' accumulators, before the start-up correction
    dt: float = 0.0
    intervals: int = 0

    def fed(self, count: float, now: float) -> Rate:
        """This rate with one more reading: ``count`` items done at ``now`` (seconds)."""
        if self.count is None or count < self.since_count:
            return Rate(
                smoothing=self.smoothing,
                min_intervals=self.min_intervals,
                count=count,
                at=now,
                since_count=count,
                since_at=now,
                first_count=count,
                first_at=now,
            )
        dn = count - self.since_count
        dt = now - self.since_at
        if dn <= 0 or dt <= 0:
            return attrs.evolve(self, count=count, at=max(now, self.at or now))
        alpha = self.smoothing
        beta = 1.0 - alpha
        return attrs.evolve(
            self,
            count=count,
            at=now,
            since_count=count,
            since_at=now,
            dn=alpha * dn + beta * self.dn,
            dt=alpha * dt + beta * self.dt,
            intervals=self.intervals + 1,
        )

    def smoothed(self) -> tuple[float, float] | None:
        """The averaged items and seconds per interval (``None`` before the first interval)."""
        if self.intervals == 0:
            return None
        correction = 1.0 - (1.0 - self.smoothing) ** self.intervals
        if correction <= 0:  # smoothing 0: the accumulators stay at 0
            return None
        return self.dn / correction, self.dt / correction

    @property
    def per_second(self) -> float | None:
        """Items per second, or ``None`` while there are too few intervals with progress."""
        if self.intervals < self.min_intervals or self.count is None:
            return None
        if self.smoothing == 0:
            elapsed = self.since_at - self.first_at
            done = self.since_count - self.first_count
            return done / elapsed if elapsed > 0 and done > 0 else None
        smoothed = self.smoothed()
        if smoothed is None:
            return None
        dn, dt = smoothed
        return dn / dt if dt > 0 and dn > 0 else None

    def left(self, total: float) -> float | None:
        """Seconds until the count reaches ``total`` at this rate (``None``: cannot tell)."""
        rate = self.per_second
        if rate is None or self.count is None:
            return None
        seconds = max(0.0, total - self.count) / rate
        return seconds if seconds <= MAX_LEFT else None


# -- runs and what they lead to expect ---------------------------------------------------------

# When a step began: (monotonic seconds, the step's number, the name given to it).
Mark = tuple[float, int, str | None]


@attrs.frozen(kw_only=True)
class StepTime:
    """How long one step of a run took: its number (1-based), its name, its seconds."""

    index: int
    name: str | None
    seconds: float


@attrs.frozen(kw_only=True)
class Run:
    """What a finished run leaves in the history.

    ``total`` is the run's duration, or ``None`` for a part of a run (one process of a
    pipeline spread over processes, which knows only its own steps).
    """

    total: float | None
    steps: tuple[StepTime, ...] = ()


def run_from_marks(
    marks: Sequence[Mark], *, started_at: float, ended_at: float, complete: bool = True
) -> Run:
    """The run that ``marks`` (when each step began, oldest first) describe.

    A step lasts from its mark to the next one (the last until ``ended_at``); a step begun
    twice (a stream set back to an earlier step) adds up; the time before the first step
    belongs to no step but to the total. ``complete=False`` records the steps alone.
    """
    spans: dict[tuple[int, str | None], float] = {}
    ends = [at for at, _step, _name in marks[1:]] + [ended_at]
    for (at, step, name), end in zip(marks, ends, strict=False):  # no marks: no steps
        if step <= 0:
            continue
        key = (step, name)
        spans[key] = spans.get(key, 0.0) + max(0.0, end - at)
    ordered = sorted(spans.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    steps = tuple(
        StepTime(index=index, name=name, seconds=seconds) for (index, name), seconds in ordered
    )
    total = max(0.0, ended_at - started_at) if complete else None
    return Run(total=total, steps=steps)


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence (the mean of the two middle values if even)."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


@attrs.frozen(kw_only=True)
class StepExpectation:
    """How long a step usually takes: the median over the recent runs that had it."""

    index: int
    name: str | None
    seconds: float
    runs: int


@attrs.frozen(kw_only=True)
class Expectation:
    """What the recent runs of a job lead to expect: its usual duration and its steps'.

    ``total`` is the median duration of the recent complete runs (``None`` when only parts of
    runs were recorded: then the steps' medians add up to the usual duration).
    """

    total: float | None
    steps: tuple[StepExpectation, ...] = ()
    runs: int = 0

    @property
    def usual(self) -> float | None:
        """The usual duration of the whole job, in seconds."""
        if self.total is not None:
            return self.total
        if self.steps:
            return sum(step.seconds for step in self.steps)
        return None

    @property
    def typical_step(self) -> float | None:
        """What a step the history does not know is expected to take: the median step."""
        if not self.steps:
            return None
        return median([step.seconds for step in self.steps])

    def step_for(
        self, index: int, names: Sequence[str | None], planned: Iterable[str | None] = ()
    ) -> StepExpectation | None:
        """The history's step matching step ``index`` of this run, known by ``names``.

        By name where a name exists (so reordered steps keep their durations); else by
        number: an unnamed step of the same number, or a named one whose name this run does
        not plan any more (the step was renamed).
        """
        for name in names:
            if name is None:
                continue
            for step in self.steps:
                if step.name == name:
                    return step
        for step in self.steps:
            if step.index == index and step.name is None:
                return step
        still_planned = {name for name in planned if name is not None} | {
            name for name in names if name is not None
        }
        for step in self.steps:
            if step.index == index and step.name not in still_planned:
                return step
        return None


def expectation_from(runs: Sequence[Run]) -> Expectation | None:
    """The expectation of a job from its recent runs (newest first); ``None`` for none.

    Each median is over the newest :data:`RECENT_RUNS` runs that have the value: the total
    over complete runs, a step over the runs that had it (by name, or by number for unnamed
    steps).
    """
    totals = [run.total for run in runs if run.total is not None][:RECENT_RUNS]
    groups: dict[tuple[str, object], list[float]] = {}
    where: dict[tuple[str, object], tuple[int, str | None]] = {}
    for run in runs:
        for step in run.steps:
            key: tuple[str, object] = (
                ("name", step.name) if step.name is not None else ("index", step.index)
            )
            seconds = groups.setdefault(key, [])
            if len(seconds) < RECENT_RUNS:
                seconds.append(step.seconds)
            where.setdefault(key, (step.index, step.name))  # the newest run's number for it
    if not totals and not groups:
        return None
    steps = tuple(
        sorted(
            (
                StepExpectation(
                    index=where[key][0],
                    name=where[key][1],
                    seconds=median(seconds),
                    runs=len(seconds),
                )
                for key, seconds in groups.items()
            ),
            key=lambda step: (step.index, step.name or ""),
        )
    )
    return Expectation(
        total=median(totals) if totals else None,
        steps=steps,
        runs=len(totals) or max((step.runs for step in steps), default=0),
    )


# -- forecasts --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Forecast:
    """How long the run has left (``None``: cannot tell), how long it usually takes, and
    whether it is already past what the history expected (``over``)."""

    left: float | None = None
    usual: float | None = None
    over: bool = False


def history_forecast(
    expectation: Expectation,
    *,
    plan: Sequence[str | None],
    step: int,
    elapsed: float,
    in_step: float,
    step_name: str | None = None,
    step_left: float | None = None,
) -> Forecast:
    """The time left of this run, from its history.

    ``plan`` holds this run's steps (their names, or ``None`` each), ``step`` the step begun
    (1-based; 0 before the first), ``in_step`` the seconds spent in it, ``elapsed`` the
    seconds spent in the whole run and ``step_name`` the name the current step was given.
    ``step_left``, when given, replaces the history's guess for the rest of the current step
    (a rate measured on its count knows better).

    A step the history does not know (added at run time) is expected to take the median
    step. A step that has run longer than usual is over: the estimate is then the remaining
    steps alone (never negative), and with no step remaining there is no estimate.
    """
    usual = expectation.usual
    if not plan or not expectation.steps:
        if usual is None:
            return Forecast()
        if elapsed > usual:
            return Forecast(left=None, usual=usual, over=True)
        return Forecast(left=usual - elapsed, usual=usual)
    typical = expectation.typical_step
    assert typical is not None  # there are steps

    def expected(index: int, names: Sequence[str | None]) -> float:
        found = expectation.step_for(index, names, plan)
        return found.seconds if found is not None else typical

    shown = max(len(plan), step)  # stepping past the plan adds steps
    left = 0.0
    over = False
    if step >= 1:
        planned = plan[step - 1] if step <= len(plan) else None
        current = expected(step, (step_name, planned))
        if step_left is not None:
            left += step_left
        elif in_step > current:
            over = True  # this step is already longer than usual: only the rest is known
        else:
            left += current - in_step
    rest = range(step + 1, shown + 1)
    for index in rest:
        left += expected(index, (plan[index - 1] if index <= len(plan) else None,))
    if over and not rest:
        return Forecast(left=None, usual=usual, over=True)
    if usual is not None and elapsed > usual:
        over = True
    return Forecast(left=left, usual=usual, over=over)


# -- text ---------------------------------------------------------------------------------------


def _width(seconds: float, buckets: tuple[tuple[float, int], ...]) -> int:
    for below, width in buckets:
        if seconds < below:
            return width
    return buckets[-1][1]  # pragma: no cover - the last bucket is unbounded


def approx(seconds: float, *, usual: bool = False) -> int:
    """``seconds`` rounded to its bucket: 5 s under 15 s, 15 s under a minute, a minute
    under 10 min, 5 min under an hour, 10 min under 10 h, an hour under 2 days, then days.
    ``usual=True`` uses the finer buckets of the usual duration (5 s, a minute, 10 min,
    days)."""
    buckets = _USUAL_BUCKETS if usual else _LEFT_BUCKETS
    width = _width(seconds, buckets)
    return max(width, math.floor(seconds / width + 0.5) * width)


def duration_text(value: int) -> str:
    """``45 s``, ``12 min``, ``1 h 20 min``, ``3 days``: a bucketed duration, short."""
    if value < 60:
        return f"{value} s"
    if value < 3600:
        return f"{value // 60} min"
    if value < 172800:
        hours, rest = divmod(value, 3600)
        minutes = rest // 60
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{value // 86400} days"


def eta_text(
    left: int | None, *, usual: float | None = None, late: bool = False, countdown: bool = False
) -> str | None:
    """The ETA text: ``left`` is a bucketed estimate (0: almost done), ``usual`` the usual
    duration in seconds, ``late`` whether the run is longer than usual.

    ``~4 min left``, ``usually 12 min · ~5 min left``, ``running long · ~5 min left``,
    ``longer than usual (12 min)``; with ``countdown`` (the timer shows the time left) only
    the usual part. Never longer than :data:`TEXT_LIMIT`: a longer form falls back to a
    shorter one.
    """
    usual_text = None if usual is None else duration_text(approx(usual, usual=True))
    if countdown or left is None:
        if usual_text is None:
            return None
        if late:
            return _first_fitting(f"longer than usual ({usual_text})", "longer than usual")
        return _first_fitting(f"usually {usual_text}")
    left_text = "almost done" if left == 0 else f"~{duration_text(left)} left"
    if late:
        return _first_fitting(f"running long{_SEP}{left_text}", left_text)
    if usual_text is not None:
        return _first_fitting(f"usually {usual_text}{_SEP}{left_text}", left_text)
    return _first_fitting(left_text)


def _first_fitting(*forms: str) -> str | None:
    for form in forms:
        if len(form) <= TEXT_LIMIT:
            return form
    return None


@attrs.frozen(kw_only=True)
class Display:
    """What the ETA text shows, kept steady between updates.

    ``left`` is the bucket shown (0: almost done). A new estimate replaces it only when it is
    outside the shown bucket by a margin (three quarters of the finer of the two buckets'
    widths), so an estimate wavering around a bucket's edge keeps its text. ``late`` turns
    on when the run is past what the history expected or projected to take
    :data:`LATE_FACTOR` times the usual duration, and off only once the projection is back
    within the usual duration.
    """

    left: int | None = None
    late: bool = False

    def next(self, forecast: Forecast, elapsed: float) -> Display:
        left = None if forecast.left is None else _settle(self.left, forecast.left)
        late = forecast.over
        usual = forecast.usual
        if not late and usual is not None and forecast.left is not None and usual > 0:
            projected = (elapsed + forecast.left) / usual
            late = projected > (_ON_TIME_FACTOR if self.late else LATE_FACTOR)
        return Display(left=left, late=late)


def _settle(shown: int | None, raw: float) -> int:
    candidate = 0 if raw < _ALMOST_DONE else approx(raw)
    if shown is None or candidate == shown:
        return candidate
    width = min(_width(max(shown, 1), _LEFT_BUCKETS), _width(max(candidate, 1), _LEFT_BUCKETS))
    if abs(raw - shown) < _HYSTERESIS * width:
        return shown
    return candidate


# -- one activity's foresight ------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class EtaView:
    """What the ETA adds to the payload about to be sent.

    ``text`` goes after the step name in the subtitle (``None``: nothing to add);
    ``countdown_until`` (``eta="countdown"`` only) is the monotonic moment the countdown
    reaches zero, from which the renderer computes ``duration_seconds`` at the time of the
    request (``None``: no countdown from the ETA; the timer is what the state says).
    """

    text: str | None = None
    countdown_until: float | None = None


def _plan_of(state: ActivityState) -> tuple[str | None, ...]:
    if state.step_names:
        return state.step_names
    return (None,) * state.planned_steps


@attrs.frozen(kw_only=True)
class Foresight:
    """One activity's ETA, as the sender sees it: fed the state and position it is about to
    render (with the time and when the current step began), it answers the :class:`EtaView`
    to send with them.

    ``expectation`` is the job's history, read once before the start; ``None`` for a job
    without one (then only a rate can tell, for an activity with a total). ``first_step`` is
    the step this process began at (default: the step of the first observation); a pipeline
    step spread over processes begins later, and the usual time of the steps before it
    counts as elapsed, so lateness is judged on the whole job.
    """

    mode: EtaMode = EtaMode.TEXT
    expectation: Expectation | None = None
    rate: Rate = Rate()
    display: Display = Display()
    first_step: int | None = None  # None: the step of the first observation
    step: int = 0  # the step of the last reading: a new step's count starts a new rate
    total: float | None = None  # the total of the last reading: a new total, a new rate
    seen_state: ActivityState | None = attrs.field(default=None, eq=False, repr=False)
    seen_position: Position | None = None
    view: EtaView = EtaView()

    def observe(
        self,
        state: ActivityState,
        position: Position,
        now: float,
        *,
        step_since: float | None = None,
    ) -> Foresight:
        """The foresight after one more look at ``state`` and ``position`` at ``now``.

        Asked again with the same state (the same object) and an equal position, it answers
        itself: the text changes only with the state, never with time alone. A countdown's
        end moment is kept as a moment, so its seconds are still right whenever they are sent.
        """
        if state is self.seen_state and position == self.seen_position:
            return self
        expectation = self.expectation
        started = state.started_at if state.started_at is not None else now
        elapsed = max(0.0, now - started)
        first = position.step if self.first_step is None else self.first_step
        rate, total = self._reading(state, position, now)
        plan = _plan_of(state)
        in_step = max(0.0, now - step_since) if step_since is not None else elapsed
        forecast = self._forecast(
            expectation=expectation,
            state=state,
            position=position,
            plan=plan,
            rate=rate,
            total=total,
            elapsed=elapsed,
            in_step=in_step,
            first=first,
        )
        display = self.display.next(forecast, self._job_elapsed(expectation, elapsed, plan, first))
        countdown = self.mode is EtaMode.COUNTDOWN
        text = eta_text(display.left, usual=forecast.usual, late=display.late, countdown=countdown)
        until = None
        if countdown and expectation is not None:
            if forecast.left is not None:
                until = now + forecast.left
            elif forecast.usual is not None:
                until = now  # longer than usual, nothing left to estimate: at zero
        return attrs.evolve(
            self,
            rate=rate,
            display=display,
            first_step=first,
            step=position.step,
            total=total,
            seen_state=state,
            seen_position=position,
            view=EtaView(text=text, countdown_until=until),
        )

    def _reading(
        self, state: ActivityState, position: Position, now: float
    ) -> tuple[Rate, float | None]:
        """The rate after this reading, and the total it counts towards (``None``: no count)."""
        count: float | None = None
        total: float | None = None
        if state.kind is ActivityType.PROGRESS and position.percent is not None:
            count, total = position.percent, 100.0
        elif state.total is not None and position.count is not None:
            count, total = position.count, state.total
        if count is None or total is None:
            return self.rate, None
        rate = self.rate
        if position.step != self.step or total != self.total:
            rate = Rate(smoothing=rate.smoothing, min_intervals=rate.min_intervals)
        return rate.fed(count, now), total

    def _forecast(
        self,
        *,
        expectation: Expectation | None,
        state: ActivityState,
        position: Position,
        plan: tuple[str | None, ...],
        rate: Rate,
        total: float | None,
        elapsed: float,
        in_step: float,
        first: int,
    ) -> Forecast:
        rate_left = rate.left(total) if total is not None else None
        usual = expectation.usual if expectation is not None else None
        job_elapsed = self._job_elapsed(expectation, elapsed, plan, first)
        has_steps = bool(plan) or position.step > 0
        if has_steps:
            # A count within a step says how long the step has left, not the job: only the
            # history knows the steps after it.
            if expectation is None:
                return Forecast()
            return history_forecast(
                expectation,
                plan=plan,
                step=position.step,
                elapsed=job_elapsed,
                in_step=in_step,
                step_name=position.step_name,
                step_left=rate_left,
            )
        if rate_left is not None:
            return Forecast(
                left=rate_left, usual=usual, over=usual is not None and job_elapsed > usual
            )
        if expectation is not None:
            return history_forecast(
                expectation, plan=(), step=0, elapsed=job_elapsed, in_step=in_step
            )
        return Forecast()

    @staticmethod
    def _job_elapsed(
        expectation: Expectation | None,
        elapsed: float,
        plan: tuple[str | None, ...],
        first: int,
    ) -> float:
        """The seconds the whole job has run: this process's, plus for a process that began
        at a later step of a pipeline, the usual time of the steps before it."""
        if first <= 1 or expectation is None or not expectation.steps:
            return elapsed
        before = 0.0
        typical = expectation.typical_step or 0.0
        for index in range(1, first):
            name = plan[index - 1] if index <= len(plan) else None
            found = expectation.step_for(index, (name,), plan)
            before += found.seconds if found is not None else typical
        return before + elapsed
