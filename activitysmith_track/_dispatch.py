"""Background delivery: the worker thread that sends each activity's requests, in order.

The user's thread only records that an activity changed (:meth:`Channel.touch`, a flag check
on the hot path) and returns. One worker thread per :class:`Dispatcher` pulls the newest state
when it is ready to send, so a burst of changes becomes one request (latest wins), and keeps
three promises per activity: start before updates before end; updates within a token-bucket
budget and after a short debounce; the end never waits for the update budget and always
carries the final state.

Everything that can wait (the network, retries, Retry-After) happens here, never on the
user's thread. Failures are logged once per activity and kept for strict mode.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

from activitysmith_track._client import Client, Result
from activitysmith_track._config import Settings
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    AuthenticationError,
    LiveActivityLimitError,
    NotFoundError,
    StartOutcomeUnknownError,
    TransportError,
)
from activitysmith_track._model import Payload

__all__ = [
    "Channel",
    "Dispatcher",
    "Source",
    "TokenBucket",
    "close_all",
    "get_dispatcher",
    "shutdown_all",
]

logger = logging.getLogger("activitysmith_track")


# The ``operation`` values the contract lists; others are logged once, never fatal.
_KNOWN_OPERATIONS = frozenset({"started", "updated", "rotated", "noop", "paused", "ended"})


# Builds the worker's client from the settings, its retry sleep and clock, and the hook
# that hears of a 429's Retry-After (a seam for tests).
ClientFactory = Callable[
    [Settings, Callable[[float], None], Callable[[], float], Callable[[float], None]], Client
]


class Source(Protocol):
    """Where the worker reads an activity's newest state when it is ready to send it."""

    def snapshot(self) -> Payload: ...


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


class _Job(enum.Enum):
    START = "start"
    UPDATE = "update"
    END = "end"


class _Interrupted(Exception):
    """Raised inside a retry wait that would run past the shutdown deadline."""


class _Superseded(Exception):
    """Raised inside an update's retry wait once the activity's end is queued."""


class Channel:
    """One activity's delivery state, shared by its handle and the worker.

    Fields are guarded by the dispatcher's lock, except ``dirty``, which the user's thread
    sets without it (a plain attribute write) so that recording a change stays cheap.
    """

    __slots__ = (
        "_dispatcher",
        "activity_id",
        "bucket",
        "busy",
        "debounce",
        "dirty",
        "dirty_since",
        "done",
        "end_payload",
        "errors",
        "flush_timeout",
        "keep_open",
        "label",
        "last_operation",
        "last_sent",
        "logged",
        "pending_start",
        "source",
        "started",
        "stream_key",
        "urgent",
        "waited",
    )

    def __init__(
        self,
        dispatcher: Dispatcher,
        source: Source,
        *,
        label: str,
        stream_key: str | None,
        settings: Settings,
        now: float,
    ) -> None:
        self._dispatcher = dispatcher
        self.source = source
        self.label = label
        self.stream_key = stream_key
        self.debounce = settings.debounce
        self.flush_timeout = settings.flush_timeout
        self.bucket = TokenBucket(settings.update_burst, settings.update_interval, now)
        self.pending_start = True
        self.started = False
        self.activity_id: str | None = None
        self.dirty = False
        self.dirty_since = 0.0
        self.end_payload: Payload | None = None
        self.keep_open = False  # a pipeline step hands the stream on instead of ending it
        self.done = False
        self.busy = False  # a request of this channel is on the wire
        self.urgent = False  # someone waits in flush(): skip the debounce
        self.waited = False  # a flush already waited its full timeout for the end
        self.last_sent: Payload | None = None
        self.last_operation: str | None = None
        self.errors: list[ActivitySmithTrackError] = []
        self.logged: set[str] = set()

    def touch(self) -> None:
        """Record that the activity changed; the worker sends its newest state later."""
        if not self.dirty:
            self.dirty = True
            self._dispatcher._changed(self)

    def close(self, payload: Payload, *, keep_open: bool = False) -> None:
        """Ask for the activity to end with this final state (once; later calls do nothing).

        With ``keep_open`` (stream mode only) the final state is sent as a PUT and the stream
        stays live for the next process of a pipeline.
        """
        self._dispatcher._close(self, payload, keep_open=keep_open)

    def flush(self, timeout: float) -> bool:
        """Wait until everything recorded so far was sent (the end too, once asked for).

        Returns False when ``timeout`` passed first. Skips the debounce while it waits, but
        not the update budget.
        """
        return self._dispatcher._flush_channel(self, timeout)


class Dispatcher:
    """Sends the requests of every activity that shares one API key and base URL."""

    # Seconds an idle worker thread waits for new work before it exits.
    idle_timeout = 30.0

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._client_factory = client_factory or _make_client
        self._setup()

    def _setup(self) -> None:
        # Also called in a forked child: fresh locks, no worker, nothing queued. Reentrant,
        # because garbage collection can run a dropped handle's finalizer (which ends its
        # activity through this lock) on a thread that already holds it.
        self._cond = threading.Condition(threading.RLock())
        self._paused_until = 0.0  # a 429's Retry-After holds back every request
        self._active: tuple[Channel, _Job] | None = None
        self._channels: list[Channel] = []
        self._thread: threading.Thread | None = None
        self._shutdown_at: float | None = None
        self._pid = os.getpid()
        self._client: Client | None = None
        self._closed = False
        rpm = self._settings.requests_per_minute
        if self._settings.is_local:
            # The account budget protects a real account; a local emulator has none.
            rpm = 1_000_000
        self._account = TokenBucket(max(1, rpm // 4), 60.0 / rpm, self._clock())

    # -- called on the user's thread -------------------------------------------------------

    def open(
        self,
        source: Source,
        *,
        label: str,
        stream_key: str | None = None,
        settings: Settings | None = None,
    ) -> Channel:
        """Register a new activity; its start is sent as soon as the worker gets to it.

        ``settings`` give the activity's own debounce, update budget and flush timeout (the
        dispatcher's by default).
        """
        channel = Channel(
            self,
            source,
            label=label,
            stream_key=stream_key,
            settings=settings or self._settings,
            now=self._clock(),
        )
        with self._cond:
            self._channels.append(channel)
            self._cond.notify_all()
        self._ensure_worker()
        return channel

    def _changed(self, channel: Channel) -> None:
        with self._cond:
            channel.dirty_since = self._clock()
            self._cond.notify_all()

    def _close(self, channel: Channel, payload: Payload, *, keep_open: bool) -> None:
        with self._cond:
            if channel.end_payload is None and not channel.done:
                channel.end_payload = payload
                channel.keep_open = keep_open and channel.stream_key is not None
            self._cond.notify_all()
        self._ensure_worker()

    def _flush_channel(self, channel: Channel, timeout: float) -> bool:
        deadline = self._clock() + timeout
        if self._thread is None:
            self._drain_inline(deadline)
        with self._cond:
            channel.urgent = True
            self._cond.notify_all()
            try:
                while not channel.done and (
                    channel.pending_start
                    or channel.dirty
                    or channel.busy
                    or channel.end_payload is not None
                ):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        # Someone already waited flush_timeout for this end: the exit
                        # flush does not wait for it a second time.
                        channel.waited = channel.end_payload is not None
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                channel.urgent = False

    def flush(self, timeout: float) -> int:
        """Wait until every ended activity was delivered; return how many are still pending."""
        deadline = self._clock() + timeout
        with self._cond:
            self._shutdown_at = deadline
            self._cond.notify_all()
        try:
            if self._thread is None:
                self._drain_inline(deadline)
            with self._cond:
                while True:
                    pending = [
                        c
                        for c in self._channels
                        if c.end_payload is not None and not c.done and not c.waited
                    ]
                    remaining = deadline - self._clock()
                    if not pending or remaining <= 0:
                        return len(pending)
                    self._cond.wait(remaining)
        finally:
            with self._cond:
                self._shutdown_at = None

    # -- the worker --------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._cond:
            if self._pid != os.getpid():
                return
            if self._thread is not None and self._thread.is_alive():
                return
            try:
                thread = _start_worker_thread(self._run)
            except RuntimeError:
                # Threads cannot start during interpreter shutdown; flush() then sends inline.
                self._thread = None
                return
            self._thread = thread

    def _run(self) -> None:
        while True:
            with self._cond:
                idle_since = self._clock()
                while True:
                    if self._closed:
                        # Closed: stop here, whatever is left (close() says so).
                        self._thread = None
                        self._close_client()
                        return
                    now = self._clock()
                    channel, job, due = self._next(now)
                    if channel is not None and due <= now:
                        self._claim(channel, job, now)
                        break
                    if channel is None and not self._channels:
                        # Nothing to do for a while: let the thread go; the next open()
                        # starts a new one.
                        if now - idle_since >= self.idle_timeout:
                            self._thread = None
                            self._close_client()
                            return
                        self._cond.wait(self.idle_timeout - (now - idle_since))
                        continue
                    self._cond.wait(None if channel is None else due - now)
            self._execute(channel, job)

    def _drain_inline(self, deadline: float) -> None:
        """Send what is due on the calling thread (no worker could be started)."""
        while self._clock() < deadline:
            with self._cond:
                now = self._clock()
                channel, job, due = self._next(now)
                if channel is None:
                    return
                if due > now:
                    if due > deadline:
                        return
                    self._cond.wait(due - now)
                    continue
                self._claim(channel, job, now)
            self._execute(channel, job)

    def _next(self, now: float) -> tuple[Channel | None, _Job, float]:
        """Pick the job due first: a start, an end, or an update within its budget."""
        best: tuple[Channel | None, _Job, float] = (None, _Job.UPDATE, float("inf"))
        account = max(self._account.ready_at(now), self._paused_until)
        for channel in self._channels:
            if channel.done:
                continue
            if channel.pending_start:
                job, due = _Job.START, account
            elif channel.end_payload is not None:
                job, due = _Job.END, account
            elif channel.dirty:
                job = _Job.UPDATE
                debounce = 0.0 if channel.urgent else channel.debounce
                due = max(
                    channel.dirty_since + debounce,
                    channel.bucket.ready_at(now),
                    account,
                )
            else:
                continue
            if due < best[2]:
                best = (channel, job, due)
        return best

    def _claim(self, channel: Channel, job: _Job, now: float) -> None:
        channel.busy = True
        self._active = (channel, job)
        self._account.take(now)
        if job is _Job.START:
            channel.pending_start = False
            channel.dirty = False
        elif job is _Job.UPDATE:
            channel.dirty = False
            channel.bucket.take(now)

    def _execute(self, channel: Channel, job: _Job) -> None:
        try:
            if job is _Job.START:
                self._send_start(channel)
            elif job is _Job.UPDATE:
                self._send_update(channel)
            else:
                self._send_end(channel)
        except Exception as exc:  # the worker must survive anything
            self._failed(channel, job, exc)
            if job is _Job.END:
                self._finish(channel)
        finally:
            with self._cond:
                channel.busy = False
                self._active = None
                self._cond.notify_all()

    def _client_for_worker(self) -> Client:
        if self._client is None:
            self._client = self._client_factory(
                self._settings, self._retry_sleep, self._clock, self._pause_for
            )
        return self._client

    def _deadline(self) -> float | None:
        return self._shutdown_at

    def _send_start(self, channel: Channel) -> None:
        payload = channel.source.snapshot()
        client = self._client_for_worker()
        try:
            if channel.stream_key is not None:
                result = client.put_stream(channel.stream_key, payload, deadline=self._deadline())
            else:
                result = client.start(payload, deadline=self._deadline())
        except ActivitySmithTrackError as exc:
            self._failed(channel, _Job.START, exc)
            if channel.stream_key is None:
                # Without an activity id nothing else can be sent; a stream can still recover
                # on its next PUT, which is idempotent.
                with self._cond:
                    self._finish_locked(channel)
            else:
                channel.touch()
            return
        with self._cond:
            channel.started = True
            channel.last_sent = payload
            self._record(channel, result)

    def _send_update(self, channel: Channel) -> None:
        payload = channel.source.snapshot()
        if payload == channel.last_sent:
            return
        client = self._client_for_worker()
        try:
            if channel.stream_key is not None:
                result = client.put_stream(channel.stream_key, payload, deadline=self._deadline())
            else:
                assert channel.activity_id is not None
                result = client.update(channel.activity_id, payload, deadline=self._deadline())
        except _Superseded:
            return  # the end, queued meanwhile, carries a newer state
        except ActivitySmithTrackError as exc:
            self._failed(channel, _Job.UPDATE, exc)
            return
        with self._cond:
            channel.last_sent = payload
            self._record(channel, result)

    def _send_end(self, channel: Channel) -> None:
        payload = channel.end_payload
        assert payload is not None
        client = self._client_for_worker()
        try:
            if channel.stream_key is not None and channel.keep_open:
                if payload == channel.last_sent:
                    self._finish(channel)  # the server already shows this state
                    return
                result = client.put_stream(channel.stream_key, payload, deadline=self._deadline())
            elif channel.stream_key is not None:
                if not channel.started:
                    # The stream never got its first PUT through: send the final state as a
                    # PUT first, so the DELETE has an activity to end.
                    client.put_stream(channel.stream_key, payload, deadline=self._deadline())
                result = client.delete_stream(
                    channel.stream_key, payload, deadline=self._deadline()
                )
            else:
                assert channel.activity_id is not None
                result = client.end(channel.activity_id, payload, deadline=self._deadline())
        except NotFoundError as exc:
            if channel.stream_key is None:
                self._failed(channel, _Job.END, exc)
            # A stream already gone (ended by another process of the pipeline) is ended.
        except ActivitySmithTrackError as exc:
            self._failed(channel, _Job.END, exc)
        else:
            with self._cond:
                channel.last_sent = payload
                self._record(channel, result)
        self._finish(channel)

    def _record(self, channel: Channel, result: Result) -> None:
        if result.activity_id:
            channel.activity_id = result.activity_id
        if result.operation:
            channel.last_operation = result.operation
            if result.operation not in _KNOWN_OPERATIONS and "operation" not in channel.logged:
                channel.logged.add("operation")
                logger.warning(
                    "ActivitySmith answered with an unknown operation %r for %r; carrying on",
                    result.operation,
                    channel.label,
                )
        if result.warning and "warning" not in channel.logged:
            channel.logged.add("warning")
            logger.warning("ActivitySmith warns about %r: %s", channel.label, result.warning)
        if result.operation == "paused" and "paused" not in channel.logged:
            channel.logged.add("paused")
            logger.warning(
                "The stream %r is paused by its owner; its state is kept and sent again later.",
                channel.stream_key,
            )
            # The newest state is re-sent with the next change or with the end.
            channel.last_sent = None

    def _finish(self, channel: Channel) -> None:
        with self._cond:
            self._finish_locked(channel)

    def _finish_locked(self, channel: Channel) -> None:
        channel.done = True
        if channel in self._channels:
            self._channels.remove(channel)
        self._cond.notify_all()

    def _failed(self, channel: Channel, job: _Job, exc: Exception) -> None:
        if isinstance(exc, ActivitySmithTrackError):
            error = exc
        elif isinstance(exc, _Interrupted):
            error = TransportError(
                f"{job.value} not delivered: the process was exiting and the next retry "
                "would have passed flush_timeout"
            )
        else:
            error = TransportError(f"unexpected {type(exc).__name__}: {exc}")
        channel.errors.append(error)
        if isinstance(exc, _Interrupted):
            reason = "the process is exiting and the next retry would pass flush_timeout"
        elif isinstance(exc, LiveActivityLimitError):
            reason = (
                f"the Live Activity limit is reached ({exc.active} of {exc.limit} live); end "
                "another activity to free a slot. The job runs on without tracking"
            )
        elif isinstance(exc, StartOutcomeUnknownError):
            reason = f"{exc} (not retried: a retry could start a second activity)"
        elif isinstance(exc, AuthenticationError):
            reason = "the API key was refused (401); check ACTIVITYSMITH_API_KEY"
        else:
            reason = str(exc)
        # One warning per activity: a down server must not flood the job's logs. After
        # close() (tests, or an application shutting tracking down) failures are expected.
        if "failure" not in channel.logged and not self._closed:
            channel.logged.add("failure")
            logger.warning("Live Activity %r: %s failed: %s", channel.label, job.value, reason)
        else:
            logger.debug("Live Activity %r: %s failed: %s", channel.label, job.value, reason)

    def _retry_sleep(self, seconds: float) -> None:
        """The wait between retries. Ends early, by raising, when it would pass shutdown, or
        when it only delays a stale update that the end, queued meanwhile, replaces."""
        until = self._clock() + seconds
        with self._cond:
            while True:
                if self._shutdown_at is not None and until > self._shutdown_at:
                    raise _Interrupted("retry wait would pass the flush deadline")
                if self._closed:
                    raise _Interrupted("the dispatcher was closed")
                active = self._active
                if (
                    active is not None
                    and active[1] is _Job.UPDATE
                    and active[0].end_payload is not None
                ):
                    raise _Superseded("the end replaces this update")
                remaining = until - self._clock()
                if remaining <= 0:
                    return
                self._cond.wait(remaining)

    def _pause_for(self, seconds: float) -> None:
        # A 429 rate limit is the account's: no activity sends before it is over.
        with self._cond:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def exit_timeout(self) -> float:
        """The longest flush_timeout among activities whose end is still on its way."""
        with self._cond:
            return max(
                (c.flush_timeout for c in self._channels if c.end_payload is not None),
                default=0.0,
            )

    def close(self) -> None:
        """Stop sending (what is still queued is dropped) and release the HTTP connections;
        the worker exits after the request it is sending, if any."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            if self._thread is None:
                self._close_client()

    def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _after_fork_in_child(self) -> None:
        self._setup()


def _start_worker_thread(target: Callable[[], None]) -> threading.Thread:
    # A seam for tests: starting a thread fails at interpreter shutdown.
    thread = threading.Thread(target=target, name="activitysmith-track-worker", daemon=True)
    thread.start()
    return thread


def _make_client(
    settings: Settings,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    on_retry_after: Callable[[float], None],
) -> Client:
    return Client(
        settings.effective_api_key,
        base_url=settings.base_url,
        timeout=(settings.connect_timeout, settings.read_timeout),
        retry=settings.retry,
        sleep=sleep,
        clock=clock,
        on_retry_after=on_retry_after,
    )


# -- the process-wide registry ---------------------------------------------------------------

_registry_lock = threading.Lock()
_dispatchers: dict[tuple[object, ...], Dispatcher] = {}


def _key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.effective_api_key,
        settings.base_url,
        settings.connect_timeout,
        settings.read_timeout,
        settings.retry,
        settings.requests_per_minute,
    )


def get_dispatcher(settings: Settings) -> Dispatcher:
    """The shared dispatcher for these settings: one worker thread, and one account budget,
    per API key and base URL (and transport settings)."""
    key = _key(settings)
    with _registry_lock:
        dispatcher = _dispatchers.get(key)
        if dispatcher is None:
            dispatcher = _dispatchers[key] = Dispatcher(settings)
        return dispatcher


def shutdown_all(timeout: float | None = None) -> int:
    """Flush every dispatcher, each within its flush_timeout; return the undelivered count."""
    with _registry_lock:
        dispatchers = list(_dispatchers.values())
    # One deadline for all: the process waits at most the longest flush_timeout.
    longest = max((d.exit_timeout() for d in dispatchers), default=0.0)
    deadline = time.monotonic() + (longest if timeout is None else timeout)
    left = 0
    for dispatcher in dispatchers:
        left += dispatcher.flush(max(0.0, deadline - time.monotonic()))
    return left


def close_all() -> None:
    """Close every dispatcher and forget them (for tests: nothing carries over)."""
    with _registry_lock:
        dispatchers = list(_dispatchers.values())
        _dispatchers.clear()
    for dispatcher in dispatchers:
        dispatcher.close()


def _reset_after_fork() -> None:
    # The child must not inherit the parent's worker or resend its queue.
    global _registry_lock
    _registry_lock = threading.Lock()
    for dispatcher in _dispatchers.values():
        dispatcher._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_after_fork)
