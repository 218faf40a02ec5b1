"""The activity handle: ``live_activity()``, :class:`LiveActivity` and ``current_activity()``.

The handle only produces values. Each call checks its arguments, derives the next state (a new
frozen :class:`~activitysmith_track._state.ActivityState` for deliberate changes, new numbers
for the per-item calls), publishes it into the activity's lane and returns; the dispatcher's
sender threads read the lane and send. A value the service would refuse is refused here, at
the call, and changes nothing. Leaving the block ends the activity exactly once and waits at
most ``flush_timeout`` seconds for the end to be delivered; it never raises anything but the
block's own exception (strict mode adds delivery errors, only when the block succeeded).
"""

from __future__ import annotations

import contextvars
import logging
import math
import sys
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import attrs

from activitysmith_track import _lifecycle
from activitysmith_track._checks import MAX_INT, MAX_TEXT, check_count, check_number, check_text
from activitysmith_track._config import Settings, resolve_settings
from activitysmith_track._dispatch import Dispatcher, Lane, get_dispatcher
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
)
from activitysmith_track._render import check, describe_error, render
from activitysmith_track._state import (
    CONTENT_FIELDS,
    ETA_COUNTDOWN,
    ETA_TEXT,
    KEEP_MARKS,
    PAYLOAD_FIELDS,
    ActivityState,
    Countdown,
    Ending,
    EndLook,
    Looks,
    Outcome,
    Position,
    eta_choice,
    metrics_from,
    plan,
)
from activitysmith_track._suggest import did_you_mean

__all__ = ["EndLook", "LiveActivity", "Outcome", "current_activity", "live_activity"]

logger = logging.getLogger("activitysmith_track")

T = TypeVar("T")

_current: contextvars.ContextVar[LiveActivity | None] = contextvars.ContextVar(
    "activitysmith_track_current", default=None
)
_get_ident = threading.get_ident
# Larger per-call counts lose their value as JSON numbers (see _checks.check_number).
_BIG = 2**53
_ONE = 1
_BIG_FLOAT = float(_BIG)
_warned_no_key = False
_STOPPED = EndLook(subtitle="Stopped by {error} {where}")


class LiveActivity:
    """A running Live Activity: the handle ``live_activity()`` returns.

    Use it as a context manager (``with`` or ``async with``), or call :meth:`start` and
    :meth:`end` yourself. Every method only records the new state and returns at once; the
    requests are sent in the background. The handle is thread-safe. Calls after the activity
    ended raise :class:`ActivityEndedError`.
    """

    __slots__ = (
        "__weakref__",
        "_attached",
        "_clock",
        "_dispatcher",
        "_ended",
        "_lane",
        "_lock",
        "_mine",
        "_names",
        "_owner",
        "_progress",
        "_settings",
        "_started",
        "_token",
    )

    def __init__(
        self,
        state: ActivityState,
        position: Position | None = None,
        *,
        settings: Settings,
        dispatcher: Dispatcher | None = None,
        eta: str | None = ETA_TEXT,
    ) -> None:
        position = position or Position()
        lane = Lane(state, position)
        if not settings.disabled:
            # The sender's side of the ETA and the run history: built by the sender when it
            # renders the start (no I/O and no import of it here, on the user's thread).
            lane.timed = True
            lane.watch_plan = (eta, settings, state, position)
        self._lane = lane
        self._lock = threading.Lock()
        self._settings = settings
        self._dispatcher = dispatcher
        self._clock = dispatcher.clock if dispatcher is not None else time.monotonic
        # The hot paths' shortcuts: the opening thread's own count cell, the step names and
        # whether counting drives a bar (the type never changes).
        self._owner = lane.tally.owner
        self._mine = lane.tally.mine
        self._names = state.step_names
        self._progress = state.kind is ActivityType.PROGRESS
        self._started = False
        self._ended = False
        self._attached = False
        self._token: contextvars.Token[LiveActivity | None] | None = None

    def __repr__(self) -> str:
        status = "ended" if self._ended else "live" if self._started else "new"
        return f"<LiveActivity {self.title!r} {status} id={self.activity_id!r}>"

    def __bool__(self) -> bool:
        return True

    # -- read-only views ---------------------------------------------------------------------

    @property
    def title(self) -> str:
        return self._lane.state.title

    @property
    def activity_id(self) -> str | None:
        """The server's id, once the start was delivered (``None`` before, or untracked)."""
        return self._lane.activity_id

    @property
    def stream_key(self) -> str | None:
        return self._lane.state.target.stream_key

    @property
    def operation(self) -> str | None:
        """The ``operation`` of the last stream answer (``started``, ``updated``, ...)."""
        return self._lane.last_operation

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def outcome(self) -> Outcome | None:
        ending = self._lane.state.ending
        return None if ending is None else ending.outcome

    @property
    def errors(self) -> list[ActivitySmithTrackError]:
        """Delivery errors so far (also logged; raised at the end in strict mode)."""
        return list(self._lane.errors)

    @property
    def state(self) -> ContentState:
        """The content state as it would be sent now."""
        state, position = self._lane.read()
        return render(state, position, self._clock()).content_state

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LiveActivity:
        """Start the activity (``with`` does this for you); returns the handle."""
        with self._lock:
            if self._started:
                raise UsageError(f"Live Activity {self.title!r} was already started")
            self._started = True
            lane = self._lane
            now = self._clock()
            state = lane.state
            countdown = state.countdown.started(now) if state.countdown is not None else None
            self._publish(attrs.evolve(state, started_at=now, countdown=countdown))
        dispatcher = self._open_dispatcher()
        if dispatcher is not None:
            dispatcher.open(lane, self._settings)
            self._attached = True
            _lifecycle.opened(self, lane, signals=self._settings.signals)
        return self

    def _open_dispatcher(self) -> Dispatcher | None:
        settings = self._settings
        if settings.disabled:
            return None
        if self._dispatcher is not None:
            return self._dispatcher
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
        self._dispatcher = get_dispatcher(settings)
        return self._dispatcher

    def _publish(self, state: ActivityState) -> None:
        """Hand the sender a new state (called with the handle's lock held)."""
        lane = self._lane
        lane.seq += 1
        lane.state = state
        lane.seq += 1

    def _finish(
        self,
        outcome: Outcome,
        *,
        exc: BaseException | None = None,
        message: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        explicit: bool,
        hand_on: bool = False,
        look: EndLook | None = None,
    ) -> bool:
        lane = self._lane
        with self._lock:
            if self._ended:
                if explicit:
                    raise ActivityEndedError(self._ended_message())
                return False
            state = lane.state
            target = state.target
            if hand_on and target.stream_key is None:
                raise UsageError("hand_on() needs a stream activity (stream_key=...)")
            handing_on = hand_on or (target.hand_on and outcome is Outcome.SUCCESS)
            error = None
            if outcome in (Outcome.FAILURE, Outcome.CANCELLED) or message is not None:
                error = describe_error(exc, message, state.looks.show_error_message)
            ending = Ending(
                outcome=outcome,
                at=self._clock(),
                error=error,
                overrides=dict(overrides or {}),
                hand_on=handing_on,
                look=look,
            )
            ended = attrs.evolve(state, ending=ending)
            position = lane.read()[1]
            try:
                check(ended, position)
            except ActivitySmithTrackError:
                if explicit:
                    raise  # end(**fields) with a bad field: refused at the call, not ended
                # Leaving a block must never raise: end without the fields that were refused.
                logger.warning(
                    "Live Activity %r: the final state is not valid; ending without its fields",
                    self.title,
                    exc_info=True,
                )
                ended = attrs.evolve(state, ending=attrs.evolve(ending, overrides={}))
            self._publish(ended)
            self._ended = True
        if self._attached:
            _lifecycle.closed(lane)
            assert self._dispatcher is not None
            self._dispatcher.end(lane)
        return True

    def _ended_message(self) -> str:
        outcome = self.outcome
        shown = f" ({outcome.value})" if outcome is not None else ""
        return f"Live Activity {self.title!r} already ended{shown}"

    def end(self, **fields: Any) -> None:
        """End the activity now, in the success look; ``fields`` override the final state."""
        self._require_started()
        self._check_field_names(fields)
        self._finish(Outcome.SUCCESS, overrides=fields, explicit=True)

    def fail(self, message: str | None = None, **fields: Any) -> None:
        """End the activity now, in the failure look; ``message`` replaces the error text."""
        self._require_started()
        if message is not None:
            check_text("message", message, empty=True)
        self._check_field_names(fields)
        self._finish(Outcome.FAILURE, message=message, overrides=fields, explicit=True)

    def cancel(self, message: str | None = None, **fields: Any) -> None:
        """End the activity now, in the cancelled look (``{error}`` shows ``message``)."""
        self._require_started()
        if message is not None:
            check_text("message", message, empty=True)
        self._check_field_names(fields)
        self._finish(Outcome.CANCELLED, message=message, overrides=fields, explicit=True)

    def hand_on(self, **fields: Any) -> None:
        """Stream mode: send the state as it is (with ``fields``) and leave the activity live.

        The next process that opens the same ``stream_key`` continues it; this handle is done
        (leaving its block sends nothing more). For a pipeline step that will be retried, for
        example: ``la.hand_on(subtitle="Retrying 2/3: ConnectionError")``.
        """
        self._require_started()
        self._check_field_names(fields)
        self._finish(Outcome.HANDED_ON, overrides=fields, explicit=True, hand_on=True)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every change recorded so far (and the end, once ended) reached the server.

        Returns False if ``timeout`` (default ``flush_timeout``) passed first, or when the
        activity is not tracked. Useful in tests and before handing off to another process.
        """
        if timeout is not None:
            timeout = check_number("timeout", timeout, minimum=0)
        dispatcher = self._dispatcher
        if not self._attached or dispatcher is None:
            return False
        wait = self._settings.flush_timeout if timeout is None else timeout
        return dispatcher.flush_lane(self._lane, wait, end_deadline=self._ended)

    def _after_end(self) -> None:
        """Wait for delivery (bounded) and, in strict mode, raise what went wrong."""
        dispatcher = self._dispatcher
        if not self._attached or dispatcher is None:
            return
        delivered = dispatcher.flush_lane(
            self._lane, self._settings.flush_timeout, end_deadline=True
        )
        self._report(delivered)

    async def _after_end_async(self) -> None:
        """:meth:`_after_end` for ``async with``: polls instead of holding an executor thread
        (a hung server must not starve the application's own ``to_thread`` calls)."""
        import asyncio

        dispatcher = self._dispatcher
        if not self._attached or dispatcher is None:
            return
        lane = self._lane
        deadline = self._clock() + self._settings.flush_timeout
        dispatcher.waiting(lane, deadline)
        try:
            pause = 0.002
            while not dispatcher.settled(lane):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                await asyncio.sleep(min(pause, remaining))
                pause = min(pause * 2, 0.05)
        finally:
            dispatcher.done_waiting(lane)
        self._report(dispatcher.settled(lane))

    def _report(self, delivered: bool) -> None:
        settings = self._settings
        lane = self._lane
        if not delivered:
            logger.warning(
                "Live Activity %r: the end was not confirmed within flush_timeout (%gs); "
                "it is still being sent in the background",
                self.title,
                settings.flush_timeout,
            )
        if not settings.strict:
            return
        if delivered:
            if lane.errors:  # a request given up earlier (a change refused, say)
                raise lane.errors[0]
            return
        timeout = TransportError(
            f"the end of Live Activity {self.title!r} was not delivered within "
            f"flush_timeout ({settings.flush_timeout:g}s)"
        )
        root = lane.errors[0] if lane.errors else lane.last_error
        if root is None:
            raise timeout
        # The root cause ("could not connect") is what is raised; the timeout is its context.
        root.__context__ = timeout
        raise root

    def _outcome_for(self, exc: BaseException | None) -> tuple[Outcome, EndLook | None]:
        if exc is None:
            return Outcome.SUCCESS, None
        stopping = isinstance(exc, SystemExit | KeyboardInterrupt)
        signal_name = _lifecycle.recent_signal() if stopping else None
        if signal_name is not None:
            return Outcome.CANCELLED, self._stopped_look()
        if isinstance(exc, SystemExit):
            return (Outcome.SUCCESS if exc.code in (None, 0) else Outcome.FAILURE), None
        asyncio = sys.modules.get("asyncio")  # a CancelledError exists only once it is imported
        cancelled = asyncio is not None and isinstance(exc, asyncio.CancelledError)
        if isinstance(exc, KeyboardInterrupt | GeneratorExit) or cancelled:
            return Outcome.CANCELLED, None
        return Outcome.FAILURE, None

    def _stopped_look(self) -> EndLook:
        cancelled = self._lane.state.looks.cancelled
        return attrs.evolve(_STOPPED, color=cancelled.color, icon=cancelled.icon)

    def _finish_from(self, exc: BaseException | None) -> None:
        """End as the block's outcome says and wait for delivery; never hides ``exc``."""
        try:
            outcome, look = self._outcome_for(exc)
            message = _lifecycle.recent_signal() if look is not None else None
            self._finish(outcome, exc=exc, message=message, explicit=False, look=look)
        except Exception:  # leaving a block never raises over the job's own outcome
            logger.warning("Live Activity %r: could not end it", self.title, exc_info=True)
            return
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
        try:
            outcome, look = self._outcome_for(exc)
            message = _lifecycle.recent_signal() if look is not None else None
            self._finish(outcome, exc=exc, message=message, explicit=False, look=look)
        except Exception:
            logger.warning("Live Activity %r: could not end it", self.title, exc_info=True)
            return
        if exc is None:
            await self._after_end_async()
            return
        try:
            await self._after_end_async()
        except ActivitySmithTrackError:
            logger.debug("delivery error hidden by the job's own exception", exc_info=True)

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

    def _reset_current(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _current.reset(token)
            except ValueError:  # exited in another context than it entered (rare, harmless)
                _current.set(None)

    # -- checks --------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if not self._started:
            raise UsageError(
                f"Live Activity {self.title!r} is not started: use it in a with block or "
                "call start() first"
            )

    def _refuse_ended(self) -> None:
        raise ActivityEndedError(
            f"Live Activity {self.title!r} already ended; it cannot be updated"
        )

    def _check_field_names(self, fields: Mapping[str, Any]) -> None:
        for name in fields:
            if name not in CONTENT_FIELDS and name not in PAYLOAD_FIELDS:
                raise ValidationError(
                    name,
                    "is not a content-state field the API knows"
                    + did_you_mean(name, CONTENT_FIELDS | PAYLOAD_FIELDS),
                )
        if "channels" in fields:
            raise ValidationError("channels", "can only be set when the activity starts")
        if "type" in fields and fields["type"] is not None:
            raise ValidationError("type", "cannot change once the activity exists")

    # -- the per-item calls (the hot paths: a few attribute operations each) --------------------

    def advance(self, n: float = 1) -> None:
        """Count ``n`` more items done (progress bar, or a count in the subtitle)."""
        # advance() with no argument passes the cached small int 1: one identity test.
        if n is not _ONE and (n.__class__ is not int or n < 0 or n > _BIG):
            n = self._checked_count(n)
        lane = self._lane
        if self._ended:
            self._refuse_ended()
        if lane.base is None:
            self._begin_counting()
        # Each thread adds to its own cell of the tally, so no lock is needed: this thread's
        # cell is at hand; another thread looks its own up.
        if _get_ident() == self._owner:
            self._mine.n += n
        else:
            lane.tally.cell().n += n
        if not lane.dirty:
            lane.touch()

    def _checked_count(self, n: object) -> float:
        value = check_number("n", n, minimum=0)
        if isinstance(value, float) and not math.isfinite(self._lane.tally.total() + value):
            raise ValidationError("n", f"({value!r}) would make the count too large", value)
        return value

    def _begin_counting(self) -> None:
        with self._lock:
            lane = self._lane
            if lane.base is None:
                lane.base = lane.tally.total()

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
            total = check_number("total", total, minimum=0) or None
        with self._lock:
            if self._ended:
                self._refuse_ended()
            lane = self._lane
            state = lane.state
            # A progress bar keeps the total it has when none is given; other types show the
            # count against this total, or alone.
            new_total = state.total if (self._progress and total is None) else total
            if new_total != state.total:
                self._change(attrs.evolve(state, total=new_total), clear_percent=True)
            lane.percent = None
            lane.base = lane.tally.total()
        if not lane.dirty:
            lane.touch()

    def _tracking(self, iterable: Iterable[T]) -> Iterator[T]:
        lane = self._lane
        owner = self._owner
        mine = self._mine
        for item in iterable:
            yield item
            if _get_ident() == owner:
                mine.n += 1
            else:
                lane.tally.cell().n += 1
            if not lane.dirty:
                lane.touch()

    async def atrack(
        self, iterable: AsyncIterable[T], total: float | None = None
    ) -> AsyncIterator[T]:
        """Like :meth:`track`, for an async iterable."""
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self._begin_tracking(total)
        async for item in iterable:
            yield item
            self.advance()

    def percentage(self, percent: float) -> None:
        """Set progress to ``percent`` (0 to 100)."""
        # Each type compared with its own kind of bounds: a float against int bounds costs a
        # conversion per comparison, a third of this call. NaN, bool and the rest get the
        # full check, which says what is wrong.
        if not (
            (percent.__class__ is float and 0.0 <= percent <= 100.0)
            or (percent.__class__ is int and 0 <= percent <= 100)
        ):
            percent = check_number("percentage", percent, minimum=0, maximum=100)
        if self._ended:
            self._refuse_ended()
        if not self._progress:
            raise UsageError("percentage() needs a progress activity (total=...)")
        lane = self._lane
        total = lane.state.total
        if total is None:
            lane.percent = percent
        else:  # the count drives the bar: it is now that share of the total
            tally = lane.tally
            # tally.total() inlined for the usual case, one thread counting (a call is a fifth
            # of this path).
            done = tally.mine.n if not tally.others else tally.total()
            lane.base = done - percent * total / 100
        if not lane.dirty:
            lane.touch()

    def progress(self, value: float, upper_limit: float | None = None) -> None:
        """Set progress to ``value`` (of ``upper_limit``, or of the ``total`` given at start)."""
        if not (
            (value.__class__ is float and 0.0 <= value <= _BIG_FLOAT)
            or (value.__class__ is int and 0 <= value <= _BIG)
        ):  # as in percentage()
            value = check_number("value", value, minimum=0)
        if self._ended:
            self._refuse_ended()
        if not self._progress:
            raise UsageError("progress() needs a progress activity (total=...)")
        lane = self._lane
        if upper_limit is not None:
            upper_limit = check_number("upper_limit", upper_limit, above=0)
            if upper_limit != lane.state.total:
                with self._lock:
                    self._change(attrs.evolve(lane.state, total=upper_limit), clear_percent=True)
        elif lane.state.total is None:
            raise UsageError("progress() needs upper_limit= or total= given at start")
        tally = lane.tally
        lane.base = (tally.mine.n if not tally.others else tally.total()) - value  # as above
        if not lane.dirty:
            lane.touch()

    def step(self, name: str | None = None) -> None:
        """Finish the current step and begin the next; ``name`` becomes the subtitle.

        Stepping past the last step grows ``number_of_steps`` (a workflow may have more
        steps than planned); on activities without steps it only changes the subtitle.
        """
        # A printable str of a sane length passes at once (printable rules out NUL and lone
        # surrogates); anything else gets the full check, which names the rule it breaks.
        if name is not None and not (
            name.__class__ is str and len(name) <= MAX_TEXT and name.isprintable()
        ):
            check_text("name", name)
        lane = self._lane
        lock = self._lock
        lock.acquire()
        try:
            if self._ended:
                self._refuse_ended()
            step = lane.position[0] + 1
            if name is None:
                names = self._names
                if names is not None and step <= len(names):
                    name = names[step - 1]
            if step > MAX_INT:
                raise ValidationError("step", f"must be at most {MAX_INT:,}", step)
            seq = lane.seq
            lane.seq = seq + 1  # odd: a reader waits until both fields are written
            lane.position = (step, name, None)
            if not self._progress:
                # Items counted in the subtitle belong to the step that just finished; a
                # progress bar keeps its count.
                lane.base = None
            lane.seq = seq + 2
            # When the step began, for the ETA and the history: inline, as a call would cost
            # this path a fifth. Bounded: a run of more than KEEP_MARKS steps keeps only its
            # total in the history, so the steps past the bound are not timed (and cost a
            # comparison instead of a clock reading).
            if lane.timed:
                marks = lane.marks
                if len(marks) < KEEP_MARKS:
                    marks.append((self._clock(), step, name))
        finally:
            lock.release()
        if not lane.dirty:
            lane.touch()

    def _mark(self, step: int, name: str | None) -> None:
        """Note when a step began, for the ETA and the run history (with the lock held; as
        in ``step()``, bounded)."""
        lane = self._lane
        if lane.timed and len(lane.marks) < KEEP_MARKS:
            lane.marks.append((self._clock(), step, name))

    def _note(self, note: str | None) -> None:
        """Text shown after the step's name (the command line's progress and metric markers)."""
        if note is not None:
            check_text("note", note, empty=True)
        with self._lock:
            if self._ended:
                self._refuse_ended()
            lane = self._lane
            step, name, _ = lane.position
            lane.position = (step, name, note or None)
        if not lane.dirty:
            lane.touch()

    # -- deliberate changes: a new frozen state, checked before it is published -----------------

    def _change(self, state: ActivityState, *, clear_percent: bool = False) -> None:
        """Publish ``state`` after checking it is sendable (call with the lock held)."""
        lane = self._lane
        position = lane.read()[1]
        if clear_percent:
            position = attrs.evolve(position, percent=None)
        check(state, position)
        lane.seq += 1
        lane.state = state
        if clear_percent:
            lane.percent = None
        lane.seq += 1

    def set_steps(self, steps: int) -> None:
        """Change the number of steps (the workflow grew or shrank)."""
        steps = check_count("steps", steps, minimum=1)
        with self._lock:
            if self._ended:
                self._refuse_ended()
            if self._lane.state.kind is not ActivityType.SEGMENTED_PROGRESS:
                raise UsageError("set_steps() needs an activity with steps (steps=...)")
            current = self._lane.position[0]
            if steps < current:
                raise ValidationError(
                    "steps", f"({steps}) must not be below the steps already begun ({current})"
                )
            self._change(self._with_content(number_of_steps=steps))
        if not self._lane.dirty:
            self._lane.touch()

    def _with_content(self, **content: Any) -> ActivityState:
        state = self._lane.state
        base = state.base
        return attrs.evolve(
            state,
            base=attrs.evolve(base, content_state=attrs.evolve(base.content_state, **content)),
        )

    def metrics(self, *items: Metric, **values: Any) -> None:
        """Replace the metrics: ``la.metrics(rows=1200, errors=3)`` or ``Metric`` values."""
        self.update(metrics=metrics_from(items, values))

    def update(self, **fields: Any) -> None:
        """Set any content-state field (``subtitle``, ``color``, ``message``...) or
        ``action``, ``secondary_action``, ``tags``, ``metadata``.

        The new state is checked first: a bad value raises here and changes nothing. ``None``
        removes a field (send ``tags=[]`` to clear the tags on the server).
        """
        self._check_field_names(fields)
        fields = dict(fields)
        fields.pop("type", None)
        bar: dict[str, Any] = {}
        if self._progress:
            # A progress bar's numbers go through the calls that keep count and bar together.
            bar = {k: fields.pop(k) for k in ("percentage", "value", "upper_limit") if k in fields}
            if bar.get("percentage") is not None:
                check_number("percentage", bar["percentage"], minimum=0, maximum=100)
            if bar.get("value") is not None:
                check_number("value", bar["value"], minimum=0)
            if bar.get("upper_limit") is not None:
                check_number("upper_limit", bar["upper_limit"], above=0)
            if (
                bar.get("value") is not None
                and bar.get("upper_limit") is None
                and self._lane.state.total is None
            ):
                raise UsageError("value= on a progress activity needs upper_limit= or total=")
        lane = self._lane
        with self._lock:
            if self._ended:
                self._refuse_ended()
            state = lane.state
            now = self._clock()
            step, name, note = lane.position
            content: dict[str, Any] = {}
            extras: dict[str, Any] = {}
            for key, value in fields.items():
                (extras if key in PAYLOAD_FIELDS else content)[key] = value
            if isinstance(content.get("icon"), str):
                content["icon"] = Icon(symbol=content["icon"])
            if isinstance(content.get("badge"), str):
                content["badge"] = Badge(title=content["badge"])
            countdown = state.countdown
            if state.kind is ActivityType.TIMER and countdown is not None:
                countdown = self._countdown_after(
                    countdown, content, now if self._started else None
                )
            if "current_step" in content:
                step = check_count("current_step", content.pop("current_step"))
            if "subtitle" in content:
                name = content["subtitle"]  # what to show now, until the next step
            new = attrs.evolve(
                state,
                base=attrs.evolve(
                    state.base,
                    content_state=attrs.evolve(state.base.content_state, **content),
                    **extras,
                ),
                countdown=countdown,
            )
            position = attrs.evolve(lane.read()[1], step=step, step_name=name, note=note)
            check(new, position)
            stepped = step != lane.position[0]
            lane.seq += 1
            lane.state = new
            lane.position = (step, name, note)
            lane.seq += 1
            if stepped:
                self._mark(step, name)
        if bar.get("value") is not None:
            self.progress(bar["value"], bar.get("upper_limit"))
        elif bar.get("upper_limit") is not None:
            self.progress(self._lane.read()[1].count or 0, bar["upper_limit"])
        if bar.get("percentage") is not None:
            self.percentage(bar["percentage"])
        if not lane.dirty:
            lane.touch()

    @staticmethod
    def _countdown_after(
        countdown: Countdown, content: dict[str, Any], now: float | None
    ) -> Countdown:
        """A countdown's window after ``update()``: a new duration restarts it, ``is_running``
        pauses or resumes it, keeping the time that was left."""
        if content.get("duration_seconds") is not None:
            seconds = check_number("duration_seconds", content["duration_seconds"], above=0)
            running = content.get("is_running", countdown.running) is not False
            return Countdown(left=float(seconds), since=now, running=running)
        wanted = content.get("is_running")
        if wanted is None or now is None or wanted == countdown.running:
            return countdown
        return countdown.resumed(now) if wanted else countdown.paused(now)


class _NoActivity(LiveActivity):
    """What ``current_activity()`` returns outside any activity: every call does nothing.

    It is falsy (``if la:``), typed as a :class:`LiveActivity`, and never raises, so code that
    reports progress runs unchanged where no activity is open (a plain thread, a test).
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no Live Activity>"

    def __bool__(self) -> bool:
        return False

    @property
    def title(self) -> str:
        return ""

    @property
    def state(self) -> ContentState:
        return ContentState(title="No activity")

    def start(self) -> LiveActivity:
        return self

    def end(self, **fields: Any) -> None:
        pass

    def fail(self, message: str | None = None, **fields: Any) -> None:
        pass

    def cancel(self, message: str | None = None, **fields: Any) -> None:
        pass

    def hand_on(self, **fields: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> bool:
        return False

    def advance(self, n: float = 1) -> None:
        pass

    def track(self, iterable: Iterable[T], total: float | None = None) -> Iterator[T]:
        return iter(iterable)

    async def atrack(
        self, iterable: AsyncIterable[T], total: float | None = None
    ) -> AsyncIterator[T]:
        async for item in iterable:
            yield item

    def percentage(self, percent: float) -> None:
        pass

    def progress(self, value: float, upper_limit: float | None = None) -> None:
        pass

    def step(self, name: str | None = None) -> None:
        pass

    def set_steps(self, steps: int) -> None:
        pass

    def metrics(self, *items: Metric, **values: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass

    def __enter__(self) -> LiveActivity:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass

    async def __aenter__(self) -> LiveActivity:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pass


def _no_activity() -> _NoActivity:
    state, position = plan("No activity")
    return _NoActivity(state, position, settings=Settings(disabled=True))


NO_ACTIVITY: LiveActivity = _no_activity()


def current_activity() -> LiveActivity:
    """The innermost activity of the current context (thread or asyncio task).

    Outside any activity it returns a handle that does nothing and is falsy, so
    ``current_activity().step()`` is always safe and ``if la := current_activity():`` tells.
    """
    return _current.get() or NO_ACTIVITY


# -- live_activity ---------------------------------------------------------------------------------


def _looks(
    on_success: EndLook | None,
    on_failure: EndLook | None,
    on_cancel: EndLook | None,
    show_error_message: bool,
) -> Looks:
    given = {"on_success": on_success, "on_failure": on_failure, "on_cancel": on_cancel}
    for name, look in given.items():
        if look is not None and not isinstance(look, EndLook):
            raise ArgumentTypeError(name, "an EndLook", look)
    defaults = Looks()
    return Looks(
        success=on_success or defaults.success,
        failure=on_failure or defaults.failure,
        cancelled=on_cancel or defaults.cancelled,
        show_error_message=show_error_message,
    )


# The options of live_activity() that are settings (and so also arguments of Settings).
SETTING_OPTIONS = (
    "strict",
    "flush_timeout",
    "api_key",
    "base_url",
    "show_error_message",
    "preview",
)


def prepare(
    title: str,
    *,
    env: Mapping[str, str] | None = None,
    steps: int | Sequence[str] | None = None,
    total: float | None = None,
    metrics: Mapping[str, Any] | Sequence[Metric] | None = None,
    type: ActivityType | str | None = None,
    stream_key: str | None = None,
    step: int | str | None = None,
    on_success: EndLook | None = None,
    on_failure: EndLook | None = None,
    on_cancel: EndLook | None = None,
    settings: Settings | None = None,
    dispatcher: Dispatcher | None = None,
    eta: bool | Literal["countdown"] = True,
    **options: Any,
) -> LiveActivity:
    """Everything ``live_activity()`` checks and builds (``tracked_steps`` checks the same at
    decoration, with ``env={}`` so the process's environment does not matter yet)."""
    if settings is not None and not isinstance(settings, Settings):
        raise ArgumentTypeError("settings", "a Settings", settings)
    if dispatcher is not None and not isinstance(dispatcher, Dispatcher):
        raise ArgumentTypeError("dispatcher", "a Dispatcher", dispatcher)
    mode = eta_choice(eta)
    if mode == ETA_COUNTDOWN:
        # A countdown is a timer's: the other types have no clock to count down on.
        if type is not None and str(getattr(type, "value", type)) != ActivityType.TIMER.value:
            raise ValidationError(
                "eta", "'countdown' shows a timer: leave out type= or give type='timer'", eta
            )
        type = ActivityType.TIMER
    setting_values = {name: options.pop(name, None) for name in SETTING_OPTIONS}
    extras = {name: options.pop(name, None) for name in PAYLOAD_FIELDS}
    for name in options:
        if name not in CONTENT_FIELDS:
            known = CONTENT_FIELDS | PAYLOAD_FIELDS | set(SETTING_OPTIONS) | _OPTION_NAMES
            raise ValidationError(
                name,
                "is not an option of live_activity() or a content-state field"
                + did_you_mean(name, known),
            )
    resolved = resolve_settings(setting_values, env=env, base=settings)
    if resolved.preview:
        # Imported only when asked for: it brings the emulator's HTTP server along.
        from activitysmith_track._preview import with_preview

        resolved = with_preview(resolved)
    looks = _looks(on_success, on_failure, on_cancel, resolved.show_error_message)
    state, position = plan(
        title,
        steps=steps,
        total=total,
        metrics=metrics,
        type=type,
        fields=options,
        extras=extras,
        stream_key=stream_key,
        step=step,
        looks=looks,
    )
    # Checked now, by the rules of every request it may be sent with, so that a bad argument
    # fails here, at the call that made it, and never in the background.
    check(state, position)
    return LiveActivity(state, position, settings=resolved, dispatcher=dispatcher, eta=mode)


_OPTION_NAMES = frozenset(
    {
        "steps",
        "total",
        "metrics",
        "type",
        "stream_key",
        "step",
        "on_success",
        "on_failure",
        "on_cancel",
        "settings",
        "dispatcher",
        "eta",
    }
)


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
    eta: bool | Literal["countdown"] = True,
    settings: Settings | None = None,
    dispatcher: Dispatcher | None = None,
    **fields: Any,
) -> LiveActivity:
    """Create a Live Activity for a block of work; ``with`` starts and ends it.

    The type follows from what you give: ``steps`` (a count or a list of step names) gives
    segmented progress, ``total`` a progress bar, ``metrics`` metric tiles, ``message`` an
    alert, ``value`` a value readout, and none of them a timer counting up while the block
    runs (down, with ``duration_seconds``). ``type=`` overrides the choice; any other
    content-state field can be passed too.

    With ``stream_key`` the activity uses the stream endpoints (idempotent PUT, then DELETE),
    so a restarted process continues the same activity. ``step`` (a number or name, with
    ``stream_key`` and ``steps``) says that this process runs one step of a pipeline spread
    over processes: it begins at that step, and on success hands the stream on to the next
    process instead of ending it; the last step ends it, and a failing step ends it as failed.

    ``eta`` adds the time left to the subtitle: from the rate of an activity with a total
    ("~4 min left"), and from the job's past runs ("usually 12 min · ~5 min left");
    ``eta=False`` leaves it out, ``eta="countdown"`` shows a timer counting down to the end
    the past runs expect (counting up on a first run).

    Settings given here (``strict``, ``flush_timeout``, ...) win over ``settings=``, which wins
    over ``configure()`` and the environment. ``dispatcher`` hands in the sender to use (tests
    give one with a fake clock).

    Example::

        with live_activity("Nightly backup", steps=["snapshot", "upload", "verify"]) as la:
            la.step()    # begins "snapshot"
            ...
    """
    return prepare(
        title,
        steps=steps,
        total=total,
        metrics=metrics,
        type=type,
        stream_key=stream_key,
        step=step,
        on_success=on_success,
        on_failure=on_failure,
        on_cancel=on_cancel,
        settings=settings,
        dispatcher=dispatcher,
        eta=eta,
        subtitle=subtitle,
        color=color,
        step_color=step_color,
        icon=icon,
        badge=badge,
        action=action,
        secondary_action=secondary_action,
        channels=channels,
        tags=tags,
        metadata=metadata,
        auto_dismiss_minutes=auto_dismiss_minutes,
        auto_dismiss_seconds=auto_dismiss_seconds,
        show_error_message=show_error_message,
        strict=strict,
        flush_timeout=flush_timeout,
        api_key=api_key,
        base_url=base_url,
        preview=preview,
        **fields,
    )
