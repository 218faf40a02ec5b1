"""The activity handle: ``live_activity()``, :class:`LiveActivity` and ``current_activity()``.

The handle keeps the activity's state on the user's side and never talks HTTP: each call
validates its arguments, records the change and returns; the dispatcher's worker reads the
newest state (:meth:`_State.snapshot`) when it is ready to send. Leaving the block ends the
activity exactly once, in a success, failure or cancelled look, and waits at most
``flush_timeout`` seconds for that end to be delivered.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import enum
import logging
import os
import string
import threading
import time
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

import attrs

from activitysmith_track._config import Settings, resolve_settings
from activitysmith_track._dispatch import Channel, get_dispatcher, shutdown_all
from activitysmith_track._errors import (
    ActivityEndedError,
    ActivitySmithTrackError,
    ArgumentTypeError,
    ConfigurationError,
    TransportError,
    UsageError,
    ValidationError,
)
from activitysmith_track._model import (
    Action,
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

__all__ = ["EndLook", "LiveActivity", "Outcome", "current_activity", "live_activity"]

logger = logging.getLogger("activitysmith_track")

T = TypeVar("T")

# What a lock screen shows of a subtitle before it is cut; longer final texts end in "…".
SUBTITLE_LIMIT = 64

_current: contextvars.ContextVar[LiveActivity | None] = contextvars.ContextVar(
    "activitysmith_track_current", default=None
)

_CONTENT_FIELDS = frozenset(a.name for a in attrs.fields(ContentState))
_PAYLOAD_FIELDS = frozenset({"action", "secondary_action", "channels", "tags", "metadata"})


class Outcome(enum.Enum):
    """How an activity ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
    ABANDONED = "abandoned"


def _to_color(field: str, value: Color | str | None) -> Color | None:
    if value is None or isinstance(value, Color):
        return value
    if not isinstance(value, str):
        raise ArgumentTypeError(field, "a Color or a colour name", value)
    try:
        return Color(value)
    except ValueError:
        allowed = ", ".join(c.value for c in Color)
        raise ValidationError(field, f"must be one of {allowed}, got {value!r}", value) from None


def _look_color(value: Color | str | None) -> Color | None:
    return _to_color("color", value)


def _look_icon(value: Icon | str | None) -> Icon | None:
    return Icon(symbol=value) if isinstance(value, str) else value


_TEMPLATE_FIELDS = frozenset({"elapsed", "where", "step", "steps", "step_name", "error"})


def _check_template(_inst: object, _attr: attrs.Attribute[str | None], value: str | None) -> None:
    # Checked when the look is built: a bad template must not fail at the end of a job.
    if value is None:
        return
    if not isinstance(value, str):
        raise ArgumentTypeError("subtitle", "a str template", value)
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ValidationError("subtitle", f"is not a valid template: {exc}", value) from None
    for name in names:
        if name not in _TEMPLATE_FIELDS:
            allowed = ", ".join("{" + n + "}" for n in sorted(_TEMPLATE_FIELDS))
            shown = "{" + name + "}"
            raise ValidationError("subtitle", f"uses {shown}; the fields are {allowed}", value)


@attrs.frozen(kw_only=True)
class EndLook:
    """How the final state looks for one outcome (success, failure, cancelled).

    ``subtitle`` is a template with the fields ``{elapsed}``, ``{where}`` (for example
    ``at upload archive`` or ``at 40%``), ``{step}``, ``{steps}``, ``{step_name}`` and
    ``{error}`` (the exception's type and trimmed message, or ``fail()``'s message).
    """

    subtitle: str | None = attrs.field(default=None, validator=_check_template)
    color: Color | None = attrs.field(default=None, converter=_look_color)
    icon: Icon | None = attrs.field(default=None, converter=_look_icon)


DEFAULT_SUCCESS = EndLook(subtitle="Done in {elapsed}", color=Color.GREEN)
DEFAULT_FAILURE = EndLook(subtitle="Failed {where}: {error}", color=Color.RED)
DEFAULT_CANCELLED = EndLook(subtitle="Cancelled {where}", color=Color.ORANGE)
DEFAULT_ABANDONED = EndLook(subtitle="Stopped {where}", color=Color.GRAY)


def _format_elapsed(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _trim(text: str, limit: int = SUBTITLE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _describe_error(exc: BaseException | None, message: str | None, show_message: bool) -> str:
    if message is not None:
        return message
    if exc is None:
        return "error"
    if isinstance(exc, SystemExit):
        if isinstance(exc.code, str):  # sys.exit("message") exits with 1 and prints it
            return f"exit code 1: {exc.code}" if show_message else "exit code 1"
        return f"exit code {exc.code}"
    name = type(exc).__name__
    text = ""
    if show_message:
        try:
            text = str(exc)
        except Exception:  # the job's exception must propagate, whatever its __str__ does
            text = ""
    return f"{name}: {text}" if text else name


def _check_number(field: str, value: object, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ArgumentTypeError(field, "an int or float", value)
    if not value >= minimum:  # also refuses nan
        raise ValidationError(field, f"must be at least {minimum:g}, got {value!r}", value)
    return value


def _metrics_from(items: Sequence[Metric], values: Mapping[str, Any]) -> tuple[Metric, ...]:
    metrics = list(items)
    for item in metrics:
        if not isinstance(item, Metric):
            raise ArgumentTypeError("metrics", "Metric values or label=value keywords", item)
    metrics.extend(Metric(label=label, value=value) for label, value in values.items())
    return tuple(metrics)


class _State:
    """The activity's current state on the user's side; the worker snapshots it.

    Kept apart from the handle so that a dropped handle can be garbage-collected while the
    dispatcher still holds this (its finalizer ends the activity).
    """

    def __init__(
        self,
        *,
        fields: dict[str, Any],
        extras: dict[str, Any],
        step_names: list[str] | None,
        total: float | None,
        settings: Settings,
        looks: dict[Outcome, EndLook],
    ) -> None:
        # Reentrant: the worker may hold it while reading a snapshot when garbage collection
        # runs the dropped handle's finalizer, which ends the activity through it.
        self.lock = threading.RLock()
        _states.add(self)
        self.fields = fields
        self.extras = extras
        self.step_names = step_names
        self.base_subtitle: str | None = fields.get("subtitle")
        self.count: float = 0
        self.total = total
        self.counting = False
        self.settings = settings
        self.looks = looks
        self.started_at = time.monotonic()
        self.ended = False
        self.outcome: Outcome | None = None
        self.pid = os.getpid()
        self.hand_on = False
        self.current_name: str | None = None

    @property
    def kind(self) -> ActivityType:
        kind: ActivityType = self.fields["type"]
        return kind

    def content(self) -> dict[str, Any]:
        """The content-state fields as they should be shown now (call with the lock held)."""
        fields = dict(self.fields)
        kind = self.kind
        if kind is ActivityType.PROGRESS and "percentage" not in fields:
            fields["value"] = self.count
            fields["upper_limit"] = self.total
        elif self.counting:
            shown = (
                f"{self.count:,g} done"
                if self.total is None
                else f"{self.count:,g}/{self.total:,g}"
            )
            base = fields.get("subtitle")
            fields["subtitle"] = f"{base} · {shown}" if base else shown
        if kind is ActivityType.TIMER and "duration_seconds" in fields:
            # Sending duration_seconds restarts a countdown from the request's time, so every
            # request carries the seconds left: the countdown keeps its end moment.
            left = fields["duration_seconds"] - (time.monotonic() - self.started_at)
            fields["duration_seconds"] = max(1.0, round(left, 1))
        return fields

    def snapshot(self) -> Payload:
        with self.lock:
            return self.snapshot_locked()

    def snapshot_locked(self, overrides: Mapping[str, Any] | None = None) -> Payload:
        fields, extras = self.content(), dict(self.extras)
        for name, value in (overrides or {}).items():
            (extras if name in _PAYLOAD_FIELDS else fields)[name] = value
        return Payload(content_state=ContentState(**fields), **extras)

    def where(self) -> str:
        fields = self.fields
        kind = self.kind
        if kind is ActivityType.SEGMENTED_PROGRESS:
            step = fields.get("current_step") or 0
            name = self.step_name()
            if step == 0:
                return "before the first step"
            return f"at {name}" if name else f"at step {step} of {fields['number_of_steps']}"
        if kind is ActivityType.PROGRESS:
            if "percentage" in fields:
                return f"at {fields['percentage']:g}%"
            if self.total:
                return f"at {min(100.0, 100.0 * self.count / self.total):.0f}%"
        if self.current_name:
            return f"at {self.current_name}"
        return f"after {_format_elapsed(time.monotonic() - self.started_at)}"

    def step_name(self) -> str | None:
        if self.current_name is not None:  # the name given to step() wins over the plan
            return self.current_name
        step = self.fields.get("current_step") or 0
        names = self.step_names
        if names is not None and 0 < step <= len(names):
            return names[step - 1]
        subtitle = self.fields.get("subtitle")
        return subtitle if isinstance(subtitle, str) else None

    def final(
        self,
        outcome: Outcome,
        *,
        exc: BaseException | None = None,
        message: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Payload:
        """The final payload for an outcome (call with the lock held)."""
        look = self.looks[outcome]
        fields = self.content()
        kind = self.kind
        if outcome is Outcome.SUCCESS:
            if kind is ActivityType.SEGMENTED_PROGRESS:
                fields["current_step"] = fields["number_of_steps"]
            elif kind is ActivityType.PROGRESS:
                fields.pop("value", None)
                fields.pop("upper_limit", None)
                fields["percentage"] = 100
        if kind is ActivityType.TIMER:
            fields["is_running"] = False  # freeze the timer at the time it ended
            fields.pop("duration_seconds", None)
        if look.subtitle is not None:
            step = fields.get("current_step") or 0
            error = _describe_error(exc, message, self.settings.show_error_message)
            fields["subtitle"] = _trim(
                look.subtitle.format(
                    elapsed=_format_elapsed(time.monotonic() - self.started_at),
                    where=self.where(),
                    step=step,
                    steps=fields.get("number_of_steps") or 0,
                    step_name=self.step_name() or "",
                    error=error,
                )
            )
        if look.color is not None:
            fields["color"] = look.color
            if kind is ActivityType.SEGMENTED_PROGRESS:
                fields["step_color"] = look.color
        if look.icon is not None:
            fields["icon"] = look.icon
        extras = dict(self.extras)
        for name, value in (overrides or {}).items():
            (extras if name in _PAYLOAD_FIELDS else fields)[name] = value
        return Payload(content_state=ContentState(**fields), **extras)


# Every state, so that a forked child can give each one a fresh lock.
_states: weakref.WeakSet[_State] = weakref.WeakSet()


def _reset_after_fork() -> None:
    # A parent thread may have held a state's lock at the fork (in advance(), or the worker
    # reading it); the child would then block for good on the inherited handle.
    for state in list(_states):
        state.lock = threading.RLock()


os.register_at_fork(after_in_child=_reset_after_fork)

# The finalizers of started activities that have not ended, by id() of their state. No lock:
# a finalizer may run inside garbage collection on a thread that holds any lock, so only
# single dict operations (atomic) touch this.
_finalizers: dict[int, weakref.finalize[Any, Any]] = {}
_warned_no_key = False


def _abandon(state: _State, channel: Channel) -> None:
    """End an activity whose handle was dropped or is still open at exit (finalizer)."""
    _finalizers.pop(id(state), None)
    try:
        with state.lock:
            if state.ended or state.pid != os.getpid():
                return
            state.ended = True
            state.outcome = Outcome.ABANDONED
            # A pipeline step's process that exits normally hands the stream on.
            hand_on = state.hand_on
            payload = state.snapshot_locked() if hand_on else state.final(Outcome.ABANDONED)
        channel.close(payload, keep_open=hand_on)
    except Exception:  # a finalizer has no caller to tell
        logger.debug("could not end a dropped Live Activity", exc_info=True)


def _at_exit() -> None:
    # End every activity that is still open, then give their ends flush_timeout to arrive.
    pending = list(_finalizers.values())
    _finalizers.clear()
    for finalizer in pending:
        # Not finalizer(): weakref's own exit hook, which runs before this one, disables
        # finalizers; detach() still hands back what the finalizer would have called.
        info = finalizer.detach()
        if info is not None:
            _obj, func, args, _kwargs = info
            func(*args)
    left = shutdown_all()
    if left:
        logger.warning("%d Live Activity end(s) could not be delivered before exit", left)


atexit.register(_at_exit)


class LiveActivity:
    """A running Live Activity: the handle ``live_activity()`` returns.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`end` yourself. Every method only records the new state and returns at once; the
    requests are sent in the background. Calls after the activity ended raise
    :class:`ActivityEndedError`.
    """

    def __init__(
        self,
        state: _State,
        *,
        settings: Settings,
        stream_key: str | None,
        title: str,
    ) -> None:
        self._state = state
        self._settings = settings
        self._stream_key = stream_key
        self._title = title
        self._channel: Channel | None = None
        self._started = False
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._token: contextvars.Token[LiveActivity | None] | None = None

    def __repr__(self) -> str:
        status = "ended" if self._state.ended else "live" if self._started else "new"
        return f"<LiveActivity {self._title!r} {status} id={self.activity_id!r}>"

    # -- read-only views ---------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self._title

    @property
    def activity_id(self) -> str | None:
        """The server's id, once the start was delivered (``None`` before, or untracked)."""
        return None if self._channel is None else self._channel.activity_id

    @property
    def stream_key(self) -> str | None:
        return self._stream_key

    @property
    def operation(self) -> str | None:
        """The ``operation`` of the last stream answer (``started``, ``updated``, ...)."""
        return None if self._channel is None else self._channel.last_operation

    @property
    def ended(self) -> bool:
        return self._state.ended

    @property
    def outcome(self) -> Outcome | None:
        return self._state.outcome

    @property
    def errors(self) -> list[ActivitySmithTrackError]:
        """Delivery errors so far (also logged; raised at the end in strict mode)."""
        return [] if self._channel is None else list(self._channel.errors)

    @property
    def state(self) -> ContentState:
        """The content state as it would be sent now."""
        return self._state.snapshot().content_state

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LiveActivity:
        """Start the activity (``with`` does this for you); returns the handle."""
        if self._started:
            raise UsageError(f"Live Activity {self._title!r} was already started")
        payload = self._state.snapshot()
        # Refuse an incomplete start here, at the caller, before anything is queued.
        payload.body(Operation.STREAM_PUT if self._stream_key else Operation.START)
        self._started = True
        self._state.started_at = time.monotonic()
        channel = self._open_channel()
        if channel is not None:
            self._channel = channel
            finalizer = weakref.finalize(self, _abandon, self._state, channel)
            finalizer.atexit = False  # _at_exit runs it, before the flush
            _finalizers[id(self._state)] = finalizer
            self._finalizer = finalizer
        return self

    def _open_channel(self) -> Channel | None:
        settings = self._settings
        if settings.disabled:
            return None
        if settings.effective_api_key is None:
            if settings.strict:
                raise ConfigurationError(
                    "no ActivitySmith API key: pass api_key=..., set ACTIVITYSMITH_API_KEY, or "
                    "point ACTIVITYSMITH_BASE_URL at a local emulator"
                )
            global _warned_no_key
            if not _warned_no_key:
                _warned_no_key = True
                logger.warning(
                    "ACTIVITYSMITH_API_KEY is not set: Live Activities are not sent. Set it, "
                    "or ACTIVITYSMITH_BASE_URL to a local emulator, to see them."
                )
            return None
        return get_dispatcher(settings).open(
            self._state, label=self._title, stream_key=self._stream_key, settings=settings
        )

    def _finish(
        self,
        outcome: Outcome,
        *,
        exc: BaseException | None = None,
        message: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        explicit: bool,
        force_hand_on: bool = False,
    ) -> bool:
        state = self._state
        with state.lock:
            if state.ended:
                if explicit:
                    raise ActivityEndedError(
                        f"Live Activity {self._title!r} already ended ({state.outcome.value})"
                        if state.outcome
                        else f"Live Activity {self._title!r} already ended"
                    )
                return False
            hand_on = force_hand_on or (state.hand_on and outcome is Outcome.SUCCESS)
            try:
                if hand_on:
                    # A pipeline step that is not the last hands the stream on, as it is
                    # (with the fields end() was given), without the success look.
                    payload = state.snapshot_locked(overrides)
                else:
                    payload = state.final(outcome, exc=exc, message=message, overrides=overrides)
                payload.body(self._end_operation(hand_on))
            except Exception:
                if explicit:
                    raise  # end(**fields) with a bad field: refused at the call, not ended
                # Leaving a block must never raise: end with the last state that was valid.
                logger.warning(
                    "Live Activity %r: the final state is not valid; ending with the last one",
                    self._title,
                    exc_info=True,
                )
                payload = state.snapshot_locked()
            state.ended = True
            # A forced hand-on ends this handle, not the activity: there is no outcome yet.
            state.outcome = None if force_hand_on else outcome
        if self._finalizer is not None:
            self._finalizer.detach()
            _finalizers.pop(id(state), None)
        channel = self._channel
        if channel is not None and state.pid == os.getpid():
            channel.close(payload, keep_open=hand_on)
        return True

    def _end_operation(self, hand_on: bool) -> Operation:
        if self._stream_key is None:
            return Operation.END
        return Operation.STREAM_PUT if hand_on else Operation.STREAM_DELETE

    def _update_operation(self) -> Operation:
        return Operation.UPDATE if self._stream_key is None else Operation.STREAM_PUT

    def end(self, **fields: Any) -> None:
        """End the activity now, in the success look; ``fields`` override the final state."""
        self._require_started()
        self._validate_fields(fields)
        self._finish(Outcome.SUCCESS, overrides=fields, explicit=True)

    def hand_on(self, **fields: Any) -> None:
        """Hand the stream on without ending the activity (stream mode only).

        Sends the current state, with ``fields`` applied, as a PUT and ends this handle: the
        next process or attempt that opens the same ``stream_key`` continues the activity
        (a retried task: ``la.hand_on(subtitle="Retrying 2/3: ConnectionError")``). Leaving
        the block afterwards sends nothing more.
        """
        self._require_started()
        if self._stream_key is None:
            raise UsageError(
                f"hand_on() needs stream mode: Live Activity {self._title!r} has no "
                "stream_key=, so no other process could continue it"
            )
        self._validate_fields(fields)
        self._finish(Outcome.SUCCESS, overrides=fields, explicit=True, force_hand_on=True)

    def fail(self, message: str | None = None, **fields: Any) -> None:
        """End the activity now, in the failure look; ``message`` replaces the error text."""
        self._require_started()
        if message is not None and not isinstance(message, str):
            raise ArgumentTypeError("message", "a str", message)
        self._validate_fields(fields)
        self._finish(Outcome.FAILURE, message=message, overrides=fields, explicit=True)

    def cancel(self, message: str | None = None, **fields: Any) -> None:
        """End the activity now, in the cancelled look (``{error}`` shows ``message``)."""
        self._require_started()
        if message is not None and not isinstance(message, str):
            raise ArgumentTypeError("message", "a str", message)
        self._validate_fields(fields)
        self._finish(Outcome.CANCELLED, message=message, overrides=fields, explicit=True)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every change recorded so far (and the end, once ended) reached the server.

        Returns False if ``timeout`` (default ``flush_timeout``) passed first, or when the
        activity is not tracked. Useful in tests and before handing off to another process.
        """
        channel = self._channel
        if channel is None or self._state.pid != os.getpid():
            return False
        return channel.flush(self._settings.flush_timeout if timeout is None else timeout)

    def _after_end(self) -> None:
        """Wait for delivery (bounded) and, in strict mode, raise what went wrong."""
        channel = self._channel
        if channel is None or self._state.pid != os.getpid():
            return
        self._report(channel, channel.flush(self._settings.flush_timeout))

    async def _after_end_async(self) -> None:
        """:meth:`_after_end` for ``async with``: polls instead of holding an executor thread
        (a hung server must not starve the application's own ``to_thread`` calls)."""
        channel = self._channel
        if channel is None or self._state.pid != os.getpid():
            return
        deadline = time.monotonic() + self._settings.flush_timeout
        pause = 0.002
        while not channel.flush(0):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, 0.05)
        self._report(channel, channel.flush(0))

    def _report(self, channel: Channel, delivered: bool) -> None:
        if not delivered:
            logger.warning(
                "Live Activity %r: the end was not confirmed within flush_timeout (%gs); "
                "it is still being sent in the background",
                self._title,
                self._settings.flush_timeout,
            )
        if self._settings.strict:
            if channel.errors:
                raise channel.errors[0]
            if not delivered:
                raise TransportError(
                    f"the end of Live Activity {self._title!r} was not delivered within "
                    f"flush_timeout ({self._settings.flush_timeout:g}s)"
                )

    @staticmethod
    def _outcome_for(exc: BaseException | None) -> Outcome:
        if exc is None:
            return Outcome.SUCCESS
        if isinstance(exc, SystemExit):
            return Outcome.SUCCESS if exc.code in (None, 0) else Outcome.FAILURE
        if isinstance(exc, KeyboardInterrupt | GeneratorExit | asyncio.CancelledError):
            return Outcome.CANCELLED
        return Outcome.FAILURE

    def __enter__(self) -> LiveActivity:
        self.start()
        self._token = _current.set(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._reset_current()
        self._finish_from(exc)

    async def __aenter__(self) -> LiveActivity:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._reset_current()
        await self._afinish_from(exc)

    def _finish_from(self, exc: BaseException | None) -> None:
        """End as the block's outcome says and wait for delivery; never hides ``exc``."""
        self._finish(self._outcome_for(exc), exc=exc, explicit=False)
        if exc is None:
            self._after_end()
            return
        # The user's exception propagates unchanged; delivery problems are only logged.
        try:
            self._after_end()
        except ActivitySmithTrackError:
            logger.debug("delivery error hidden by the job's own exception", exc_info=True)

    async def _afinish_from(self, exc: BaseException | None) -> None:
        # Same as _finish_from, waiting for delivery without blocking the event loop.
        self._finish(self._outcome_for(exc), exc=exc, explicit=False)
        if exc is None:
            await self._after_end_async()
            return
        try:
            await self._after_end_async()
        except ActivitySmithTrackError:
            logger.debug("delivery error hidden by the job's own exception", exc_info=True)

    def _reset_current(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than it entered (rare, harmless)
                _current.set(None)

    # -- updates -----------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise UsageError(
                f"Live Activity {self._title!r} is not started: use it in a with block or "
                "call start() first"
            )

    def _require_open(self) -> None:
        # Called with the state lock held.
        if self._state.ended:
            raise ActivityEndedError(
                f"Live Activity {self._title!r} already ended; it cannot be updated"
            )

    def _touch(self) -> None:
        channel = self._channel
        if channel is not None and not channel.dirty:
            channel.touch()

    def _step_counts(self) -> tuple[int, int] | None:
        """``(current_step, number_of_steps)``, or None without steps; cheap, for hot paths."""
        state = self._state
        with state.lock:
            if state.kind is not ActivityType.SEGMENTED_PROGRESS:
                return None
            fields = state.fields
            return fields.get("current_step") or 0, fields["number_of_steps"]

    def step(self, name: str | None = None) -> None:
        """Finish the current step and begin the next; ``name`` becomes the subtitle.

        Stepping past the last step grows ``number_of_steps`` (a workflow may have more
        steps than planned); on activities without steps it only changes the subtitle.
        """
        if name is not None and not isinstance(name, str):
            raise ArgumentTypeError("name", "a str", name)
        state = self._state
        with state.lock:
            self._require_open()
            fields = state.fields
            if state.kind is not ActivityType.PROGRESS:
                # Items counted in the subtitle belong to the step that just finished; a
                # progress bar keeps its count.
                state.counting = False
                state.count = 0
            state.current_name = name
            if state.kind is ActivityType.SEGMENTED_PROGRESS:
                step = (fields.get("current_step") or 0) + 1
                if step > fields["number_of_steps"]:
                    logger.debug("%r: step %d grows number_of_steps", self._title, step)
                    fields["number_of_steps"] = step
                fields["current_step"] = step
                if name is None and state.step_names and step <= len(state.step_names):
                    name = state.step_names[step - 1]
            subtitle = name if name is not None else state.base_subtitle
            if subtitle is None:
                fields.pop("subtitle", None)
            else:
                fields["subtitle"] = subtitle
        self._touch()

    def set_steps(self, steps: int) -> None:
        """Change the number of steps (the workflow grew or shrank)."""
        if isinstance(steps, bool) or not isinstance(steps, int):
            raise ArgumentTypeError("steps", "an int", steps)
        if steps < 1:
            raise ValidationError("steps", f"must be at least 1, got {steps}", steps)
        state = self._state
        with state.lock:
            self._require_open()
            if state.kind is not ActivityType.SEGMENTED_PROGRESS:
                raise UsageError("set_steps() needs an activity with steps (steps=...)")
            current = state.fields.get("current_step") or 0
            if steps < current:
                raise ValidationError(
                    "steps", f"({steps}) must not be below the steps already begun ({current})"
                )
            state.fields["number_of_steps"] = steps
        self._touch()

    def advance(self, n: float = 1) -> None:
        """Count ``n`` more items done (progress bar, or a count in the subtitle)."""
        if n.__class__ is not int or n < 0:
            _check_number("n", n)
        state = self._state
        # The hot path: acquire()/release() costs less than a with-statement here.
        lock = state.lock
        lock.acquire()
        try:
            if state.ended:
                self._require_open()
            state.count += n
            state.counting = True
        finally:
            lock.release()
        channel = self._channel
        if channel is not None and not channel.dirty:
            channel.touch()

    def track(self, iterable: Iterable[T], total: float | None = None) -> Iterator[T]:
        """Yield the items of ``iterable``, counting each one done as the next is asked for.

        ``total`` defaults to ``len(iterable)`` when it has one.
        """
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self._begin_tracking(total)
        return self._tracking(iterable)

    def _begin_tracking(self, total: float | None) -> None:
        if total is not None:
            total = _check_number("total", total, minimum=0)
        state = self._state
        with state.lock:
            self._require_open()
            state.count = 0
            state.counting = True
            if state.kind is not ActivityType.PROGRESS:
                state.total = total
            else:
                if total is not None:
                    state.total = total
                if state.total is not None:
                    state.fields.pop("percentage", None)  # counting items drives the bar
        self._touch()

    def _tracking(self, iterable: Iterable[T]) -> Iterator[T]:
        state = self._state
        lock = state.lock
        for item in iterable:
            yield item
            lock.acquire()
            state.count += 1
            lock.release()
            channel = self._channel
            if channel is not None and not channel.dirty:
                channel.touch()

    async def atrack(
        self, iterable: AsyncIterable[T], total: float | None = None
    ) -> AsyncIterator[T]:
        """Like :meth:`track`, for an async iterable."""
        self._begin_tracking(total)
        async for item in iterable:
            yield item
            self.advance()

    def progress(self, value: float, upper_limit: float | None = None) -> None:
        """Set progress to ``value`` (of ``upper_limit``, or of the ``total`` given at start)."""
        _check_number("value", value)
        if upper_limit is not None:
            _check_number("upper_limit", upper_limit)
            if upper_limit <= 0:
                raise ValidationError("upper_limit", "must be greater than 0", upper_limit)
        state = self._state
        with state.lock:
            self._require_open()
            if state.kind is not ActivityType.PROGRESS:
                raise UsageError("progress() needs a progress activity (total=...)")
            if upper_limit is not None:
                state.total = upper_limit
            elif state.total is None:
                raise UsageError("progress() needs upper_limit= or total= given at start")
            state.fields.pop("percentage", None)
            state.count = value
        self._touch()

    def percentage(self, percent: float) -> None:
        """Set progress to ``percent`` (0 to 100)."""
        _check_number("percentage", percent)
        if percent > 100:
            raise ValidationError("percentage", f"must be between 0 and 100, got {percent!r}")
        state = self._state
        with state.lock:
            self._require_open()
            if state.kind is not ActivityType.PROGRESS:
                raise UsageError("percentage() needs a progress activity (total=...)")
            state.fields["percentage"] = percent
        self._touch()

    def metrics(self, *items: Metric, **values: Any) -> None:
        """Replace the metrics: ``la.metrics(rows=1200, errors=3)`` or ``Metric`` values."""
        metrics = _metrics_from(items, values)
        self.update(metrics=metrics)

    def update(self, **fields: Any) -> None:
        """Set any content-state field (``subtitle``, ``color``, ``message``...) or
        ``action``, ``secondary_action``, ``tags``, ``metadata``.

        The new state is validated first: a bad value raises here and changes nothing.
        """
        self._validate_fields(fields)
        state = self._state
        with state.lock:
            self._require_open()
            content = dict(state.fields)
            extras = dict(state.extras)
            for name, value in fields.items():
                (extras if name in _PAYLOAD_FIELDS else content)[name] = value
            content = {k: v for k, v in content.items() if v is not None}
            extras = {k: v for k, v in extras.items() if v is not None}
            # Build the value once to validate it, before anything changes.
            saved = state.fields, state.extras
            state.fields, state.extras = content, extras
            try:
                payload = Payload(content_state=ContentState(**state.content()), **extras)
                # Also by the rules of the requests that will carry it, so the end that
                # follows cannot be refused for it later, in the background.
                payload.body(self._update_operation())
                payload.body(self._end_operation(hand_on=False))
            except Exception:
                state.fields, state.extras = saved
                raise
            if "subtitle" in fields:
                state.base_subtitle = fields["subtitle"]
        self._touch()

    def _validate_fields(self, fields: Mapping[str, Any]) -> None:
        unknown = set(fields) - _CONTENT_FIELDS - _PAYLOAD_FIELDS
        if unknown:
            raise ValidationError(
                ", ".join(sorted(unknown)), "is not a content-state field the API knows"
            )
        if "channels" in fields:
            raise ValidationError("channels", "can only be set when the activity starts")


def _coerce_icon(icon: Icon | str | None) -> Icon | None:
    return Icon(symbol=icon) if isinstance(icon, str) else icon


def _coerce_badge(badge: Badge | str | None) -> Badge | None:
    return Badge(title=badge) if isinstance(badge, str) else badge


def live_activity(
    title: str,
    *,
    steps: int | Sequence[str] | None = None,
    total: float | None = None,
    metrics: Mapping[str, Any] | Sequence[Metric] | None = None,
    type: ActivityType | str | None = None,
    subtitle: str | None = None,
    color: Color | str | None = None,
    step_color: Color | str | None = None,
    icon: Icon | str | None = None,
    badge: Badge | str | None = None,
    action: Action | None = None,
    secondary_action: Action | None = None,
    channels: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, str | int | float | bool] | None = None,
    auto_dismiss_minutes: int | None = None,
    auto_dismiss_seconds: int | None = None,
    stream_key: str | None = None,
    step: int | str | None = None,
    on_success: EndLook | None = None,
    on_failure: EndLook | None = None,
    on_cancel: EndLook | None = None,
    show_error_message: bool | None = None,
    strict: bool | None = None,
    flush_timeout: float | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    preview: bool | None = None,
    settings: Settings | None = None,
    **fields: Any,
) -> LiveActivity:
    """Create a Live Activity for a block of work; ``with`` starts and ends it.

    The type follows from what you give: ``steps`` (a count or a list of step names) gives
    segmented progress, ``total`` a progress bar, ``metrics`` metric tiles, and none of them
    a timer counting up while the block runs. ``type=`` overrides the choice; any other
    content-state field (``message``, ``value``, ``duration_seconds``...) can be passed too.

    With ``stream_key`` the activity uses the stream endpoints (idempotent PUT, then DELETE),
    so a restarted process continues the same activity. ``step`` (a number or name, with
    ``stream_key`` and ``steps``) says that this process runs one step of a pipeline spread
    over processes: it begins at that step, and on success hands the stream on to the next
    process instead of ending it; the last step ends it, and a failing step ends it as failed.

    Example::

        with live_activity("Nightly backup", steps=["snapshot", "upload", "verify"]) as la:
            la.step()    # begins "snapshot"
            ...
    """
    if not isinstance(title, str):
        raise ArgumentTypeError("title", "a str", title)
    if not title.strip():
        raise ValidationError("title", "must not be empty")
    step_names: list[str] | None = None
    number_of_steps: int | None = None
    if steps is not None:
        if isinstance(steps, bool):
            raise ArgumentTypeError("steps", "an int or a list of step names", steps)
        if isinstance(steps, int):
            number_of_steps = steps
        elif isinstance(steps, str) or not isinstance(steps, Sequence):
            raise ArgumentTypeError("steps", "an int or a list of step names", steps)
        else:
            step_names = list(steps)
            for i, name in enumerate(step_names):
                if not isinstance(name, str):
                    raise ArgumentTypeError(f"steps[{i}]", "a str", name)
            number_of_steps = len(step_names)
        if number_of_steps < 1:
            raise ValidationError("steps", f"must be at least 1, got {number_of_steps}", steps)
    if total is not None:
        total = _check_number("total", total)
        if total <= 0:
            raise ValidationError("total", f"must be greater than 0, got {total!r}", total)
    if stream_key is not None:
        stream_key = validate_stream_key(stream_key)
    current_step = _pipeline_step(step, stream_key, number_of_steps, step_names)

    if type is None:
        if number_of_steps is not None:
            kind = ActivityType.SEGMENTED_PROGRESS
        elif total is not None:
            kind = ActivityType.PROGRESS
        elif metrics is not None:
            kind = ActivityType.METRICS
        else:
            kind = ActivityType.TIMER  # counting up, or down with duration_seconds=
    elif isinstance(type, ActivityType):
        kind = type
    elif isinstance(type, str):
        try:
            kind = ActivityType(type)
        except ValueError:
            allowed = ", ".join(t.value for t in ActivityType)
            raise ValidationError("type", f"must be one of {allowed}, got {type!r}") from None
    else:
        raise ArgumentTypeError("type", "an ActivityType or its name", type)

    unknown = set(fields) - _CONTENT_FIELDS
    if unknown:
        raise ValidationError(
            ", ".join(sorted(unknown)),
            "is not an option of live_activity() or a content-state field",
        )

    content: dict[str, Any] = {
        "title": title,
        "type": kind,
        "subtitle": subtitle,
        "color": color,
        "step_color": step_color,
        "icon": _coerce_icon(icon),
        "badge": _coerce_badge(badge),
        "auto_dismiss_minutes": auto_dismiss_minutes,
        "auto_dismiss_seconds": auto_dismiss_seconds,
    }
    if kind is ActivityType.SEGMENTED_PROGRESS:
        content["number_of_steps"] = number_of_steps or 1
        content["current_step"] = current_step
        if current_step and step_names:
            content["subtitle"] = step_names[current_step - 1]
    if kind is ActivityType.PROGRESS and total is None and "value" not in fields:
        content["percentage"] = 0  # set it later with la.percentage() or la.progress()
    if kind is ActivityType.TIMER and "duration_seconds" not in fields:
        content["counts_down"] = False  # an elapsed timer counting up from the start
    if metrics is not None:
        if isinstance(metrics, Mapping):
            content["metrics"] = _metrics_from((), metrics)
        else:
            content["metrics"] = _metrics_from(list(metrics), {})
    content.update(fields)
    content = {k: v for k, v in content.items() if v is not None}

    extras: dict[str, Any] = {
        "action": action,
        "secondary_action": secondary_action,
        "channels": channels,
        "tags": tags,
        "metadata": metadata,
    }
    extras = {k: v for k, v in extras.items() if v is not None}

    options = {
        "strict": strict,
        "flush_timeout": flush_timeout,
        "api_key": api_key,
        "base_url": base_url,
        "show_error_message": show_error_message,
        "preview": preview,
    }
    resolved = settings if settings is not None else resolve_settings(options)
    if resolved.preview:
        # Imported only when asked for: it brings the emulator's HTTP server along.
        from activitysmith_track._preview import with_preview

        resolved = with_preview(resolved)
    looks = {
        Outcome.SUCCESS: on_success or DEFAULT_SUCCESS,
        Outcome.FAILURE: on_failure or DEFAULT_FAILURE,
        Outcome.CANCELLED: on_cancel or DEFAULT_CANCELLED,
        Outcome.ABANDONED: DEFAULT_ABANDONED,
    }
    for outcome, look in looks.items():
        if not isinstance(look, EndLook):
            raise ArgumentTypeError(f"on_{outcome.value}", "an EndLook", look)
    state = _State(
        fields=content,
        extras=extras,
        step_names=step_names,
        total=total,
        settings=resolved,
        looks=looks,
    )
    # A pipeline step that is not the last hands the stream on instead of ending it.
    state.hand_on = bool(current_step) and current_step < (number_of_steps or 0)
    # Build the first state now so a bad argument fails here, at the call that made it, and
    # check it by the rules of every request of its lifecycle (tags: at most 20 on update).
    first = state.snapshot()
    operations: tuple[Operation, ...]
    if stream_key is None:
        operations = (Operation.START, Operation.UPDATE, Operation.END)
    else:
        operations = (Operation.STREAM_PUT, Operation.STREAM_DELETE)
    for operation in operations:
        first.body(operation)
    return LiveActivity(state, settings=resolved, stream_key=stream_key, title=title)


def _pipeline_step(
    step: int | str | None,
    stream_key: str | None,
    number_of_steps: int | None,
    step_names: list[str] | None,
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
            raise ValidationError("step", f"{step!r} is not one of the steps {step_names}", step)
        return step_names.index(step) + 1
    if isinstance(step, bool) or not isinstance(step, int):
        raise ArgumentTypeError("step", "a step number or name", step)
    if not 1 <= step <= number_of_steps:
        raise ValidationError("step", f"must be between 1 and {number_of_steps}, got {step}", step)
    return step


def current_activity() -> LiveActivity | None:
    """The innermost activity of the current context (thread or asyncio task), if any."""
    return _current.get()
