"""What the emulator remembers, and the API's behaviour on top of it.

One :class:`EmulatorState` holds activities, streams, the request log and the settings, all
behind one lock. Handlers call :meth:`EmulatorState.handle` with an already parsed request and
get an :class:`Answer`; nothing here knows about sockets. Which requests are valid is decided
by :mod:`._rules` alone; this module decides what a valid request does.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

import attrs

from activitysmith_track.emulator import _rules
from activitysmith_track.emulator._budget import RequestBudget
from activitysmith_track.emulator._rules import ENDPOINTS, RuleError

__all__ = [
    "ActivityRecord",
    "Answer",
    "EmulatorState",
    "HistoryEntry",
    "RecordedRequest",
    "iso_timestamp",
]

ActivityStatus = Literal["live", "ended"]

_STREAM_PREFIX = "/live-activity/stream/"
# A PUT is routed as one endpoint; whether it is the first or a later one (their rules
# differ) depends on the stream, so _put decides.
_STREAM_PUT = "stream_put"


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One API request as the emulator saw it; the Authorization header is never kept.

    ``status`` and ``response`` are ``None`` when no answer was sent (a hang or drop fault).
    ``body`` is the parsed JSON, the raw text when it was not JSON, or ``None`` when empty.
    ``activity_id`` and ``activity_type`` name the activity the request was about, when
    there is one; ``notes`` are what the emulator accepted on an assumption (see
    :mod:`activitysmith_track.emulator._rules`), e.g. a badge on a type that does not draw it.
    """

    method: str
    path: str
    body: Any
    status: int | None
    response: Any
    time: float
    fault: str | None = None
    authorized: bool = True
    activity_id: str | None = None
    activity_type: str | None = None
    notes: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class HistoryEntry:
    """One request about an activity, accepted or refused, with the emulator's answer.

    ``status`` is what the emulator decided even when a fault kept the answer from the
    client (``fault`` then says which).
    """

    time: float
    endpoint: str
    request: Any
    status: int
    response: Any
    fault: str | None = None
    notes: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ActivityRecord:
    """A snapshot of one Live Activity as a phone would show it, plus everything it received.

    ``state`` is the shown content state: each update replaces it, but ``type`` (and a
    timer's ``duration_seconds`` and ``counts_down``, a segmented bar's ``number_of_steps``)
    carry over when left out. ``auto_dismiss`` is the requested dismissal delay in seconds
    after the end. ``updated_at`` is when a request was last accepted for it (a no-op PUT
    counts: its sender is still there).
    """

    id: str
    type: str | None
    status: ActivityStatus
    stream_key: str | None
    state: dict[str, Any]
    action: Any = None
    secondary_action: Any = None
    alert: Any = None
    tags: list[str] | None = None
    metadata: dict[str, Any] | None = None
    channels: list[str] | None = None
    started_at: float
    updated_at: float
    ended_at: float | None = None
    end_reason: str | None = None
    auto_dismiss: float | None = None
    update_count: int = 0
    history: tuple[HistoryEntry, ...] = ()


@attrs.frozen
class Answer:
    """What to send back (status, JSON body, extra headers), and what it was about."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()
    activity: ActivityRecord | None = None
    notes: tuple[str, ...] = ()


class _Activity:
    """The mutable working copy of an activity; snapshots become :class:`ActivityRecord`."""

    def __init__(self, *, activity_id: str, stream_key: str | None, started_at: float) -> None:
        self.id = activity_id
        self.stream_key = stream_key
        self.started_at = started_at
        self.updated_at = started_at
        self.status: ActivityStatus = "live"
        self.state: dict[str, Any] = {}
        self.extras: dict[str, Any] = {}
        self.ended_at: float | None = None
        self.end_reason: str | None = None
        self.auto_dismiss: float | None = None
        self.update_count = 0
        self.history: list[HistoryEntry] = []

    def snapshot(self) -> ActivityRecord:
        extras = copy.deepcopy(self.extras)
        return ActivityRecord(
            id=self.id,
            type=self.state.get("type"),
            status=self.status,
            stream_key=self.stream_key,
            state=copy.deepcopy(self.state),
            action=extras.get("action"),
            secondary_action=extras.get("secondary_action"),
            alert=extras.get("alert"),
            tags=extras.get("tags"),
            metadata=extras.get("metadata"),
            channels=extras.get("channels"),
            started_at=self.started_at,
            updated_at=self.updated_at,
            ended_at=self.ended_at,
            end_reason=self.end_reason,
            auto_dismiss=self.auto_dismiss,
            update_count=self.update_count,
            history=tuple(self.history),
        )


def iso_timestamp(when: float) -> str:
    """ISO-8601 with milliseconds and ``Z``, as the service writes its timestamps."""
    moment = datetime.fromtimestamp(when, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _bad_request(message: str) -> Answer:
    return Answer(400, _rules.bad_request(message))


# What carries over when an update leaves it out: a timer keeps its window (contract section
# 4) and its direction, and a segmented bar its step count, which it needs to draw an update
# that sends only current_step. Assumption: counts_down carries over too, so a count-up timer
# does not turn into a countdown because a client left the flag out.
_CARRIED: dict[str, tuple[str, ...]] = {
    "timer": ("duration_seconds", "counts_down"),
    "segmented_progress": ("number_of_steps",),
}


def _merge(shown: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The state a phone shows after ``sent`` arrives: it replaces ``shown``, except the
    type and the fields in :data:`_CARRIED`."""
    merged = copy.deepcopy(dict(sent))
    if "type" not in merged and "type" in shown:
        merged["type"] = shown["type"]
    for field in _CARRIED.get(merged.get("type") or "", ()):
        if field not in merged and field in shown:
            merged[field] = shown[field]
    return merged


def _extras(body: Mapping[str, Any]) -> dict[str, Any]:
    """The non-state values a request sets; leaving one out keeps the current value."""
    out: dict[str, Any] = {}
    for key in ("action", "secondary_action", "alert", "tags", "metadata"):
        if key in body:
            out[key] = copy.deepcopy(body[key])
    target = body.get("target")
    if isinstance(body.get("channels"), list):
        out["channels"] = list(body["channels"])
    elif isinstance(target, Mapping) and isinstance(target.get("channels"), list):
        out["channels"] = list(target["channels"])
    return out


def _auto_dismiss(state: Mapping[str, Any]) -> float | None:
    # Seconds win over minutes when both are sent (SDK README).
    seconds = state.get("auto_dismiss_seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        return float(seconds)
    minutes = state.get("auto_dismiss_minutes")
    if isinstance(minutes, (int, float)) and not isinstance(minutes, bool):
        return float(minutes) * 60
    return None


@attrs.frozen
class _Context:
    endpoint: str
    body: Any
    fault: str | None
    now: float


class EmulatorState:
    """All of the emulator's memory and rules, guarded by one lock."""

    def __init__(
        self,
        *,
        max_live_activities: int | None,
        requests_per_minute: int | None,
        clock: Callable[[], float],
        warning_updates: int,
        warning_interval: float,
        rotate_after: float | None,
    ) -> None:
        self.lock = threading.RLock()
        self.recorded = threading.Condition(self.lock)
        self.max_live_activities = max_live_activities
        self.budget = None if requests_per_minute is None else RequestBudget(requests_per_minute)
        self.clock = clock
        self.warning_updates = warning_updates
        self.warning_interval = warning_interval
        self.rotate_after = rotate_after
        self.latency = 0.0
        self.activities: dict[str, _Activity] = {}
        self.streams: dict[str, str] = {}
        self.paused: set[str] = set()
        self.requests: list[RecordedRequest] = []
        # Bumped on every change the preview page can show; the page long-polls on it.
        self.version = 0

    # -- bookkeeping ---------------------------------------------------------------------

    def reset(self) -> None:
        with self.lock:
            self.activities.clear()
            self.streams.clear()
            self.paused.clear()
            self.requests.clear()
            self.latency = 0.0
            if self.budget is not None:
                self.budget.reset()
            self._changed()

    def _changed(self) -> None:
        # Callers hold the lock; waiters share the condition with wait_for_requests.
        self.version += 1
        self.recorded.notify_all()

    def wake(self) -> None:
        """Release every waiter (the server is stopping), without changing anything."""
        with self.lock:
            self.recorded.notify_all()

    def wait_for_change(self, after: int, timeout: float, stopping: threading.Event) -> int:
        """Block until :attr:`version` differs from ``after``, ``timeout`` passes or the
        server stops; returns the version then."""
        with self.lock:
            self.recorded.wait_for(
                lambda: self.version != after or stopping.is_set(), max(0.0, timeout)
            )
            return self.version

    def record(self, request: RecordedRequest) -> None:
        with self.lock:
            self.requests.append(request)
            self._changed()

    def wait_for_requests(self, count: int, timeout: float) -> list[RecordedRequest]:
        with self.lock:
            if not self.recorded.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} requests within {timeout} s, got {len(self.requests)}"
                )
            return list(self.requests)

    def snapshot_activities(self) -> dict[str, ActivityRecord]:
        with self.lock:
            return {key: activity.snapshot() for key, activity in self.activities.items()}

    def live_count(self) -> int:
        return sum(1 for a in self.activities.values() if a.status == "live")

    def pause_stream(self, key: str) -> None:
        with self.lock:
            self.paused.add(key)
            current = self._stream_activity(key)
            if current is not None and current.status == "live":
                self._end(current, reason="paused")
            self._changed()

    def resume_stream(self, key: str) -> None:
        with self.lock:
            self.paused.discard(key)
            self._changed()

    # -- request handling ----------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        key: str,
        body_error: str | None = None,
        fault: str | None = None,
    ) -> Answer:
        """Answer one authorized API request (with API key ``key``), as the service would."""
        with self.lock:
            now = self.clock()
            route = self._route(method, path)
            if isinstance(route, Answer):
                return route
            op, stream_key = route
            budget_headers: tuple[tuple[str, str], ...] = ()
            if self.budget is not None:
                spend = self.budget.spend(key, now)
                budget_headers = spend.headers
                if not spend.allowed:
                    message = (
                        f"Too many requests: {self.budget.limit} per {self.budget.window:g} s "
                        f"for this account; retry in {spend.retry_after} s"
                    )
                    return Answer(429, _rules.rate_limited_body(message), budget_headers)
            ctx = _Context(f"{method} {path}", body, fault, now)
            answer = self._handle(op, stream_key, body, body_error, ctx)
            return attrs.evolve(answer, headers=answer.headers + budget_headers)

    def _handle(
        self,
        op: str,
        stream_key: str | None,
        body: Any,
        body_error: str | None,
        ctx: _Context,
    ) -> Answer:
        if stream_key is not None:
            try:
                _rules.check_stream_key(stream_key)
            except RuleError as exc:
                return Answer(400, exc.body)
        if body_error is not None:
            return _bad_request(body_error)
        if body is None and op != _rules.STREAM_DELETE:
            return _bad_request("a JSON body is required")
        if body is not None and not isinstance(body, dict):
            return _bad_request("the JSON body must be an object")
        request: dict[str, Any] = body or {}
        if op == _rules.START:
            return self._start(request, ctx)
        if op == _rules.UPDATE:
            return self._update(request, ctx)
        if op == _rules.END:
            return self._end_legacy(request, ctx)
        if op == _STREAM_PUT:
            return self._put(request, stream_key or "", ctx)
        return self._delete(request, stream_key or "", ctx)

    def _route(self, method: str, path: str) -> tuple[str, str | None] | Answer:
        legacy = {
            "/live-activity/start": _rules.START,
            "/live-activity/update": _rules.UPDATE,
            "/live-activity/end": _rules.END,
        }
        if path in legacy:
            if method != "POST":
                return Answer(405, {"error": "Method Not Allowed", "message": "use POST"})
            return legacy[path], None
        if path.startswith(_STREAM_PREFIX):
            key = path[len(_STREAM_PREFIX) :]
            if method == "PUT":
                return _STREAM_PUT, key
            if method == "DELETE":
                return _rules.STREAM_DELETE, key
            return Answer(405, {"error": "Method Not Allowed", "message": "use PUT or DELETE"})
        return Answer(404, _rules.not_found_body(f"no endpoint {method} {path}"))

    def _stream_activity(self, key: str) -> _Activity | None:
        activity_id = self.streams.get(key)
        return None if activity_id is None else self.activities.get(activity_id)

    def _new_activity(self, stream_key: str | None, now: float) -> _Activity:
        activity = _Activity(activity_id=str(uuid.uuid4()), stream_key=stream_key, started_at=now)
        self.activities[activity.id] = activity
        if stream_key is not None:
            self.streams[stream_key] = activity.id
        return activity

    def _capacity_answer(self) -> Answer | None:
        # Assumption: the 4 concurrent activities of the Rate Limits page count live
        # activities only (an ended card still on screen does not hold a place).
        limit = self.max_live_activities
        if limit is None:
            return None
        active = self.live_count()
        if active < limit:
            return None
        return Answer(429, _rules.limit_reached_body(limit, active))

    def _end(self, activity: _Activity, *, reason: str) -> None:
        activity.status = "ended"
        activity.ended_at = self.clock()
        activity.end_reason = reason

    def _apply(
        self, activity: _Activity, state: dict[str, Any], body: Mapping[str, Any], now: float
    ) -> None:
        activity.state = state
        activity.extras.update(_extras(body))
        activity.updated_at = now

    def _note(
        self,
        activity: _Activity | None,
        ctx: _Context,
        answer: Answer,
        notes: list[str] | tuple[str, ...] = (),
    ) -> Answer:
        """Record ``answer`` in the activity's history and attach the activity to it."""
        if activity is None:
            return attrs.evolve(answer, notes=tuple(notes))
        activity.history.append(
            HistoryEntry(
                time=ctx.now,
                endpoint=ctx.endpoint,
                request=copy.deepcopy(ctx.body),
                status=answer.status,
                response=copy.deepcopy(answer.body),
                fault=ctx.fault,
                notes=tuple(notes),
            )
        )
        return attrs.evolve(answer, activity=activity.snapshot(), notes=tuple(notes))

    def _checked(
        self, op: str, request: Mapping[str, Any], shown: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], list[str]] | Answer:
        """The state to show after ``request`` and the rules' notes, or the 400."""
        try:
            notes = _rules.check_request(ENDPOINTS[op], request, shown=shown)
        except RuleError as exc:
            return Answer(400, exc.body)
        sent = request.get("content_state")
        merged = dict(shown or {}) if sent is None else _merge(shown or {}, sent)
        return merged, notes

    def _common(self, activity_id: str, now: float) -> dict[str, Any]:
        return {"success": True, "activity_id": activity_id, "timestamp": iso_timestamp(now)}

    def _delivery(self, activity: _Activity) -> dict[str, Any]:
        out: dict[str, Any] = {"devices_notified": 1, "users_notified": 1}
        if activity.extras.get("tags") is not None:
            out["tags"] = activity.extras["tags"]
        return out

    # -- legacy lifecycle ----------------------------------------------------------------

    def _start(self, request: dict[str, Any], ctx: _Context) -> Answer:
        checked = self._checked(_rules.START, request, None)
        if isinstance(checked, Answer):
            return checked
        state, notes = checked
        refused = self._capacity_answer()
        if refused is not None:
            return refused
        activity = self._new_activity(None, ctx.now)
        self._apply(activity, state, request, ctx.now)
        answer = Answer(
            200,
            {
                **self._common(activity.id, ctx.now),
                **self._delivery(activity),
                "effective_channel_slugs": activity.extras.get("channels"),
            },
        )
        return self._note(activity, ctx, answer, notes)

    def _known(self, request: Mapping[str, Any]) -> _Activity | Answer:
        activity_id = request.get("activity_id")
        if not isinstance(activity_id, str) or not activity_id:
            return _bad_request("activity_id is required (a string)")
        activity = self.activities.get(activity_id)
        if activity is None:
            # The contract models only 403 for a foreign activity; an id this emulator never
            # issued is answered 404 so that a lost or mistyped id is told apart from scope.
            return Answer(404, _rules.not_found_body(f"no Live Activity {activity_id!r}"))
        return activity

    def _already_ended(self, activity: _Activity, now: float) -> Answer:
        # A repeated update or end of an ended activity has no effect, as the contract says.
        body = {**self._common(activity.id, now), "ignored": True}
        return Answer(200, {**body, "message": "Live Activity already ended"})

    def _update(self, request: dict[str, Any], ctx: _Context) -> Answer:
        activity = self._known(request)
        if isinstance(activity, Answer):
            return activity
        checked = self._checked(_rules.UPDATE, request, activity.state)
        if isinstance(checked, Answer):
            return self._note(activity, ctx, checked)
        state, notes = checked
        if activity.status == "ended":
            return self._note(activity, ctx, self._already_ended(activity, ctx.now), notes)
        self._apply(activity, state, request, ctx.now)
        activity.update_count += 1
        answer = Answer(200, {**self._common(activity.id, ctx.now), **self._delivery(activity)})
        return self._note(activity, ctx, answer, notes)

    def _end_legacy(self, request: dict[str, Any], ctx: _Context) -> Answer:
        activity = self._known(request)
        if isinstance(activity, Answer):
            return activity
        checked = self._checked(_rules.END, request, activity.state)
        if isinstance(checked, Answer):
            return self._note(activity, ctx, checked)
        state, notes = checked
        if activity.status == "ended":
            return self._note(activity, ctx, self._already_ended(activity, ctx.now), notes)
        self._apply(activity, state, request, ctx.now)
        self._end(activity, reason="ended")
        activity.auto_dismiss = _auto_dismiss(state)
        answer = Answer(
            200,
            {**self._common(activity.id, ctx.now), "devices_notified": 1, "end_reason": "ended"},
        )
        return self._note(activity, ctx, answer, notes)

    # -- streams -------------------------------------------------------------------------

    def _stream_common(
        self, key: str, operation: str, activity_id: str | None, now: float
    ) -> dict[str, Any]:
        return {
            "success": True,
            "operation": operation,
            "stream_key": key,
            "activity_id": activity_id,
            "timestamp": iso_timestamp(now),
        }

    def _put(self, request: dict[str, Any], key: str, ctx: _Context) -> Answer:
        current = self._stream_activity(key)
        # Assumption: a paused stream answers "paused" before the request is checked (it
        # changes nothing either way).
        if key in self.paused:
            answer = Answer(
                200,
                {
                    **self._stream_common(key, "paused", None, ctx.now),
                    "message": "This stream is paused by its owner; nothing was sent",
                },
            )
            return self._note(current, ctx, answer)
        if current is None or current.status == "ended":
            return self._put_start(request, key, ctx, previous=None)
        if self.rotate_after is not None and ctx.now - current.started_at >= self.rotate_after:
            return self._put_start(request, key, ctx, previous=current)
        checked = self._checked(_rules.STREAM_LATER, request, current.state)
        if isinstance(checked, Answer):
            return self._note(current, ctx, checked)
        state, notes = checked
        extras = _extras(request)
        if state == current.state and all(current.extras.get(k) == v for k, v in extras.items()):
            current.updated_at = ctx.now
            answer = Answer(200, self._stream_common(key, "noop", current.id, ctx.now))
            return self._note(current, ctx, answer, notes)
        self._apply(current, state, request, ctx.now)
        current.update_count += 1
        body = {
            **self._stream_common(key, "updated", current.id, ctx.now),
            **self._delivery(current),
            "effective_channel_slugs": current.extras.get("channels"),
        }
        warning = self._warning(current, ctx.now)
        if warning is not None:
            body["warning"] = warning
        return self._note(current, ctx, Answer(200, body), notes)

    def _warning(self, activity: _Activity, now: float) -> str | None:
        count = activity.update_count
        elapsed = now - activity.started_at
        # "More than N updates, averaging more than one per interval since the start."
        if count > self.warning_updates and elapsed < count * self.warning_interval:
            return (
                f"This Live Activity has received {count} updates since it started; "
                "iOS may throttle frequent updates. Send fewer (about one every "
                f"{self.warning_interval:g} s on average)."
            )
        return None

    def _put_start(
        self,
        request: dict[str, Any],
        key: str,
        ctx: _Context,
        *,
        previous: _Activity | None,
    ) -> Answer:
        # A rotation starts a fresh activity, but the stream infers its type, so the request
        # is checked as the update it is from the client's side.
        op = _rules.STREAM_FIRST if previous is None else _rules.STREAM_LATER
        checked = self._checked(op, request, None if previous is None else previous.state)
        if isinstance(checked, Answer):
            return self._note(previous, ctx, checked)
        state, notes = checked
        if previous is None:
            refused = self._capacity_answer()
            if refused is not None:
                return refused
        else:
            self._end(previous, reason="rotated")
        activity = self._new_activity(key, ctx.now)
        if previous is not None:
            activity.extras = copy.deepcopy(previous.extras)
        self._apply(activity, state, request, ctx.now)
        operation = "started" if previous is None else "rotated"
        body = {
            **self._stream_common(key, operation, activity.id, ctx.now),
            **self._delivery(activity),
            "effective_channel_slugs": activity.extras.get("channels"),
        }
        if previous is not None:
            body["previous_activity_id"] = previous.id
        answer = Answer(200, body)
        if previous is not None:
            self._note(previous, ctx, answer, notes)
        return self._note(activity, ctx, answer, notes)

    def _delete(self, request: dict[str, Any], key: str, ctx: _Context) -> Answer:
        current = self._stream_activity(key)
        if current is None:
            return Answer(
                404,
                {
                    "error": "Live Activity stream not found",
                    "message": f"No Live Activity stream with key {key!r}",
                },
            )
        checked = self._checked(_rules.STREAM_DELETE, request, current.state)
        if isinstance(checked, Answer):
            return self._note(current, ctx, checked)
        state, notes = checked
        if current.status == "ended":
            # The docs' "already inactive" example answers with a null activity_id.
            answer = Answer(
                200,
                {
                    **self._stream_common(key, "ended", None, ctx.now),
                    "ignored": True,
                    "message": "The stream has no live activity",
                },
            )
            return self._note(current, ctx, answer, notes)
        self._apply(current, state, request, ctx.now)
        self._end(current, reason="ended")
        current.auto_dismiss = _auto_dismiss(state)
        answer = Answer(
            200,
            {**self._stream_common(key, "ended", current.id, ctx.now), "devices_notified": 1},
        )
        return self._note(current, ctx, answer, notes)
