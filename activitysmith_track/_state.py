"""The activity's state as a value, the plan that builds it from arguments, and ``operation()``.

An activity's state is split by how often it changes:

* :class:`ActivityState` is a frozen attrs value: the fields the user set (as a validated
  :class:`~activitysmith_track._model.Payload`), the step names, the total, the end looks, the
  target (manual or stream), the timing and, once ended, how it ended. It changes only by
  ``attrs.evolve`` on the user's thread, in calls such as ``update()``, ``set_steps()`` or
  ``end()``.
* :class:`Position` is where the job is: the step, the name given to it, the items counted and
  a percentage set directly. These change on every per-item call (``advance()``, ``step()``,
  ``percentage()``), so the handle publishes them as plain numbers (see ``_dispatch.Lane``) and
  the reader assembles a :class:`Position` when it is about to send.

:func:`plan` turns ``live_activity()``'s arguments into the first state; the command line uses
the same function, so both infer the same type and defaults from the same arguments.
:func:`operation` is the one place that says which request a job becomes.
"""

from __future__ import annotations

import enum
import string
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from activitysmith_track._checks import check_count, check_number, check_text, refuse
from activitysmith_track._errors import ArgumentTypeError, UsageError, ValidationError
from activitysmith_track._model import (
    ActivityType,
    Badge,
    Color,
    ContentState,
    Icon,
    Metric,
    Operation,
    Payload,
    validate_stream_key,
)

__all__ = [
    "CONTENT_FIELDS",
    "ETA_COUNTDOWN",
    "ETA_TEXT",
    "KEEP_MARKS",
    "PAYLOAD_FIELDS",
    "ActivityState",
    "Countdown",
    "EndLook",
    "Ending",
    "Job",
    "Looks",
    "Outcome",
    "Position",
    "Target",
    "eta_choice",
    "operation",
    "plan",
]

# The content-state fields by their API names, and what a request carries besides them.
CONTENT_FIELDS = frozenset(a.name for a in attrs.fields(ContentState))
PAYLOAD_FIELDS = frozenset({"action", "secondary_action", "channels", "tags", "metadata", "alert"})


# The eta= choices (``_eta.EtaMode`` has the same values; the handle keeps the plain text so
# that the ETA code is imported only by the sender that works it out).
ETA_TEXT = "text"  # eta=True: "~4 min left" after the step name
ETA_COUNTDOWN = "countdown"  # eta="countdown": a timer counting down to the expected end

# The handle times this many steps of a run (when each began, for the ETA and the history),
# then stops: a step past it costs a comparison, not a clock reading. A run that reached it
# records its total only.
KEEP_MARKS = 1000


def eta_choice(value: object) -> str | None:
    """The mode an ``eta=`` argument asks for: ``True`` the text, ``False`` nothing,
    ``"countdown"`` a countdown timer. Anything else is refused, naming the choices."""
    if value is True:
        return ETA_TEXT
    if value is False or value is None:
        return None
    if isinstance(value, str):
        if value == ETA_COUNTDOWN:
            return ETA_COUNTDOWN
        raise ValidationError("eta", "must be True, False or 'countdown'", value)
    if isinstance(value, enum.Enum) and value.value in (ETA_TEXT, ETA_COUNTDOWN):
        return str(value.value)  # an _eta.EtaMode
    raise ArgumentTypeError("eta", "True, False or 'countdown'", value)


class Outcome(enum.Enum):
    """How an activity ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"
    HANDED_ON = "handed_on"  # a stream left live for the next process (``hand_on()``)


class Job(enum.Enum):
    """What a request is for, whatever the mode: the lane's vocabulary."""

    START = "start"  # make the activity exist
    CHANGE = "change"  # show a newer state
    END = "end"  # the final state; the activity ends
    HAND_ON = "hand_on"  # the final state of this process; the stream stays live


@attrs.frozen(kw_only=True)
class Target:
    """Which activity the requests address: a new one (manual mode) or a stream's.

    ``hand_on`` marks a process that runs one step of a pipeline spread over processes: when it
    succeeds it hands the stream on (a PUT) instead of ending it.
    """

    stream_key: str | None = None
    hand_on: bool = False


def operation(target: Target, job: Job) -> Operation:
    """The request ``job`` becomes for ``target``: the one table of it in the library."""
    if target.stream_key is None:
        if job is Job.HAND_ON:
            raise UsageError("only a stream activity (stream_key=...) can be handed on")
        return {
            Job.START: Operation.START,
            Job.CHANGE: Operation.UPDATE,
            Job.END: Operation.END,
        }[job]
    return Operation.STREAM_DELETE if job is Job.END else Operation.STREAM_PUT


# -- end looks --------------------------------------------------------------------------------

TEMPLATE_FIELDS = frozenset({"elapsed", "where", "step", "steps", "step_name", "error"})


def _check_template(_inst: object, _attr: object, value: str | None) -> None:
    # Checked when the look is built: a bad template must not fail at the end of a job.
    if value is None:
        return
    check_text("subtitle", value, empty=True)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValidationError("subtitle", f"is not a valid template: {exc}", value) from None
    for name in names:
        if name not in TEMPLATE_FIELDS:
            allowed = ", ".join("{" + n + "}" for n in sorted(TEMPLATE_FIELDS))
            shown = "{" + name + "}"
            raise ValidationError("subtitle", f"uses {shown}; the fields are {allowed}", value)


def _to_color(value: Color | str | None) -> Color | None:
    if isinstance(value, str) and not isinstance(value, Color):
        try:
            return Color(value)
        except ValueError:
            allowed = ", ".join(c.value for c in Color)
            raise refuse("color", value, f"must be one of: {allowed}") from None
    return value  # anything else is for the validator to refuse


def _check_color(_inst: object, _attr: attrs.Attribute[Color | None], value: Color | None) -> None:
    if value is not None and not isinstance(value, Color):
        raise ArgumentTypeError("color", "a Color or a colour name", value)


def _to_icon(value: Icon | str | None) -> Icon | None:
    return Icon(symbol=value) if isinstance(value, str) else value


def _check_icon(_inst: object, _attr: attrs.Attribute[Icon | None], value: Icon | None) -> None:
    if value is not None and not isinstance(value, Icon):
        raise ArgumentTypeError("icon", "an Icon or an SF Symbol name", value)


@attrs.frozen(kw_only=True)
class EndLook:
    """How the final state looks for one outcome (success, failure, cancelled).

    ``subtitle`` is a template with the fields ``{elapsed}``, ``{where}`` (for example
    ``at upload archive`` or ``at 40%``), ``{step}``, ``{steps}``, ``{step_name}`` and
    ``{error}`` (the exception's type and trimmed message, or ``fail()``'s message).
    """

    subtitle: str | None = attrs.field(default=None, validator=_check_template)
    color: Color | None = attrs.field(default=None, converter=_to_color, validator=_check_color)
    icon: Icon | None = attrs.field(default=None, converter=_to_icon, validator=_check_icon)


DEFAULT_SUCCESS = EndLook(subtitle="Done in {elapsed}", color=Color.GREEN)
DEFAULT_FAILURE = EndLook(subtitle="Failed {where}: {error}", color=Color.RED)
DEFAULT_CANCELLED = EndLook(subtitle="Cancelled {where}", color=Color.ORANGE)
DEFAULT_ABANDONED = EndLook(subtitle="Stopped {where}", color=Color.GRAY)


@attrs.frozen(kw_only=True)
class Looks:
    """The look of each outcome, and whether an exception's message may reach the phone."""

    success: EndLook = DEFAULT_SUCCESS
    failure: EndLook = DEFAULT_FAILURE
    cancelled: EndLook = DEFAULT_CANCELLED
    abandoned: EndLook = DEFAULT_ABANDONED
    show_error_message: bool = True

    def of(self, outcome: Outcome) -> EndLook:
        if outcome is Outcome.HANDED_ON:
            return EndLook()  # a hand-on shows the state as it is
        look: EndLook = getattr(self, outcome.value)
        return look


# -- timing -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Countdown:
    """A countdown's window: ``left`` seconds remained at ``since`` (a monotonic time).

    Pausing keeps the time that was left; resuming counts down from it again. ``since`` is
    ``None`` until the activity starts.
    """

    left: float
    since: float | None = None
    running: bool = True

    def left_at(self, now: float) -> float:
        if not self.running or self.since is None:
            return self.left
        return self.left - (now - self.since)

    def started(self, now: float) -> Countdown:
        return attrs.evolve(self, since=now)

    def paused(self, now: float) -> Countdown:
        return Countdown(left=max(0.0, self.left_at(now)), since=now, running=False)

    def resumed(self, now: float) -> Countdown:
        return Countdown(left=self.left_at(now), since=now, running=True)


@attrs.frozen(kw_only=True)
class Ending:
    """How and when the activity ended, and what the final state must show.

    ``error`` is the text for ``{error}`` (already trimmed and cleaned); ``overrides`` are the
    fields given to ``end(**fields)``, which win over the look; ``look`` replaces the
    outcome's own look (a signal's "Stopped by SIGTERM").
    """

    outcome: Outcome
    at: float
    error: str | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=dict)
    hand_on: bool = False
    look: EndLook | None = None


# -- the state ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Position:
    """Where the job is: the reader assembles one from the lane just before it renders.

    ``step`` counts the steps begun (the API's ``current_step``); ``step_name`` is the text
    shown for it (the step's name, or a subtitle set with ``update()``); ``note`` more text
    after it (the command line's progress and metric markers); ``count`` the items done in
    this step (``None``: nothing counted); ``percent`` a percentage set directly on a
    progress activity without a total.
    """

    step: int = 0
    step_name: str | None = None
    note: str | None = None
    count: float | None = None
    percent: float | None = None


@attrs.frozen(kw_only=True)
class ActivityState:
    """Everything about an activity that changes only by a call the user makes on purpose."""

    base: Payload
    step_names: tuple[str, ...] | None = None
    total: float | None = None
    looks: Looks = Looks()
    target: Target = Target()
    started_at: float | None = None
    countdown: Countdown | None = None
    ending: Ending | None = None

    @property
    def kind(self) -> ActivityType:
        kind = self.base.content_state.type
        assert kind is not None  # plan() always sets it
        return kind

    @property
    def title(self) -> str:
        return self.base.content_state.title

    @property
    def planned_steps(self) -> int:
        """``number_of_steps`` as planned (stepping past it grows what is shown)."""
        return self.base.content_state.number_of_steps or 0

    def end_job(self) -> Job:
        """How this state's final request goes out: an end, or a hand-on to the next process."""
        ending = self.ending
        return Job.HAND_ON if ending is not None and ending.hand_on else Job.END


# -- the plan: from arguments to the first state -----------------------------------------------


def _type_from(value: ActivityType | str | None) -> ActivityType | None:
    if value is None or isinstance(value, ActivityType):
        return value
    if isinstance(value, str):
        try:
            return ActivityType(value)
        except ValueError:
            allowed = ", ".join(t.value for t in ActivityType)
            raise refuse("type", value, f"must be one of: {allowed}") from None
    raise ArgumentTypeError("type", "an ActivityType or its name", value)


def infer_type(
    *,
    steps: bool,
    total: bool,
    metrics: bool,
    fields: Mapping[str, Any],
) -> ActivityType:
    """The type that follows from what was given, when no ``type`` is named.

    Steps give segmented progress, a total a progress bar, metrics tiles; then the content
    fields say it (``message`` an alert, ``value`` a value readout, ``percentage`` a bar);
    with none of them, a timer (counting down with ``duration_seconds``, else up).
    """
    if steps or "number_of_steps" in fields or "current_step" in fields:
        return ActivityType.SEGMENTED_PROGRESS
    if total or "percentage" in fields or "upper_limit" in fields:
        return ActivityType.PROGRESS
    if metrics or "metrics" in fields:
        return ActivityType.METRICS
    if "message" in fields:
        return ActivityType.ALERT
    if "value" in fields:
        return ActivityType.VALUE
    return ActivityType.TIMER


def _steps_from(steps: int | Sequence[str] | None) -> tuple[int | None, tuple[str, ...] | None]:
    if steps is None:
        return None, None
    if isinstance(steps, bool) or not isinstance(steps, int | Sequence) or isinstance(steps, str):
        raise ArgumentTypeError("steps", "an int or a list of step names", steps)
    if isinstance(steps, int):
        return check_count("steps", steps, minimum=1), None
    names = tuple(steps)
    for index, name in enumerate(names):
        check_text(f"steps[{index}]", name)
    if not names:
        raise refuse("steps", list(names), "must name at least one step")
    return len(names), names


def metrics_from(items: Sequence[Metric], values: Mapping[str, Any]) -> tuple[Metric, ...]:
    """``Metric`` values and ``label=value`` pairs as one tuple of metrics."""
    metrics = list(items)
    for item in metrics:
        if not isinstance(item, Metric):
            raise ArgumentTypeError("metrics", "Metric values or label=value keywords", item)
    metrics.extend(Metric(label=label, value=value) for label, value in values.items())
    return tuple(metrics)


def _pipeline_step(
    step: int | str | None,
    stream_key: str | None,
    number_of_steps: int | None,
    step_names: tuple[str, ...] | None,
) -> int:
    """The step this process runs of a pipeline spread over processes (0: not a step)."""
    if step is None:
        return 0
    if stream_key is None:
        raise ValidationError(
            "step", "needs stream_key=: only a stream can be shared by the processes of a pipeline"
        )
    if number_of_steps is None:
        raise ValidationError("step", "needs steps= (the pipeline's step count or names)")
    if isinstance(step, str):
        if not step_names or step not in step_names:
            raise refuse("step", step, f"is not one of the steps {list(step_names or ())}")
        return step_names.index(step) + 1
    if isinstance(step, bool) or not isinstance(step, int):
        raise ArgumentTypeError("step", "a step number or name", step)
    if not 1 <= step <= number_of_steps:
        raise refuse("step", step, f"must be between 1 and {number_of_steps}")
    return step


def plan(
    title: str,
    *,
    steps: int | Sequence[str] | None = None,
    total: float | None = None,
    metrics: Mapping[str, Any] | Sequence[Metric] | None = None,
    type: ActivityType | str | None = None,
    fields: Mapping[str, Any] | None = None,
    extras: Mapping[str, Any] | None = None,
    stream_key: str | None = None,
    step: int | str | None = None,
    looks: Looks | None = None,
) -> tuple[ActivityState, Position]:
    """The first state and position of an activity, from ``live_activity()``'s arguments.

    ``fields`` are content-state fields by their API names (``subtitle``, ``icon``, ``value``,
    ``duration_seconds``...); ``extras`` the rest of a request (``action``, ``tags``...).
    Every value is checked here, so a bad one fails at the call that gave it.
    """
    check_text("title", title)
    if not title.strip():
        raise refuse("title", title, "must not be blank")
    fields = {k: v for k, v in (fields or {}).items() if v is not None}
    extras = {k: v for k, v in (extras or {}).items() if v is not None}
    unknown = set(fields) - CONTENT_FIELDS
    if unknown:
        raise ValidationError(", ".join(sorted(unknown)), "is not a content-state field")
    number_of_steps, step_names = _steps_from(steps)
    if total is not None:
        total = check_number("total", total, above=0)
    if stream_key is not None:
        stream_key = validate_stream_key(stream_key)
    current = _pipeline_step(step, stream_key, number_of_steps, step_names)

    kind = _type_from(type) or infer_type(
        steps=number_of_steps is not None,
        total=total is not None,
        metrics=metrics is not None,
        fields=fields,
    )
    content: dict[str, Any] = {"title": title, "type": kind}
    if isinstance(fields.get("icon"), str):
        fields["icon"] = Icon(symbol=fields["icon"])
    if isinstance(fields.get("badge"), str):
        fields["badge"] = Badge(title=fields["badge"])
    content.update(fields)
    if metrics is not None:
        content["metrics"] = (
            metrics_from((), metrics) if isinstance(metrics, Mapping) else metrics_from(metrics, {})
        )
    if kind is ActivityType.SEGMENTED_PROGRESS:
        content["number_of_steps"] = number_of_steps or content.get("number_of_steps") or 1
        # The step begun is part of the position; a current_step given as a field is where
        # the position starts.
        current = current or int(content.pop("current_step", 0) or 0)
        content.pop("current_step", None)
    if kind is ActivityType.PROGRESS and total is None and "value" not in content:
        content.setdefault("percentage", 0)  # set later with la.percentage() or la.progress()
    countdown = None
    if kind is ActivityType.TIMER:
        if "duration_seconds" in content:
            countdown = Countdown(
                left=float(content["duration_seconds"]),
                running=content.get("is_running") is not False,
            )
            content.setdefault("counts_down", True)
        else:
            content.setdefault("counts_down", False)  # an elapsed timer counting up

    base = Payload(content_state=ContentState(**content), **extras)
    name = step_names[current - 1] if current and step_names else None
    state = ActivityState(
        base=base,
        step_names=step_names,
        total=total,
        looks=looks or Looks(),
        target=Target(
            stream_key=stream_key,
            hand_on=bool(current) and current < (number_of_steps or 0),
        ),
        countdown=countdown,
    )
    return state, Position(step=current, step_name=name)
