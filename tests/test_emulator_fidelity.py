"""The emulator answers as the service documents it, checked with the official SDK.

The oracle is the official ``activitysmith`` SDK (its generated request and response models,
which validate strictly, enums included) plus the API contract's tables, written out again
here from the contract: nothing in this file comes from the emulator's rules table or from
the library's model, so a mistake in either shows up as a failure here.

Valid requests go through the SDK itself (every endpoint, every type), so each 200 body is
parsed by the SDK's response model. Invalid ones go over raw HTTP, because the SDK refuses
some of them before sending; their 400 bodies are parsed with the SDK's error models.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from activitysmith_track.emulator import Emulator

activitysmith = pytest.importorskip("activitysmith")
models = pytest.importorskip("activitysmith_openapi.models")
exceptions = pytest.importorskip("activitysmith_openapi.exceptions")

KEY = "ask_fidelity"
AUTH = {"Authorization": f"Bearer {KEY}"}
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# -- the contract's per-type table (section 4), as states ------------------------------------
# For every type: a start state, an update state (type left out, as the contract allows) and
# an end state. Every optional extra the contract lists for the type is used somewhere.

ICON = {"symbol": "bolt.fill", "color": "yellow"}
BADGE = {"title": "P1", "color": "red"}

STARTS: dict[str, list[dict[str, Any]]] = {
    "segmented_progress": [
        {
            "title": "Deploy",
            "type": "segmented_progress",
            "number_of_steps": 3,
            "current_step": 0,
            "color": "blue",
            "step_color": "cyan",
            "step_colors": [],
            "icon": ICON,
            "badge": BADGE,
        },
    ],
    "progress": [
        {"title": "Upload", "type": "progress", "percentage": 12.5, "color": "orange"},
        {"title": "Upload", "type": "progress", "value": 3, "upper_limit": 40, "badge": BADGE},
    ],
    "metrics": [
        {
            "title": "Build farm",
            "type": "metrics",
            "metrics": [
                {"label": "CPU", "value": 72, "unit": "%", "color": "orange"},
                {"label": "Delta", "value": "-3"},  # a negative goes as a string
            ],
            "color": "green",
            "icon": ICON,
        },
    ],
    "stats": [
        {
            "title": "Today",
            "type": "stats",
            "metrics": [{"label": f"m{i}", "value": i * 1.5, "color": "cyan"} for i in range(8)],
        },
    ],
    "alert": [
        {
            "title": "Disk",
            "type": "alert",
            "message": "94% full",
            "color": "red",
            "icon": ICON,
            "badge": BADGE,
        },
    ],
    "timer": [
        {"title": "Bake", "type": "timer", "duration_seconds": 600, "color": "yellow"},
        {"title": "Job", "type": "timer", "counts_down": False},  # counts up from 00:00
    ],
    "value": [
        {"title": "Revenue", "type": "value", "value": "$1,240", "badge": BADGE},
        {"title": "Queue", "type": "value", "value": 42.5, "color": "purple"},
    ],
}

UPDATES: dict[str, dict[str, Any]] = {
    "segmented_progress": {"title": "Deploy", "current_step": 2, "number_of_steps": 4},
    "progress": {"title": "Upload", "percentage": 50},
    "metrics": {"title": "Build farm", "metrics": [{"label": "CPU", "value": 12, "unit": "%"}]},
    "stats": {"title": "Today", "metrics": [{"label": "m0", "value": 3}]},
    "alert": {"title": "Disk", "message": "95% full"},
    "timer": {"title": "Bake", "is_running": False},
    "value": {"title": "Revenue", "value": 7},
}

ENDS: dict[str, dict[str, Any]] = {
    "segmented_progress": {"title": "Deployed", "current_step": 4},
    "progress": {"title": "Uploaded", "value": 40, "upper_limit": 40},
    "metrics": {"title": "Build farm", "metrics": [{"label": "CPU", "value": 0, "unit": "%"}]},
    "stats": {"title": "Today", "metrics": [{"label": "m0", "value": 9}]},
    "alert": {"title": "Disk", "message": "Freed"},
    "timer": {"title": "Baked"},  # the timer freezes its latest state
    "value": {"title": "Revenue", "value": "$1,300"},
}

TYPE_CASES = [
    pytest.param(kind, index, id=f"{kind}-{index}")
    for kind, states in STARTS.items()
    for index in range(len(states))
]


# -- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    # Fidelity of the rules, not of the limits (those have their own tests below): one
    # emulator for the module, without the capacity limit or the request budget.
    with Emulator(KEY, fast=True) as emu:
        yield emu


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    return server


def sdk_for(emu: Emulator) -> Any:
    client = activitysmith.ActivitySmith(api_key=KEY)
    # The SDK has no base-URL option; its generated configuration's host is the way in.
    client.live_activities._api.api_client.configuration.host = emu.base_url
    return client


@pytest.fixture
def sdk(emu: Emulator) -> Iterator[Any]:
    client = sdk_for(emu)
    yield client
    client.live_activities._api.api_client.rest_client.pool_manager.clear()


def raw(emu: Emulator, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(method, emu.base_url + path, json=body, headers=AUTH, timeout=5)


def operation(response: Any) -> str:
    value = response.operation
    return str(getattr(value, "value", value))


def last_body(emu: Emulator) -> Any:
    return emu.requests[-1].response


def assert_error_shape(response: requests.Response, status: int) -> dict[str, Any]:
    """The status, and a body with string ``error`` and ``message`` (contract section 5)."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert isinstance(body.get("error"), str)
    assert isinstance(body.get("message"), str)
    assert body["message"]
    return body


# -- every type through every endpoint, via the SDK -------------------------------------------


@pytest.mark.parametrize(("kind", "index"), TYPE_CASES)
def test_sdk_drives_the_legacy_lifecycle_of_every_type(
    sdk: Any, emu: Emulator, kind: str, index: int
) -> None:
    live = sdk.live_activities
    start = live.start(content_state=STARTS[kind][index])
    assert isinstance(start, models.LiveActivityStartResponse)
    assert start.success is True
    update = live.update(activity_id=start.activity_id, content_state=UPDATES[kind])
    assert isinstance(update, models.LiveActivityUpdateResponse)
    assert update.activity_id == start.activity_id
    end = live.end(activity_id=start.activity_id, content_state=ENDS[kind])
    assert isinstance(end, models.LiveActivityEndResponse)
    assert end.activity_id == start.activity_id

    assert [r.status for r in emu.requests] == [200, 200, 200]
    for request in emu.requests:
        assert ISO_MS.match(request.response["timestamp"])
    record = emu.activity(start.activity_id)
    assert (record.type, record.status) == (kind, "ended")
    # The SDK always sends auto_dismiss_minutes 3 on the legacy end (its schema default).
    assert record.auto_dismiss == 180


@pytest.mark.parametrize(("kind", "index"), TYPE_CASES)
def test_sdk_drives_a_stream_of_every_type(sdk: Any, emu: Emulator, kind: str, index: int) -> None:
    live = sdk.live_activities
    key = f"fidelity-{kind}-{index}"
    first = live.stream(key, content_state=STARTS[kind][index])
    assert isinstance(first, models.LiveActivityStreamPutResponse)
    assert operation(first) == "started"
    later = live.stream(key, content_state=UPDATES[kind])
    assert operation(later) == "updated"
    assert later.activity_id == first.activity_id
    assert operation(live.stream(key, content_state=UPDATES[kind])) == "noop"
    ended = live.end_stream(key, content_state={**ENDS[kind], "auto_dismiss_seconds": 0})
    assert isinstance(ended, models.LiveActivityStreamDeleteResponse)
    assert (operation(ended), ended.activity_id) == ("ended", first.activity_id)
    again = live.end_stream(key)
    assert (operation(again), again.ignored, again.activity_id) == ("ended", True, None)

    assert all(r.status == 200 for r in emu.requests)
    record = emu.activity(first.activity_id)
    assert (record.type, record.status, record.auto_dismiss) == (kind, "ended", 0)


def test_every_type_is_covered() -> None:
    # The contract's type enum (section 2.1), all seven.
    expected = {"segmented_progress", "progress", "metrics", "stats", "alert", "timer", "value"}
    assert set(STARTS) == set(UPDATES) == set(ENDS) == expected


# -- what the contract accepts, the emulator accepts ------------------------------------------

ACTION = {"title": "Open", "type": "open_url", "url": "https://example.com/run"}
SHORTCUT = {"title": "Run", "type": "open_url", "url": "shortcuts://run-shortcut?name=Deploy"}
WEBHOOK = {
    "title": "Retry",
    "type": "webhook",
    "url": "https://example.com/hook",
    "method": "GET",
    "body": {"job": 7},
}
TAGS_25 = [f"tag-{i}" for i in range(25)]
METADATA = {"run": 12, "ok": True, "note": "x" * 4000, "ratio": 0.5}


def test_a_later_put_accepts_everything_a_first_put_does(sdk: Any, emu: Emulator) -> None:
    """Every PUT takes LiveActivityStreamRequest: channels, target, alert, auto_dismiss_* in
    the state and more than 20 tags, on the first PUT and on the ones after it."""
    live = sdk.live_activities
    state = {"title": "Sync", "type": "progress", "percentage": 10}
    extras = {
        "channels": ["ops", "eng"],
        "target": {"channels": ["eng", "ops"]},  # both forms may be sent if they match
        "alert": {"title": "Sync", "body": "started"},
        "tags": TAGS_25,
        "metadata": METADATA,
        "action": SHORTCUT,
        "secondary_action": WEBHOOK,
    }
    dismiss = {"auto_dismiss_seconds": 30, "auto_dismiss_minutes": 1}
    first = live.stream("everything", request={"content_state": {**state, **dismiss}, **extras})
    assert operation(first) == "started"
    for percentage in (20, 30):
        body = {"content_state": {**state, "percentage": percentage, **dismiss}, **extras}
        assert operation(live.stream("everything", request=body)) == "updated"
    assert [r.status for r in emu.requests] == [200, 200, 200]
    sent = emu.requests[-1].body
    assert sent["channels"] == ["ops", "eng"]  # the SDK really sent both forms
    assert sent["target"] == {"channels": ["eng", "ops"]}
    record = emu.activity(first.activity_id)
    assert (record.tags, record.channels) == (TAGS_25, ["ops", "eng"])


@pytest.mark.parametrize(
    ("state", "extra"),
    [
        pytest.param(
            {"title": "m", "type": "metrics", "metrics": [{"label": "a", "value": 1}]},
            {"badge": BADGE},
            id="badge-on-metrics",
        ),
        pytest.param(
            {"title": "t", "type": "timer", "duration_seconds": 60},
            {"secondary": WEBHOOK},
            id="secondary-action-on-timer",
        ),
        pytest.param(
            {"title": "p", "type": "progress", "value": 0, "upper_limit": 0},
            {},
            id="upper-limit-zero",
        ),
        pytest.param(
            {"title": "p", "type": "progress", "percentage": 40, "value": "40 of 100"},
            {},
            id="string-value-on-progress",
        ),
        pytest.param(
            {"title": "t", "type": "timer", "duration_seconds": 0},
            {},
            id="duration-zero",
        ),
        pytest.param(
            {"title": "s", "type": "segmented_progress", "number_of_steps": 3, "current_step": 1},
            {"step_colors": ["red", "green"]},
            id="step-colors-longer-than-current-step",
        ),
    ],
)
def test_what_the_schema_accepts_is_accepted_with_a_note(
    sdk: Any, emu: Emulator, state: dict[str, Any], extra: dict[str, Any]
) -> None:
    content = {**state, **{k: v for k, v in extra.items() if k != "secondary"}}
    kwargs = {"secondary_action": extra["secondary"]} if "secondary" in extra else {}
    # The SDK's own request model takes each of these: the schema allows them.
    start = sdk.live_activities.start(content_state=content, **kwargs)
    assert start.success is True
    stream = sdk.live_activities.stream("noted", content_state=content, **kwargs)
    assert operation(stream) == "started"
    for request in emu.requests:
        assert request.status == 200
        assert request.notes  # the emulator says what it accepted on an assumption


def test_metrics_may_end_without_metrics(sdk: Any, emu: Emulator) -> None:
    # "Final metrics (docs: send it if the ended state should show final values)".
    started = sdk.live_activities.start(content_state=STARTS["metrics"][0])
    sdk.live_activities.end(activity_id=started.activity_id, content_state={"title": "Done"})
    assert [r.status for r in emu.requests] == [200, 200]


def test_number_of_steps_may_rise_and_fall(sdk: Any, emu: Emulator) -> None:
    live = sdk.live_activities
    first = live.stream("steps", content_state=STARTS["segmented_progress"][0])
    live.stream("steps", content_state={"title": "Deploy", "current_step": 5, "number_of_steps": 6})
    live.stream("steps", content_state={"title": "Deploy", "current_step": 2, "number_of_steps": 2})
    assert [r.status for r in emu.requests] == [200, 200, 200]
    assert emu.activity(first.activity_id).state["number_of_steps"] == 2


def test_webhook_and_shortcut_buttons_and_http_open_url(sdk: Any, emu: Emulator) -> None:
    http_button = {"title": "Open", "type": "open_url", "url": "http://intranet.example/x"}
    live = sdk.live_activities
    started = live.start(
        content_state=STARTS["alert"][0], action=WEBHOOK, secondary_action=http_button
    )
    live.update(
        activity_id=started.activity_id,
        content_state=UPDATES["alert"],
        action=SHORTCUT,
        secondary_action=ACTION,
        tags=[f"t{i}" for i in range(20)],  # update allows up to 20
        metadata={},
    )
    assert [r.status for r in emu.requests] == [200, 200]
    # The SDK serializes method "POST" on open_url buttons too; it is kept as sent.
    assert emu.activity(started.activity_id).action == {**SHORTCUT, "method": "POST"}


# -- what the contract refuses, the emulator refuses ------------------------------------------
# Each case: the path, the body, the field the 400 message must name, and why it is refused:
#   "schema"     - the SDK's request model refuses it too (checked below);
#   "contract"   - the schema takes it, the contract's section 2 to 4 rules do not;
#   "assumption" - the contract is silent; the message must say it is an assumption.

START = "/live-activity/start"
PUT = "/live-activity/stream/fidelity"


def _start(state: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"content_state": state, **extra}


PROGRESS = {"title": "p", "type": "progress", "percentage": 5}
STEPS = {"title": "s", "type": "segmented_progress", "number_of_steps": 3, "current_step": 1}

INVALID: list[Any] = [
    pytest.param(START, _start({"type": "progress", "percentage": 5}), "title", "schema"),
    pytest.param(START, _start({"title": "x"}), "type", "schema", id="start-without-type"),
    pytest.param(START, _start({**PROGRESS, "type": "gauge"}), "type", "schema"),
    pytest.param(START, _start({**PROGRESS, "percentage": 101}), "percentage", "schema"),
    pytest.param(START, _start({**PROGRESS, "percentage": -1}), "percentage", "schema"),
    pytest.param(START, _start({**PROGRESS, "color": "pink"}), "color", "schema"),
    pytest.param(START, _start({**STEPS, "number_of_steps": 0}), "number_of_steps", "schema"),
    pytest.param(START, _start({**STEPS, "current_step": -1}), "current_step", "schema"),
    pytest.param(START, _start({**STEPS, "step_color": "pink"}), "step_color", "schema"),
    pytest.param(START, _start({**STEPS, "step_colors": ["x"]}), "step_colors[0]", "schema"),
    pytest.param(START, _start({**STEPS, "current_step": 4}), "current_step", "contract"),
    pytest.param(
        START,
        _start({"title": "s", "type": "segmented_progress"}),
        "number_of_steps",
        "contract",
        id="segmented-without-steps",
    ),
    pytest.param(START, _start({"title": "p", "type": "progress"}), "percentage", "contract"),
    pytest.param(
        START,
        _start({"title": "p", "type": "progress", "value": 3}),
        "upper_limit",
        "contract",
        id="progress-value-without-upper-limit",
    ),
    pytest.param(
        START,
        _start({"title": "p", "type": "progress", "value": "3", "upper_limit": 10}),
        "value",
        "assumption",
        id="progress-string-value-without-percentage",
    ),
    pytest.param(START, _start({"title": "m", "type": "metrics"}), "metrics", "contract"),
    pytest.param(
        START,
        _start({"title": "m", "type": "metrics", "metrics": []}),
        "metrics",
        "schema",
        id="metrics-empty",
    ),
    pytest.param(
        START,
        _start({"title": "m", "type": "stats", "metrics": [{"label": "a", "value": 1}] * 9}),
        "metrics",
        "schema",
        id="nine-metrics",
    ),
    pytest.param(
        START,
        _start({"title": "m", "type": "metrics", "metrics": [{"label": "a", "value": -1}]}),
        "metrics[0].value",
        "schema",
        id="negative-metric",
    ),
    pytest.param(
        START,
        _start({"title": "m", "type": "metrics", "metrics": [{"label": "a", "value": "x" * 65}]}),
        "metrics[0].value",
        "schema",
        id="metric-string-too-long",
    ),
    pytest.param(
        START,
        _start({"title": "m", "type": "metrics", "metrics": [{"label": "", "value": 1}]}),
        "metrics[0].label",
        "schema",
        id="metric-empty-label",
    ),
    pytest.param(START, _start({"title": "a", "type": "alert"}), "message", "contract"),
    pytest.param(
        START,
        _start({"title": "a", "type": "alert", "message": ""}),
        "message",
        "schema",
        id="alert-empty-message",
    ),
    pytest.param(START, _start({"title": "t", "type": "timer"}), "duration_seconds", "contract"),
    pytest.param(START, _start({"title": "v", "type": "value"}), "value", "contract"),
    pytest.param(START, _start({**PROGRESS, "icon": {"symbol": ""}}), "icon.symbol", "schema"),
    pytest.param(START, _start({**PROGRESS, "badge": {"color": "red"}}), "badge.title", "schema"),
    pytest.param(
        START,
        _start({**PROGRESS, "auto_dismiss_minutes": 1}),
        "auto_dismiss_minutes",
        "assumption",
        id="start-auto-dismiss",
    ),
    pytest.param(START, _start({**PROGRESS, "sparkle": True}), "sparkle", "assumption"),
    pytest.param(START, _start(PROGRESS, surprise=1), "surprise", "assumption"),
    pytest.param(
        START,
        _start(PROGRESS, channels=["ops"]),
        "channels",
        "assumption",
        id="start-top-level-channels",
    ),
    pytest.param(START, _start(PROGRESS, target={"channels": []}), "target.channels", "schema"),
    pytest.param(START, _start(PROGRESS, tags=[""]), "tags[0]", "schema"),
    pytest.param(START, _start(PROGRESS, tags=["x" * 65]), "tags[0]", "schema"),
    pytest.param(START, _start(PROGRESS, metadata={"k": [1]}), "metadata.k", "schema"),
    pytest.param(START, _start(PROGRESS, metadata={"k": None}), "metadata.k", "schema"),
    pytest.param(START, _start(PROGRESS, metadata={"k": "x" * 4001}), "metadata.k", "schema"),
    pytest.param(
        START,
        _start(PROGRESS, metadata={f"k{i}": i for i in range(51)}),
        "metadata",
        "contract",
        id="metadata-51-entries",
    ),
    pytest.param(
        START,
        _start(PROGRESS, action={"title": "Go", "type": "webhook", "url": "http://x.example"}),
        "action.url",
        "contract",
        id="webhook-over-http",
    ),
    pytest.param(
        START,
        _start(PROGRESS, action={"title": "Go", "type": "open_url", "url": "ftp://x.example"}),
        "action.url",
        "contract",
        id="open-url-ftp",
    ),
    pytest.param(
        START,
        _start(PROGRESS, action={"title": "Go", "type": "call", "url": "https://x.example"}),
        "action.type",
        "schema",
        id="action-type-unknown",
    ),
    pytest.param(
        START,
        _start(
            PROGRESS,
            action={"title": "Go", "type": "webhook", "url": "https://x.example", "method": "PUT"},
        ),
        "action.method",
        "schema",
        id="webhook-method-put",
    ),
    pytest.param(START, _start(PROGRESS, alert={"title": 5}), "alert.title", "schema"),
    pytest.param(PUT, _start({"title": "no type"}), "type", "contract", id="first-put-no-type"),
    pytest.param(PUT, _start(PROGRESS, channels=[]), "channels", "schema"),
    pytest.param(
        PUT,
        _start(PROGRESS, channels=["a"], target={"channels": ["b"]}),
        "channels",
        "contract",
        id="channels-and-target-differ",
    ),
    pytest.param(
        PUT, _start({**PROGRESS, "auto_dismiss_seconds": -1}), "auto_dismiss_seconds", "schema"
    ),
]

_SDK_REQUEST = {
    START: "LiveActivityStartRequest",
    PUT: "LiveActivityStreamRequest",
}


def _sdk_model_accepts(path: str, body: dict[str, Any]) -> bool:
    """Whether the SDK's request model would take ``body`` (as JSON it received)."""
    model = getattr(models, _SDK_REQUEST[path])
    try:
        model.from_dict(body)
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        return False
    return True


@pytest.mark.parametrize(("path", "body", "field", "why"), INVALID)
def test_invalid_requests_are_400_naming_the_field(
    emu: Emulator, path: str, body: dict[str, Any], field: str, why: str
) -> None:
    method = "PUT" if path == PUT else "POST"
    response = raw(emu, method, path, body)
    answer = assert_error_shape(response, 400)
    models.BadRequestError.from_dict(answer)  # the SDK's model of a 400 body
    assert field in answer["message"]
    assert ("assumption" in answer["message"]) == (why == "assumption")
    # The tag is itself checked against the SDK: "schema" cases are exactly those its
    # request model refuses.
    assert (not _sdk_model_accepts(path, body)) == (why == "schema")
    assert emu.activities == {}


def _started(emu: Emulator, state: dict[str, Any] = STEPS) -> str:
    response = raw(emu, "POST", START, _start(state))
    assert response.status_code == 200, response.text
    activity_id: str = response.json()["activity_id"]
    return activity_id


@pytest.mark.parametrize(
    ("endpoint", "extra", "field"),
    [
        ("update", {"target": {"channels": ["a"]}}, "target"),
        ("update", {"alert": {"title": "x"}}, "alert"),
        ("update", {"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ("end", {"tags": [f"t{i}" for i in range(21)]}, "tags"),
        ("end", {"channels": ["a"]}, "channels"),
    ],
)
def test_legacy_update_and_end_refuse_what_only_start_and_stream_take(
    emu: Emulator, endpoint: str, extra: dict[str, Any], field: str
) -> None:
    activity_id = _started(emu)
    body = {"activity_id": activity_id, "content_state": {"title": "s", "current_step": 2}}
    answer = assert_error_shape(
        raw(emu, "POST", f"/live-activity/{endpoint}", {**body, **extra}), 400
    )
    assert field in answer["message"]


def test_legacy_end_has_no_auto_dismiss_seconds(emu: Emulator) -> None:
    activity_id = _started(emu)
    state = {"title": "s", "current_step": 3, "auto_dismiss_seconds": 0}
    body = {"activity_id": activity_id, "content_state": state}
    answer = assert_error_shape(raw(emu, "POST", "/live-activity/end", body), 400)
    assert "auto_dismiss_seconds" in answer["message"]


def test_stream_delete_takes_no_targeting(emu: Emulator) -> None:
    assert raw(emu, "PUT", PUT, _start(PROGRESS)).status_code == 200
    answer = assert_error_shape(raw(emu, "DELETE", PUT, {"channels": ["a"]}), 400)
    assert "channels" in answer["message"]
    answer = assert_error_shape(raw(emu, "DELETE", PUT, {"content_state": {"percentage": 9}}), 400)
    assert "title" in answer["message"]  # a state sent with the DELETE needs its title


def test_update_needs_what_the_type_needs(emu: Emulator) -> None:
    activity_id = _started(emu, {"title": "a", "type": "alert", "message": "m"})
    body = {"activity_id": activity_id, "content_state": {"title": "a"}}
    answer = assert_error_shape(raw(emu, "POST", "/live-activity/update", body), 400)
    assert "message" in answer["message"]


def test_a_later_put_is_checked_against_the_activitys_step_count(emu: Emulator) -> None:
    assert raw(emu, "PUT", PUT, _start(STEPS)).status_code == 200
    response = raw(emu, "PUT", PUT, _start({"title": "s", "current_step": 9}))
    answer = assert_error_shape(response, 400)
    assert "number_of_steps" in answer["message"]
    assert "assumption" in answer["message"]  # the schema bounds it by a count sent with it


@pytest.mark.parametrize("key", ["has space", "dots.not.allowed", "x" * 256])
def test_invalid_stream_key(emu: Emulator, key: str) -> None:
    answer = assert_error_shape(
        raw(emu, "PUT", f"/live-activity/stream/{key}", _start(PROGRESS)), 400
    )
    assert answer["error"] == "Invalid stream_key"


def test_targeting_errors_say_so(emu: Emulator) -> None:
    answer = assert_error_shape(raw(emu, "PUT", PUT, _start(PROGRESS, channels=[])), 400)
    assert answer["error"] == "Invalid channel targeting"


def test_sdk_raises_its_documented_exceptions(sdk: Any, emu: Emulator) -> None:
    live = sdk.live_activities
    with pytest.raises(exceptions.BadRequestException) as bad:
        live.start(content_state={"title": "p", "type": "progress"})
    assert bad.value.status == 400
    assert "percentage" in bad.value.body
    with pytest.raises(exceptions.NotFoundException) as missing:
        live.end_stream("never-started")
    body = missing.value.body
    models.NotFoundError.from_json(body)
    assert "never-started" in body


# -- the other error bodies -------------------------------------------------------------------


def test_missing_or_wrong_key_is_401_with_an_error_body(emu: Emulator) -> None:
    for headers in ({}, {"Authorization": "Bearer ask_other"}, {"Authorization": "Basic x"}):
        response = requests.post(
            emu.base_url + START, json=_start(PROGRESS), headers=headers, timeout=5
        )
        assert_error_shape(response, 401)
    assert emu.activities == {}


def test_delete_of_an_unknown_stream_is_the_documented_404(emu: Emulator) -> None:
    answer = assert_error_shape(raw(emu, "DELETE", "/live-activity/stream/nope"), 404)
    assert answer["error"] == "Live Activity stream not found"
    assert "nope" in answer["message"]
    models.NotFoundError.from_dict(answer)


def test_capacity_429_parses_as_the_limit_error() -> None:
    with Emulator(KEY) as emu:  # the production defaults: 4 at once
        for index in range(4):
            assert raw(emu, "PUT", f"/live-activity/stream/cap-{index}", _start(PROGRESS)).ok
        response = raw(emu, "POST", START, _start(PROGRESS))
        answer = assert_error_shape(response, 429)
        error = models.LiveActivityLimitError.from_dict(answer)
        assert (error.limit, error.active) == (4, 4)
        assert answer["error"] == "Live Activity limit reached"
        # Told apart from the rate 429 by its keys; it gives no timed retry.
        assert "code" not in answer
        assert "Retry-After" not in response.headers


def test_rate_429_parses_as_the_rate_limit_error() -> None:
    now = [1_000.0]
    with Emulator(KEY, requests_per_minute=2, clock=lambda: now[0]) as emu:
        assert raw(emu, "PUT", PUT, _start(PROGRESS)).ok
        assert raw(emu, "PUT", PUT, _start(PROGRESS)).ok
        now[0] += 20
        response = raw(emu, "PUT", PUT, _start(PROGRESS))
        answer = assert_error_shape(response, 429)
        error = models.RateLimitError.from_dict(answer)  # code is a strict enum there
        assert (error.code, error.error) == ("rate_limited", "Rate limit exceeded")
        assert response.headers["Retry-After"] == "40"


# -- every 200 body against the SDK's response models -----------------------------------------

_RESPONSE_MODEL: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {
    ("POST", START): models.LiveActivityStartResponse.from_dict,
    ("POST", "/live-activity/update"): models.LiveActivityUpdateResponse.from_dict,
    ("POST", "/live-activity/end"): models.LiveActivityEndResponse.from_dict,
}


def _parse(method: str, path: str, body: dict[str, Any]) -> Any:
    if path.startswith("/live-activity/stream/"):
        model = (
            models.LiveActivityStreamPutResponse
            if method == "PUT"
            else models.LiveActivityStreamDeleteResponse
        )
        return model.from_dict(body)
    return _RESPONSE_MODEL[(method, path)](body)


def test_every_answer_of_a_busy_session_parses_strictly(emu: Emulator) -> None:
    """Ignored, noop, paused, rotated and warning answers too: all parse with the models."""
    activity_id = _started(emu)
    end = {"activity_id": activity_id, "content_state": {"title": "s", "current_step": 3}}
    raw(emu, "POST", "/live-activity/end", end)
    raw(emu, "POST", "/live-activity/end", end)  # ignored
    raw(emu, "POST", "/live-activity/update", end)  # ignored
    for percentage in range(5, 20):  # more than 12 fast updates: the warning
        raw(emu, "PUT", PUT, _start({**PROGRESS, "percentage": percentage}))
    raw(emu, "PUT", PUT, _start({**PROGRESS, "percentage": 19}))  # noop
    emu.pause_stream("fidelity")
    raw(emu, "PUT", PUT, _start(PROGRESS))  # paused
    raw(emu, "DELETE", PUT)  # ignored (already ended by the pause)
    seen = set()
    for request in emu.requests:
        assert request.status == 200, request.response
        parsed = _parse(request.method, request.path, request.response)
        seen.add(str(getattr(parsed, "operation", None)))
        if getattr(parsed, "warning", None):
            seen.add("warning")
        if getattr(parsed, "ignored", None):
            seen.add("ignored")
    assert {"started", "updated", "noop", "paused", "ended", "warning", "ignored"} <= seen


def test_a_rotation_answers_rotated_with_the_previous_id() -> None:
    now = [5_000.0]
    with Emulator(KEY, fast=True, rotate_after=8 * 3600, clock=lambda: now[0]) as emu:
        client = sdk_for(emu)
        try:
            first = client.live_activities.stream("long", content_state=STARTS["progress"][0])
            now[0] += 8 * 3600
            rotated = client.live_activities.stream("long", content_state=UPDATES["progress"])
        finally:
            client.live_activities._api.api_client.rest_client.pool_manager.clear()
    assert (operation(rotated), rotated.previous_activity_id) == ("rotated", first.activity_id)


def test_numbers_keep_their_meaning(emu: Emulator) -> None:
    # The SDK sends 5 as 5.0 (number coercion); an integral float is a valid count too.
    body = _start({**STEPS, "number_of_steps": 3.0, "current_step": 1.0})
    assert raw(emu, "POST", START, body).status_code == 200
    not_finite = '{"content_state": {"title": "p", "type": "progress", "percentage": NaN}}'
    response = requests.post(
        emu.base_url + START,
        data=not_finite,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=5,
    )
    # NaN is not JSON, but a lenient parser reads it; it is still not a finite number.
    assert "percentage" in assert_error_shape(response, 400)["message"]
