"""Anything a call accepts is sendable: random sequences of handle calls with hostile arguments.

Every call either raises the library's own error, naming a field, and changes nothing, or it
leaves the activity in a state whose every request is valid. "Valid" is decided by an oracle
that shares no code with the library's model: the official SDK's request models (pydantic),
plus the contract's per-type rules and key sets (shared/activitysmith-api.md, sections 2-4),
written out here. At the end, the activity is sent to the emulator and every request of it
must have been accepted.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from conftest import api_requests
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from activitysmith_track import (
    ActivitySmithTrackError,
    Metric,
    ValidationError,
    live_activity,
)
from activitysmith_track.emulator import Emulator
from activitysmith_track.testing import rendered

models = pytest.importorskip("activitysmith_openapi.models")

# -- the oracle ------------------------------------------------------------------------------------

REQUEST_MODELS = {
    "start": models.LiveActivityStartRequest,
    "update": models.LiveActivityUpdateRequest,
    "end": models.LiveActivityEndRequest,
    "stream_put": models.LiveActivityStreamRequest,
    "stream_delete": models.LiveActivityStreamDeleteRequest,
}
STATE_KEYS = {
    "title", "subtitle", "type", "number_of_steps", "current_step", "percentage", "value",
    "upper_limit", "duration_seconds", "counts_down", "is_running", "metrics", "message",
    "icon", "badge", "color", "step_color", "step_colors",
}  # fmt: skip
# Dismissal exists only in the legacy end schema (minutes) and the stream schema (both).
STATE_EXTRA = {
    "start": set(),
    "update": set(),
    "end": {"auto_dismiss_minutes"},
    "stream_put": {"auto_dismiss_minutes", "auto_dismiss_seconds"},
    "stream_delete": {"auto_dismiss_minutes", "auto_dismiss_seconds"},
}
TOP_KEYS = {
    "start": {"content_state", "action", "secondary_action", "alert", "target", "tags", "metadata"},
    "update": {"content_state", "action", "secondary_action", "tags", "metadata"},
    "end": {"content_state", "action", "secondary_action", "tags", "metadata"},
    "stream_put": {
        "content_state", "action", "secondary_action", "alert", "channels", "target", "tags",
        "metadata",
    },
    "stream_delete": {"content_state", "action", "secondary_action", "alert", "tags", "metadata"},
}  # fmt: skip
COLORS = {"lime", "green", "cyan", "blue", "purple", "magenta", "red", "orange", "yellow", "gray"}
STARTS = {"start", "stream_put"}
ENDS = {"end", "stream_delete"}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> bool:
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def oracle(op: str, body: dict[str, Any]) -> None:
    """Raise AssertionError unless ``body`` is a valid ``op`` request by the SDK and contract."""
    allowed = TOP_KEYS[op] | ({"activity_id"} if op in ("update", "end") else set())
    assert set(body) <= allowed, (op, set(body) - allowed)
    sdk_body = dict(body)
    if op in ("update", "end"):
        sdk_body.setdefault("activity_id", "an-activity")
    # from_dict, as the SDK itself reads these (it resolves the value's oneOf).
    REQUEST_MODELS[op].from_dict(sdk_body)
    state = body["content_state"]
    assert set(state) <= STATE_KEYS | STATE_EXTRA[op], (op, set(state) - STATE_KEYS)
    assert _text(state["title"]), state
    assert state["title"], state
    for key in ("subtitle", "message"):
        if key in state:
            assert _text(state[key]), (key, state[key])
    for key in ("color", "step_color"):
        if key in state:
            assert state[key] in COLORS, (key, state[key])
    kind = state.get("type")
    if op in STARTS:
        assert kind is not None, "type is required on a start"
    steps, current = state.get("number_of_steps"), state.get("current_step")
    if steps is not None:
        assert isinstance(steps, int), steps
        assert 1 <= steps <= 2**31 - 1, steps
    if current is not None:
        assert isinstance(current, int), current
        assert current >= 0, current
        if steps is not None:
            assert current <= steps, (current, steps)
    if "percentage" in state:
        assert _number(state["percentage"])
        assert 0 <= state["percentage"] <= 100
    for key in ("upper_limit", "duration_seconds"):
        if key in state:
            assert _number(state[key]), (key, state[key])
            assert state[key] > 0, (key, state[key])
    if "value" in state:
        assert _number(state["value"]) or _text(state["value"]), state["value"]
    if "metrics" in state:
        metrics = state["metrics"]
        assert 1 <= len(metrics) <= 8, metrics
        for metric in metrics:
            assert _text(metric["label"]), metric
            assert metric["label"], metric
            value = metric["value"]
            assert (_number(value) and value >= 0) or (_text(value) and 1 <= len(value) <= 64)
    for key in ("tags",):
        if key in body:
            assert all(_text(t) and 1 <= len(t) <= 64 for t in body[key]), body[key]
            if op in ("update", "end"):
                assert len(body[key]) <= 20
    # The per-type table (contract section 4).
    if kind == "segmented_progress":
        assert current is not None, "current_step is required"
        if op in STARTS:
            assert steps is not None, "number_of_steps is required on a start"
    elif kind == "progress":
        assert "percentage" in state or ("value" in state and "upper_limit" in state), state
    elif kind in ("metrics", "stats"):
        if op not in ENDS:
            assert state.get("metrics"), "metrics are required"
    elif kind == "alert":
        assert state.get("message"), "message is required"
    elif kind == "timer":
        if op in STARTS:
            assert "duration_seconds" in state or state.get("counts_down") is False, state
    elif kind == "value":
        assert "value" in state, "value is required"


def check_sendable(activity: Any) -> dict[str, Any]:
    every = rendered(activity)
    for request in every.values():
        oracle(request["operation"], request["body"])
    return every


# -- hostile arguments -----------------------------------------------------------------------------

hostile_numbers = st.one_of(
    st.integers(0, 100),
    st.floats(0, 100),
    st.integers(-5, 10**6),
    st.integers(2**52, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), -0.0, 1e308, True]),
    st.text(max_size=3),
    st.none(),
)
hostile_text = st.one_of(
    st.text(max_size=20),
    st.text(max_size=300),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x" * 300, "🚀" * 10]),
    st.integers(),
    st.none(),
)
field_values = st.one_of(hostile_text, hostile_numbers, st.lists(hostile_text, max_size=25))
field_names = st.sampled_from(
    [
        "subtitle", "color", "step_color", "icon", "badge", "message", "value", "percentage",
        "upper_limit", "duration_seconds", "is_running", "counts_down", "current_step",
        "number_of_steps", "tags", "metadata", "auto_dismiss_minutes", "auto_dismiss_seconds",
        "colour", "type",
    ]
)  # fmt: skip

calls = st.one_of(
    st.tuples(st.just("advance"), hostile_numbers),
    st.tuples(st.just("step"), hostile_text),
    st.tuples(st.just("step"), st.none()),
    st.tuples(st.just("percentage"), hostile_numbers),
    st.tuples(st.just("progress"), hostile_numbers, st.one_of(st.none(), hostile_numbers)),
    st.tuples(st.just("set_steps"), hostile_numbers),
    st.tuples(st.just("update"), st.dictionaries(field_names, field_values, max_size=3)),
    st.tuples(
        st.just("metrics"),
        st.dictionaries(
            hostile_text.filter(lambda t: isinstance(t, str) and t.isidentifier()),
            hostile_numbers | hostile_text,
            max_size=9,
        ),
    ),
    st.tuples(st.just("track"), st.integers(0, 20)),
)

KINDS: dict[str, dict[str, Any]] = {
    "steps": {"steps": ["extract", "transform", "load"]},
    "count": {"steps": 2},
    "bar": {"total": 50},
    "percent": {"type": "progress"},
    "timer": {},
    "countdown": {"duration_seconds": 120},
    "metrics": {"metrics": {"rows": 1, "errors": 0}},
    "alert": {"message": "Disk almost full"},
    "value": {"value": "$1,240"},
}


def apply(activity: Any, call: tuple[Any, ...]) -> None:
    name, *args = call
    if name == "update":
        activity.update(**args[0])
    elif name == "metrics":
        activity.metrics(**args[0])
    elif name == "track":
        for _ in activity.track(range(args[0])):
            pass
    elif name == "progress":
        activity.progress(args[0], args[1])
    else:
        getattr(activity, name)(*args)


@settings(
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    stream=st.booleans(),
    sequence=st.lists(calls, max_size=12),
    ending=st.sampled_from(["end", "fail", "cancel", "block", "raise"]),
)
def test_every_accepted_call_leaves_a_sendable_state(
    emu: Emulator, kind: str, stream: bool, sequence: list[tuple[Any, ...]], ending: str
) -> None:
    emu.reset()
    options = dict(KINDS[kind])
    if stream:
        options["stream_key"] = f"prop-{kind}"
    activity = live_activity("Property", flush_timeout=5, **options)
    activity.start()
    before = check_sendable(activity)
    for call in sequence:
        try:
            apply(activity, call)
        except ActivitySmithTrackError as exc:
            event(f"refused: {call[0]}")
            refusal = exc
        else:
            refusal = None
        if refusal is not None:
            if isinstance(refusal, ValidationError):
                assert refusal.field, refusal  # names the field
            # Refused at the call: nothing changed.
            assert rendered(activity) == before, call
            continue
        event(f"accepted: {call[0]}")
        before = check_sendable(activity)
    if ending == "end":
        activity.end()
    elif ending == "fail":
        with pytest.raises(ValidationError) as refused:
            activity.fail("bad \x00 input \ud800")  # refused: storable text only
        assert refused.value.field == "message"
        activity.fail("gave up")
    if ending == "cancel":
        activity.cancel()
    elif ending == "block":
        activity.__exit__(None, None, None)
    elif ending == "raise":
        error = KeyError("id \x00 \udfff")
        activity.__exit__(KeyError, error, None)
    if not activity.ended:
        activity.end()
    assert activity.flush(10)
    sent = api_requests(emu)
    assert sent, "nothing reached the server"
    for request in sent:
        assert request.status == 200, (request.path, request.body, request.response)
        op = _operation_of(request.method, request.path)
        if request.body is not None:
            oracle(op, request.body)


def _operation_of(method: str, path: str) -> str:
    if "/stream/" in path:
        return "stream_put" if method == "PUT" else "stream_delete"
    return path.rsplit("/", 1)[-1]


def test_the_oracle_refuses_what_it_should() -> None:
    # The oracle itself must be able to fail, or the property above proves nothing.
    good = {"content_state": {"title": "x", "type": "progress", "percentage": 5}}
    oracle("start", good)
    bad_cases = [
        ("start", {"content_state": {"title": "x", "percentage": 5}}),
        ("start", {"content_state": {"title": "x", "type": "progress", "percentage": 101}}),
        ("update", {"content_state": {"title": "x", "type": "alert"}}),
        ("start", {"content_state": {"title": "x\x00", "type": "timer", "counts_down": False}}),
        ("update", {"content_state": {"title": "x"}, "target": {"channels": ["a"]}}),
        ("end", {"content_state": {"title": "x", "auto_dismiss_seconds": 5}}),
        ("start", {"content_state": {"title": "x", "type": "value", "value": float("inf")}}),
        ("update", {"content_state": {"title": "x"}, "tags": ["t"] * 21}),
    ]
    for op, body in bad_cases:
        with pytest.raises((AssertionError, ValueError)):
            oracle(op, body)


def test_a_metric_label_of_the_wrong_type_is_refused_at_the_call(emu: Emulator) -> None:
    with live_activity("Job", metrics={"rows": 0}) as la:
        with pytest.raises(ValidationError):
            la.metrics(Metric(label="rows", value=-1))
        la.metrics(rows=5)
    assert all(r.status == 200 for r in api_requests(emu))
