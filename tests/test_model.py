"""The content-state model: field rules, per-operation checks, and the exact JSON per endpoint."""

from __future__ import annotations

import copy
import json
import math
import pickle
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

import attrs
import pytest
import strategies
from hypothesis import given
from hypothesis import strategies as st

from activitysmith_track._errors import ArgumentTypeError, ValidationError
from activitysmith_track._model import (
    Action,
    ActionType,
    ActivityType,
    Badge,
    Color,
    ContentState,
    Icon,
    Metric,
    Operation,
    Payload,
    stream_key_from,
    validate_stream_key,
)

ALL_OPS = list(Operation)
START_LIKE = [Operation.START, Operation.STREAM_PUT]


def state(**kwargs: Any) -> ContentState:
    kwargs.setdefault("title", "Job")
    return ContentState(**kwargs)


def refused(call: Any, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        call(**kwargs)
    return info.value


# --- enums ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("enum_cls", "values"),
    [
        (
            ActivityType,
            ["segmented_progress", "progress", "metrics", "stats", "alert", "timer", "value"],
        ),
        (
            Color,
            [
                "lime",
                "green",
                "cyan",
                "blue",
                "purple",
                "magenta",
                "red",
                "orange",
                "yellow",
                "gray",
            ],
        ),
        (ActionType, ["open_url", "webhook"]),
        (Operation, ["start", "update", "end", "stream_put", "stream_delete"]),
    ],
)
def test_enum_values_are_the_api_strings(enum_cls: Any, values: list[str]) -> None:
    assert [member.value for member in enum_cls] == values
    assert all(isinstance(member, str) for member in enum_cls)


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"type": "timer"}, "type", ActivityType.TIMER),
        ({"color": "red"}, "color", Color.RED),
        ({"step_color": Color.LIME}, "step_color", Color.LIME),
        ({"step_colors": ["red", Color.BLUE]}, "step_colors", (Color.RED, Color.BLUE)),
    ],
)
def test_enum_fields_accept_members_or_their_strings(
    kwargs: dict[str, Any], field: str, expected: Any
) -> None:
    assert getattr(state(**kwargs), field) == expected


def test_unknown_enum_string_names_field_and_lists_allowed_values() -> None:
    error = refused(state, color="pink")
    assert error.field == "color"
    assert "'pink'" in error.rule
    assert "lime, green, cyan, blue, purple, magenta, red, orange, yellow, gray" in error.rule
    assert not isinstance(error, TypeError)


# --- ContentState field rules -----------------------------------------------------------------

VALID_STATES: list[dict[str, Any]] = [
    {"title": "x"},
    {"subtitle": ""},
    {"number_of_steps": 1, "current_step": 0},
    {"number_of_steps": 3, "current_step": 3},
    {"current_step": 7},
    {"percentage": 0},
    {"percentage": 100},
    {"percentage": 99.5},
    {"value": -12.5},
    {"value": "$1,240"},
    {"value": ""},
    {"value": 0},
    {"upper_limit": 0.001},
    {"duration_seconds": 1},
    {"counts_down": False, "is_running": True},
    {"metrics": [Metric(label="cpu", value=1)]},
    {"metrics": [{"label": f"m{i}", "value": i} for i in range(8)]},
    {"metrics": {"cpu": 0.5, "disk": "-3 GB"}},
    {"message": "m"},
    {"icon": Icon(symbol="bolt")},
    {"icon": {"symbol": "bolt", "color": "red"}},
    {"badge": {"title": "NEW"}},
    {"step_colors": []},
    {"auto_dismiss_minutes": 0, "auto_dismiss_seconds": 0},
    {"type": "alert", "badge": Badge(title="b")},
    {"type": "value", "badge": Badge(title="b")},
    {"type": "progress", "value": 3, "upper_limit": 10, "badge": Badge(title="b")},
]


@pytest.mark.parametrize("kwargs", VALID_STATES)
def test_valid_states_are_built(kwargs: dict[str, Any]) -> None:
    built = state(**kwargs)
    assert built.title == kwargs.get("title", "Job")


INVALID_STATES: list[tuple[dict[str, Any], str, str]] = [
    ({"title": ""}, "title", "must not be empty"),
    ({"number_of_steps": 0}, "number_of_steps", "(0) must be at least 1"),
    ({"current_step": -1}, "current_step", "(-1) must be at least 0"),
    (
        {"number_of_steps": 3, "current_step": 4},
        "current_step",
        "(4) must not exceed number_of_steps (3)",
    ),
    ({"percentage": 100.01}, "percentage", "must be between 0 and 100"),
    ({"percentage": -1}, "percentage", "must be between 0 and 100"),
    ({"percentage": math.nan}, "percentage", "must be a finite number"),
    ({"percentage": math.inf}, "percentage", "must be a finite number"),
    ({"value": math.nan}, "value", "must be a finite number"),
    ({"value": -math.inf}, "value", "must be a finite number"),
    ({"upper_limit": 0}, "upper_limit", "(0) must be greater than 0"),
    ({"upper_limit": -2.5}, "upper_limit", "must be greater than 0"),
    ({"upper_limit": math.inf}, "upper_limit", "must be a finite number"),
    ({"duration_seconds": 0}, "duration_seconds", "must be greater than 0"),
    ({"metrics": []}, "metrics", "(0 items) must have 1 to 8 items"),
    (
        {"metrics": [{"label": str(i), "value": i} for i in range(9)]},
        "metrics",
        "(9 items) must have 1 to 8 items",
    ),
    ({"metrics": [{"label": "a", "value": 1}, {"label": "", "value": 1}]}, "metrics[1].label", ""),
    ({"metrics": {"a": 1, "b": -3}}, "metrics[1].value", "pass a negative number as a string"),
    ({"metrics": [{"label": "a", "value": "x" * 65}]}, "metrics[0].value", "1 to 64 characters"),
    ({"metrics": [{"label": "a", "value": ""}]}, "metrics[0].value", "1 to 64 characters"),
    ({"metrics": [{"label": "a"}]}, "metrics[0].value", "is required"),
    ({"metrics": [{"label": "a", "value": 1, "x": 2}]}, "metrics[0].x", "is not a known field"),
    ({"metrics": [{"label": "a", "value": 1, "color": "pink"}]}, "metrics[0].color", "one of"),
    ({"message": ""}, "message", "must not be empty"),
    ({"icon": {"symbol": ""}}, "icon.symbol", "must not be empty"),
    ({"icon": {"symbol": "x", "color": "pink"}}, "icon.color", "must be one of"),
    ({"icon": {}}, "icon.symbol", "is required"),
    ({"badge": {"title": ""}}, "badge.title", "must not be empty"),
    ({"step_colors": ["red", "pink"]}, "step_colors[1]", "must be one of"),
    ({"auto_dismiss_minutes": -1}, "auto_dismiss_minutes", "must be at least 0"),
    ({"auto_dismiss_seconds": -1}, "auto_dismiss_seconds", "must be at least 0"),
    ({"type": "bar"}, "type", "must be one of: segmented_progress, progress"),
    ({"type": "timer", "badge": {"title": "b"}}, "badge", "is not shown on timer activities"),
    ({"type": "metrics", "badge": {"title": "b"}}, "badge", "is not shown on metrics"),
    ({"type": "progress", "value": "50%"}, "value", "must be a number for progress"),
]


@pytest.mark.parametrize(("kwargs", "field", "rule"), INVALID_STATES)
def test_invalid_states_name_field_and_rule(kwargs: dict[str, Any], field: str, rule: str) -> None:
    error = refused(state, **kwargs)
    assert error.field == field
    assert rule in error.rule
    assert str(error) == f"{field} {error.rule}"


def test_message_reads_like_the_style_guide() -> None:
    error = refused(state, number_of_steps=3, current_step=4)
    assert str(error) == "current_step (4) must not exceed number_of_steps (3)"


WRONG_TYPES: list[tuple[dict[str, Any], str, str]] = [
    ({"title": 5}, "title", "a str"),
    ({"title": None}, "title", "a str"),
    ({"subtitle": b"x"}, "subtitle", "a str"),
    ({"number_of_steps": "3"}, "number_of_steps", "an int"),
    ({"number_of_steps": 3.0}, "number_of_steps", "an int"),
    ({"number_of_steps": True}, "number_of_steps", "an int"),
    ({"current_step": False}, "current_step", "an int"),
    ({"percentage": "50"}, "percentage", "an int or float"),
    ({"percentage": True}, "percentage", "an int or float"),
    ({"value": [1]}, "value", "a str, int or float"),
    ({"value": True}, "value", "a str, int or float"),
    ({"upper_limit": "10"}, "upper_limit", "an int or float"),
    ({"counts_down": 1}, "counts_down", "a bool"),
    ({"is_running": "yes"}, "is_running", "a bool"),
    ({"metrics": 3}, "metrics", "a list of Metric"),
    ({"metrics": "cpu"}, "metrics", "a list of Metric"),
    ({"metrics": [3]}, "metrics[0]", "a Metric or a mapping"),
    ({"metrics": [{"label": "a", "value": True}]}, "metrics[0].value", "a str, int or float"),
    ({"metrics": [{"label": "a", "value": None}]}, "metrics[0].value", "a str, int or float"),
    ({"message": 3}, "message", "a str"),
    ({"icon": "bolt"}, "icon", "an Icon or a mapping"),
    ({"badge": Icon(symbol="x")}, "badge", "a Badge or a mapping"),
    ({"color": 3}, "color", "a Color or one of"),
    ({"type": 1}, "type", "an ActivityType or one of"),
    ({"step_colors": "red"}, "step_colors", "a list or tuple of Color"),
    ({"step_colors": [1]}, "step_colors[0]", "a Color"),
    ({"auto_dismiss_seconds": 1.5}, "auto_dismiss_seconds", "an int"),
]


@pytest.mark.parametrize(("kwargs", "field", "expected"), WRONG_TYPES)
def test_wrong_python_types_raise_argument_type_error(
    kwargs: dict[str, Any], field: str, expected: str
) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        state(**kwargs)
    error = info.value
    assert isinstance(error, TypeError)
    assert isinstance(error, ValueError)  # still a ValidationError
    assert error.field == field
    assert error.expected.startswith(expected)


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"number_of_steps": Decimal(3)}, "number_of_steps", None),
        ({"percentage": Decimal("12.5")}, "percentage", None),
        ({"percentage": Fraction(1, 4)}, "percentage", 0.25),
        ({"value": Fraction(3, 1)}, "value", 3.0),
    ],
)
def test_other_real_numbers_become_plain_numbers(
    kwargs: dict[str, Any], field: str, expected: Any
) -> None:
    # Decimal is outside the numbers.Real tower, so it is refused like any non-number.
    if expected is None:
        with pytest.raises(ArgumentTypeError):
            state(**kwargs)
        return
    value = getattr(state(**kwargs), field)
    assert value == expected
    assert type(value) is float


def test_integral_subclasses_become_ints() -> None:
    import enum

    class Three(enum.IntEnum):
        THREE = 3

    built = state(number_of_steps=Three.THREE, current_step=Three.THREE)
    assert type(built.number_of_steps) is int
    assert built.to_json()["number_of_steps"] == 3


# --- nested values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "field", "rule"),
    [
        (lambda: Icon(symbol=""), "icon.symbol", "must not be empty"),
        (lambda: Icon(symbol="x", color="pink"), "icon.color", "must be one of"),
        (lambda: Badge(title=""), "badge.title", "must not be empty"),
        (lambda: Metric(label="", value=1), "metric.label", "must not be empty"),
        (lambda: Metric(label="a", value=-0.5), "metric.value", "e.g. '-0.5'"),
        (lambda: Metric(label="a", value=math.nan), "metric.value", "finite"),
        (lambda: Metric(label="a", value="x" * 65), "metric.value", "1 to 64"),
        (lambda: Metric(label="a", value=1, unit=3), "metric.unit", "must be a str"),  # type: ignore[arg-type]
    ],
)
def test_standalone_nested_values_name_their_fields(call: Any, field: str, rule: str) -> None:
    error = refused(call)
    assert (error.field, rule in error.rule) == (field, True)


def test_metrics_accept_a_label_to_value_mapping_in_order() -> None:
    built = state(metrics={"cpu": 0.5, "mem": "1 GB"})
    assert built.metrics == (Metric(label="cpu", value=0.5), Metric(label="mem", value="1 GB"))


def test_metric_value_boundaries() -> None:
    assert Metric(label="a", value=0).value == 0
    assert Metric(label="a", value="x" * 64).value == "x" * 64
    assert Metric(label="a", value="-3").value == "-3"


# --- actions ----------------------------------------------------------------------------------


def test_action_constructors() -> None:
    assert Action.open_url("Logs", "https://ci.example/1").to_json() == {
        "title": "Logs",
        "type": "open_url",
        "url": "https://ci.example/1",
    }
    assert Action.shortcut("Run", "Deploy again/now?").url == (
        "shortcuts://run-shortcut?name=Deploy%20again%2Fnow%3F"
    )
    assert Action.webhook("Retry", "https://hooks.example/r", body={"n": [1, 2]}).to_json() == {
        "title": "Retry",
        "type": "webhook",
        "url": "https://hooks.example/r",
        "method": "POST",
        "body": {"n": [1, 2]},
    }
    assert Action.webhook("Ping", "https://h.example", method="GET").method == "GET"


@pytest.mark.parametrize(
    ("kwargs", "field", "rule"),
    [
        ({"type": "open_url", "url": "ftp://x"}, "action.url", "http(s):// or shortcuts://"),
        ({"type": "open_url", "url": "https://"}, "action.url", "http(s):// or shortcuts://"),
        ({"type": "webhook", "url": "http://x.example"}, "action.url", "https:// URL"),
        ({"type": "webhook", "url": "shortcuts://x"}, "action.url", "https:// URL"),
        (
            {"type": "open_url", "url": "https://x", "method": "POST"},
            "action.method",
            "only allowed on webhook",
        ),
        (
            {"type": "open_url", "url": "https://x", "body": {"a": 1}},
            "action.body",
            "only allowed on webhook",
        ),
        ({"type": "webhook", "url": "https://x", "method": "PUT"}, "action.method", "GET"),
        (
            {"type": "webhook", "url": "https://x", "body": {"a": math.nan}},
            "action.body",
            "JSON-serializable",
        ),
        (
            {"type": "webhook", "url": "https://x", "body": {"a": object()}},
            "action.body",
            "JSON-serializable",
        ),
        ({"type": "push", "url": "https://x"}, "action.type", "open_url, webhook"),
        ({"type": "open_url", "url": ""}, "action.url", "must not be empty"),
    ],
)
def test_action_rules(kwargs: dict[str, Any], field: str, rule: str) -> None:
    error = refused(Action, title="Go", **kwargs)
    assert error.field == field
    assert rule in error.rule


@pytest.mark.parametrize(
    "url", ["http://x.example", "https://x.example", "HTTPS://X.EXAMPLE", "shortcuts://run"]
)
def test_open_url_schemes(url: str) -> None:
    assert Action.open_url("Go", url).url == url


def test_action_method_is_normalised_and_body_copied() -> None:
    body = {"list": [1]}
    action = Action(title="Go", type="webhook", url="https://x", method="post", body=body)
    body["list"].append(2)
    assert action.method == "POST"
    assert action.body == {"list": [1]}
    out = action.to_json()
    out["body"]["list"].append(3)
    assert action.body == {"list": [1]}


def test_action_is_unhashable_but_compares_by_value() -> None:
    one = Action.webhook("Go", "https://x", body={"a": 1})
    assert one == Action.webhook("Go", "https://x", body={"a": 1})
    with pytest.raises(TypeError):
        hash(one)


def test_action_from_json_names_the_position() -> None:
    assert Action.from_json({"title": "t", "type": "open_url", "url": "https://x"}) == (
        Action.open_url("t", "https://x")
    )
    assert refused(Action.from_json, data={"title": "t", "type": "open_url"}).field == "action.url"


def test_shortcut_name_must_be_a_non_empty_str() -> None:
    assert refused(Action.shortcut, title="t", name="").field == "name"
    with pytest.raises(ArgumentTypeError):
        Action.shortcut("t", 3)  # type: ignore[arg-type]


# --- ContentState.check ------------------------------------------------------------------------

CHECK_PASSES: list[tuple[dict[str, Any], list[Operation]]] = [
    ({"type": "segmented_progress", "number_of_steps": 3, "current_step": 0}, ALL_OPS),
    (
        {"type": "segmented_progress", "current_step": 2},
        [Operation.UPDATE, Operation.END, Operation.STREAM_DELETE],
    ),
    ({"type": "progress", "percentage": 0}, ALL_OPS),
    ({"type": "progress", "value": 0, "upper_limit": 10}, ALL_OPS),
    ({"type": "metrics", "metrics": {"a": 1}}, ALL_OPS),
    ({"type": "stats", "metrics": {"a": 1}}, ALL_OPS),
    ({"type": "metrics"}, [Operation.END, Operation.STREAM_DELETE]),
    ({"type": "stats"}, [Operation.END, Operation.STREAM_DELETE]),
    ({"type": "alert", "message": "disk full"}, ALL_OPS),
    ({"type": "timer", "duration_seconds": 60}, ALL_OPS),
    ({"type": "timer", "counts_down": False}, ALL_OPS),
    ({"type": "timer"}, [Operation.UPDATE, Operation.END, Operation.STREAM_DELETE]),
    ({"type": "value", "value": "$1"}, ALL_OPS),
    ({"type": "value", "value": 0}, ALL_OPS),
    ({}, [Operation.UPDATE, Operation.END, Operation.STREAM_DELETE]),
    ({"percentage": 5}, [Operation.UPDATE, Operation.END]),
]


@pytest.mark.parametrize(("kwargs", "ops"), CHECK_PASSES)
def test_check_passes(kwargs: dict[str, Any], ops: list[Operation]) -> None:
    for op in ops:
        state(**kwargs).check(op)
        state(**kwargs).check(op.value)


CHECK_FAILS: list[tuple[dict[str, Any], Operation, str, str]] = [
    ({}, Operation.START, "type", "is required on start"),
    ({"percentage": 5}, Operation.STREAM_PUT, "type", "is required on stream_put"),
    (
        {"type": "segmented_progress", "current_step": 1},
        Operation.START,
        "number_of_steps",
        "is required for segmented_progress on start",
    ),
    (
        {"type": "segmented_progress", "number_of_steps": 3},
        Operation.STREAM_PUT,
        "current_step",
        "on stream_put",
    ),
    (
        {"type": "segmented_progress", "number_of_steps": 3},
        Operation.UPDATE,
        "current_step",
        "on update",
    ),
    ({"type": "segmented_progress"}, Operation.END, "current_step", "on end"),
    ({"type": "segmented_progress"}, Operation.STREAM_DELETE, "current_step", "stream_delete"),
    ({"type": "progress"}, Operation.UPDATE, "percentage", "(or value and upper_limit)"),
    ({"type": "progress"}, Operation.END, "percentage", "(or value and upper_limit)"),
    ({"type": "progress", "value": 3}, Operation.START, "upper_limit", "with value"),
    ({"type": "progress", "upper_limit": 3}, Operation.UPDATE, "value", "with upper_limit"),
    ({"type": "metrics"}, Operation.START, "metrics", "is required for metrics on start"),
    ({"type": "metrics"}, Operation.UPDATE, "metrics", "on update"),
    ({"type": "stats"}, Operation.STREAM_PUT, "metrics", "for stats on stream_put"),
    ({"type": "alert"}, Operation.START, "message", "is required for alert"),
    ({"type": "alert"}, Operation.END, "message", "on end"),
    ({"type": "alert"}, Operation.STREAM_DELETE, "message", "on stream_delete"),
    ({"type": "timer"}, Operation.START, "duration_seconds", "unless counts_down is False"),
    ({"type": "timer", "counts_down": True}, Operation.STREAM_PUT, "duration_seconds", ""),
    ({"type": "value"}, Operation.START, "value", "is required for value on start"),
    ({"type": "value"}, Operation.UPDATE, "value", "on update"),
    ({"type": "value"}, Operation.END, "value", "on end"),
]


@pytest.mark.parametrize(("kwargs", "op", "field", "rule"), CHECK_FAILS)
def test_check_refuses_missing_fields(
    kwargs: dict[str, Any], op: Operation, field: str, rule: str
) -> None:
    error = refused(state(**kwargs).check, op=op)
    assert error.field == field
    assert rule in error.rule


def test_check_refuses_unknown_operations() -> None:
    assert refused(state().check, op="restart").field == "op"
    with pytest.raises(ArgumentTypeError):
        state().check(3)  # type: ignore[arg-type]


# --- to_json ------------------------------------------------------------------------------------


def test_to_json_leaves_out_unset_fields() -> None:
    assert state().to_json() == {"title": "Job"}


def test_to_json_of_every_field() -> None:
    full = ContentState(
        title="Deploy",
        subtitle="api",
        type="segmented_progress",
        number_of_steps=4,
        current_step=2,
        percentage=50,
        value=2.5,
        upper_limit=4,
        duration_seconds=90.5,
        counts_down=False,
        is_running=True,
        metrics=[
            Metric(label="cpu", value=3, unit="%", color="red"),
            {"label": "x", "value": "-1"},
        ],
        message="hi",
        icon=Icon(symbol="bolt", color="yellow"),
        badge=Badge(title="NEW"),
        color="blue",
        step_color="green",
        step_colors=["green", "lime"],
        auto_dismiss_minutes=1,
        auto_dismiss_seconds=0,
    )
    out = full.to_json()
    assert out == {
        "title": "Deploy",
        "subtitle": "api",
        "type": "segmented_progress",
        "number_of_steps": 4,
        "current_step": 2,
        "percentage": 50,
        "value": 2.5,
        "upper_limit": 4,
        "duration_seconds": 90.5,
        "counts_down": False,
        "is_running": True,
        "metrics": [
            {"label": "cpu", "value": 3, "unit": "%", "color": "red"},
            {"label": "x", "value": "-1"},
        ],
        "message": "hi",
        "icon": {"symbol": "bolt", "color": "yellow"},
        "badge": {"title": "NEW"},
        "color": "blue",
        "step_color": "green",
        "step_colors": ["green", "lime"],
        "auto_dismiss_minutes": 1,
        "auto_dismiss_seconds": 0,
    }
    # Enums go out as plain strings and ints stay ints.
    assert type(out["type"]) is str
    assert type(out["step_colors"][0]) is str
    assert type(out["percentage"]) is int
    assert type(out["metrics"][0]["value"]) is int
    assert json.loads(json.dumps(out)) == out
    assert ContentState.from_json(out) == full


def test_from_json_refuses_unknown_and_missing_keys() -> None:
    assert refused(ContentState.from_json, data={"title": "t", "steps": 3}).field == "steps"
    assert refused(ContentState.from_json, data={"type": "alert"}).field == "title"
    with pytest.raises(ArgumentTypeError):
        ContentState.from_json(["title"])  # type: ignore[arg-type]


# --- values are immutable ------------------------------------------------------------------------


def test_values_are_frozen_and_evolve_revalidates() -> None:
    built = state(type="segmented_progress", number_of_steps=3, current_step=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        built.current_step = 2  # type: ignore[misc]
    assert attrs.evolve(built, current_step=2).current_step == 2
    assert refused(lambda: attrs.evolve(built, current_step=4)).field == "current_step"


def test_content_state_is_hashable_and_compares_by_value() -> None:
    one = state(metrics={"a": 1}, icon={"symbol": "x"})
    two = state(metrics=[Metric(label="a", value=1)], icon=Icon(symbol="x"))
    assert one == two
    assert hash(one) == hash(two)


# --- Payload -------------------------------------------------------------------------------------

SEGMENTS = ContentState(
    title="Deploy",
    type="segmented_progress",
    number_of_steps=3,
    current_step=1,
    auto_dismiss_seconds=90,
)


def payload(**kwargs: Any) -> Payload:
    kwargs.setdefault("content_state", SEGMENTS)
    return Payload(**kwargs)


def test_payload_converts_lists_to_tuples_and_copies_mappings() -> None:
    meta: dict[str, Any] = {"run": 7}
    built = payload(channels=["ops"], tags=["a", "b"], metadata=meta, alert={"title": "t"})
    meta["run"] = 8
    assert built.channels == ("ops",)
    assert built.tags == ("a", "b")
    assert built.metadata == {"run": 7}
    assert built.alert == {"title": "t"}
    assert isinstance(built.metadata, Mapping)
    with pytest.raises(TypeError):
        built.metadata["run"] = 9  # type: ignore[index]


def test_payload_equality_copy_and_pickle() -> None:
    built = payload(metadata={"a": 1}, action={"title": "t", "type": "webhook", "url": "https://x"})
    assert built == payload(metadata={"a": 1}, action=Action.from_json(built.action.to_json()))  # type: ignore[union-attr]
    assert copy.deepcopy(built) == built
    assert pickle.loads(pickle.dumps(built)) == built
    with pytest.raises(TypeError):
        hash(built)


INVALID_PAYLOADS: list[tuple[dict[str, Any], str, str]] = [
    ({"channels": []}, "channels", "at least one channel"),
    ({"channels": ["ops", ""]}, "channels[1]", "must be a channel slug"),
    ({"channels": ["two words"]}, "channels[0]", "no spaces or commas"),
    ({"channels": ["a,b"]}, "channels[0]", "no spaces or commas"),
    ({"tags": [""]}, "tags[0]", "1 to 64 characters"),
    ({"tags": ["ok", "x" * 65]}, "tags[1]", "1 to 64 characters"),
    ({"metadata": {str(i): i for i in range(51)}}, "metadata", "(51 entries) must have at most 50"),
    ({"metadata": {"k" * 101: 1}}, "metadata." + "k" * 101, "at most 100 characters"),
    ({"metadata": {"k": "v" * 4001}}, "metadata.k", "at most 4000 characters"),
    ({"metadata": {"k": math.nan}}, "metadata.k", "finite"),
    (
        {"metadata": {f"k{i}": "v" * 4000 for i in range(5)}},
        "metadata",
        "must be at most 16384 bytes",
    ),
    ({"alert": {"subtitle": "x"}}, "alert.subtitle", "is not a known field"),
    (
        {
            "content_state": state(type="timer"),
            "secondary_action": Action.open_url("a", "https://x"),
        },
        "secondary_action",
        "is not shown on timer activities",
    ),
    (
        {"secondary_action": {"title": "t", "type": "webhook", "url": "http://x"}},
        "secondary_action.url",
        "https:// URL",
    ),
    ({"action": {"title": "t", "type": "open_url"}}, "action.url", "is required"),
]


@pytest.mark.parametrize(("kwargs", "field", "rule"), INVALID_PAYLOADS)
def test_invalid_payloads_name_field_and_rule(
    kwargs: dict[str, Any], field: str, rule: str
) -> None:
    error = refused(payload, **kwargs)
    assert error.field == field
    assert rule in error.rule


WRONG_PAYLOAD_TYPES: list[tuple[dict[str, Any], str]] = [
    ({"content_state": {"title": "t"}}, "content_state"),
    ({"content_state": None}, "content_state"),
    ({"channels": "ops"}, "channels"),
    ({"channels": [1]}, "channels[0]"),
    ({"tags": "a"}, "tags"),
    ({"tags": [None]}, "tags[0]"),
    ({"metadata": [("a", 1)]}, "metadata"),
    ({"metadata": {"a": None}}, "metadata.a"),
    ({"metadata": {"a": [1]}}, "metadata.a"),
    ({"metadata": {"a": {"b": 1}}}, "metadata.a"),
    ({"metadata": {1: "a"}}, "metadata key"),
    ({"alert": {"title": 3}}, "alert.title"),
    ({"alert": "hi"}, "alert"),
    ({"action": "https://x"}, "action"),
]


@pytest.mark.parametrize(("kwargs", "field"), WRONG_PAYLOAD_TYPES)
def test_wrong_payload_types(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ArgumentTypeError) as info:
        payload(**kwargs)
    assert info.value.field == field


def test_secondary_action_is_fine_when_type_is_unknown_or_compatible() -> None:
    button = Action.open_url("Logs", "https://x")
    assert payload(content_state=state(), secondary_action=button).secondary_action == button
    assert payload(secondary_action=button).secondary_action == button


def test_payload_of() -> None:
    built = payload()
    assert Payload.of(built) is built
    assert Payload.of(SEGMENTS) == Payload(content_state=SEGMENTS)


# --- Payload.body per operation -------------------------------------------------------------------

FULL = Payload(
    content_state=ContentState(
        title="Deploy",
        type="segmented_progress",
        number_of_steps=3,
        current_step=1,
        color="blue",
        auto_dismiss_minutes=None,
        auto_dismiss_seconds=90,
    ),
    action=Action.open_url("Logs", "https://ci.example/1"),
    secondary_action=Action.webhook("Stop", "https://hooks.example/stop", body={"id": 1}),
    channels=["ops", "oncall"],
    tags=["deploy"],
    metadata={"run": 7, "ok": True, "who": "ci"},
    alert={"title": "Heads up"},
)
STATE_JSON = {
    "title": "Deploy",
    "type": "segmented_progress",
    "number_of_steps": 3,
    "current_step": 1,
    "color": "blue",
}
ACTION_JSON = {"title": "Logs", "type": "open_url", "url": "https://ci.example/1"}
SECONDARY_JSON = {
    "title": "Stop",
    "type": "webhook",
    "url": "https://hooks.example/stop",
    "method": "POST",
    "body": {"id": 1},
}
COMMON = {"action": ACTION_JSON, "secondary_action": SECONDARY_JSON, "tags": ["deploy"]}
META = {"metadata": {"run": 7, "ok": True, "who": "ci"}}


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (
            Operation.START,
            {
                "content_state": STATE_JSON,
                **COMMON,
                "alert": {"title": "Heads up"},
                "target": {"channels": ["ops", "oncall"]},
                **META,
            },
        ),
        (Operation.UPDATE, {"content_state": STATE_JSON, **COMMON, **META}),
        (
            Operation.END,
            {"content_state": {**STATE_JSON, "auto_dismiss_minutes": 2}, **COMMON, **META},
        ),
        (
            Operation.STREAM_PUT,
            {
                "content_state": STATE_JSON,
                **COMMON,
                "alert": {"title": "Heads up"},
                "channels": ["ops", "oncall"],
                **META,
            },
        ),
        (
            Operation.STREAM_DELETE,
            {
                "content_state": {**STATE_JSON, "auto_dismiss_seconds": 90},
                **COMMON,
                "alert": {"title": "Heads up"},
                **META,
            },
        ),
    ],
)
def test_body_per_operation(op: Operation, expected: dict[str, Any]) -> None:
    assert FULL.body(op) == expected
    assert FULL.body(op.value) == expected


def test_body_of_a_bare_state_has_only_content_state() -> None:
    for op in ALL_OPS:
        assert Payload(content_state=SEGMENTS).body(op).keys() == {"content_state"}


@pytest.mark.parametrize(
    ("minutes", "seconds", "expected"),
    [
        (None, 0, 0),
        (None, 1, 1),
        (None, 59, 1),
        (None, 60, 1),
        (None, 61, 2),
        (None, 90, 2),
        (None, 3600, 60),
        (5, 30, 5),  # minutes set by the caller win; seconds are dropped
        (0, 600, 0),
        (4, None, 4),
        (None, None, None),
    ],
)
def test_legacy_end_converts_seconds_to_minutes_rounding_up(
    minutes: int | None, seconds: int | None, expected: int | None
) -> None:
    built = Payload(content_state=state(auto_dismiss_minutes=minutes, auto_dismiss_seconds=seconds))
    sent = built.body(Operation.END)["content_state"]
    assert "auto_dismiss_seconds" not in sent
    assert sent.get("auto_dismiss_minutes") == expected


@pytest.mark.parametrize("op", [Operation.START, Operation.UPDATE, Operation.STREAM_PUT])
def test_auto_dismiss_is_left_out_before_the_end(op: Operation) -> None:
    built = Payload(
        content_state=state(
            type="alert", message="m", auto_dismiss_minutes=1, auto_dismiss_seconds=5
        )
    )
    assert built.body(op)["content_state"] == {"title": "Job", "type": "alert", "message": "m"}


def test_stream_delete_keeps_both_dismissal_fields() -> None:
    built = Payload(content_state=state(auto_dismiss_minutes=1, auto_dismiss_seconds=5))
    sent = built.body(Operation.STREAM_DELETE)["content_state"]
    assert (sent["auto_dismiss_minutes"], sent["auto_dismiss_seconds"]) == (1, 5)


@pytest.mark.parametrize("op", ALL_OPS)
def test_at_most_twenty_tags_on_update_and_end(op: Operation) -> None:
    twenty = payload(tags=[f"t{i}" for i in range(20)])
    assert len(twenty.body(op)["tags"]) == 20
    many = payload(tags=[f"t{i}" for i in range(21)])
    if op in (Operation.UPDATE, Operation.END):
        error = refused(many.body, op=op)
        assert error.field == "tags"
        assert f"(21 items) must have at most 20 items on {op.value}" == error.rule
    else:
        assert len(many.body(op)["tags"]) == 21


@pytest.mark.parametrize("op", ALL_OPS)
def test_empty_tags_and_metadata_are_sent_to_clear_them(op: Operation) -> None:
    sent = payload(tags=[], metadata={}).body(op)
    assert (sent["tags"], sent["metadata"]) == ([], {})


def test_body_runs_the_operation_check() -> None:
    built = Payload(content_state=state(type="segmented_progress", current_step=1))
    assert refused(built.body, op=Operation.START).field == "number_of_steps"
    assert built.body(Operation.UPDATE)["content_state"]["current_step"] == 1
    assert refused(Payload(content_state=state()).body, op="stream_put").field == "type"


def test_body_output_is_a_fresh_copy() -> None:
    first = FULL.body(Operation.START)
    first["metadata"]["run"] = 0
    first["secondary_action"]["body"]["id"] = 0
    first["target"]["channels"].append("x")
    assert FULL.body(Operation.START) == {
        **FULL.body(Operation.START),
        "metadata": {"run": 7, "ok": True, "who": "ci"},
    }
    assert FULL.secondary_action is not None
    assert FULL.secondary_action.body == {"id": 1}
    assert FULL.channels == ("ops", "oncall")


# --- stream keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a", "A-z_0-9", "x" * 255, "deploy-api", "_", "-"])
def test_valid_stream_keys(key: str) -> None:
    assert validate_stream_key(key) == key


@pytest.mark.parametrize(
    ("key", "rule"),
    [
        ("", "must not be empty"),
        ("x" * 256, "at most 255 characters"),
        ("a b", "only letters, digits"),
        ("a/b", "only letters, digits"),
        ("a.b", "only letters, digits"),
        ("café", "only letters, digits"),
        ("abc\n", "only letters, digits"),
    ],
)
def test_invalid_stream_keys(key: str, rule: str) -> None:
    error = refused(validate_stream_key, key=key)
    assert error.field == "stream_key"
    assert rule in error.rule


@pytest.mark.parametrize("key", [None, 3, b"abc"])
def test_stream_key_must_be_a_str(key: Any) -> None:
    with pytest.raises(TypeError):
        validate_stream_key(key)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Nightly ETL: orders", "nightly-etl-orders"),
        ("deploy-api", "deploy-api"),
        ("  --Deploy -- API--  ", "deploy-api"),
        ("snake_case_job", "snake_case_job"),
        ("Café déploiement", "cafe-deploiement"),
        ("backup/db.sql.gz", "backup-db-sql-gz"),
        ("ÅNGSTRÖM", "angstrom"),
    ],
)
def test_stream_key_from_examples(text: str, key: str) -> None:
    assert stream_key_from(text) == key


@pytest.mark.parametrize("text", ["", "!!!", "——", "日本語"])
def test_stream_key_from_text_without_usable_characters(text: str) -> None:
    key = stream_key_from(text)
    assert key.startswith("stream-")
    assert len(key) == len("stream-") + 10
    assert key == stream_key_from(text)


def test_stream_key_from_long_text_is_cut_and_hashed() -> None:
    one, two = stream_key_from("a" * 300), stream_key_from("a" * 301)
    assert len(one) == len(two) == 255
    assert one != two
    assert one[:244] == "a" * 244
    assert one[244] == "-"


def test_stream_key_from_needs_a_str() -> None:
    with pytest.raises(ArgumentTypeError):
        stream_key_from(None)  # type: ignore[arg-type]


# --- properties -----------------------------------------------------------------------------------


def _round_trip(value: ContentState) -> ContentState:
    return ContentState.from_json(json.loads(json.dumps(value.to_json(), allow_nan=False)))


@given(strategies.content_states())
def test_typed_states_round_trip_through_json(value: ContentState) -> None:
    assert _round_trip(value) == value
    assert ContentState(**value.to_json()) == value


@given(strategies.loose_states())
def test_loose_states_round_trip_through_json(value: ContentState) -> None:
    assert _round_trip(value) == value


@given(strategies.content_states())
def test_generated_states_pass_every_check(value: ContentState) -> None:
    for op in ALL_OPS:
        value.check(op)


@given(strategies.loose_states())
def test_type_less_states_pass_update_and_end_but_not_start(value: ContentState) -> None:
    for op in (Operation.UPDATE, Operation.END, Operation.STREAM_DELETE):
        value.check(op)
    for op in START_LIKE:
        assert refused(value.check, op=op).field == "type"


@given(strategies.payloads())
def test_payload_bodies_are_plain_json(value: Payload) -> None:
    for op in ALL_OPS:
        body = value.body(op)
        assert json.loads(json.dumps(body, allow_nan=False)) == body
        assert ("target" in body) == (op is Operation.START and value.channels is not None)
        assert ("channels" in body) == (op is Operation.STREAM_PUT and value.channels is not None)
        has_alert = value.alert is not None and op not in (Operation.UPDATE, Operation.END)
        assert ("alert" in body) == has_alert
        assert "activity_id" not in body


@given(strategies.invalid_state_kwargs())
def test_invalid_fields_are_refused(case: tuple[str, dict[str, Any]]) -> None:
    field, kwargs = case
    with pytest.raises(ValidationError) as info:
        ContentState(**kwargs)
    assert info.value.field == field


@given(st.text())
def test_derived_stream_keys_are_valid_and_deterministic(text: str) -> None:
    key = stream_key_from(text)
    assert validate_stream_key(key) == key
    assert stream_key_from(text) == key


@given(st.from_regex(r"[a-z0-9_]{1,20}(-[a-z0-9_]{1,20}){0,5}", fullmatch=True))
def test_clean_keys_derive_to_themselves(text: str) -> None:
    assert stream_key_from(text) == text


@given(strategies.stream_keys)
def test_generated_stream_keys_validate(key: str) -> None:
    assert validate_stream_key(key) == key


def test_the_start_up_names_match_the_model_and_the_emulator() -> None:
    # The command line checks options against _names before the model loads; the model's
    # enums and the emulator's rules (written from the contract on their own) must agree.
    from activitysmith_track import _names
    from activitysmith_track.emulator import _rules

    assert _names.COLORS == tuple(c.value for c in Color) == _rules.COLORS
    assert _names.ACTIVITY_TYPES == tuple(t.value for t in ActivityType) == _rules.ACTIVITY_TYPES
    for key, fine in [("a" * 255, True), ("a" * 256, False), ("ok_key-1", True), ("no key", False)]:
        assert (_names.stream_key_problem(key) is None) is fine, key
        assert bool(_rules._STREAM_KEY.fullmatch(key)) is fine, key
