"""The :class:`Emulator`: a local stand-in for the ActivitySmith Live Activity API."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType

from activitysmith_track.emulator._faults import Fault, FaultQueue
from activitysmith_track.emulator._health import Health
from activitysmith_track.emulator._server import EmulatorHTTPServer
from activitysmith_track.emulator._state import ActivityRecord, EmulatorState, RecordedRequest

__all__ = ["Emulator"]

_ENV_KEY = "ACTIVITYSMITH_API_KEY"


#: The account's limits, as the public Rate Limits page gives them: 4 concurrent Live
#: Activities, and 60 requests a minute (the generated SDK docs say 300 a minute for Live
#: Activities; the emulator takes the stricter figure, see ``_budget``).
MAX_LIVE_ACTIVITIES = 4
REQUESTS_PER_MINUTE = 60
#: A live activity with no accepted request for this long is marked stale on the preview.
STALE_AFTER = 600.0


class Emulator:
    """An HTTP server on the loopback interface that behaves like the ActivitySmith API.

    It keeps every activity and every request in memory, so tests can assert on what a client
    sent, and faults scripted with :meth:`add_fault` make failures deterministic::

        with Emulator() as emu:
            client = Client("any-key", base_url=emu.base_url)
            emu.add_fault(Fault.status(503), path="/live-activity/start")
            ...
            assert emu.requests[-1].status == 200

    By default it has the account's production limits: ``max_live_activities=4`` live
    activities at once (the next start answers the capacity 429) and ``requests_per_minute=60``
    per API key across the Live Activity endpoints (then 429 ``rate_limited`` with
    ``Retry-After``). ``None`` turns either off; ``fast=True`` turns both off, for test suites
    that start many activities or send many requests and are not about the limits.

    ``api_key`` is the only Bearer key accepted; when it is ``None`` the
    ``ACTIVITYSMITH_API_KEY`` environment variable is used if set, and otherwise any non-empty
    key is accepted. The update ``warning`` appears once an activity had more than
    ``warning_updates`` updates averaging more than one per ``warning_interval`` seconds;
    ``rotate_after`` (seconds) makes a stream PUT rotate an activity that old; the preview
    marks a live activity stale after ``stale_after`` seconds without an accepted request.
    ``clock`` supplies wall time for all of that, so tests can move it.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_live_activities: int | None = MAX_LIVE_ACTIVITIES,
        requests_per_minute: int | None = REQUESTS_PER_MINUTE,
        fast: bool = False,
        warning_updates: int = 12,
        warning_interval: float = 120.0,
        rotate_after: float | None = None,
        stale_after: float = STALE_AFTER,
        clock: Callable[[], float] = time.time,
        on_request: Callable[[RecordedRequest], None] | None = None,
    ) -> None:
        if fast:
            # fast=True with a limit other than the default is two contradicting wishes.
            for name, value, default in (
                ("max_live_activities", max_live_activities, MAX_LIVE_ACTIVITIES),
                ("requests_per_minute", requests_per_minute, REQUESTS_PER_MINUTE),
            ):
                if value not in (None, default):
                    raise ValueError(
                        f"fast=True turns {name} off; pass {name}={value} without fast=True"
                    )
            max_live_activities = requests_per_minute = None
        if max_live_activities is not None and max_live_activities < 1:
            raise ValueError(
                "max_live_activities must be >= 1 (or None for no limit), "
                f"not {max_live_activities}"
            )
        if requests_per_minute is not None and requests_per_minute < 1:
            raise ValueError(
                "requests_per_minute must be >= 1 (or None for no limit), "
                f"not {requests_per_minute}"
            )
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds, not {stale_after}")
        self._host = host
        self._port = port
        self._api_key = api_key if api_key is not None else (os.environ.get(_ENV_KEY) or None)
        self._on_request = on_request
        self._stale_after = float(stale_after)
        self._state = EmulatorState(
            max_live_activities=max_live_activities,
            requests_per_minute=requests_per_minute,
            clock=clock,
            warning_updates=warning_updates,
            warning_interval=warning_interval,
            rotate_after=rotate_after,
        )
        self._faults = FaultQueue()
        self._health = Health()
        self._stopping = threading.Event()
        self._server: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "not running"
        return f"<Emulator {where}>"

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> Emulator:
        """Bind the port and serve in a background thread; returns ``self``."""
        with self._lifecycle:
            if self._server is not None:
                raise RuntimeError("the emulator is already running")
            self._stopping.clear()
            server = EmulatorHTTPServer(
                (self._host, self._port),
                state=self._state,
                faults=self._faults,
                health=self._health,
                expected_key=self._api_key,
                stale_after=self._stale_after,
                stopping=self._stopping,
                on_request=self._on_request,
            )
            # A short poll keeps stop() quick (tests start many emulators); the wakeups of
            # an idle loop cost next to nothing.
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.02},
                name="activitysmith-emulator",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
        return self

    def stop(self, *, timeout: float = 2.0) -> None:
        """Stop serving and close every connection; returns within about ``timeout`` seconds.

        Requests stuck in a hang or delay fault are released first, so this never hangs.
        Calling it twice, or on an emulator that never started, does nothing.
        """
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None or thread is None:
                return
            self._stopping.set()
            self._state.wake()  # long-polls of the preview page return at once
            server.shutdown()
            server.close_connections(timeout)
            server.server_close()
            thread.join(timeout)
            self._server = self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    # -- where ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        server = self._server
        if server is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return int(server.server_address[1])

    @property
    def url(self) -> str:
        """The root URL, e.g. ``http://127.0.0.1:8787/``."""
        return f"http://{self._host}:{self.port}/"

    @property
    def base_url(self) -> str:
        """The API base URL to hand a client, e.g. ``http://127.0.0.1:8787/api``."""
        return f"http://{self._host}:{self.port}/api"

    @property
    def api_key(self) -> str | None:
        """The key the emulator insists on, or ``None`` when any key is accepted."""
        return self._api_key

    # -- what happened -------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every API request so far, in arrival order (a copy)."""
        with self._state.lock:
            return list(self._state.requests)

    @property
    def activities(self) -> dict[str, ActivityRecord]:
        """Every activity by id, in start order (snapshots)."""
        return self._state.snapshot_activities()

    @property
    def streams(self) -> dict[str, str]:
        """Stream key -> id of the stream's latest activity (live or ended)."""
        with self._state.lock:
            return dict(self._state.streams)

    def activity(self, activity_id: str) -> ActivityRecord:
        """One activity's snapshot; ``KeyError`` when the id is unknown."""
        return self.activities[activity_id]

    def stream_activity(self, stream_key: str) -> ActivityRecord | None:
        """The latest activity of a stream, or ``None`` when the key was never used."""
        with self._state.lock:
            activity_id = self._state.streams.get(stream_key)
            if activity_id is None:
                return None
            return self._state.activities[activity_id].snapshot()

    def live_activities(self) -> list[ActivityRecord]:
        """The activities currently live, in start order."""
        return [a for a in self.activities.values() if a.status == "live"]

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests were recorded; ``TimeoutError`` otherwise."""
        return self._state.wait_for_requests(count, timeout)

    # -- steering ------------------------------------------------------------------------

    def add_fault(self, fault: Fault, *, path: str | None = None, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests whose path starts with ``path``.

        ``path`` is written without the ``/api`` prefix (``"/live-activity/start"``,
        ``"/live-activity/stream/"``); ``None`` matches every API request. Faults are used
        in the order they were added.
        """
        self._faults.add(fault, path=path, times=times)

    def add_faults(self, faults: Iterable[Fault], *, path: str | None = None) -> None:
        """Apply each of ``faults`` once, in order, to the next requests matching ``path``:
        a sequence such as ``Fault.storm(...)``."""
        faults = list(faults)
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"add_faults() takes Fault values, not {type(fault).__name__}")
        for fault in faults:
            self._faults.add(fault, path=path, times=1)

    @property
    def pending_faults(self) -> list[tuple[Fault, str | None, int]]:
        """Faults not used up yet: (fault, path, remaining uses)."""
        return self._faults.pending()

    @property
    def latency(self) -> float:
        """Seconds added before answering every API request."""
        return self._state.latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError(f"latency must be >= 0 seconds, not {seconds}")
        with self._state.lock:
            self._state.latency = float(seconds)

    def pause_stream(self, stream_key: str) -> None:
        """Mute a stream as its owner can: its activity ends and PUTs answer ``paused``."""
        self._state.pause_stream(stream_key)

    def resume_stream(self, stream_key: str) -> None:
        """Undo :meth:`pause_stream`; the next PUT starts a new activity."""
        self._state.resume_stream(stream_key)

    @property
    def stale_after(self) -> float:
        """Seconds without an accepted request after which the preview marks a card stale."""
        return self._stale_after

    @property
    def max_live_activities(self) -> int | None:
        """How many activities may be live at once, or ``None`` for no limit."""
        return self._state.max_live_activities

    @property
    def requests_per_minute(self) -> int | None:
        """The request budget per API key, or ``None`` for no limit."""
        budget = self._state.budget
        return None if budget is None else budget.limit

    def degrade_health(self, check: str = "delivery") -> None:
        """Make ``GET /health`` answer 503 with ``ok: false`` and ``check`` in error.

        The checks are ``"state"`` and ``"delivery"``. The API itself keeps answering, as a
        degraded service may; add a fault for that.
        """
        self._health.degrade(check)

    def restore_health(self) -> None:
        """Undo :meth:`degrade_health`."""
        self._health.restore()

    def reset(self) -> None:
        """Forget activities, streams, requests, faults, pauses, latency, spent budget and
        degraded health."""
        self._faults.clear()
        self._health.restore()
        self._state.reset()
