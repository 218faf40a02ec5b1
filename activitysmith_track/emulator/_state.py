"""What the emulator remembers, and the API's behaviour on top of it.

One :class:`EmulatorState` holds activities, streams, the request log and the settings, all
behind one lock. Handlers call :meth:`EmulatorState.handle` with an already parsed request and
get an :class:`Answer`; nothing here knows about sockets, so the rules read like the contract.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal

import attrs

from activitysmith_track._errors import ValidationError
from activitysmith_track.emulator import _validate
from activitysmith_track.emulator._faults import limit_body

__all__ = [
    "ActivityRecord",
    "Answer",
    "EmulatorState",
    "HistoryEntry",
    "RecordedRequest",
]

ActivityStatus = Literal["live", "ended"]

_STREAM_PREFIX = "/live-activity/stream/"


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """One API request as the emulator saw it; the Authorization header is never kept.

    ``status`` and ``response`` are ``None`` when no answer was sent (a hang or drop fault).
    ``body`` is the parsed JSON, the raw text when it was not JSON, or ``None`` when empty.
    """

    method: str
    path: str
    body: Any
    status: int | None
    response: Any
    time: float
    fault: str | None = None
    authorized: bool = True


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


@attrs.frozen(kw_only=True)
class ActivityRecord:
    """A snapshot of one Live Activity as a phone would show it, plus everything it received.

    ``state`` is the shown content state: each update replaces it, but ``type`` (and a
    timer's ``duration_seconds``, a segmented bar's ``number_of_steps``) carry over when left
    out. ``auto_dismiss`` is the requested dismissal delay in seconds after the end.
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
    ended_at: float | None = None
    end_reason: str | None = None
    auto_dismiss: float | None = None
    update_count: int = 0
    history: tuple[HistoryEntry, ...] = ()


@attrs.frozen
class Answer:
    """What to send back: status, JSON body and extra headers."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Activity:
    """The mutable working copy of an activity; snapshots become :class:`ActivityRecord`."""

    def __init__(self, *, activity_id: str, stream_key: str | None, started_at: float) -> None:
        self.id = activity_id
        self.stream_key = stream_key
        self.started_at = started_at
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
            ended_at=self.ended_at,
            end_reason=self.end_reason,
            auto_dismiss=self.auto_dismiss,
            update_count=self.update_count,
            history=tuple(self.history),
        )


def _iso(when: float) -> str:
    moment = datetime.fromtimestamp(when, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _bad_request(message: str) -> Answer:
    return Answer(400, {"error": "Bad Request", "message": message})


def _merge(shown: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
    """The state a phone shows after ``sent`` arrives: it replaces ``shown``, except fields
    the service documents (or needs) to carry over when left out."""
    merged = dict(sent)
    if "type" not in merged and "type" in shown:
        merged["type"] = shown["type"]
    kind = merged.get("type")
    # A timer keeps its window unless a new duration is sent (contract section 4), and a
    # segmented bar needs its step count to draw an update that sends only current_step.
    carried = {"timer": "duration_seconds", "segmented_progress": "number_of_steps"}.get(kind or "")
    if carried and carried not in merged and carried in shown:
        merged[carried] = shown[carried]
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


class EmulatorState:
    """All of the emulator's memory and rules, guarded by one lock."""

    def __init__(
        self,
        *,
        max_live_activities: int | None,
        clock: Callable[[], float],
        warning_updates: int,
        warning_interval: float,
        rotate_after: float | None,
    ) -> None:
        self.lock = threading.RLock()
        self.recorded = threading.Condition(self.lock)
        self.max_live_activities = max_live_activities
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
        body_error: str | None = None,
        fault: str | None = None,
    ) -> Answer:
        """Answer one authorized API request, changing state as the service would."""
        with self.lock:
            now = self.clock()
            route = self._route(method, path)
            if isinstance(route, Answer):
                return route
            op, stream_key = route
            if stream_key is not None and not _validate.check_stream_key(stream_key):
                return Answer(
                    400,
                    {
                        "error": "Invalid stream_key",
                        "message": "stream_key must be 1-255 characters of letters, digits, "
                        "'_' or '-'",
                    },
                )
            if body_error is not None:
                return _bad_request(body_error)
            if body is None and op != _validate.STREAM_DELETE:
                return _bad_request("a JSON body is required")
            if body is not None and not isinstance(body, dict):
                return _bad_request("the JSON body must be an object")
            request: dict[str, Any] = body or {}
            try:
                _validate.check_top_level(request, op)
            except ValidationError as exc:
                return _bad_request(str(exc))
            handler = {
                _validate.START: self._start,
                _validate.UPDATE: self._update,
                _validate.END: self._end_legacy,
                _validate.STREAM_PUT: self._put,
                _validate.STREAM_DELETE: self._delete,
            }[op]
            endpoint = f"{method} {path}"
            return handler(request, stream_key or "", now, _Context(endpoint, body, fault))

    def _route(self, method: str, path: str) -> tuple[str, str | None] | Answer:
        legacy = {
            "/live-activity/start": _validate.START,
            "/live-activity/update": _validate.UPDATE,
            "/live-activity/end": _validate.END,
        }
        if path in legacy:
            if method != "POST":
                return Answer(405, {"error": "Method Not Allowed", "message": "use POST"})
            return legacy[path], None
        if path.startswith(_STREAM_PREFIX):
            key = path[len(_STREAM_PREFIX) :]
            if method == "PUT":
                return _validate.STREAM_PUT, key
            if method == "DELETE":
                return _validate.STREAM_DELETE, key
            return Answer(405, {"error": "Method Not Allowed", "message": "use PUT or DELETE"})
        return Answer(404, {"error": "Not Found", "message": f"no endpoint {method} {path}"})

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
        limit = self.max_live_activities
        if limit is None:
            return None
        active = self.live_count()
        return Answer(429, limit_body(limit, active)) if active >= limit else None

    def _end(self, activity: _Activity, *, reason: str) -> None:
        activity.status = "ended"
        activity.ended_at = self.clock()
        activity.end_reason = reason

    def _apply(self, activity: _Activity, state: dict[str, Any], body: Mapping[str, Any]) -> None:
        activity.state = state
        activity.extras.update(_extras(body))

    def _note(
        self, activity: _Activity | None, ctx: _Context, answer: Answer, now: float
    ) -> Answer:
        if activity is not None:
            activity.history.append(
                HistoryEntry(
                    time=now,
                    endpoint=ctx.endpoint,
                    request=copy.deepcopy(ctx.body),
                    status=answer.status,
                    response=copy.deepcopy(answer.body),
                    fault=ctx.fault,
                )
            )
        return answer

    def _checked(
        self,
        request: Mapping[str, Any],
        shown: Mapping[str, Any],
        op: str,
    ) -> dict[str, Any] | Answer:
        """The merged state after validation, or the 400 that refuses the request."""
        sent = request.get("content_state")
        if sent is None:
            if op == _validate.STREAM_DELETE:
                merged = None
            else:
                return _bad_request("content_state is required")
        elif not isinstance(sent, dict):
            return _bad_request("content_state must be a JSON object")
        else:
            merged = _merge(shown, sent)
        try:
            _validate.validate_request(request, merged, op)
        except ValidationError as exc:
            return _bad_request(str(exc))
        return dict(shown) if merged is None else merged

    def _common(self, activity_id: str, now: float) -> dict[str, Any]:
        return {"success": True, "activity_id": activity_id, "timestamp": _iso(now)}

    def _delivery(self, activity: _Activity) -> dict[str, Any]:
        out: dict[str, Any] = {"devices_notified": 1, "users_notified": 1}
        if activity.extras.get("tags") is not None:
            out["tags"] = activity.extras["tags"]
        return out

    # -- legacy lifecycle ----------------------------------------------------------------

    def _start(self, request: dict[str, Any], _key: str, now: float, ctx: _Context) -> Answer:
        sent = request.get("content_state")
        if isinstance(sent, dict) and "type" not in sent:
            return _bad_request("content_state.type is required to start a Live Activity")
        checked = self._checked(request, {}, _validate.START)
        if isinstance(checked, Answer):
            return checked
        refused = self._capacity_answer()
        if refused is not None:
            return refused
        activity = self._new_activity(None, now)
        self._apply(activity, checked, request)
        answer = Answer(
            200,
            {
                **self._common(activity.id, now),
                **self._delivery(activity),
                "effective_channel_slugs": activity.extras.get("channels"),
            },
        )
        return self._note(activity, ctx, answer, now)

    def _known(self, request: Mapping[str, Any]) -> _Activity | Answer:
        activity_id = request.get("activity_id")
        if not isinstance(activity_id, str) or not activity_id:
            return _bad_request("activity_id is required (a string)")
        activity = self.activities.get(activity_id)
        if activity is None:
            # The contract models only 403 for a foreign activity; an id this emulator never
            # issued is answered 404 so that a lost or mistyped id is told apart from scope.
            return Answer(
                404, {"error": "Not Found", "message": f"no Live Activity {activity_id!r}"}
            )
        return activity

    def _already_ended(self, activity: _Activity, now: float) -> Answer:
        # A repeated update or end of an ended activity has no effect, as the contract says.
        body = {**self._common(activity.id, now), "ignored": True}
        return Answer(200, {**body, "message": "Live Activity already ended"})

    def _update(self, request: dict[str, Any], _key: str, now: float, ctx: _Context) -> Answer:
        activity = self._known(request)
        if isinstance(activity, Answer):
            return activity
        checked = self._checked(request, activity.state, _validate.UPDATE)
        if isinstance(checked, Answer):
            return self._note(activity, ctx, checked, now)
        if activity.status == "ended":
            return self._note(activity, ctx, self._already_ended(activity, now), now)
        self._apply(activity, checked, request)
        activity.update_count += 1
        answer = Answer(200, {**self._common(activity.id, now), **self._delivery(activity)})
        return self._note(activity, ctx, answer, now)

    def _end_legacy(self, request: dict[str, Any], _key: str, now: float, ctx: _Context) -> Answer:
        activity = self._known(request)
        if isinstance(activity, Answer):
            return activity
        checked = self._checked(request, activity.state, _validate.END)
        if isinstance(checked, Answer):
            return self._note(activity, ctx, checked, now)
        if activity.status == "ended":
            return self._note(activity, ctx, self._already_ended(activity, now), now)
        self._apply(activity, checked, request)
        self._end(activity, reason="ended")
        activity.auto_dismiss = _auto_dismiss(checked)
        answer = Answer(
            200,
            {**self._common(activity.id, now), "devices_notified": 1, "end_reason": "ended"},
        )
        return self._note(activity, ctx, answer, now)

    # -- streams -------------------------------------------------------------------------

    def _stream_common(
        self, key: str, operation: str, activity_id: str | None, now: float
    ) -> dict[str, Any]:
        return {
            "success": True,
            "operation": operation,
            "stream_key": key,
            "activity_id": activity_id,
            "timestamp": _iso(now),
        }

    def _put(self, request: dict[str, Any], key: str, now: float, ctx: _Context) -> Answer:
        current = self._stream_activity(key)
        if key in self.paused:
            answer = Answer(
                200,
                {
                    **self._stream_common(key, "paused", None, now),
                    "message": "This stream is paused by its owner; nothing was sent",
                },
            )
            return self._note(current, ctx, answer, now)
        if current is None or current.status == "ended":
            return self._put_start(request, key, now, ctx, previous=None)
        if self.rotate_after is not None and now - current.started_at >= self.rotate_after:
            return self._put_start(request, key, now, ctx, previous=current)
        checked = self._checked(request, current.state, _validate.UPDATE)
        if isinstance(checked, Answer):
            return self._note(current, ctx, checked, now)
        extras = _extras(request)
        if checked == current.state and all(current.extras.get(k) == v for k, v in extras.items()):
            answer = Answer(200, self._stream_common(key, "noop", current.id, now))
            return self._note(current, ctx, answer, now)
        self._apply(current, checked, request)
        current.update_count += 1
        body = {
            **self._stream_common(key, "updated", current.id, now),
            **self._delivery(current),
            "effective_channel_slugs": current.extras.get("channels"),
        }
        warning = self._warning(current, now)
        if warning is not None:
            body["warning"] = warning
        return self._note(current, ctx, Answer(200, body), now)

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
        now: float,
        ctx: _Context,
        *,
        previous: _Activity | None,
    ) -> Answer:
        shown: Mapping[str, Any] = {} if previous is None else previous.state
        sent = request.get("content_state")
        if previous is None and isinstance(sent, dict) and "type" not in sent:
            return _bad_request(
                "content_state.type is required when the stream has no live activity"
            )
        op = _validate.STREAM_PUT if previous is None else _validate.UPDATE
        checked = self._checked(request, shown, op)
        if isinstance(checked, Answer):
            return self._note(previous, ctx, checked, now)
        if previous is None:
            refused = self._capacity_answer()
            if refused is not None:
                return refused
        else:
            self._end(previous, reason="rotated")
        activity = self._new_activity(key, now)
        if previous is not None:
            activity.extras = copy.deepcopy(previous.extras)
        self._apply(activity, checked, request)
        operation = "started" if previous is None else "rotated"
        body = {
            **self._stream_common(key, operation, activity.id, now),
            **self._delivery(activity),
            "effective_channel_slugs": activity.extras.get("channels"),
        }
        if previous is not None:
            body["previous_activity_id"] = previous.id
        answer = Answer(200, body)
        if previous is not None:
            self._note(previous, ctx, answer, now)
        return self._note(activity, ctx, answer, now)

    def _delete(self, request: dict[str, Any], key: str, now: float, ctx: _Context) -> Answer:
        current = self._stream_activity(key)
        if current is None:
            return Answer(
                404,
                {
                    "error": "Live Activity stream not found",
                    "message": f"No Live Activity stream with key {key!r}",
                },
            )
        checked = self._checked(request, current.state, _validate.STREAM_DELETE)
        if isinstance(checked, Answer):
            return self._note(current, ctx, checked, now)
        if current.status == "ended":
            # The docs' "already inactive" example answers with a null activity_id.
            answer = Answer(
                200,
                {
                    **self._stream_common(key, "ended", None, now),
                    "ignored": True,
                    "message": "The stream has no live activity",
                },
            )
            return self._note(current, ctx, answer, now)
        self._apply(current, checked, request)
        self._end(current, reason="ended")
        current.auto_dismiss = _auto_dismiss(checked)
        answer = Answer(
            200, {**self._stream_common(key, "ended", current.id, now), "devices_notified": 1}
        )
        return self._note(current, ctx, answer, now)


@attrs.frozen
class _Context:
    endpoint: str
    body: Any
    fault: str | None
