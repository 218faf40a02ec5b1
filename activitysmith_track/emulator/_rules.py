"""The API's request rules and error bodies, as one table to hold against the API contract.

Everything the emulator accepts or refuses is decided here, from the contract alone (its
sections 2 to 5: shared shapes, endpoints, per-type rules, error bodies). Nothing is taken
from the library's own model, so the emulator cannot inherit the library's mistakes: a
request the library builds wrongly is refused here as the service would refuse it, and a
request the service takes is taken here even if the library would never send it.

How to read it:

- :data:`ENDPOINTS` lists, per endpoint, the top-level keys it accepts, which are required,
  the ``content_state`` keys, whether ``type`` is required, which column of the per-type
  table applies and the tag limit.
- :data:`TYPES` is the contract's section 4: what each type needs at start, update and end,
  and which types draw a badge and a secondary button.
- :data:`FIELDS` gives the rule of every ``content_state`` field (section 2.1); the nested
  shapes (metric, icon, badge, action, target, alert, metadata) follow it as functions.
- Where the contract is silent the table says so in a comment marked **Assumption**. An
  assumption either accepts the request and adds a *note* (the console and the preview show
  it, the answer does not change), or refuses it with a message that says it is an
  assumption, so nobody mistakes it for documented behaviour.

:func:`check_request` applies all of it to one request and returns the notes, or raises
:class:`RuleError`, which carries the 400 body.

The assumptions, at a glance (each is marked where it is applied):

- refused, saying so: unknown keys (the docs mark request objects ``additionalProperties:
  false``); an empty channel slug; a ``current_step`` above the activity's ``number_of_steps``
  when the request sends no count; a string ``value`` on progress with no ``percentage``;
- accepted with a note: unknown keys inside a button (the SDK's model keeps them); ``body`` on
  an ``open_url`` button; ``badge`` or ``secondary_action`` on a type that does not show them;
  ``upper_limit`` or ``duration_seconds`` of 0 or less (the older docs said > 0, SDK 1.14.0
  does not); ``step_colors`` not as long as ``current_step``; a string ``value`` on progress
  beside a ``percentage``; a changed ``type``; ``auto_dismiss_*`` on a PUT;
- accepted silently: an integral float where an integer is asked for (JSON has one number
  type); ``channels`` and ``target.channels`` that match as sets, in any order; ``method`` on
  an ``open_url`` button (the SDK always sends it); no ``metrics`` on the end of metrics and
  stats (the docs call them optional there).
"""

from __future__ import annotations

import http
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import attrs

__all__ = [
    "COLORS",
    "ENDPOINTS",
    "FIELDS",
    "TYPES",
    "Endpoint",
    "RuleError",
    "TypeRules",
    "bad_request",
    "check_request",
    "check_stream_key",
    "default_error_body",
    "limit_reached_body",
    "not_found_body",
    "rate_limited_body",
    "unauthorized_body",
]

Phase = Literal["start", "update", "end"]

# -- section 2.1: enums ----------------------------------------------------------------------

COLORS = ("lime", "green", "cyan", "blue", "purple", "magenta", "red", "orange", "yellow", "gray")
ACTIVITY_TYPES = ("segmented_progress", "progress", "metrics", "stats", "alert", "timer", "value")
ACTION_TYPES = ("open_url", "webhook")
WEBHOOK_METHODS = ("GET", "POST")

# -- section 3: endpoints --------------------------------------------------------------------


def _keys(text: str) -> frozenset[str]:
    return frozenset(text.split())


# content_state keys every variant has (section 2.1).
_STATE_KEYS = _keys(
    "title subtitle type number_of_steps current_step percentage value upper_limit "
    "duration_seconds counts_down is_running metrics message icon badge color step_color "
    "step_colors"
)


@attrs.frozen(kw_only=True)
class Endpoint:
    """One endpoint's rules (contract section 3)."""

    name: str
    #: Top-level keys the body may have, and those it must have.
    top_level: frozenset[str]
    required: frozenset[str]
    #: Keys ``content_state`` may have.
    state_keys: frozenset[str]
    #: Whether ``content_state.type`` must be sent (start, and a PUT that starts).
    needs_type: bool
    #: Which column of :data:`TYPES` applies.
    phase: Phase
    #: At most this many tags, or ``None`` for no limit (section 2.3).
    max_tags: int | None


START = "start"
UPDATE = "update"
END = "end"
STREAM_FIRST = "stream_first"
STREAM_LATER = "stream_later"
STREAM_DELETE = "stream_delete"

ENDPOINTS: dict[str, Endpoint] = {
    # 3.3
    START: Endpoint(
        name="POST /live-activity/start",
        top_level=_keys("content_state action secondary_action alert target tags metadata"),
        required=_keys("content_state"),
        state_keys=_STATE_KEYS,
        needs_type=True,
        phase="start",
        max_tags=None,
    ),
    # 3.4: no target, no alert; tags at most 20.
    UPDATE: Endpoint(
        name="POST /live-activity/update",
        top_level=_keys("activity_id content_state action secondary_action tags metadata"),
        required=_keys("activity_id content_state"),
        state_keys=_STATE_KEYS,
        needs_type=False,
        phase="update",
        max_tags=20,
    ),
    # 3.5: auto_dismiss_minutes only (no seconds on the legacy end).
    END: Endpoint(
        name="POST /live-activity/end",
        top_level=_keys("activity_id content_state action secondary_action tags metadata"),
        required=_keys("activity_id content_state"),
        state_keys=_STATE_KEYS | {"auto_dismiss_minutes"},
        needs_type=False,
        phase="end",
        max_tags=20,
    ),
    # 3.1: every PUT takes the same body, first or later (LiveActivityStreamRequest);
    # only whether type is required and which per-type column applies differ.
    STREAM_FIRST: Endpoint(
        name="PUT /live-activity/stream/{key} (no live activity yet)",
        top_level=_keys(
            "content_state action secondary_action alert channels target tags metadata"
        ),
        required=_keys("content_state"),
        state_keys=_STATE_KEYS | {"auto_dismiss_minutes", "auto_dismiss_seconds"},
        needs_type=True,
        phase="start",
        max_tags=None,
    ),
    STREAM_LATER: Endpoint(
        name="PUT /live-activity/stream/{key} (live activity)",
        top_level=_keys(
            "content_state action secondary_action alert channels target tags metadata"
        ),
        required=_keys("content_state"),
        state_keys=_STATE_KEYS | {"auto_dismiss_minutes", "auto_dismiss_seconds"},
        needs_type=False,
        phase="update",
        max_tags=None,
    ),
    # 3.2: the body is optional; no targeting.
    STREAM_DELETE: Endpoint(
        name="DELETE /live-activity/stream/{key}",
        top_level=_keys("content_state action secondary_action alert tags metadata"),
        required=frozenset(),
        state_keys=_STATE_KEYS | {"auto_dismiss_minutes", "auto_dismiss_seconds"},
        needs_type=False,
        phase="end",
        max_tags=None,
    ),
}

# 3.1: a stream key is 1-255 letters, digits, "_" or "-" (docs pages; the SDK checks only
# the length).
_STREAM_KEY = re.compile(r"[A-Za-z0-9_-]{1,255}")

# -- section 4: per-type rules ---------------------------------------------------------------

# A requirement is a list of alternatives; each alternative is a set of conditions that must
# all hold. A condition is a field name (it must be present) or "field=json" (it must equal
# that JSON value). () means nothing is required.
Requirement = tuple[tuple[str, ...], ...]


def _need(*alternatives: str) -> Requirement:
    return tuple(tuple(alternative.split()) for alternative in alternatives)


_NOTHING: Requirement = ()


@attrs.frozen(kw_only=True)
class TypeRules:
    """What one type needs in ``content_state``, per phase, and what it draws."""

    start: Requirement
    update: Requirement
    end: Requirement
    #: Section 2.1: ``badge`` is drawn by alert, progress, segmented_progress and value only.
    badge: bool
    #: Section 2.2: ``secondary_action`` works on alert, progress, segmented_progress and value.
    secondary_action: bool

    def requirement(self, phase: Phase) -> Requirement:
        return {"start": self.start, "update": self.update, "end": self.end}[phase]


TYPES: dict[str, TypeRules] = {
    "segmented_progress": TypeRules(
        start=_need("number_of_steps current_step"),
        update=_need("current_step"),
        end=_need("current_step"),
        badge=True,
        secondary_action=True,
    ),
    "progress": TypeRules(
        start=_need("percentage", "value upper_limit"),
        update=_need("percentage", "value upper_limit"),
        end=_need("percentage", "value upper_limit"),
        badge=True,
        secondary_action=True,
    ),
    # The end of metrics and stats: the docs say to send metrics "if the ended state should
    # show final values", so they are optional there.
    "metrics": TypeRules(
        start=_need("metrics"),
        update=_need("metrics"),
        end=_NOTHING,
        badge=False,
        secondary_action=False,
    ),
    "stats": TypeRules(
        start=_need("metrics"),
        update=_need("metrics"),
        end=_NOTHING,
        badge=False,
        secondary_action=False,
    ),
    "alert": TypeRules(
        start=_need("message"),
        update=_need("message"),
        end=_need("message"),
        badge=True,
        secondary_action=True,
    ),
    # A countdown needs its duration; counts_down: false without one counts up from 00:00.
    # Updates and the end may leave the duration out to keep (or freeze) the window.
    "timer": TypeRules(
        start=_need("duration_seconds", "counts_down=false"),
        update=_NOTHING,
        end=_NOTHING,
        badge=False,
        secondary_action=False,
    ),
    "value": TypeRules(
        start=_need("value"),
        update=_need("value"),
        end=_need("value"),
        badge=True,
        secondary_action=True,
    ),
}

# -- section 5: error bodies -----------------------------------------------------------------

# 400, 403, 404 and 422 share {error, message}; 429 comes in two shapes that differ by keys:
# RateLimitError {code?: "rate_limited", error, message} and LiveActivityLimitError {error,
# message, limit, active}. 401 is not modelled; it gets the same {error, message}.


def bad_request(message: str, *, error: str = "Bad Request") -> dict[str, Any]:
    """A 400 ``BadRequestError`` body."""
    return {"error": error, "message": message}


def unauthorized_body() -> dict[str, Any]:
    """The 401 body (not modelled by the contract; shaped like the others)."""
    return {"error": "Unauthorized", "message": "Missing or invalid API key"}


def not_found_body(message: str) -> dict[str, Any]:
    """A 404 ``NotFoundError`` body."""
    return {"error": "Not Found", "message": message}


def rate_limited_body(message: str = "Too many requests") -> dict[str, Any]:
    """The request-rate 429 ``RateLimitError`` body."""
    return {"code": "rate_limited", "error": "Rate limit exceeded", "message": message}


def limit_reached_body(limit: int, active: int) -> dict[str, Any]:
    """The capacity 429 ``LiveActivityLimitError`` body."""
    return {
        "error": "Live Activity limit reached",
        "message": f"Only {limit} Live Activities may be active at once; end one to start another",
        "limit": limit,
        "active": active,
    }


_ERROR_WORDS: dict[int, tuple[str, str]] = {
    400: ("Bad Request", "The request was not valid"),
    401: ("Unauthorized", "Missing or invalid API key"),
    402: ("trial_expired", "Your trial has expired; upgrade to keep sending"),
    403: ("Forbidden", "This API key cannot do that"),
    404: ("Not Found", "No such resource"),
    409: ("Conflict", "The resource changed meanwhile"),
    422: ("No recipients found", "No device matched the target"),
}


def default_error_body(status: int) -> dict[str, Any]:
    """The body the contract documents for an error status, for scripted faults."""
    if status == 429:
        return rate_limited_body()
    error, message = _ERROR_WORDS.get(status, ("", ""))
    if not error:
        try:
            error = http.HTTPStatus(status).phrase
        except ValueError:
            error = f"HTTP {status}"
        message = "The emulator was told to fail this request"
    body: dict[str, Any] = {"error": error, "message": message}
    if status == 402:
        body["upgrade_url"] = "https://activitysmith.com/pricing"
    elif status == 422:
        body["effective_channel_slugs"] = []
    return body


# -- checking --------------------------------------------------------------------------------


def _assumption(why: str) -> str:
    """The words a refusal on an assumption ends with, so nobody takes it for documented."""
    return f"(an emulator assumption, the contract being silent: {why})"


_TARGETING = "Invalid channel targeting"


class RuleError(Exception):
    """A request breaks a rule; :attr:`body` is the 400 answer."""

    def __init__(self, field: str, rule: str, *, error: str = "Bad Request") -> None:
        self.field = field
        self.message = f"{field} {rule}" if field else rule
        super().__init__(self.message)
        self.body = bad_request(self.message, error=error)


def _shown(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    # Assumption: JSON has one number type and a JavaScript service reads 3.0 as 3, so an
    # integral float passes where an integer is asked for.
    return _is_number(value) and float(value).is_integer()


def _string(value: Any, field: str, *, min_len: int = 0, max_len: int | None = None) -> None:
    if not isinstance(value, str):
        raise RuleError(field, f"must be a string, got {_shown(value)}")
    if len(value) < min_len or (max_len is not None and len(value) > max_len):
        if max_len is None:
            rule = "must not be empty" if min_len == 1 else f"needs {min_len}+ characters"
        else:
            rule = f"must be {min_len} to {max_len} characters long"
        raise RuleError(field, f"{rule}, got {len(value)} characters")


def _integer(value: Any, field: str, *, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise RuleError(field, f"must be an integer >= {minimum}, got {_shown(value)}")


def _number(value: Any, field: str, *, low: float | None = None, high: float | None = None) -> None:
    if not _is_number(value):
        raise RuleError(field, f"must be a finite number, got {_shown(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        span = f"from {low:g} to {high:g}" if high is not None else f">= {low:g}"
        raise RuleError(field, f"must be a number {span}, got {_shown(value)}")


def _boolean(value: Any, field: str) -> None:
    if not isinstance(value, bool):
        raise RuleError(field, f"must be true or false, got {_shown(value)}")


def _member(value: Any, field: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise RuleError(field, f"must be one of {', '.join(allowed)}; got {_shown(value)}")


def _color(value: Any, field: str) -> None:
    _member(value, field, COLORS)


def _object(
    value: Any,
    field: str,
    allowed: frozenset[str],
    *,
    required: frozenset[str] = frozenset(),
    error: str = "Bad Request",
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleError(field, f"must be a JSON object, got {_shown(value)}", error=error)
    unknown = sorted(set(value) - allowed)
    if unknown:
        # Assumption: the docs OpenAPI marks request objects additionalProperties: false, so
        # an unknown key is refused (the SDK's models drop unknown keys before sending).
        names = ", ".join(f"{field}.{name}" if field else name for name in unknown)
        raise RuleError(
            "",
            f"{names} {'is' if len(unknown) == 1 else 'are'} not accepted here "
            f"(allowed: {', '.join(sorted(allowed))}) "
            + _assumption(
                "unknown keys are refused because the docs mark request objects "
                "additionalProperties: false"
            ),
            error=error,
        )
    missing = sorted(required - set(value))
    if missing:
        prefix = f"{field}." if field else ""
        raise RuleError(prefix + missing[0], "is required", error=error)
    return value


def _metrics(value: Any, field: str) -> None:
    if not isinstance(value, list):
        raise RuleError(field, f"must be an array of metrics, got {_shown(value)}")
    if not 1 <= len(value) <= 8:
        raise RuleError(field, f"must have 1 to 8 items, got {len(value)}")
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        metric = _object(
            item, where, _keys("label value unit color"), required=_keys("label value")
        )
        _string(metric["label"], f"{where}.label", min_len=1)
        number = metric["value"]
        # A number >= 0, or a string of 1-64 characters (a negative goes as a string).
        if isinstance(number, str):
            _string(number, f"{where}.value", min_len=1, max_len=64)
        elif not _is_number(number) or number < 0:
            raise RuleError(
                f"{where}.value",
                f"must be a number >= 0 or a string of 1 to 64 characters, got {_shown(number)}",
            )
        if "unit" in metric:
            _string(metric["unit"], f"{where}.unit")
        if "color" in metric:
            _color(metric["color"], f"{where}.color")


def _readout(value: Any, field: str) -> None:
    if not isinstance(value, str):
        _number(value, field)


def _icon(value: Any, field: str) -> None:
    icon = _object(value, field, _keys("symbol color"), required=_keys("symbol"))
    _string(icon["symbol"], f"{field}.symbol", min_len=1)
    if "color" in icon:
        _color(icon["color"], f"{field}.color")


def _badge(value: Any, field: str) -> None:
    badge = _object(value, field, _keys("title color"), required=_keys("title"))
    _string(badge["title"], f"{field}.title", min_len=1)
    if "color" in badge:
        _color(badge["color"], f"{field}.color")


def _colors(value: Any, field: str) -> None:
    if not isinstance(value, list):
        raise RuleError(field, f"must be an array of colours, got {_shown(value)}")
    for index, item in enumerate(value):
        _color(item, f"{field}[{index}]")


# Section 2.1, one rule per content_state field; each gets the value and the field's name.
# Cross-field rules (current_step <= number_of_steps) and per-type rules come afterwards.
FIELDS: dict[str, Callable[[Any, str], None]] = {
    "title": _string,
    "subtitle": _string,
    "type": partial(_member, allowed=ACTIVITY_TYPES),
    "number_of_steps": partial(_integer, minimum=1),
    "current_step": partial(_integer, minimum=0),
    "percentage": partial(_number, low=0, high=100),
    # A string or finite number; what progress makes of a string is checked with the type.
    "value": _readout,
    # The older docs OpenAPI said > 0; SDK 1.14.0 (newer) takes any number: see the notes
    # in _check_type.
    "upper_limit": _number,
    "duration_seconds": _number,
    "counts_down": _boolean,
    "is_running": _boolean,
    "metrics": _metrics,
    "message": partial(_string, min_len=1),
    "icon": _icon,
    "badge": _badge,
    "color": _color,
    "step_color": _color,
    "step_colors": _colors,
    "auto_dismiss_minutes": partial(_integer, minimum=0),
    "auto_dismiss_seconds": partial(_integer, minimum=0),
}


# -- section 2.2: buttons --------------------------------------------------------------------

_SHORTCUT = re.compile(r"shortcuts://run-shortcut\?(.*&)?name=[^&]+.*")


def _action(value: Any, field: str, notes: list[str]) -> None:
    if not isinstance(value, Mapping):
        raise RuleError(field, f"must be a JSON object, got {_shown(value)}")
    # The SDK's LiveActivityAction keeps unknown keys (additional properties), so the schema
    # allows them here, unlike the other objects.
    extra = sorted(set(value) - _keys("title type url method body"))
    if extra:
        notes.append(f"{field} has keys no source describes ({', '.join(extra)}); kept")
    for key in ("title", "type", "url"):
        if key not in value:
            raise RuleError(f"{field}.{key}", "is required")
    _string(value["title"], f"{field}.title")
    _member(value["type"], f"{field}.type", ACTION_TYPES)
    _string(value["url"], f"{field}.url")
    url: str = value["url"]
    if value["type"] == "webhook":
        if not url.startswith("https://"):
            raise RuleError(
                f"{field}.url", f"of a webhook must be an https:// URL, got {_shown(url)}"
            )
    elif not (url.startswith("https://") or url.startswith("http://") or _SHORTCUT.fullmatch(url)):
        raise RuleError(
            f"{field}.url",
            "of an open_url button must be an http(s) URL or "
            f"shortcuts://run-shortcut?name=..., got {_shown(url)}",
        )
    if "method" in value:
        # The SDK sends method "POST" on open_url buttons too; it is meaningless there.
        _member(value["method"], f"{field}.method", WEBHOOK_METHODS)
    if "body" in value:
        if not isinstance(value["body"], Mapping):
            raise RuleError(f"{field}.body", f"must be a JSON object, got {_shown(value['body'])}")
        if value["type"] != "webhook":
            notes.append(f"{field}.body is used by webhook buttons only; ignored on open_url")


# -- section 2.3: targeting, tags, metadata, alert -------------------------------------------


def _slugs(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RuleError(field, "must be a non-empty array of channel slugs", error=_TARGETING)
    for index, slug in enumerate(value):
        if not isinstance(slug, str) or not slug:
            # Assumption: a slug is a non-empty string (no source gives its format).
            raise RuleError(
                f"{field}[{index}]",
                f"must be a non-empty channel slug, got {_shown(slug)} "
                + _assumption("slugs are taken to be non-empty strings"),
                error=_TARGETING,
            )
    return value


def _targeting(body: Mapping[str, Any]) -> None:
    from_target: list[str] | None = None
    if "target" in body:
        target = _object(
            body["target"],
            "target",
            _keys("channels"),
            required=_keys("channels"),
            error=_TARGETING,
        )
        from_target = _slugs(target["channels"], "target.channels")
    if "channels" in body:
        channels = _slugs(body["channels"], "channels")
        # Assumption: "must match" compares the slugs, not their order.
        if from_target is not None and set(channels) != set(from_target):
            raise RuleError(
                "channels",
                f"must match target.channels when both are sent ({_shown(channels)} vs "
                f"{_shown(from_target)})",
                error=_TARGETING,
            )


def _tags(value: Any, max_items: int | None, endpoint: str) -> None:
    if not isinstance(value, list):
        raise RuleError("tags", f"must be an array of strings, got {_shown(value)}")
    if max_items is not None and len(value) > max_items:
        raise RuleError(
            "tags", f"must have at most {max_items} items on {endpoint}, got {len(value)}"
        )
    for index, tag in enumerate(value):
        _string(tag, f"tags[{index}]", min_len=1, max_len=64)


_METADATA_ENTRIES = 50
_METADATA_BYTES = 16 * 1024
_METADATA_KEY = 100
_METADATA_TEXT = 4000


def _metadata(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise RuleError("metadata", f"must be a JSON object, got {_shown(value)}")
    if len(value) > _METADATA_ENTRIES:
        raise RuleError(
            "metadata", f"must have at most {_METADATA_ENTRIES} entries, got {len(value)}"
        )
    for key, item in value.items():
        field = f"metadata.{key}"
        if len(key) > _METADATA_KEY:
            raise RuleError(field, f"key must be at most {_METADATA_KEY} characters long")
        if isinstance(item, str):
            if len(item) > _METADATA_TEXT:
                raise RuleError(field, f"must be at most {_METADATA_TEXT} characters long")
        elif not (isinstance(item, bool) or _is_number(item)):
            raise RuleError(
                field, f"must be a string, a finite number or a boolean, got {_shown(item)}"
            )
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > _METADATA_BYTES:
        raise RuleError("metadata", f"must serialize to at most 16 KB of JSON, got {size} bytes")


def _alert(value: Any) -> None:
    alert = _object(value, "alert", _keys("title body"))
    for key in ("title", "body"):
        if key in alert:
            _string(alert[key], f"alert.{key}")


# -- the whole request -----------------------------------------------------------------------


def check_stream_key(key: str) -> None:
    """Refuse a stream key the docs do not allow."""
    if _STREAM_KEY.fullmatch(key) is None:
        raise RuleError(
            "",
            "stream_key must be 1-255 characters of letters, digits, '_' or '-'",
            error="Invalid stream_key",
        )


def _holds(condition: str, state: Mapping[str, Any]) -> bool:
    field, _, expected = condition.partition("=")
    if not expected:
        return field in state
    return field in state and state[field] == json.loads(expected)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _describe(requirement: Requirement) -> str:
    def one(alternative: tuple[str, ...]) -> str:
        words = [c.replace("=", ": ") for c in alternative]
        return " and ".join(words)

    return " or ".join(one(a) for a in requirement)


def check_request(
    endpoint: Endpoint,
    body: Mapping[str, Any],
    *,
    shown: Mapping[str, Any] | None = None,
) -> list[str]:
    """Apply ``endpoint``'s rules to ``body``; returns notes, raises :class:`RuleError`.

    ``shown`` is the state the activity shows now (for update, end and later PUTs): its
    ``type`` applies when the request leaves it out, and its ``number_of_steps`` bounds a
    ``current_step`` sent alone.
    """
    notes: list[str] = []
    _object(body, "", endpoint.top_level, required=endpoint.required)
    if "activity_id" in body:
        _string(body["activity_id"], "activity_id", min_len=1)
    for key in ("action", "secondary_action"):
        if key in body:
            _action(body[key], key, notes)
    _targeting(body)
    if "tags" in body:
        _tags(body["tags"], endpoint.max_tags, endpoint.name)
    if "metadata" in body:
        _metadata(body["metadata"])
    if "alert" in body:
        _alert(body["alert"])
    if "content_state" not in body:
        return notes  # only a stream DELETE may leave it out (its required set is empty)
    sent = _object(
        body["content_state"], "content_state", endpoint.state_keys, required=_keys("title")
    )
    for key, value in sent.items():
        FIELDS[key](value, f"content_state.{key}")
    earlier = shown or {}
    if endpoint.needs_type and "type" not in sent:
        raise RuleError(
            "content_state.type",
            "is required to start a Live Activity (start, and a stream PUT when the stream "
            "has no live activity)",
        )
    kind = sent.get("type", earlier.get("type"))
    if kind is None:
        return notes
    if "type" in sent and "type" in earlier and sent["type"] != earlier["type"]:
        # Assumption: the contract does not say whether a live activity may change type.
        notes.append(
            f"content_state.type changes {earlier['type']} to {sent['type']}; the contract "
            "does not say what the service does, the emulator shows the new type"
        )
    _check_type(kind, phase=endpoint.phase, sent=sent, earlier=earlier, body=body, notes=notes)
    dismissal = "auto_dismiss_minutes" in sent or "auto_dismiss_seconds" in sent
    if dismissal and endpoint.phase != "end":
        # Open question 3 of the contract: do they do anything on a PUT?
        notes.append("auto_dismiss_* on a PUT has no documented effect until the end")
    return notes


def _check_type(
    kind: str,
    *,
    phase: Phase,
    sent: Mapping[str, Any],
    earlier: Mapping[str, Any],
    body: Mapping[str, Any],
    notes: list[str],
) -> None:
    rules = TYPES[kind]
    requirement = rules.requirement(phase)
    if requirement and not any(all(_holds(c, sent) for c in alt) for alt in requirement):
        raise RuleError(
            "content_state",
            f"of {_article(kind)} {kind} activity needs {_describe(requirement)} on {phase}",
        )
    if kind == "segmented_progress" and "current_step" in sent:
        steps = sent.get("number_of_steps", earlier.get("number_of_steps"))
        if _is_int(steps) and sent["current_step"] > steps:
            where = "sent" if "number_of_steps" in sent else "the activity's"
            rule = (
                f"must not exceed number_of_steps ({where}: {steps:g}), "
                f"got {sent['current_step']:g}"
            )
            if "number_of_steps" not in sent:
                # Assumption: the schema bounds current_step by a number_of_steps sent with
                # it; the activity's current count is assumed to bound it too.
                rule += " " + _assumption("the activity's step count is taken as the bound")
            raise RuleError("content_state.current_step", rule)
        colors = sent.get("step_colors")
        if isinstance(colors, list) and len(colors) != sent["current_step"]:
            notes.append(
                f"content_state.step_colors has {len(colors)} colours for current_step "
                f"{sent['current_step']:g}; the contract says the lengths should match"
            )
    if kind == "progress" and "percentage" not in sent and isinstance(sent.get("value"), str):
        # Section 2.1: progress uses a numeric value; a string value is accepted by the schema
        # (it is the value type's readout), so it is refused only where progress would have
        # to compute with it.
        raise RuleError(
            "content_state.value",
            f"of a progress activity must be a number when no percentage is sent, got "
            f"{_shown(sent['value'])} "
            + _assumption("the schema takes a string, but progress divides value by upper_limit"),
        )
    if kind == "progress" and "percentage" in sent and isinstance(sent.get("value"), str):
        notes.append("content_state.value is a string; percentage wins, so it is not drawn")
    for field in ("upper_limit", "duration_seconds"):
        if field in sent and sent[field] <= 0:
            # Assumption: the older docs OpenAPI said > 0; SDK 1.14.0 (newer) takes any
            # number, so the emulator accepts it and says so.
            notes.append(
                f"content_state.{field} is {sent[field]:g}; the older docs required > 0, "
                "SDK 1.14.0 does not, so it is accepted"
            )
    if "badge" in sent and not rules.badge:
        notes.append(
            f"content_state.badge is not drawn on a {kind} activity (badges show on alert, "
            "progress, segmented_progress and value); accepted as the schema allows it"
        )
    if "secondary_action" in body and not rules.secondary_action:
        notes.append(
            f"secondary_action is not shown on a {kind} activity (it works on alert, "
            "progress, segmented_progress and value); accepted as the schema allows it"
        )
