"""The preview page's view of the emulator: activities, history and timers as plain JSON.

The page (``static/``) only draws what this module computes, so the rules that need thought
(a timer's elapsed time across pauses and resets, when an ended card is dismissed) are
written once, in Python, and tested without a browser.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from activitysmith_track.emulator._state import ActivityRecord, HistoryEntry, RecordedRequest

__all__ = ["DEFAULT_DISMISS_SECONDS", "preview_state"]

# Without auto_dismiss_*, the stream guide says iOS removes an ended activity after about two
# minutes; the legacy end schema defaults auto_dismiss_minutes to 3 (contract, 3.2 and 3.5).
DEFAULT_DISMISS_SECONDS = 120.0
_LEGACY_END_DISMISS_SECONDS = 180.0
_LEGACY_END = "POST /live-activity/end"

# Keep the page's payload bounded on a long-running emulator.
_MAX_REQUESTS = 100
_MAX_SENT_CHARS = 2000


def preview_state(
    activities: Iterable[ActivityRecord],
    requests: Iterable[RecordedRequest],
    *,
    version: int,
    now: float,
    stale_after: float,
) -> dict[str, Any]:
    """Everything the page draws, newest activity first.

    ``now`` is the emulator's clock; the page measures ticking timers and "updated ... ago"
    from the moment it received this answer, so a test clock and the browser's clock never
    have to agree. A live activity is ``stale`` once ``stale_after`` seconds passed since a
    request for it was last accepted: its job may have died without ending it.
    """
    ordered = sorted(activities, key=lambda a: a.started_at, reverse=True)
    recent = list(requests)[-_MAX_REQUESTS:]
    return {
        "version": version,
        "now": now,
        "stale_after": stale_after,
        "activities": [_activity(a, now, stale_after) for a in ordered],
        "requests": [_request(r) for r in reversed(recent)],
    }


def _activity(record: ActivityRecord, now: float, stale_after: float) -> dict[str, Any]:
    dismiss_at = _dismiss_at(record)
    return {
        "id": record.id,
        "type": record.type,
        "status": record.status,
        "dismissed": dismiss_at is not None and now >= dismiss_at,
        "stream_key": record.stream_key,
        "state": record.state,
        "action": record.action,
        "secondary_action": record.secondary_action,
        "tags": record.tags,
        "channels": record.channels,
        "started_at": record.started_at,
        "updated_at": record.updated_at,
        "stale": record.status == "live" and now - record.updated_at >= stale_after,
        "ended_at": record.ended_at,
        "end_reason": record.end_reason,
        "dismiss_at": dismiss_at,
        "update_count": record.update_count,
        "timer": _timer(record, now) if record.type == "timer" else None,
        "history": [_entry(e) for e in record.history],
    }


def _dismiss_at(record: ActivityRecord) -> float | None:
    if record.status != "ended" or record.ended_at is None:
        return None
    if record.end_reason == "rotated":
        # A rotated activity is replaced on the phone by its successor at once.
        return record.ended_at
    if record.auto_dismiss is not None:
        return record.ended_at + record.auto_dismiss
    ended_by_legacy = any(e.endpoint == _LEGACY_END and _accepted(e) for e in record.history)
    delay = _LEGACY_END_DISMISS_SECONDS if ended_by_legacy else DEFAULT_DISMISS_SECONDS
    return record.ended_at + delay


def _accepted(entry: HistoryEntry) -> bool:
    """Whether the request changed what the phone shows (not refused, no-op or ignored)."""
    if not 200 <= entry.status < 300:
        return False
    response = entry.response if isinstance(entry.response, Mapping) else {}
    return not response.get("ignored") and response.get("operation") not in ("noop", "paused")


def _sent_state(entry: HistoryEntry) -> Mapping[str, Any]:
    request = entry.request if isinstance(entry.request, Mapping) else {}
    sent = request.get("content_state")
    return sent if isinstance(sent, Mapping) else {}


def _timer(record: ActivityRecord, now: float) -> dict[str, Any]:
    """Elapsed running seconds at ``now``, replaying the history.

    A window starts with the activity and restarts whenever ``duration_seconds`` is sent;
    ``is_running: false`` stops the clock until ``is_running: true``; the end freezes it.
    """
    elapsed = 0.0
    running_since: float | None = None
    window_started = False
    for entry in record.history:
        if not _accepted(entry):
            continue
        response = entry.response if isinstance(entry.response, Mapping) else {}
        if response.get("activity_id") not in (None, record.id):
            continue  # the rotation that started this activity's successor
        sent = _sent_state(entry)
        if not window_started or "duration_seconds" in sent:
            window_started = True
            elapsed = 0.0
            running_since = entry.time if sent.get("is_running", True) is not False else None
        elif sent.get("is_running") is False and running_since is not None:
            elapsed += entry.time - running_since
            running_since = None
        elif sent.get("is_running") is True and running_since is None:
            running_since = entry.time
    if running_since is not None:
        until = record.ended_at if record.ended_at is not None else now
        elapsed += max(0.0, until - running_since)
    running = running_since is not None and record.status == "live"
    duration = record.state.get("duration_seconds")
    counts_down = record.state.get("counts_down", True) is not False and duration is not None
    return {
        "elapsed": elapsed,
        "running": running,
        # An ended timer shows its final reading, neither running nor "paused".
        "ended": record.status == "ended",
        "counts_down": counts_down,
        "duration": duration if isinstance(duration, int | float) else None,
    }


def _summary(response: Any) -> str:
    if isinstance(response, Mapping):
        error, message = response.get("error"), response.get("message")
        if isinstance(error, str) and isinstance(message, str):
            return f"{error}: {message}"
        for key in ("message", "error", "operation", "warning"):
            if isinstance(response.get(key), str):
                return str(response[key])
        if response.get("success") is True:
            return "ok"
    return "" if response is None else str(response)[:200]


def _entry(entry: HistoryEntry) -> dict[str, Any]:
    response = entry.response if isinstance(entry.response, Mapping) else {}
    sent = _sent_state(entry)
    text = json.dumps(sent, separators=(", ", ": "), sort_keys=False) if sent else ""
    return {
        "time": entry.time,
        "endpoint": entry.endpoint,
        "status": entry.status,
        "refused": entry.status >= 400,
        "operation": response.get("operation"),
        "ignored": bool(response.get("ignored")),
        "warning": response.get("warning"),
        "summary": _summary(entry.response),
        "fault": entry.fault,
        "notes": list(entry.notes),
        "sent": text[:_MAX_SENT_CHARS],
    }


def _request(request: RecordedRequest) -> dict[str, Any]:
    return {
        "time": request.time,
        "method": request.method,
        "path": request.path,
        "status": request.status,
        "refused": request.status is not None and request.status >= 400,
        "fault": request.fault,
        "authorized": request.authorized,
        "summary": _summary(request.response),
        "notes": list(request.notes),
    }
