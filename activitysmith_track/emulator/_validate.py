"""Request validation for the emulator: which keys each endpoint takes, and the field rules.

The field and per-type rules come from :mod:`activitysmith_track._model`, so the emulator
refuses exactly what the library itself would refuse before sending. Everything here raises
:class:`~activitysmith_track._errors.ValidationError`; the server turns it into a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from activitysmith_track import _model
from activitysmith_track._errors import ValidationError

__all__ = [
    "END",
    "START",
    "STREAM_DELETE",
    "STREAM_PUT",
    "UPDATE",
    "check_stream_key",
    "check_top_level",
    "validate_request",
]

START = "start"
UPDATE = "update"
END = "end"
STREAM_PUT = "stream_put"
STREAM_DELETE = "stream_delete"

# Request keys per endpoint, as the generated models of SDK 1.14.0 list them; the docs mark
# request objects additionalProperties: false, so anything else is refused.
_TOP_LEVEL: dict[str, frozenset[str]] = {
    START: frozenset(
        {"content_state", "action", "secondary_action", "alert", "target", "tags", "metadata"}
    ),
    UPDATE: frozenset(
        {"activity_id", "content_state", "action", "secondary_action", "tags", "metadata"}
    ),
    END: frozenset(
        {"activity_id", "content_state", "action", "secondary_action", "tags", "metadata"}
    ),
    STREAM_PUT: frozenset(
        {
            "content_state",
            "action",
            "secondary_action",
            "alert",
            "channels",
            "target",
            "tags",
            "metadata",
        }
    ),
    STREAM_DELETE: frozenset(
        {"content_state", "action", "secondary_action", "alert", "tags", "metadata"}
    ),
}

_STATE_BASE = frozenset(
    {
        "title",
        "subtitle",
        "type",
        "number_of_steps",
        "current_step",
        "percentage",
        "value",
        "upper_limit",
        "duration_seconds",
        "counts_down",
        "is_running",
        "metrics",
        "message",
        "icon",
        "badge",
        "color",
        "step_color",
        "step_colors",
    }
)
# auto_dismiss_minutes exists only in the legacy end schema and the stream schema, and
# auto_dismiss_seconds only in the stream schema.
_STATE_KEYS: dict[str, frozenset[str]] = {
    START: _STATE_BASE,
    UPDATE: _STATE_BASE,
    END: _STATE_BASE | {"auto_dismiss_minutes"},
    STREAM_PUT: _STATE_BASE | {"auto_dismiss_minutes", "auto_dismiss_seconds"},
    STREAM_DELETE: _STATE_BASE | {"auto_dismiss_minutes", "auto_dismiss_seconds"},
}

_NESTED_KEYS: dict[str, frozenset[str]] = {
    "icon": frozenset({"symbol", "color"}),
    "badge": frozenset({"title", "color"}),
    "metric": frozenset({"label", "value", "unit", "color"}),
    "action": frozenset({"title", "type", "url", "method", "body"}),
    "alert": frozenset({"title", "body"}),
    "target": frozenset({"channels"}),
}

_STREAM_KEY = re.compile(r"[A-Za-z0-9_-]{1,255}")


def check_stream_key(key: str) -> bool:
    """Whether ``key`` is a valid stream key (1-255 letters, digits, ``_`` or ``-``)."""
    return _STREAM_KEY.fullmatch(key) is not None


def _check_keys(value: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        prefix = f"{where}." if where else ""
        names = ", ".join(prefix + name for name in unknown)
        raise ValidationError(
            names,
            f"{'is' if len(unknown) == 1 else 'are'} not accepted here "
            f"(allowed: {', '.join(sorted(allowed))})",
        )


def _object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(field, "must be a JSON object", value)
    return value


def check_top_level(body: Mapping[str, Any], op: str) -> None:
    """Refuse keys the endpoint does not accept."""
    _check_keys(body, _TOP_LEVEL[op], "")


def _nested(raw: Any, field: str, kind: str) -> dict[str, Any]:
    value = dict(_object(raw, field))
    _check_keys(value, _NESTED_KEYS[kind], field)
    return value


def _action(raw: Any, field: str) -> dict[str, Any]:
    fields = _nested(raw, field, "action")
    # The official SDK serializes method "POST" even on open_url buttons and the service takes
    # it, so the emulator ignores it there rather than refuse what the real API accepts.
    if fields.get("type") == "open_url" and fields.get("method") == "POST":
        del fields["method"]
    return fields


def _channels(body: Mapping[str, Any]) -> tuple[str, ...] | None:
    target = body.get("target")
    from_target: list[Any] | None = None
    if target is not None:
        target_fields = _nested(target, "target", "target")
        from_target = target_fields.get("channels")
        if not isinstance(from_target, list):
            raise ValidationError("target.channels", "must be an array of channel slugs", None)
    top = body.get("channels")
    if top is not None and not isinstance(top, list):
        raise ValidationError("channels", "must be an array of channel slugs", top)
    if top is not None and from_target is not None and top != from_target:
        raise ValidationError("channels", "must match target.channels when both are sent", top)
    chosen = top if top is not None else from_target
    return None if chosen is None else tuple(chosen)


def validate_request(body: Mapping[str, Any], state: Mapping[str, Any] | None, op: str) -> None:
    """Check a request body for endpoint ``op`` with the library's own model.

    ``state`` is the content state to check, already merged with what the server keeps
    (``type`` and friends) so per-type rules apply; ``None`` when the request sends none.
    """
    check_top_level(body, op)
    try:
        if state is None:
            # A stream DELETE without content_state ends with the last state; there are no
            # per-type rules to apply, but the rest must still be well formed.
            state = {"title": "-"}
        _check_keys(_object(state, "content_state"), _STATE_KEYS[op], "content_state")
        content_state = _model.ContentState.from_json(state)
        tags = body.get("tags")
        if tags is not None and not isinstance(tags, list):
            raise ValidationError("tags", "must be an array of strings", tags)
        payload = _model.Payload(
            content_state=content_state,
            action=None if body.get("action") is None else _action(body["action"], "action"),
            secondary_action=(
                None
                if body.get("secondary_action") is None
                else _action(body["secondary_action"], "secondary_action")
            ),
            channels=_channels(body),
            tags=None if tags is None else tuple(tags),
            metadata=(
                None if body.get("metadata") is None else _object(body["metadata"], "metadata")
            ),
            alert=None if body.get("alert") is None else _nested(body["alert"], "alert", "alert"),
        )
        payload.body(_model.Operation(op))
    except ValidationError:
        raise
    except (TypeError, ValueError) as exc:
        # A shape the model's constructors refused without naming a field.
        raise ValidationError("content_state", f"is not valid: {exc}") from exc
