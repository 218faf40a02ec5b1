"""Background delivery: one lane per activity, sender threads shared by an account.

Data flows one way. The handle (user threads) publishes into the activity's :class:`Lane` and
returns: a new frozen :class:`~activitysmith_track._state.ActivityState` for deliberate
changes, plain numbers for the per-item ones (the step, its name, the items counted, a
percentage), and a flag saying something changed. The sender threads read the lane without
any lock of the handle's (:meth:`Lane.read`), render the payload with the pure functions of
:mod:`activitysmith_track._render`, and send it.

Each lane keeps its own order: the start, then changes (latest wins: while a request is on the
wire or waits for its budget, newer states replace older unsent ones), then the end, which
always carries the final state. Lanes share one :class:`Account` per API key and base URL: a
bounded pool of connections, one request budget and one 429 pause, whatever the per-activity
options. Sender threads are spawned as work needs them; changes use at most ``connections``
of them at once, starts and ends may use a few more, so that hung requests of other
activities never hold a start or an end back.

Retries follow the table in :mod:`activitysmith_track._retry`, scheduled here rather than slept
in a thread: starts and ends are retried until their deadline (ends: while the process lives,
and at exit within one bounded flush), changes a few times and then left to the next change.
Waits a server named (Retry-After) are honoured and are not failed attempts.
"""

from __future__ import annotations

import collections
import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from activitysmith_track._config import Settings
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    AuthenticationError,
    LiveActivityLimitError,
    NotFoundError,
    RateLimitedError,
    StartOutcomeUnknownError,
    TransportError,
)
from activitysmith_track._model import Operation, Payload
from activitysmith_track._render import final, render
from activitysmith_track._retry import RetryPlan, RetryPolicy, build_retrying, is_retryable
from activitysmith_track._state import (
    ActivityState,
    Ending,
    EndLook,
    Job,
    Outcome,
    Position,
    operation,
)

__all__ = [
    "Account",
    "Dispatcher",
    "Lane",
    "Phase",
    "SlidingWindow",
    "Tally",
    "TokenBucket",
    "close_all",
    "get_dispatcher",
    "shutdown_all",
]

if TYPE_CHECKING:
    from activitysmith_track._client import Inflight, Result, Wire
    from activitysmith_track._eta import Mark
    from activitysmith_track._history import RunWatch

# The HTTP side (_client: requests, urllib3) is imported by the sender threads when they first
# send, never on the user's thread when an activity is created.

logger = logging.getLogger("activitysmith_track")

# The ``operation`` values the contract lists; others are logged once, never fatal.
_KNOWN_OPERATIONS = frozenset({"started", "updated", "rotated", "noop", "paused", "ended"})
# Starts and ends may use this many sender threads beyond ``connections``, so that changes
# hung on the wire never hold them back.
_EXTRA_FOR_LIFECYCLE = 8
# An in-flight change of an activity whose end is queued is abandoned once it has been on the
# wire this long (or a quarter of flush_timeout, if that is shorter): a healthy answer takes
# well under a second, and the end carries a newer state anyway.
_ABANDON_AFTER = 1.0


class Clock(Protocol):
    """Monotonic seconds. A test clock may also have ``watch(callback)``, called when it moves."""

    def __call__(self) -> float: ...


# -- budgets --------------------------------------------------------------------------------------


class TokenBucket:
    """``capacity`` tokens, refilled at one per ``interval`` seconds; one token per request."""

    __slots__ = ("capacity", "interval", "tokens", "updated")

    def __init__(self, capacity: int, interval: float, now: float) -> None:
        self.capacity = float(capacity)
        self.interval = interval
        self.tokens = float(capacity)
        self.updated = now

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) / self.interval)
            self.updated = now

    def ready_at(self, now: float) -> float:
        """When the next token is available (``now`` if one is)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return now
        return now + (1.0 - self.tokens) * self.interval

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1.0


class SlidingWindow:
    """At most ``limit`` requests in any ``window`` seconds: the account's request budget.

    Stricter than a token bucket with a burst: whatever window the server counts in (fixed
    minutes, a rolling minute, a bucket refilled each second), this never exceeds it.
    """

    __slots__ = ("limit", "sent", "window")

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.sent: collections.deque[float] = collections.deque()

    def ready_at(self, now: float) -> float:
        sent = self.sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        if len(sent) < self.limit:
            return now
        return sent[0] + self.window

    def take(self, now: float) -> None:
        self.sent.append(now)


# -- the lane: what the handle publishes, what the sender keeps -----------------------------------


class Cell:
    """One thread's count of items (only that thread writes it)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n: float = 0


class Tally:
    """Items counted by any number of threads without a lock: each thread adds to its own
    :class:`Cell`, and the reader sums them. The thread that opened the activity has its cell
    at hand (the handle keeps it), so its ``advance()`` costs an addition."""

    __slots__ = ("_lock", "mine", "others", "owner")

    def __init__(self) -> None:
        self.owner = threading.get_ident()
        self.mine = Cell()
        self.others: dict[int, Cell] = {}
        self._lock = threading.Lock()

    def cell(self) -> Cell:
        """The calling thread's cell."""
        ident = threading.get_ident()
        if ident == self.owner:
            return self.mine
        cell = self.others.get(ident)
        if cell is None:
            with self._lock:
                cell = self.others.setdefault(ident, Cell())
        return cell

    def private(self) -> Cell:
        """A cell of its own for a counter that never runs on two threads at once (a
        generator), whichever thread it runs on."""
        cell = Cell()
        with self._lock:
            self.others[-id(cell)] = cell  # thread idents are never negative
        return cell

    def total(self) -> float:
        others = self.others
        if not others:  # one thread counts: the usual case, and on per-item paths
            return self.mine.n
        return self.mine.n + sum(cell.n for cell in list(others.values()))


class Phase(enum.Enum):
    """Where an activity's delivery stands. The transitions, all made by the sender:

    NEW -> LIVE (start answered) | BLOCKED (refused for capacity) | LOST (start refused for good,
    or its outcome unknown); BLOCKED -> LIVE (a retry got a slot) | BLOCKED; LIVE, NEW, BLOCKED
    -> DONE (end delivered, handed on, or given up); LOST -> DONE once the end is asked for.
    """

    NEW = "new"
    LIVE = "live"
    BLOCKED = "blocked"
    LOST = "lost"
    DONE = "done"


class Lane:
    """One activity's channel from its handle to the sender, and the sender's bookkeeping.

    The handle writes ``state``, ``position``, ``base``, ``percent`` and the ``tally`` (under its
    own lock when it writes several at once, bumping ``seq`` around them) and sets ``dirty``.
    The sender reads them with :meth:`read` and never takes the handle's lock. Everything else
    belongs to the sender and is guarded by the dispatcher's lock.

    A lane that is not attached to a dispatcher (tracking off, not started) keeps ``dirty``
    True, so the handle's hot paths never call :meth:`touch` for it.
    """

    __slots__ = (
        "__weakref__",
        "abandoned_at",
        "activity_id",
        "base",
        "bucket",
        "deadline",
        "dirty",
        "dirty_since",
        "dispatcher",
        "end_delivered",
        "end_requested",
        "errors",
        "flush_timeout",
        "inflight",
        "job",
        "job_started",
        "label",
        "last_error",
        "last_operation",
        "last_sent",
        "logged",
        "marks",
        "percent",
        "phase",
        "pid",
        "plan",
        "plan_job",
        "position",
        "retry",
        "retry_at",
        "seq",
        "settings",
        "state",
        "stopped_by",
        "tally",
        "ticket",
        "timed",
        "timeout",
        "urgent",
        "waiters",
        "watch",
        "watch_plan",
    )

    def __init__(self, state: ActivityState, position: Position) -> None:
        # -- published by the handle
        self.state = state
        self.position: tuple[int, str | None, str | None] = (
            position.step,
            position.step_name,
            position.note,
        )
        self.base: float | None = None  # the tally's reading when this step's count began
        self.percent: float | None = position.percent
        self.tally = Tally()
        self.seq = 0  # odd while the handle writes several fields together
        self.dirty = True
        # When each step began (the handle appends under its lock; bounded by _history.KEEP_MARKS):
        # the ETA's time in the current step, and the run's step durations for the history.
        self.marks: list[Mark] = []
        # The ETA and run history of this activity: the handle leaves what the sender needs to
        # build its watch (the eta= mode, the settings, the opening state and position), and
        # sets ``timed`` so that steps are timed; the sender builds the watch when it first
        # renders (importing the ETA and history code there, not with the package).
        self.timed = False
        self.watch_plan: tuple[str | None, Settings, ActivityState, Position] | None = None
        self.watch: RunWatch | None = None
        # -- the sender's
        self.dispatcher: Dispatcher | None = None
        self.pid = os.getpid()
        self.label = state.title
        self.phase = Phase.NEW
        self.end_requested = False
        self.abandoned_at: float | None = None
        self.stopped_by: str | None = None
        self.dirty_since = 0.0
        self.urgent = 0  # flushes waiting on this lane: skip the debounce
        self.waiters = 0
        self.activity_id: str | None = None
        self.last_sent: Payload | None = None
        self.end_delivered = False  # the end (or hand-on) reached the server
        self.last_operation: str | None = None
        self.errors: list[ActivitySmithTrackError] = []
        self.last_error: ActivitySmithTrackError | None = None  # of any attempt, even retried
        self.logged: set[str] = set()
        self.job: Job | None = None  # the job on the wire, if any
        self.job_started = 0.0
        self.inflight: Inflight | None = None
        self.plan: RetryPlan | None = None  # the retrying of the job that failed last
        self.plan_job: Job | None = None
        self.retry_at = 0.0
        self.deadline: float | None = None  # the end's: while a block waits for it
        self.settings: Settings | None = None
        self.ticket: Any = None  # the lifecycle's note of this open activity (its ledger entry)
        self.bucket: TokenBucket | None = None
        self.flush_timeout = 0.0
        self.timeout = (5.0, 15.0)
        self.retry = RetryPolicy()

    def __repr__(self) -> str:
        return f"<Lane {self.label!r} {self.phase.value}>"

    # -- the handle's side ----------------------------------------------------------------------

    def touch(self) -> None:
        """Something changed: the sender reads the lane again when it may send."""
        dispatcher = self.dispatcher
        if dispatcher is None or self.pid != os.getpid():
            return  # not attached, or a forked child's copy of its parent's lane
        dispatcher._changed(self)

    def read(self) -> tuple[ActivityState, Position]:
        """The newest state and position, consistent with each other (never blocks a writer)."""
        while True:
            seq = self.seq
            state, (step, name, note) = self.state, self.position
            base, percent = self.base, self.percent
            total = self.tally.total()
            if seq == self.seq and not seq & 1:
                break
            time.sleep(0)  # a writer is between its two bumps: let it finish
        count = None if base is None else total - base
        return state, Position(step=step, step_name=name, note=note, count=count, percent=percent)


_STOPPED = EndLook(subtitle="Stopped by {error} {where}")


def abandoned(state: ActivityState, at: float, stopped_by: str | None = None) -> ActivityState:
    """The state of an activity whose handle was dropped, still open at exit, or stopped by a
    signal (``stopped_by``, e.g. ``"SIGTERM"``).

    A pipeline step that exits hands the stream on as it is; a signal ends the activity as
    cancelled ("Stopped by SIGTERM at upload archive"); anything else ends in the abandoned
    look.
    """
    if state.ending is not None:
        return state
    if stopped_by is not None:
        cancelled = state.looks.cancelled
        look = attrs.evolve(_STOPPED, color=cancelled.color, icon=cancelled.icon)
        ending = Ending(outcome=Outcome.CANCELLED, at=at, error=stopped_by, look=look)
    else:
        ending = Ending(outcome=Outcome.ABANDONED, at=at, hand_on=state.target.hand_on)
    return attrs.evolve(state, ending=ending)


# -- one account: connections, budget, pause -------------------------------------------------------


class Account:
    """What every activity of one API key and base URL shares: its request budget, its 429
    pause and how many requests it may have on the wire. The budget and the connections are
    the account's, not an activity's: the activity opened last sets them."""

    def __init__(self, settings: Settings, now: float) -> None:
        self.budget = SlidingWindow(settings.requests_per_minute)
        self.paused_until = 0.0  # a 429's Retry-After holds back every request
        self.connections = settings.connections

    def adopt(self, settings: Settings) -> None:
        self.budget.limit = settings.requests_per_minute
        self.connections = settings.connections

    def ready_at(self, now: float) -> float:
        return max(self.budget.ready_at(now), self.paused_until)


# Hears what was delivered, on the sender thread: (event, lane, payload, result) with events
# "starting" (before a stream's first PUT), "started", "sent" and "ended". The lifecycle's
# ledger of open activities is the default one.
Observer = Callable[[str, Lane, "Payload | None", "Result | None"], None]
_default_observer: Observer | None = None


def set_default_observer(observer: Observer | None) -> None:
    """The observer of every dispatcher that is not given one."""
    global _default_observer
    _default_observer = observer


class Dispatcher:
    """Sends the requests of every activity of one account (API key and base URL).

    The library keeps one per account and uses it unless ``live_activity(dispatcher=...)``
    hands in another: tests give one a :class:`~activitysmith_track.testing.FakeClock`, and
    :meth:`flush` waits for everything its activities recorded. ``settings`` (default: the
    environment and ``configure()``) give the account: key, base URL, request budget and
    connections; each activity keeps its own debounce, budgets, timeouts and retry policy.
    """

    # Seconds an idle sender thread with no lanes waits before it exits (the last one to go
    # closes the connections too).
    idle_timeout = 2.0

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        clock: Clock = time.monotonic,
        wire_factory: Callable[[Settings], Wire] | None = None,
        observer: Observer | None = None,
    ) -> None:
        if settings is None:
            from activitysmith_track._config import resolve_settings

            settings = resolve_settings()
        self._settings = settings
        self.clock = clock
        self._wire_factory = wire_factory or _make_wire
        self._observer = observer
        watch = getattr(clock, "watch", None)
        if callable(watch):
            watch(self.wake)
        self._setup()

    def _setup(self) -> None:
        # Also called in a forked child: fresh locks, no threads, nothing queued. Reentrant,
        # because garbage collection can run a dropped handle's finalizer (which wakes this)
        # on a thread that already holds it, and a signal handler can run in the main thread
        # while it does.
        self._cond = threading.Condition(threading.RLock())
        self._lanes: list[Lane] = []
        self._account = Account(self._settings, self.clock())
        self._threads = 0
        self._idle = 0
        self._busy = 0
        self._shutdown_at: float | None = None
        self._pid = os.getpid()
        self._wire: Wire | None = None
        self._closed = False
        self._no_threads = False

    def __repr__(self) -> str:
        return f"<Dispatcher {self._settings.base_url} lanes={len(self._lanes)}>"

    def owned_by(self, pid: int) -> bool:
        """Whether this dispatcher belongs to process ``pid`` (a forked child resets it)."""
        return self._pid == pid

    # -- called on the user's threads ----------------------------------------------------------

    def open(self, lane: Lane, settings: Settings) -> None:
        """Attach ``lane``; its start is sent as soon as a sender gets to it.

        ``settings`` give the activity's own debounce, update budget, timeouts, retry policy
        and flush timeout.
        """
        now = self.clock()
        with self._cond:
            lane.dispatcher = self
            lane.pid = os.getpid()
            lane.settings = settings
            lane.bucket = TokenBucket(settings.update_burst, settings.update_interval, now)
            lane.flush_timeout = settings.flush_timeout
            lane.timeout = (settings.connect_timeout, settings.read_timeout)
            lane.retry = settings.retry
            lane.dirty = False
            self._account.adopt(settings)
            self._lanes.append(lane)
            self._wake_locked()

    def _changed(self, lane: Lane) -> None:
        with self._cond:
            if not lane.dirty:
                lane.dirty = True
                lane.dirty_since = self.clock()
            self._wake_locked()

    def end(self, lane: Lane) -> None:
        """The handle published an ended state: deliver it (once; later calls do nothing)."""
        if lane.dispatcher is not self or lane.pid != os.getpid():
            return
        with self._cond:
            if not lane.end_requested:
                lane.end_requested = True
                self._abandon_stale_change(lane, self.clock())
            self._wake_locked()

    def abandon(
        self, lane: Lane, at: float | None = None, *, stopped_by: str | None = None
    ) -> None:
        """The handle was dropped, the process exits, or a signal stops it: end the lane from
        what it last showed (``stopped_by`` names the signal).

        Safe to call from a finalizer or a signal handler, on any thread, while any lock is held.
        """
        if lane.dispatcher is not self or lane.pid != os.getpid():
            return
        if lane.abandoned_at is None:
            lane.stopped_by = stopped_by
            lane.abandoned_at = self.clock() if at is None else at
        with self._cond:
            if not lane.end_requested:
                lane.end_requested = True
            self._wake_locked()

    def flush_lane(self, lane: Lane, timeout: float, *, end_deadline: bool = False) -> bool:
        """Wait until what ``lane`` recorded so far was sent (the end too, once asked for).

        Returns False when ``timeout`` passed first. Skips the debounce while it waits, not
        the update budget. With ``end_deadline`` the end's requests are bounded by this wait.
        """
        if lane.dispatcher is not self or lane.pid != os.getpid():
            return False
        deadline = self.clock() + timeout
        if self._needs_inline():
            self._drain_inline(deadline)
        with self._cond:
            lane.urgent += 1
            if end_deadline:
                lane.deadline = deadline
            self._wake_locked()
            try:
                while not self._settled(lane):
                    remaining = deadline - self.clock()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                lane.urgent -= 1
                if end_deadline:
                    lane.deadline = None

    def waiting(self, lane: Lane, deadline: float) -> None:
        """Someone waits for ``lane`` until ``deadline`` (polling :meth:`settled`): skip the
        debounce and bound the end's requests by it, until :meth:`done_waiting`."""
        with self._cond:
            lane.urgent += 1
            lane.deadline = deadline
            self._wake_locked()

    def done_waiting(self, lane: Lane) -> None:
        with self._cond:
            lane.urgent -= 1
            lane.deadline = None

    def settled(self, lane: Lane) -> bool:
        """Whether ``lane`` has nothing left to send (without waiting)."""
        with self._cond:
            return self._settled(lane)

    def _settled(self, lane: Lane) -> bool:
        if lane.phase is Phase.DONE:
            return True
        if lane.end_requested or lane.abandoned_at is not None:
            return lane.phase is Phase.LOST and lane.job is None
        if lane.phase in (Phase.LOST, Phase.BLOCKED):
            return lane.job is None
        return lane.phase is Phase.LIVE and not lane.dirty and lane.job is None

    def flush(self, timeout: float, *, exiting: bool = True) -> int:
        """Wait until every ended lane was delivered; return how many ends were not: still
        on their way, or given up meanwhile.

        ``exiting`` (at exit, or on a stopping signal): requests and retry waits are bounded by
        this one deadline, since nothing happens after it. Otherwise (``flush()`` while the
        process goes on) it only waits: what is still on its way when it returns goes on in
        the background with its own timeouts.
        """
        deadline = self.clock() + timeout
        with self._cond:
            if exiting:
                self._shutdown_at = deadline
            watched = [lane for lane in self._lanes if self._ending(lane)]
            self._wake_locked()
        try:
            if self._needs_inline():
                self._drain_inline(deadline)
            with self._cond:
                while True:
                    pending = [
                        lane
                        for lane in self._lanes
                        if self._ending(lane) and not self._settled(lane)
                    ]
                    remaining = deadline - self.clock()
                    if not pending or remaining <= 0:
                        lost = [
                            lane
                            for lane in watched
                            if lane.phase is Phase.DONE and not lane.end_delivered
                        ]
                        return len(pending) + len(lost)
                    self._cond.wait(remaining)
        finally:
            if exiting:
                with self._cond:
                    self._shutdown_at = None

    @staticmethod
    def _ending(lane: Lane) -> bool:
        return lane.end_requested or lane.abandoned_at is not None

    def quiet(self, timeout: float = 5.0) -> bool:
        """Wait until no request is on the wire and none is due now; False on timeout.

        For tests with a :class:`~activitysmith_track.testing.FakeClock`: what waits for
        time (debounce, budgets, retries) stays waiting until the clock moves, so once this
        returns, what was sent is exactly what was due.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            self._wake_locked()
            while True:
                _lane, job, due = self._next(self.clock())
                due_now = job is not None and due <= self.clock()
                if self._busy == 0 and not due_now:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))

    def pending_ends(self) -> list[Lane]:
        """Lanes whose end is asked for and not delivered yet."""
        with self._cond:
            return [
                lane
                for lane in self._lanes
                if (lane.end_requested or lane.abandoned_at is not None) and not self._settled(lane)
            ]

    def exit_timeout(self) -> float:
        """The longest flush_timeout among lanes whose end is still on its way."""
        return max((lane.flush_timeout for lane in self.pending_ends()), default=0.0)

    def wake(self) -> None:
        """Re-read every lane's due time (the clock moved, or a lane changed)."""
        with self._cond:
            self._wake_locked()

    def close(self) -> None:
        """Stop sending (what is still queued is dropped) and release the connections; a
        request on the wire is abandoned."""
        with self._cond:
            self._closed = True
            for lane in self._lanes:
                if lane.inflight is not None:
                    lane.inflight.abandon()
            self._cond.notify_all()
            if self._threads == 0:
                self._close_wire()

    # -- sender threads ------------------------------------------------------------------------

    def _needs_inline(self) -> bool:
        """No sender thread runs, and none could be started: the waiter sends itself."""
        with self._cond:
            if self._threads == 0 and not self._closed:
                self._wake_locked()
            return self._threads == 0 and self._no_threads

    def _wake_locked(self) -> None:
        self._cond.notify_all()
        if self._idle == 0 and self._pid == os.getpid() and not self._closed:
            limit = self._account.connections + _EXTRA_FOR_LIFECYCLE
            if self._threads < limit and (self._threads == 0 or self._work_waiting()):
                self._spawn()

    def _work_waiting(self) -> bool:
        """Whether a lane needs a thread that is not busy: a start, an end or a change no
        thread is on, or an end queued behind a change on the wire (which someone must be
        free to abandon)."""
        for lane in self._lanes:
            if lane.phase is Phase.DONE:
                continue
            ending = lane.end_requested or lane.abandoned_at is not None
            if lane.job is None:
                if ending or lane.phase is Phase.NEW or lane.dirty:
                    return True
            elif ending and lane.job is Job.CHANGE:
                return True
        return False

    def _spawn(self) -> None:
        try:
            _start_thread(self._run)
        except RuntimeError:
            # Threads cannot start during interpreter shutdown: flushes send inline instead.
            self._no_threads = True
            return
        self._threads += 1

    def _run(self) -> None:
        while True:
            with self._cond:
                lane, job = self._wait_for_job()
                if lane is None:
                    self._threads -= 1
                    if self._threads == 0 and (self._closed or not self._lanes):
                        self._close_wire()
                    self._cond.notify_all()
                    return
                assert job is not None
                # Another thread for what else is due, if none is idle.
                if self._idle == 0 and self._work_waiting():
                    limit = self._account.connections + _EXTRA_FOR_LIFECYCLE
                    if self._threads < limit:
                        self._spawn()
            self._execute(lane, job)

    def _wait_for_job(self) -> tuple[Lane | None, Job | None]:
        idle_since = self.clock()
        self._idle += 1
        try:
            while True:
                if self._closed or self._pid != os.getpid():
                    return None, None
                now = self.clock()
                lane, job, due = self._next(now)
                if lane is not None and job is not None and due <= now:
                    self._claim(lane, job, now)
                    return lane, job
                if lane is None and not self._lanes and now - idle_since >= self.idle_timeout:
                    return None, None
                self._cond.wait(max(0.0, min(due - now, self.idle_timeout)))
        finally:
            self._idle -= 1

    def _drain_inline(self, deadline: float) -> None:
        """Send what is due on the calling thread (no sender thread could be started)."""
        while self.clock() < deadline:
            with self._cond:
                now = self.clock()
                lane, job, due = self._next(now)
                if lane is None or job is None:
                    return
                if due > now:
                    if due > deadline:
                        return
                    self._cond.wait(due - now)
                    continue
                self._claim(lane, job, now)
            self._execute(lane, job)

    # -- choosing the next job -------------------------------------------------------------------

    def _next(self, now: float) -> tuple[Lane | None, Job | None, float]:
        """The job due first among all lanes, within the thread and budget limits.

        With no lane, the time returned (if finite) is when to look again.
        """
        best: tuple[Lane | None, Job | None, float] = (None, None, float("inf"))
        look_again = float("inf")
        account = self._account.ready_at(now)
        changes_allowed = self._busy < self._account.connections
        for lane in list(self._lanes):
            job, due = self._job_for(lane, now, account)
            if job is None:
                look_again = min(look_again, due)
                continue
            if job is Job.CHANGE and not changes_allowed:
                continue
            if due < best[2]:
                best = (lane, job, due)
        if best[0] is None:
            return None, None, look_again
        return best

    def _job_for(self, lane: Lane, now: float, account: float) -> tuple[Job | None, float]:
        """The lane's next job and when it is due; without a job, when to look at it again."""
        never = float("inf")
        if lane.job is not None:
            look = never
            if lane.end_requested or lane.abandoned_at is not None:
                look = self._abandon_stale_change(lane, now)
            inflight = lane.inflight
            if lane.job is not None and inflight is not None and not inflight.abandoned:
                # requests bounds each read, not the whole answer: a server that drips its
                # answer a byte at a time would hold this request (and its thread) for as
                # long as it likes. Past its budget, the request is abandoned and retried.
                budget_end = lane.job_started + lane.timeout[0] + lane.timeout[1] + 1.0
                if now >= budget_end:
                    logger.debug("%r: a request took longer than its timeouts", lane.label)
                    inflight.abandon(timed_out=True)
                else:
                    look = min(look, budget_end)
            return None, look
        phase = lane.phase
        if phase is Phase.DONE:
            return None, never
        ending = lane.end_requested or lane.abandoned_at is not None
        if phase is Phase.LOST:
            if ending:
                self._finish(lane)
            return None, never
        if lane.plan is not None and lane.plan_job is Job.CHANGE and ending:
            lane.plan = None  # a failed change is superseded by the end
        wait = lane.retry_at if lane.plan is not None else 0.0
        if phase is Phase.NEW:
            return Job.START, max(account, wait)
        if phase is Phase.BLOCKED:
            if ending:
                # The end is still attempted: the start (with the final state) first.
                return Job.START, max(account, wait)
            return Job.START, max(account, lane.retry_at)
        # LIVE
        if ending:
            return Job.END, max(account, wait)
        if lane.dirty:
            debounce = 0.0 if lane.urgent else (lane.settings or self._settings).debounce
            bucket = lane.bucket.ready_at(now) if lane.bucket is not None else now
            return Job.CHANGE, max(lane.dirty_since + debounce, bucket, account, wait)
        return None, never

    def _abandon_stale_change(self, lane: Lane, now: float) -> float:
        """An end is queued while a change of the same activity is on the wire: stop waiting
        for the change once waiting longer would put the end at risk. Returns when to look
        again."""
        if lane.job is not Job.CHANGE or lane.inflight is None:
            return float("inf")
        threshold = min(_ABANDON_AFTER, lane.flush_timeout / 4)
        if now - lane.job_started < threshold:
            return lane.job_started + threshold
        logger.debug("%r: abandoning a change on the wire for the end", lane.label)
        lane.inflight.abandon()
        lane.inflight = None
        lane.job = None
        self._busy -= 1
        self._cond.notify_all()
        return now

    def _claim(self, lane: Lane, job: Job, now: float) -> None:
        from activitysmith_track._client import Inflight

        lane.job = job
        lane.job_started = now
        lane.inflight = Inflight()
        self._busy += 1
        self._account.budget.take(now)
        if job is Job.CHANGE:
            lane.dirty = False
            if lane.bucket is not None:
                lane.bucket.take(now)
        elif job is Job.START and lane.phase is Phase.NEW:
            lane.dirty = False

    # -- sending ---------------------------------------------------------------------------------

    def _wire_for_thread(self) -> Wire:
        with self._cond:
            if self._wire is None:
                self._wire = self._wire_factory(self._settings)
            return self._wire

    def _payload_for(self, lane: Lane, job: Job) -> tuple[Payload, Job]:
        """What ``job`` sends now, rendered from the lane's newest state on this thread, and
        the job it goes out as (an end of a pipeline step goes out as a hand-on)."""
        state, position = lane.read()
        watch = lane.watch if lane.watch_plan is None else self._watch_for(lane)
        if job is not Job.END:
            # A start is always the running state, even when the end is already queued
            # behind it: the end follows with the final one. The ETA is worked out here, on
            # the sender, only for a payload about to go out: it never makes a request.
            now = self.clock()
            eta = watch.view(state, position, now, lane.marks) if watch is not None else None
            return render(state, position, now, eta), job
        if state.ending is None:
            at = lane.abandoned_at if lane.abandoned_at is not None else self.clock()
            state = abandoned(state, at, lane.stopped_by)
        return final(state, position, watch.last if watch is not None else None), state.end_job()

    def _execute(self, lane: Lane, job: Job) -> None:
        inflight = lane.inflight
        try:
            payload, effective = self._payload_for(lane, job)
            if job is Job.CHANGE and payload == lane.last_sent:
                self._done_job(lane, inflight, None)
                return
            if effective is Job.HAND_ON and payload == lane.last_sent:
                # The stream already shows this very state, and the next process continues
                # it as it is: handing it on needs no request.
                self._record_run(lane, job)
                self._handed_on_as_it_is(lane, payload)
                return
            if job is Job.START and lane.state.target.stream_key is not None:
                # Before the first PUT: no other process may take this stream for an orphan
                # of its own while it starts.
                self._observe("starting", lane, payload, None)
            result = self._send(lane, effective, payload, inflight)
        except Exception as exc:  # the sender must survive anything
            self._record_run(lane, job)
            self._failed_job(lane, job, inflight, exc)
            return
        self._record_run(lane, job)
        self._done_job(lane, inflight, (job, effective, payload, result))

    @staticmethod
    def _watch_for(lane: Lane) -> RunWatch | None:
        """The lane's watch, built on first use (on the sender thread)."""
        plan, lane.watch_plan = lane.watch_plan, None
        if plan is None:
            return lane.watch
        from activitysmith_track._eta import EtaMode
        from activitysmith_track._history import History, RunWatch, identity_of

        mode, settings, opened, first = plan
        try:
            lane.watch = RunWatch(
                mode=EtaMode(mode) if mode is not None else None,
                history=History.for_settings(settings),
                identity=identity_of(opened, local=settings.is_local),
                first=first,
            )
        except Exception:  # an ETA must never stop delivery
            logger.debug("no ETA or history for %r", lane.label, exc_info=True)
        return lane.watch

    @staticmethod
    def _record_run(lane: Lane, job: Job) -> None:
        """Once the end went out (or was tried), note a successful run in the history.

        After the request, so the end is never held back by the store; before the lane is
        settled, so a process that exits right after its block still records its run.
        Outside the dispatcher's lock (a write may wait for another process's).
        """
        watch = lane.watch if lane.watch_plan is None else Dispatcher._watch_for(lane)
        if job is Job.END and watch is not None:
            watch.finish(lane.state, lane.marks)

    def _send(self, lane: Lane, job: Job, payload: Payload, inflight: Inflight | None) -> Result:
        from activitysmith_track._client import request_for

        state = lane.state
        op = operation(state.target, job)
        request = request_for(
            op, payload, activity_id=lane.activity_id, stream_key=state.target.stream_key
        )
        timeout = self._timeout_for(lane)
        attempt = lane.plan.attempt if lane.plan is not None else 1
        return self._wire_for_thread().send(
            op, request, timeout=timeout, attempt=attempt, inflight=inflight
        )

    def _timeout_for(self, lane: Lane) -> tuple[float, float]:
        """The request's timeouts: its own, but never past the deadline it must meet: the
        exit flush's, and for a start or an end the block's that waits for it (once that one
        has passed, the request goes on in the background with its own timeouts)."""
        connect, read = lane.timeout
        now = self.clock()
        bounds = []
        if self._shutdown_at is not None:
            bounds.append(self._shutdown_at)
        if lane.job is not Job.CHANGE and lane.deadline is not None and lane.deadline > now + 0.1:
            bounds.append(lane.deadline)
        if not bounds:
            return (connect, read)
        remaining = min(bounds) - now
        if remaining <= 0.01:
            raise _Closed("the process is exiting and no time is left to send")
        return (min(connect, remaining), min(read, remaining))

    def _done_job(
        self,
        lane: Lane,
        inflight: Inflight | None,
        outcome: tuple[Job, Job, Payload, Result] | None,
    ) -> None:
        with self._cond:
            if inflight is not None and inflight.abandoned and lane.inflight is not inflight:
                return  # given up for the end meanwhile; whatever came back is stale
            self._release(lane)
            lane.plan = None
            if outcome is not None:
                job, _sent_as, payload, result = outcome
                self._record(lane, result)
                lane.last_sent = payload
                if lane.last_operation == "paused":
                    lane.last_sent = None  # re-send the newest state with the next change
                if job is Job.START:
                    lane.phase = Phase.LIVE
                    if result.activity_id:
                        lane.activity_id = result.activity_id
                    self._observe("started", lane, payload, result)
                elif job is Job.END:
                    lane.end_delivered = True
                    self._observe("ended", lane, payload, result)
                    self._finish(lane)
                else:
                    self._observe("sent", lane, payload, result)
            self._cond.notify_all()
            self._wake_locked()

    def _handed_on_as_it_is(self, lane: Lane, payload: Payload) -> None:
        with self._cond:
            self._release(lane)
            lane.plan = None
            lane.end_delivered = True  # the stream already shows it
            self._observe("ended", lane, payload, None)
            self._finish(lane)
            self._wake_locked()

    def _release(self, lane: Lane) -> None:
        if lane.job is not None:
            lane.job = None
            self._busy -= 1
        lane.inflight = None

    def _failed_job(
        self, lane: Lane, job: Job, inflight: Inflight | None, exc: BaseException
    ) -> None:
        with self._cond:
            if inflight is not None and inflight.abandoned and lane.inflight is not inflight:
                return
            self._release(lane)
            now = self.clock()
            if isinstance(exc, ActivitySmithTrackError):
                lane.last_error = exc
            if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                # A 429's Retry-After is the account's: no activity sends before it is over.
                wait = min(exc.retry_after, lane.retry.max_retry_after)
                self._account.paused_until = max(self._account.paused_until, now + wait)
            op = operation(lane.state.target, job if job is not Job.END else lane.state.end_job())
            if job is Job.END and isinstance(exc, NotFoundError) and op is Operation.STREAM_DELETE:
                # A stream already gone (ended by another process of the pipeline) is ended.
                self._observe("ended", lane, None, None)
                self._finish(lane)
                self._wake_locked()
                return
            wait_for = self._retry_in(lane, job, op, exc)
            if wait_for is not None:
                lane.retry_at = now + wait_for
                if job is Job.CHANGE:
                    lane.dirty = True  # the newest state goes out with the retry
                self._wake_locked()
                return
            self._give_up(lane, job, op, exc)
            self._wake_locked()

    def _retry_in(self, lane: Lane, job: Job, op: Operation, exc: BaseException) -> float | None:
        """Seconds until the next attempt of ``job``, or None when it is given up."""
        if isinstance(exc, _Closed) or self._closed:
            return None
        if not isinstance(exc, Exception) or not is_retryable(op, exc):
            return None
        if lane.plan is None or lane.plan_job is not job:
            lane.plan = RetryPlan(
                build_retrying(
                    lane.retry,
                    op,
                    sleep=_no_sleep,
                    clock=self.clock,
                    deadline=self._shutdown_at,
                    # Starts and ends are never given up while there is time: only the
                    # exit deadline bounds them.
                    persistent=job is not Job.CHANGE,
                )
            )
            lane.plan_job = job
        try:
            return lane.plan.failed(exc)
        except Exception:
            lane.plan = None
            return None

    def _give_up(self, lane: Lane, job: Job, op: Operation, exc: BaseException) -> None:
        lane.plan = None
        self._failed(lane, job, exc)
        if job is Job.CHANGE:
            return  # the next change, or the end, carries a newer state
        if job is Job.END:
            self._finish(lane)
            return
        # The start.
        if isinstance(exc, LiveActivityLimitError):
            interval = lane.settings.capacity_retry_interval if lane.settings else 60.0
            lane.phase = Phase.BLOCKED
            lane.retry_at = self.clock() + interval
            if lane.end_requested or lane.abandoned_at is not None:
                self._finish(lane)  # the end was attempted (as a start); no slot is free
            return
        lane.phase = Phase.LOST
        if lane.end_requested or lane.abandoned_at is not None:
            self._finish(lane)

    def _record(self, lane: Lane, result: Result) -> None:
        if result.operation:
            lane.last_operation = result.operation
            if result.operation not in _KNOWN_OPERATIONS and "operation" not in lane.logged:
                lane.logged.add("operation")
                logger.warning(
                    "ActivitySmith answered with an unknown operation %r for %r; carrying on",
                    result.operation,
                    lane.label,
                )
        if result.warning and "warning" not in lane.logged:
            lane.logged.add("warning")
            logger.warning("ActivitySmith warns about %r: %s", lane.label, result.warning)
        if result.operation == "paused" and "paused" not in lane.logged:
            lane.logged.add("paused")
            logger.warning(
                "The stream %r is paused by its owner; its state is kept and sent again later.",
                lane.state.target.stream_key,
            )

    def _finish(self, lane: Lane) -> None:
        lane.phase = Phase.DONE
        lane.plan = None
        if lane in self._lanes:
            self._lanes.remove(lane)
        self._cond.notify_all()

    def _observe(
        self, event: str, lane: Lane, payload: Payload | None, result: Result | None
    ) -> None:
        observer = self._observer or _default_observer
        if observer is not None:
            try:
                observer(event, lane, payload, result)
            except Exception:  # an observer must never stop delivery
                logger.debug("observer failed on %s", event, exc_info=True)

    def _failed(self, lane: Lane, job: Job, exc: BaseException) -> None:
        if isinstance(exc, ActivitySmithTrackError):
            error = exc
        elif isinstance(exc, _Closed):
            error = TransportError(f"{job.value} not delivered: {exc}")
        else:
            error = TransportError(f"{job.value} not delivered: unexpected {type(exc).__name__}")
        lane.errors.append(error)
        if isinstance(exc, LiveActivityLimitError):
            interval = lane.settings.capacity_retry_interval if lane.settings else 60.0
            limit = f"the Live Activity limit is reached ({exc.active} of {exc.limit} live)"
            if lane.end_requested or lane.abandoned_at is not None:
                reason = f"{limit}, so its end could not be shown either"
            else:
                reason = (
                    f"{limit}; end another activity to free a slot. It is tried again every "
                    f"{interval:g} s, and the job runs on meanwhile"
                )
        elif isinstance(exc, StartOutcomeUnknownError):
            reason = f"{exc} (not retried: a retry could start a second activity)"
        elif isinstance(exc, AuthenticationError):
            reason = "the API key was refused (401); check ACTIVITYSMITH_API_KEY"
        else:
            reason = str(exc)
        # One warning per activity: a down server must not flood the job's logs. After
        # close() (tests, or an application shutting tracking down) failures are expected.
        if "failure" not in lane.logged and not self._closed:
            lane.logged.add("failure")
            logger.warning("Live Activity %r: %s failed: %s", lane.label, job.value, reason)
        else:
            logger.debug("Live Activity %r: %s failed: %s", lane.label, job.value, reason)

    def _close_wire(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()

    def _after_fork_in_child(self) -> None:
        # The parent's connections and threads are not the child's; it starts clean.
        self._setup()


class _Closed(Exception):
    """The dispatcher was closed while a request waited."""


def _no_sleep(seconds: float) -> None:  # pragma: no cover - the dispatcher schedules instead
    raise AssertionError("the dispatcher never sleeps in a retry")


def _start_thread(target: Callable[[], None]) -> threading.Thread:
    # A seam for tests: starting a thread fails at interpreter shutdown.
    from activitysmith_track._threads import start_daemon

    return start_daemon(target, "activitysmith-track-sender")


def _make_wire(settings: Settings) -> Wire:
    from activitysmith_track._client import Wire

    return Wire(
        settings.effective_api_key,
        base_url=settings.base_url,
        connections=settings.connections + _EXTRA_FOR_LIFECYCLE,
    )


# -- the process-wide registry ---------------------------------------------------------------------

_registry_lock = threading.Lock()
_dispatchers: dict[tuple[str | None, str], Dispatcher] = {}


def account_key(settings: Settings) -> tuple[str | None, str]:
    """What makes one account: the API key and the base URL, whatever the other options."""
    return (settings.effective_api_key, settings.base_url)


def get_dispatcher(settings: Settings) -> Dispatcher:
    """The shared dispatcher of the settings' account (API key and base URL)."""
    key = account_key(settings)
    with _registry_lock:
        dispatcher = _dispatchers.get(key)
        if dispatcher is None:
            dispatcher = _dispatchers[key] = Dispatcher(settings)
        return dispatcher


def dispatchers() -> list[Dispatcher]:
    """This process's dispatchers. Takes no lock, so a signal handler may call it anywhere:
    in a forked child before its after-fork hooks ran, a parent's dispatcher (whose lock a
    parent thread may have held at the fork) is left out."""
    pid = os.getpid()
    return [d for d in list(_dispatchers.values()) if d.owned_by(pid)]


def shutdown_all(timeout: float | None = None, *, exiting: bool = True) -> int:
    """Deliver every pending end within one bound (the longest flush_timeout among them);
    return how many could not be delivered. ``exiting``: see :meth:`Dispatcher.flush`."""
    every = dispatchers()
    longest = max((d.exit_timeout() for d in every), default=0.0)
    bound = longest if timeout is None else timeout
    deadline = time.monotonic() + bound
    left = 0
    for dispatcher in every:
        left += dispatcher.flush(max(0.0, deadline - time.monotonic()), exiting=exiting)
    return left


def close_all() -> None:
    """Close every dispatcher and forget them (for tests: nothing carries over)."""
    with _registry_lock:
        every = list(_dispatchers.values())
        _dispatchers.clear()
    for dispatcher in every:
        dispatcher.close()


def _reset_after_fork() -> None:
    # The child must not inherit the parent's senders or resend its queue.
    global _registry_lock
    _registry_lock = threading.Lock()
    for dispatcher in _dispatchers.values():
        dispatcher._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)
