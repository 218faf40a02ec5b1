"""One console line per request: what was sent, and what the emulator answered.

``python -m activitysmith_track.emulator`` prints these as requests arrive. A line reads
(wrapped here)::

    PUT /live-activity/stream/nightly -> 200 updated · segmented_progress 2/3
        · "Nightly backup" · subtitle "Upload" · color blue

that is: method and path, status and operation (or the error and its message), then the
content state that was sent (type, step, percentage or value, metrics, timer, message,
title, subtitle, colour, dismissal) and any note the emulator made about the request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from activitysmith_track.emulator._state import RecordedRequest

__all__ = ["format_request"]

_TEXT = 60
_METRICS = 4
_LEGACY_OPERATION = {
    "/live-activity/start": "started",
    "/live-activity/update": "updated",
    "/live-activity/end": "ended",
}


def _cut(text: str, limit: int = _TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quoted(value: Any) -> str:
    return '"' + _cut(str(value)) + '"'


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _outcome(request: RecordedRequest) -> str:
    if request.status is None:
        return "-"
    response = request.response if isinstance(request.response, Mapping) else {}
    if request.status >= 400:
        error, message = response.get("error"), response.get("message")
        words = ": ".join(str(w) for w in (error, message) if isinstance(w, str))
        return f"{request.status} {words}".rstrip()
    if request.path == "/health":
        return f"{request.status} ok={response.get('ok')}"
    operation = response.get("operation") or _LEGACY_OPERATION.get(request.path, "ok")
    if response.get("ignored"):
        operation = f"{operation} (ignored)"
    return f"{request.status} {operation}"


def _kind_part(state: Mapping[str, Any], kind: str | None) -> str | None:
    if kind == "segmented_progress" and "current_step" in state:
        step = _number(state["current_step"])
        if "number_of_steps" in state:
            return f"{kind} {step}/{_number(state['number_of_steps'])}"
        return f"{kind} step {step}"
    if kind == "progress":
        if "percentage" in state:
            return f"{kind} {_number(state['percentage'])}%"
        if "value" in state and "upper_limit" in state:
            return f"{kind} {_number(state['value'])}/{_number(state['upper_limit'])}"
    if kind in ("metrics", "stats") and isinstance(state.get("metrics"), list):
        items = [m for m in state["metrics"] if isinstance(m, Mapping)]
        shown = [
            f"{m.get('label')}={_number(m.get('value'))}{m.get('unit') or ''}"
            for m in items[:_METRICS]
        ]
        more = f" +{len(items) - _METRICS}" if len(items) > _METRICS else ""
        return f"{kind} {' '.join(shown)}{more}"
    if kind == "timer":
        words = []
        if "duration_seconds" in state:
            words.append(f"{_number(state['duration_seconds'])} s")
        if state.get("counts_down") is False:
            words.append("count-up")
        if state.get("is_running") is False:
            words.append("paused")
        return " ".join([kind, *words])
    if kind == "value" and "value" in state:
        return f"{kind} {_quoted(state['value'])}"
    return kind


def _state_parts(state: Mapping[str, Any], kind: str | None) -> list[str]:
    parts = [p for p in (_kind_part(state, kind),) if p]
    if "title" in state:
        parts.append(_quoted(state["title"]))
    if "message" in state:
        parts.append(f"message {_quoted(state['message'])}")
    if "subtitle" in state:
        parts.append(f"subtitle {_quoted(state['subtitle'])}")
    if "color" in state:
        parts.append(f"color {state['color']}")
    for field, unit in (("auto_dismiss_seconds", "s"), ("auto_dismiss_minutes", "min")):
        if field in state:
            parts.append(f"dismiss {_number(state[field])} {unit}")
    return parts


def format_request(request: RecordedRequest) -> str:
    """The request's console line (see the module docstring); never shows the API key."""
    head = f"{request.method} {request.path} -> {_outcome(request)}"
    if request.fault:
        head += f" [fault: {request.fault}]"
    body = request.body if isinstance(request.body, Mapping) else {}
    state = body.get("content_state")
    parts = [head]
    if isinstance(state, Mapping):
        kind = state.get("type") or request.activity_type
        parts.extend(_state_parts(state, kind if isinstance(kind, str) else None))
    parts.extend(f"note: {note}" for note in request.notes)
    return " · ".join(parts)
