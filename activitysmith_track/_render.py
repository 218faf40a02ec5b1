"""Pure rendering: from a state, a position and a clock reading to the payload that is sent.

Nothing here reads a clock, takes a lock or does I/O: ``render(state, position, now)`` is what
the lock screen should show at ``now`` while the activity runs, and ``final(state, position)``
what it shows once it ended (the end look, the error text, the final step or 100 %, a frozen
timer). :func:`check` is how the handle makes sure, on the user's thread, that every payload a
state may later be sent as is valid for its request, so nothing is refused in the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from activitysmith_track._checks import MAX_TEXT, clean_text
from activitysmith_track._model import ActivityType, Payload

if TYPE_CHECKING:  # the ETA is worked out on the sender; rendering only reads its view
    from activitysmith_track._eta import EtaView
from activitysmith_track._state import (
    PAYLOAD_FIELDS,
    ActivityState,
    Ending,
    Job,
    Outcome,
    Position,
    operation,
)

__all__ = [
    "SUBTITLE_LIMIT",
    "check",
    "describe_error",
    "final",
    "format_count",
    "format_elapsed",
    "render",
    "trim",
    "where",
]

# What a lock screen shows of a subtitle before it is cut; the end texts are trimmed to it.
SUBTITLE_LIMIT = 64


def format_elapsed(seconds: float) -> str:
    """``42s``, ``3m 07s``, ``2h 05m``."""
    seconds = round(max(0.0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_count(value: float) -> str:
    """``1,200`` for whole numbers, ``2.5`` otherwise."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return f"{int(value):,}"
    return f"{value:,.4g}"


def trim(text: str, limit: int = SUBTITLE_LIMIT) -> str:
    """``text`` on one line, cut to ``limit`` characters with a trailing ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe_error(exc: BaseException | None, message: str | None, show_message: bool) -> str:
    """The ``{error}`` text for an exception (or an explicit message): ``OSError: disk full``,
    or only ``OSError`` when messages are not shown. Never raises, whatever the exception's
    ``__str__`` does, and never carries characters the service cannot store."""
    if message is not None:
        return clean_text(message)
    if exc is None:
        return "error"
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, str):  # sys.exit("message") exits with 1 and prints it
            return clean_text(f"exit code 1: {exc.code}") if show_message else "exit code 1"
        return f"exit code {exc.code}"
    name = type(exc).__name__
    text = ""
    if show_message:
        try:
            text = str(exc)
        except Exception:  # the job's exception must propagate, whatever its __str__ does
            text = ""
    return clean_text(f"{name}: {text}" if text else name)


def _shown_steps(state: ActivityState, position: Position) -> int:
    # Stepping past the planned count grows it: the workflow had more steps than planned.
    return max(state.planned_steps, position.step, 1)


def _count_text(state: ActivityState, count: float) -> str:
    total = state.total
    if total is None:
        return f"{format_count(count)} done"
    return f"{format_count(count)}/{format_count(total)}"


def _subtitle(state: ActivityState, position: Position, eta: str | None = None) -> str | None:
    name = position.step_name
    if name is None:
        name = state.base.content_state.subtitle
    parts = [name] if name else []
    if position.note:
        parts.append(position.note)
    count = position.count
    # A progress bar with a total shows the count itself; anything else shows it as text.
    if count is not None and not (state.kind is ActivityType.PROGRESS and state.total is not None):
        parts.append(_count_text(state, count))
    if eta is None:
        return trim(" · ".join(parts), MAX_TEXT) if parts else None
    if not parts:
        return eta
    # The ETA goes last and must stay on the lock screen: what comes before it is cut to
    # leave it room within the subtitle's visible width.
    room = max(1, SUBTITLE_LIMIT - len(eta) - 3)
    return f"{trim(' · '.join(parts), room)} · {eta}"


def _countdown_seconds(left: float) -> float:
    # duration_seconds must be above 0; an expired countdown shows its last second.
    return max(1.0, round(left, 1))


def _live_fields(
    state: ActivityState, position: Position, now: float, eta: EtaView | None = None
) -> dict[str, Any]:
    """The content-state fields that follow from the position, the clock and the ETA."""
    kind = state.kind
    changes: dict[str, Any] = {
        "subtitle": _subtitle(state, position, eta.text if eta is not None else None)
    }
    if kind is ActivityType.TIMER and eta is not None and eta.countdown_until is not None:
        # eta="countdown" with a history: count down to the expected end (every request
        # carries the seconds left, as for any countdown).
        changes["duration_seconds"] = _countdown_seconds(eta.countdown_until - now)
        changes["counts_down"] = True
        changes["is_running"] = True
    elif kind is ActivityType.SEGMENTED_PROGRESS:
        changes["number_of_steps"] = _shown_steps(state, position)
        changes["current_step"] = position.step
    elif kind is ActivityType.PROGRESS:
        total = state.total
        if position.percent is not None:
            changes.update(percentage=position.percent, value=None, upper_limit=None)
        elif total is not None:
            count = min(max(position.count or 0, 0), total)
            changes.update(percentage=None, value=count, upper_limit=total)
    elif kind is ActivityType.TIMER and state.countdown is not None:
        # Sending duration_seconds restarts a countdown from the request's time, so every
        # request carries the seconds left: the countdown keeps its end moment, and a paused
        # one keeps the time that was left.
        countdown = state.countdown
        changes["duration_seconds"] = _countdown_seconds(countdown.left_at(now))
        changes["is_running"] = countdown.running
    return changes


def _payload(state: ActivityState, content: dict[str, Any], extras: dict[str, Any]) -> Payload:
    base = state.base
    content_state = attrs.evolve(base.content_state, **content) if content else base.content_state
    if not extras and content_state is base.content_state:
        return base
    return attrs.evolve(base, content_state=content_state, **extras)


def render(
    state: ActivityState, position: Position, now: float, eta: EtaView | None = None
) -> Payload:
    """What the lock screen should show at ``now`` (monotonic) while the activity runs;
    ``eta`` adds the time left to the subtitle (and a countdown's window), as the sender's
    foresight says (see :mod:`activitysmith_track._eta`)."""
    return _payload(state, _live_fields(state, position, now, eta), {})


def where(state: ActivityState, position: Position, now: float) -> str:
    """``at upload archive``, ``at step 2 of 3``, ``at 40%``, ``after 3m 10s``: the ``{where}``
    of an end text."""
    kind = state.kind
    if kind is ActivityType.SEGMENTED_PROGRESS:
        if position.step == 0:
            return "before the first step"
        if position.step_name:
            return f"at {position.step_name}"
        return f"at step {position.step} of {_shown_steps(state, position)}"
    if kind is ActivityType.PROGRESS:
        if position.percent is not None:
            return f"at {position.percent:g}%"
        if state.total:
            done = min(100.0, 100.0 * (position.count or 0) / state.total)
            return f"at {done:.0f}%"
    if position.step_name:
        return f"at {position.step_name}"
    started = state.started_at if state.started_at is not None else now
    return f"after {format_elapsed(now - started)}"


def final(state: ActivityState, position: Position, eta: EtaView | None = None) -> Payload:
    """The final payload of an ended state (``state.ending`` says how it ended).

    A hand-on sends the state as it is, with the fields ``end()`` was given. Otherwise the
    outcome's look applies: a success shows every step complete (or 100 %), a timer stops at
    the time the job ended, the subtitle follows the look's template, and the fields given to
    ``end()`` win over all of it. ``eta`` is the last one sent: a countdown from the history
    stops at the time that was left (its text is not part of a final state).
    """
    ending = state.ending
    assert ending is not None
    if eta is not None:
        eta = attrs.evolve(eta, text=None)
    content = _live_fields(state, position, ending.at, eta)
    extras: dict[str, Any] = {}
    if not ending.hand_on:
        _apply_look(state, position, ending, content)
    for name, value in ending.overrides.items():
        (extras if name in PAYLOAD_FIELDS else content)[name] = value
    return _payload(state, content, extras)


def _apply_look(
    state: ActivityState, position: Position, ending: Ending, content: dict[str, Any]
) -> None:
    kind = state.kind
    look = ending.look or state.looks.of(ending.outcome)
    if ending.outcome is Outcome.SUCCESS:
        if kind is ActivityType.SEGMENTED_PROGRESS:
            content["current_step"] = content["number_of_steps"]
        elif kind is ActivityType.PROGRESS:
            content.update(percentage=100, value=None, upper_limit=None)
    if kind is ActivityType.TIMER:
        content["is_running"] = False  # frozen at the time the job ended
    if look.subtitle is not None:
        started = state.started_at if state.started_at is not None else ending.at
        content["subtitle"] = trim(
            look.subtitle.format(
                elapsed=format_elapsed(ending.at - started),
                where=where(state, position, ending.at),
                step=content.get("current_step") or 0,
                steps=content.get("number_of_steps") or 0,
                step_name=position.step_name or "",
                error=ending.error or "error",
            )
        )
    if look.color is not None:
        content["color"] = look.color
        if kind is ActivityType.SEGMENTED_PROGRESS:
            content["step_color"] = look.color
    if look.icon is not None:
        content["icon"] = look.icon


def check(state: ActivityState, position: Position) -> None:
    """Raise ValidationError unless every payload this state may be sent as is valid.

    That is the running state as a start and as a change, and the final state of a success
    and of a failure (or the hand-on) as an end, and as a start too: a start that never got
    through is sent with the final state before the end. The later per-item calls change only
    numbers and names whose own checks keep these valid.
    """
    target = state.target
    now = state.started_at or 0.0
    running = render(state, position, now)
    running.body(operation(target, Job.START))
    running.body(operation(target, Job.CHANGE))
    endings = [Ending(outcome=Outcome.SUCCESS, at=now), Ending(outcome=Outcome.FAILURE, at=now)]
    if target.hand_on:
        endings.append(Ending(outcome=Outcome.SUCCESS, at=now, hand_on=True))
    if state.ending is not None:
        endings = [state.ending]
    for ending in endings:
        ended = attrs.evolve(state, ending=ending)
        payload = final(ended, position)
        payload.body(operation(target, ended.end_job()))
        payload.body(operation(target, Job.START))
