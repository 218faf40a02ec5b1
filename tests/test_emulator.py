"""The emulator behaves like the ActivitySmith Live Activity API, over real loopback HTTP."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

import activitysmith_track.emulator as emulator_module
from activitysmith_track.emulator import Emulator, Fault
from activitysmith_track.emulator.__main__ import format_request
from activitysmith_track.testing import emulator_fixture, running_emulator

KEY = "ask_test_key"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

SEGMENTED = {
    "title": "Deploy",
    "type": "segmented_progress",
    "number_of_steps": 3,
    "current_step": 1,
}
PROGRESS = {"title": "Upload", "type": "progress", "percentage": 10}


class Api:
    """A requests session speaking to one emulator with a Bearer key."""

    def __init__(self, emu: Emulator, key: str | None = KEY) -> None:
        self.emu = emu
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 5)
        if body is not None:
            kw["json"] = body
        return self.session.request(method, self.emu.base_url + path, **kw)

    def start(
        self, state: dict[str, Any] = SEGMENTED, *, timeout: float = 5, **extra: Any
    ) -> requests.Response:
        body = {"content_state": state, **extra}
        return self.call("POST", "/live-activity/start", body, timeout=timeout)

    def update(self, activity_id: str, state: dict[str, Any], **extra: Any) -> requests.Response:
        body = {"activity_id": activity_id, "content_state": state, **extra}
        return self.call("POST", "/live-activity/update", body)

    def end(self, activity_id: str, state: dict[str, Any], **extra: Any) -> requests.Response:
        body = {"activity_id": activity_id, "content_state": state, **extra}
        return self.call("POST", "/live-activity/end", body)

    def put(self, key: str, state: dict[str, Any], **extra: Any) -> requests.Response:
        return self.call("PUT", f"/live-activity/stream/{key}", {"content_state": state, **extra})

    def delete(self, key: str, body: dict[str, Any] | None = None) -> requests.Response:
        return self.call("DELETE", f"/live-activity/stream/{key}", body)

    def close(self) -> None:
        self.session.close()


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key in the environment would make the emulator insist on it.
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(fast=True) as running:
        yield running


@pytest.fixture
def api(emu: Emulator) -> Iterator[Api]:
    client = Api(emu)
    yield client
    client.close()


def started(api: Api, state: dict[str, Any] = SEGMENTED) -> str:
    response = api.start(state)
    assert response.status_code == 200, response.text
    activity_id: str = response.json()["activity_id"]
    return activity_id


# -- the module ------------------------------------------------------------------------------


def test_public_surface_is_exactly_the_documented_names() -> None:
    assert emulator_module.__all__ == [
        "ActivityRecord",
        "Emulator",
        "Fault",
        "HistoryEntry",
        "RecordedRequest",
    ]


def test_the_emulator_imports_nothing_of_the_library_it_checks() -> None:
    """Its rules come from the contract, so it must not lean on the library's model (or
    anything else of the library): only the standard library, attrs and itself."""
    package = Path(emulator_module.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text(), str(source))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                allowed = name.startswith("activitysmith_track.emulator") or top in {
                    "__future__",
                    "attrs",
                    *sys.stdlib_module_names,
                }
                assert allowed, f"{source.name} imports {name}"


def test_urls_point_at_the_bound_port(emu: Emulator) -> None:
    assert emu.port > 0
    assert emu.base_url == f"http://127.0.0.1:{emu.port}/api"
    assert emu.url == f"http://127.0.0.1:{emu.port}/"


def test_stop_twice_and_restart_are_fine() -> None:
    emu = Emulator().start()
    emu.stop()
    emu.stop()
    assert not emu.running
    emu.start()
    try:
        assert requests.get(emu.base_url + "/health", timeout=5).json()["ok"] is True
    finally:
        emu.stop()


def test_health_and_root_page_need_no_key(emu: Emulator) -> None:
    health = requests.get(emu.base_url + "/health", timeout=5)
    assert health.status_code == 200
    assert health.json()["ok"] is True
    root = requests.get(emu.url, timeout=5)
    assert root.status_code == 200
    assert "text/html" in root.headers["Content-Type"]


def test_health_answers_the_documented_shape(emu: Emulator) -> None:
    health = requests.get(emu.base_url + "/health", timeout=5)
    assert health.status_code == 200
    body = health.json()
    assert set(body) == {"ok", "service", "timestamp", "checks"}
    assert (body["ok"], body["service"]) == (True, "activitysmith-emulator")
    assert ISO_MS.match(body["timestamp"])
    assert [c["name"] for c in body["checks"]] == ["state", "delivery"]
    for check in body["checks"]:
        assert set(check) == {"name", "status", "duration_ms"}
        assert check["status"] == "ok"
        assert isinstance(check["duration_ms"], (int, float))
        assert check["duration_ms"] >= 0
    assert emu.requests[-1].path == "/health"
    assert emu.requests[-1].authorized is True


def test_degraded_health_is_503_until_restored(emu: Emulator, api: Api) -> None:
    emu.degrade_health("delivery")
    degraded = requests.get(emu.base_url + "/health", timeout=5)
    assert degraded.status_code == 503
    body = degraded.json()
    assert body["ok"] is False
    assert {c["name"]: c["status"] for c in body["checks"]} == {
        "state": "ok",
        "delivery": "error",
    }
    assert api.start().status_code == 200  # the API itself still answers
    emu.restore_health()
    assert requests.get(emu.base_url + "/health", timeout=5).json()["ok"] is True
    emu.degrade_health("state")
    emu.reset()
    assert requests.get(emu.base_url + "/health", timeout=5).status_code == 200
    with pytest.raises(ValueError, match="check must be one of state, delivery"):
        emu.degrade_health("database")


def test_faults_apply_to_health_too(emu: Emulator) -> None:
    emu.add_fault(Fault.drop(), path="/health")
    with pytest.raises(requests.ConnectionError):
        requests.get(emu.base_url + "/health", timeout=5)
    emu.add_fault(Fault.status(502), path="/health")
    assert requests.get(emu.base_url + "/health", timeout=5).status_code == 502
    assert requests.post(emu.base_url + "/health", timeout=5).status_code == 405


def test_unknown_endpoint_is_404_and_wrong_method_405(api: Api) -> None:
    assert api.call("POST", "/live-activity/nope", {}).status_code == 404
    assert api.call("GET", "/live-activity/start").status_code == 405
    assert api.call("POST", "/live-activity/stream/key", {}).status_code == 405


# -- legacy lifecycle ------------------------------------------------------------------------


def test_start_answers_the_documented_shape(api: Api, emu: Emulator) -> None:
    response = api.start(SEGMENTED, target={"channels": ["ops"]}, tags=["deploy"])
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert ISO_MS.match(body["timestamp"])
    assert body["devices_notified"] == 1
    assert body["effective_channel_slugs"] == ["ops"]
    assert body["tags"] == ["deploy"]
    record = emu.activities[body["activity_id"]]
    assert record.status == "live"
    assert record.type == "segmented_progress"
    assert record.state == SEGMENTED
    assert record.channels == ["ops"]
    assert record.stream_key is None


def test_update_replaces_state_but_keeps_type(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    response = api.update(activity_id, {"title": "Deploy", "current_step": 2})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["activity_id"] == activity_id
    assert ISO_MS.match(body["timestamp"])
    record = emu.activities[activity_id]
    assert record.state == {**SEGMENTED, "current_step": 2}
    assert record.update_count == 1


def test_timer_keeps_its_window_when_duration_is_left_out(api: Api, emu: Emulator) -> None:
    activity_id = started(api, {"title": "Bake", "type": "timer", "duration_seconds": 600})
    api.update(activity_id, {"title": "Bake", "is_running": False})
    assert emu.activities[activity_id].state["duration_seconds"] == 600


def test_end_marks_the_activity_ended_with_its_dismissal(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    response = api.end(
        activity_id, {"title": "Deployed", "current_step": 3, "auto_dismiss_minutes": 2}
    )
    assert response.status_code == 200
    assert response.json()["activity_id"] == activity_id
    record = emu.activities[activity_id]
    assert record.status == "ended"
    assert record.ended_at is not None
    assert record.auto_dismiss == 120
    assert record.state["title"] == "Deployed"


@pytest.mark.parametrize("endpoint", ["update", "end"])
def test_unknown_activity_id_is_404(api: Api, endpoint: str) -> None:
    response = getattr(api, endpoint)("no-such-id", {"title": "x"})
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


@pytest.mark.parametrize("endpoint", ["update", "end"])
def test_requests_after_the_end_are_ignored(api: Api, emu: Emulator, endpoint: str) -> None:
    activity_id = started(api)
    api.end(activity_id, {"title": "Done", "current_step": 3})
    response = getattr(api, endpoint)(activity_id, {"title": "Again", "current_step": 2})
    assert response.status_code == 200
    assert response.json()["ignored"] is True
    assert emu.activities[activity_id].state["title"] == "Done"


def test_history_keeps_every_request_with_the_answer(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    api.update(activity_id, {"title": "Deploy", "current_step": 9})
    api.end(activity_id, {"title": "Deploy", "current_step": 3})
    history = emu.activities[activity_id].history
    assert [(h.endpoint, h.status) for h in history] == [
        ("POST /live-activity/start", 200),
        ("POST /live-activity/update", 400),
        ("POST /live-activity/end", 200),
    ]
    assert "number_of_steps" in history[1].response["message"]
    assert history[1].request["content_state"]["current_step"] == 9


# -- auth ------------------------------------------------------------------------------------


def test_missing_key_is_401(emu: Emulator) -> None:
    anonymous = Api(emu, key=None)
    try:
        response = anonymous.start()
    finally:
        anonymous.close()
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"
    assert emu.requests[-1].authorized is False
    assert emu.activities == {}


def test_wrong_key_is_401_when_a_key_is_configured() -> None:
    with Emulator("ask_right") as emu:
        right, wrong = Api(emu, "ask_right"), Api(emu, "ask_wrong")
        try:
            assert right.start().status_code == 200
            assert wrong.start().status_code == 401
        finally:
            right.close()
            wrong.close()


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_API_KEY", "ask_env")
    with Emulator() as emu:
        assert emu.api_key == "ask_env"
        env, other = Api(emu, "ask_env"), Api(emu, "ask_other")
        try:
            assert env.start().status_code == 200
            assert other.start().status_code == 401
        finally:
            env.close()
            other.close()


def test_the_authorization_header_is_never_recorded(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    api.end(activity_id, {"title": "x", "current_step": 1})
    assert KEY not in repr(emu.requests)
    assert KEY not in repr(emu.activities)


# -- validation ------------------------------------------------------------------------------

INVALID_STARTS = [
    pytest.param({"type": "progress", "percentage": 5}, "title", id="no-title"),
    pytest.param({"title": "x"}, "type", id="no-type"),
    pytest.param({**SEGMENTED, "current_step": 4}, "current_step", id="step-over"),
    pytest.param({"title": "x", "type": "progress"}, "percentage", id="progress-empty"),
    pytest.param({**PROGRESS, "percentage": 101}, "percentage", id="percent-over"),
    pytest.param({**PROGRESS, "color": "pink"}, "color", id="bad-color"),
    pytest.param({"title": "x", "type": "alert"}, "message", id="alert-no-message"),
    pytest.param({"title": "x", "type": "timer"}, "duration_seconds", id="timer-no-duration"),
    pytest.param(
        {"title": "x", "type": "metrics", "metrics": [{"label": "a", "value": 1}] * 9},
        "metrics",
        id="nine-metrics",
    ),
    pytest.param(
        {"title": "x", "type": "metrics", "metrics": [{"label": "a", "value": -1}]},
        "metrics[0].value",
        id="negative-metric",
    ),
    pytest.param({**PROGRESS, "badge": {}}, "badge.title", id="badge-without-title"),
    pytest.param({**PROGRESS, "auto_dismiss_minutes": 1}, "auto_dismiss_minutes", id="dismiss"),
    pytest.param({**PROGRESS, "sparkle": True}, "sparkle", id="unknown-state-key"),
]


@pytest.mark.parametrize(("state", "field"), INVALID_STARTS)
def test_invalid_start_is_400_naming_the_field(
    api: Api, emu: Emulator, state: dict[str, Any], field: str
) -> None:
    response = api.start(state)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Bad Request"
    assert field in body["message"]
    assert emu.activities == {}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        pytest.param({"surprise": 1}, "surprise", id="unknown-top-level"),
        pytest.param(
            {"action": {"title": "Go", "type": "webhook", "url": "http://x.example"}},
            "action.url",
            id="webhook-http",
        ),
        pytest.param({"metadata": {"k": [1]}}, "metadata.k", id="nested-metadata"),
        pytest.param({"target": {"channels": []}}, "channels", id="empty-channels"),
    ],
)
def test_invalid_request_parts_are_400_naming_the_field(
    api: Api, extra: dict[str, Any], field: str
) -> None:
    response = api.start(PROGRESS, **extra)
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_update_refuses_target_and_more_than_20_tags(api: Api) -> None:
    activity_id = started(api)
    state = {"title": "x", "current_step": 1}
    assert api.update(activity_id, state, target={"channels": ["a"]}).status_code == 400
    too_many = api.update(activity_id, state, tags=[f"t{i}" for i in range(21)])
    assert too_many.status_code == 400
    assert "tags" in too_many.json()["message"]


def test_legacy_end_refuses_auto_dismiss_seconds(api: Api) -> None:
    activity_id = started(api)
    response = api.end(activity_id, {"title": "x", "current_step": 1, "auto_dismiss_seconds": 0})
    assert response.status_code == 400
    assert "auto_dismiss_seconds" in response.json()["message"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [("{not json", "JSON"), ("[1, 2]", "object"), ("", "required")],
)
def test_bodies_that_are_not_json_objects_are_400(api: Api, data: str, reason: str) -> None:
    response = api.call(
        "POST", "/live-activity/start", data=data, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert reason in response.json()["message"]


def test_the_official_sdk_extras_are_accepted(api: Api) -> None:
    # The SDK sends counts_down/is_running on every type and method "POST" on open_url.
    state = {**PROGRESS, "counts_down": True, "is_running": True}
    action = {"title": "Open", "type": "open_url", "url": "https://x.example", "method": "POST"}
    assert api.start(state, action=action).status_code == 200


# -- streams ---------------------------------------------------------------------------------


def test_first_put_needs_a_type(api: Api, emu: Emulator) -> None:
    response = api.put("build", {"title": "Build", "percentage": 5})
    assert response.status_code == 400
    assert "type" in response.json()["message"]
    assert emu.streams == {}


def test_put_starts_then_updates_then_noops(api: Api, emu: Emulator) -> None:
    first = api.put("build", PROGRESS, channels=["ops"]).json()
    assert first["operation"] == "started"
    assert first["stream_key"] == "build"
    assert ISO_MS.match(first["timestamp"])
    activity_id = first["activity_id"]
    assert emu.streams == {"build": activity_id}

    second = api.put("build", {"title": "Upload", "percentage": 50}).json()
    assert second["operation"] == "updated"
    assert second["activity_id"] == activity_id
    assert "warning" not in second
    assert emu.activities[activity_id].state == {**PROGRESS, "percentage": 50}

    same = api.put("build", {"title": "Upload", "percentage": 50}).json()
    assert same["operation"] == "noop"
    assert emu.activities[activity_id].update_count == 1
    assert emu.activities[activity_id].channels == ["ops"]


def test_changed_extras_are_an_update_not_a_noop(api: Api) -> None:
    api.put("build", PROGRESS)
    assert api.put("build", PROGRESS, tags=["x"]).json()["operation"] == "updated"


def test_delete_ends_and_the_next_put_starts_a_new_activity(api: Api, emu: Emulator) -> None:
    first_id = api.put("build", PROGRESS).json()["activity_id"]
    ended = api.delete("build", {"content_state": {"title": "Done", "percentage": 100}})
    assert ended.status_code == 200
    assert ended.json()["operation"] == "ended"
    assert ended.json()["activity_id"] == first_id
    assert emu.activities[first_id].status == "ended"
    assert emu.activities[first_id].state["type"] == "progress"

    again = api.put("build", PROGRESS).json()
    assert again["operation"] == "started"
    assert again["activity_id"] != first_id
    assert emu.streams["build"] == again["activity_id"]


def test_delete_without_body_keeps_the_last_state(api: Api, emu: Emulator) -> None:
    activity_id = api.put("build", PROGRESS).json()["activity_id"]
    assert api.delete("build").status_code == 200
    record = emu.activities[activity_id]
    assert (record.status, record.state) == ("ended", PROGRESS)


def test_delete_dismissal_prefers_seconds(api: Api, emu: Emulator) -> None:
    activity_id = api.put("build", PROGRESS).json()["activity_id"]
    state = {"title": "Done", "percentage": 100, "auto_dismiss_seconds": 5}
    api.delete("build", {"content_state": {**state, "auto_dismiss_minutes": 9}})
    assert emu.activities[activity_id].auto_dismiss == 5


def test_delete_of_an_unknown_stream_is_404(api: Api) -> None:
    response = api.delete("never-used")
    assert response.status_code == 404
    assert response.json()["error"] == "Live Activity stream not found"


def test_repeated_delete_is_ignored(api: Api) -> None:
    api.put("build", PROGRESS)
    api.delete("build")
    again = api.delete("build")
    assert again.status_code == 200
    body = again.json()
    assert (body["operation"], body["ignored"], body["activity_id"]) == ("ended", True, None)


@pytest.mark.parametrize("key", ["has space", "dots.not.allowed", "x" * 256])
def test_invalid_stream_keys_are_400(api: Api, key: str) -> None:
    response = api.put(key, PROGRESS)
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid stream_key"


def test_warning_after_more_than_12_fast_updates(api: Api) -> None:
    api.put("busy", PROGRESS)
    answers = [api.put("busy", {**PROGRESS, "percentage": p}).json() for p in range(11, 25)]
    assert all(a["operation"] == "updated" for a in answers)
    assert ["warning" in a for a in answers] == [False] * 12 + [True] * 2


def test_no_warning_when_updates_are_spread_out() -> None:
    now = [1000.0]
    with Emulator(clock=lambda: now[0]) as emu:
        api = Api(emu)
        try:
            api.put("slow", PROGRESS)
            for percentage in range(11, 25):
                now[0] += 121
                answer = api.put("slow", {**PROGRESS, "percentage": percentage}).json()
                assert "warning" not in answer
        finally:
            api.close()


def test_paused_stream_answers_paused_and_changes_nothing(api: Api, emu: Emulator) -> None:
    activity_id = api.put("build", PROGRESS).json()["activity_id"]
    emu.pause_stream("build")
    answer = api.put("build", {**PROGRESS, "percentage": 60}).json()
    assert (answer["operation"], answer["activity_id"]) == ("paused", None)
    assert emu.activities[activity_id].status == "ended"
    emu.resume_stream("build")
    assert api.put("build", PROGRESS).json()["operation"] == "started"


def test_old_activities_rotate() -> None:
    now = [1000.0]
    with Emulator(clock=lambda: now[0], rotate_after=3600) as emu:
        api = Api(emu)
        try:
            first = api.put("long", PROGRESS).json()["activity_id"]
            now[0] += 3600
            answer = api.put("long", {"title": "Upload", "percentage": 70}).json()
        finally:
            api.close()
        assert answer["operation"] == "rotated"
        assert answer["previous_activity_id"] == first
        assert emu.activities[first].status == "ended"
        assert emu.activities[answer["activity_id"]].state["type"] == "progress"


# -- limits: production-like by default ------------------------------------------------------


def test_defaults_are_the_accounts_limits() -> None:
    emu = Emulator()
    assert (emu.max_live_activities, emu.requests_per_minute) == (4, 60)
    fast = Emulator(fast=True)
    assert (fast.max_live_activities, fast.requests_per_minute) == (None, None)
    off = Emulator(max_live_activities=None, requests_per_minute=None)
    assert (off.max_live_activities, off.requests_per_minute) == (None, None)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_live_activities": 0}, "max_live_activities must be >= 1"),
        ({"requests_per_minute": 0}, "requests_per_minute must be >= 1"),
        ({"fast": True, "max_live_activities": 2}, "fast=True turns max_live_activities off"),
        ({"fast": True, "requests_per_minute": 5}, "fast=True turns requests_per_minute off"),
        ({"stale_after": 0}, "stale_after"),
    ],
)
def test_limit_arguments_are_checked(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Emulator(**options)


def test_by_default_a_fifth_live_activity_is_refused_with_the_capacity_429() -> None:
    with Emulator() as emu:
        api = Api(emu)
        try:
            ids = [started(api) for _ in range(3)]
            assert api.put("fourth", PROGRESS).status_code == 200
            refused = api.start()
            assert refused.status_code == 429
            body = refused.json()
            assert body == {
                "error": "Live Activity limit reached",
                "message": body["message"],
                "limit": 4,
                "active": 4,
            }
            assert "Retry-After" not in refused.headers  # capacity frees, time does not
            assert api.put("fifth", PROGRESS).status_code == 429
            # A live stream still updates: it holds its place already.
            assert api.put("fourth", {**PROGRESS, "percentage": 50}).status_code == 200
            assert api.end(ids[0], {"title": "x", "current_step": 3}).status_code == 200
            assert api.put("fifth", PROGRESS).status_code == 200
            assert len(emu.live_activities()) == 4
        finally:
            api.close()


def test_capacity_limit_refuses_start_and_first_put_with_429() -> None:
    with Emulator(max_live_activities=1) as emu:
        api = Api(emu)
        try:
            activity_id = started(api)
            refused = api.start()
            assert refused.status_code == 429
            body = refused.json()
            assert body["error"] == "Live Activity limit reached"
            assert (body["limit"], body["active"]) == (1, 1)
            assert api.put("build", PROGRESS).status_code == 429
            api.end(activity_id, {"title": "x", "current_step": 1})
            assert api.put("build", PROGRESS).status_code == 200
        finally:
            api.close()


class Clock:
    def __init__(self, now: float = 50_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def budgeted() -> Iterator[tuple[Emulator, Clock, Api]]:
    """The default budget (60 a minute) on a clock the test moves."""
    clock = Clock()
    with Emulator(clock=clock, max_live_activities=None) as emu:
        api = Api(emu)
        yield emu, clock, api
        api.close()


def test_by_default_the_61st_request_in_a_minute_is_rate_limited(
    budgeted: tuple[Emulator, Clock, Api],
) -> None:
    emu, clock, api = budgeted
    for index in range(60):
        response = api.put(f"job-{index % 3}", PROGRESS)
        assert response.status_code == 200, response.text
        clock.now += 0.5
    # 30 s into the window: the next request waits for the other 30.
    refused = api.put("job-0", PROGRESS)
    assert refused.status_code == 429
    assert refused.json() == {
        "code": "rate_limited",
        "error": "Rate limit exceeded",
        "message": refused.json()["message"],
    }
    assert refused.headers["Retry-After"] == "30"
    assert refused.headers["RateLimit"] == '"live-activities";r=0;t=30'
    assert refused.headers["RateLimit-Policy"] == '"live-activities";q=60;w=60'
    assert emu.requests[-1].status == 429
    clock.now += 30
    assert api.put("job-0", PROGRESS).status_code == 200


def test_every_budgeted_answer_says_what_is_left(budgeted: tuple[Emulator, Clock, Api]) -> None:
    _, clock, api = budgeted
    first = api.start(PROGRESS)
    clock.now += 10
    second = api.update(first.json()["activity_id"], {"title": "x", "percentage": 9})
    assert first.headers["RateLimit"] == '"live-activities";r=59;t=60'
    assert second.headers["RateLimit"] == '"live-activities";r=58;t=50'
    assert "Retry-After" not in second.headers


def test_refused_and_invalid_requests_spend_the_budget_too(
    budgeted: tuple[Emulator, Clock, Api],
) -> None:
    _, _, api = budgeted
    for _ in range(60):
        assert api.start({"title": "no type"}).status_code == 400
    assert api.start(PROGRESS).status_code == 429


def test_the_budget_is_per_api_key_and_skips_what_reaches_no_account(
    budgeted: tuple[Emulator, Clock, Api],
) -> None:
    emu, _, api = budgeted
    anonymous = Api(emu, key=None)
    other = Api(emu, key="ask_other_key")
    try:
        for _ in range(5):
            assert anonymous.start().status_code == 401  # no account: not counted
            assert api.call("POST", "/live-activity/nope", {}).status_code == 404
            assert requests.get(emu.base_url + "/health", timeout=5).status_code == 200
        for _ in range(60):
            assert api.put("k", PROGRESS).status_code == 200
        assert api.put("k", PROGRESS).status_code == 429
        assert other.put("k", PROGRESS).status_code == 200
    finally:
        anonymous.close()
        other.close()


def test_reset_gives_a_fresh_budget(budgeted: tuple[Emulator, Clock, Api]) -> None:
    emu, _, api = budgeted
    for _ in range(60):
        api.put("k", PROGRESS)
    assert api.put("k", PROGRESS).status_code == 429
    emu.reset()
    assert api.put("k", PROGRESS).status_code == 200


def test_no_budget_and_no_capacity_when_fast(emu: Emulator, api: Api) -> None:
    codes = [api.put(f"k{i}", PROGRESS).status_code for i in range(80)]
    assert codes == [200] * 80
    assert "RateLimit" not in api.put("k0", PROGRESS).headers
    assert len(emu.live_activities()) == 80


# -- faults ----------------------------------------------------------------------------------


def test_status_fault_answers_once_with_the_documented_body(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.status(503), path="/live-activity/start")
    failed = api.start()
    assert failed.status_code == 503
    assert failed.json()["error"] == "Service Unavailable"
    assert emu.requests[-1].fault == "status"
    assert emu.activities == {}
    assert api.start().status_code == 200


def test_status_fault_with_custom_body_and_headers(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.status(403, body={"error": "Forbidden"}, headers={"X-Why": "scope"}))
    response = api.start()
    assert response.status_code == 403
    assert response.json() == {"error": "Forbidden"}
    assert response.headers["X-Why"] == "scope"


@pytest.mark.parametrize(("retry_after", "header"), [(2, "2"), (0.25, "0.25"), ("soon", "soon")])
def test_rate_limited_fault_sends_retry_after(
    api: Api, emu: Emulator, retry_after: float | str, header: str
) -> None:
    emu.add_fault(Fault.rate_limited(retry_after=retry_after))
    response = api.put("build", PROGRESS)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == header
    assert response.json()["code"] == "rate_limited"


def test_rate_limited_without_retry_after_has_no_header(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.rate_limited())
    assert "Retry-After" not in api.start().headers


def test_limit_reached_fault(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.limit_reached(limit=2, active=2))
    body = api.start().json()
    assert (body["error"], body["limit"], body["active"]) == ("Live Activity limit reached", 2, 2)


def test_hang_fault_times_the_client_out(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.hang())
    with pytest.raises(requests.ReadTimeout):
        api.start(timeout=0.2)
    assert emu.requests[-1].status is None
    assert emu.requests[-1].fault == "hang"
    assert emu.activities == {}


def test_stop_returns_promptly_while_a_request_hangs() -> None:
    emu = Emulator().start()
    emu.add_fault(Fault.hang())
    api = Api(emu)
    errors: list[BaseException] = []

    def send() -> None:
        try:
            api.start(timeout=10)
        except requests.RequestException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        emu.wait_for_requests(1)
        began = time.monotonic()
        emu.stop()
        assert time.monotonic() - began < 1.0
        sender.join(5)
        assert not sender.is_alive()
        assert len(errors) == 1
    finally:
        emu.stop()
        api.close()


def test_hang_with_seconds_closes_without_an_answer(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.hang(0.05))
    with pytest.raises(requests.ConnectionError):
        api.start()


def test_drop_fault_resets_without_processing(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.drop())
    with pytest.raises(requests.ConnectionError):
        api.start()
    assert emu.activities == {}
    assert emu.requests[-1].fault == "drop"
    assert api.start().status_code == 200


def test_process_then_drop_changes_state_but_gives_no_answer(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.process_then_drop(), path="/live-activity/start")
    with pytest.raises(requests.ConnectionError):
        api.start()
    (record,) = emu.activities.values()
    assert record.status == "live"
    assert record.history[0].fault == "process_then_drop"
    assert record.history[0].status == 200
    assert emu.requests[-1].status is None


def test_malformed_fault(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.malformed())
    response = api.start()
    assert response.status_code == 200
    assert response.text == "<html>oops</html>"
    assert response.headers["Content-Type"] == "text/html"
    emu.add_fault(Fault.malformed("{", status=502, content_type="application/json"))
    assert api.start().status_code == 502


def test_delay_fault_answers_normally_later(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.delay(0.1))
    began = time.monotonic()
    assert api.start().status_code == 200
    assert time.monotonic() - began >= 0.1
    assert emu.requests[-1].fault == "delay"


def test_latency_applies_to_every_request(api: Api, emu: Emulator) -> None:
    emu.latency = 0.05
    began = time.monotonic()
    api.start()
    api.start()
    assert time.monotonic() - began >= 0.1
    with pytest.raises(ValueError, match="latency"):
        emu.latency = -1


def test_faults_match_by_path_prefix_in_order_and_count(api: Api, emu: Emulator) -> None:
    emu.add_fault(Fault.status(500), path="/live-activity/stream/", times=2)
    emu.add_fault(Fault.status(502), path="/live-activity/stream/")
    assert api.start().status_code == 200
    codes = [api.put("build", PROGRESS).status_code for _ in range(4)]
    assert codes == [500, 500, 502, 200]
    assert emu.pending_faults == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: Fault.status(99),
        lambda: Fault.delay(-1),
        lambda: Fault.hang(-0.5),
    ],
)
def test_fault_arguments_are_checked(make: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        make()


def test_times_must_be_positive(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="times"):
        emu.add_fault(Fault.drop(), times=0)


# -- bookkeeping -----------------------------------------------------------------------------


def test_requests_are_recorded_in_order(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    api.update(activity_id, {"title": "x", "current_step": 2})
    first, second = emu.wait_for_requests(2)
    assert (first.method, first.path, first.status) == ("POST", "/live-activity/start", 200)
    assert first.body == {"content_state": SEGMENTED}
    assert first.response["activity_id"] == activity_id
    assert second.path == "/live-activity/update"
    assert first.time <= second.time


def test_what_is_accepted_on_an_assumption_is_noted(api: Api, emu: Emulator) -> None:
    metrics = {"title": "m", "type": "metrics", "metrics": [{"label": "a", "value": 1}]}
    response = api.start({**metrics, "badge": {"title": "B"}})
    assert response.status_code == 200
    (note,) = emu.requests[-1].notes
    assert "badge is not drawn on a metrics activity" in note
    record = emu.activities[response.json()["activity_id"]]
    assert record.history[0].notes == (note,)
    assert "badge" not in response.json()  # the answer is the service's, unchanged


def test_wait_for_requests_times_out(emu: Emulator) -> None:
    with pytest.raises(TimeoutError, match="expected 1"):
        emu.wait_for_requests(1, timeout=0.05)


def test_reset_forgets_everything(api: Api, emu: Emulator) -> None:
    api.put("build", PROGRESS)
    emu.add_fault(Fault.drop())
    emu.latency = 0.01
    emu.reset()
    assert (emu.requests, emu.activities, emu.streams) == ([], {}, {})
    assert emu.pending_faults == []
    assert emu.latency == 0


def test_snapshots_are_copies(api: Api, emu: Emulator) -> None:
    activity_id = started(api)
    emu.activities[activity_id].state["title"] = "changed"
    emu.requests.clear()
    assert emu.activities[activity_id].state["title"] == "Deploy"
    assert len(emu.requests) == 1


def test_concurrent_requests_from_threads(emu: Emulator) -> None:
    def work(index: int) -> list[int]:
        api = Api(emu)
        try:
            codes = [api.put(f"job-{index}", PROGRESS).status_code]
            codes += [
                api.put(f"job-{index}", {**PROGRESS, "percentage": p}).status_code
                for p in range(20, 25)
            ]
            codes.append(api.put("shared", PROGRESS).status_code)
            codes.append(api.delete(f"job-{index}").status_code)
            return codes
        finally:
            api.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    assert all(code == 200 for codes in results for code in codes)
    assert len(emu.requests) == 16 * 8
    activities = emu.activities
    assert len(activities) == 17
    shared = [a for a in activities.values() if a.stream_key == "shared"]
    assert len(shared) == 1
    assert all(a.update_count == 5 for a in activities.values() if a.stream_key != "shared")


# -- command line ----------------------------------------------------------------------------


def test_command_line_prints_its_url_and_one_line_per_request() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ACTIVITYSMITH_API_KEY"}
    process = subprocess.Popen(
        [sys.executable, "-m", "activitysmith_track.emulator", "--port", "0", "--api-key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/api)", banner)
        assert match, banner
        response = requests.put(
            match.group(1) + "/live-activity/stream/cli",
            json={"content_state": PROGRESS},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=5,
        )
        assert response.status_code == 200
        line = process.stdout.readline()
        assert line == 'PUT /live-activity/stream/cli -> 200 started · progress 10% · "Upload"\n'
        assert KEY not in line
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``python -m activitysmith_track.emulator`` on a free port, and its API base URL."""
    env = {k: v for k, v in os.environ.items() if k != "ACTIVITYSMITH_API_KEY"}
    command = [sys.executable, "-m", "activitysmith_track.emulator", "--port", "0", *args]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert process.stdout is not None
        match = re.search(r"(http://127\.0\.0\.1:\d+/api)", process.stdout.readline())
        assert match
        yield process, match.group(1)
    finally:
        process.terminate()
        process.communicate(timeout=10)


def _put_codes(base_url: str, count: int) -> list[int]:
    with requests.Session() as session:
        return [
            session.put(
                f"{base_url}/live-activity/stream/cli-{index}",
                json={"content_state": PROGRESS},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=5,
            ).status_code
            for index in range(count)
        ]


def test_command_line_has_production_limits_by_default() -> None:
    with emulator_process("--quiet") as (process, base_url):
        assert process.stderr is not None
        assert process.stderr.readline().startswith("Preview page: ")
        limits = process.stderr.readline()
        assert limits == "Limits: 4 live activities at once, 60 requests a minute per key\n"
        assert _put_codes(base_url, 5) == [200, 200, 200, 200, 429]


@pytest.mark.parametrize(
    ("args", "codes", "limits"),
    [
        (("--fast",), [200] * 6, "no capacity limit, no request budget (not like production)"),
        (
            ("--requests-per-minute", "2", "--max-live-activities", "0"),
            [200, 200, 429],
            "no capacity limit, 2 requests a minute per key (not like production)",
        ),
        (
            ("--max-live-activities", "1", "--requests-per-minute", "0"),
            [200, 429, 429],
            "1 live activity at once, no request budget (not like production)",
        ),
    ],
)
def test_command_line_limit_flags(args: tuple[str, ...], codes: list[int], limits: str) -> None:
    with emulator_process("--quiet", *args) as (process, base_url):
        assert process.stderr is not None
        process.stderr.readline()
        assert process.stderr.readline() == f"Limits: {limits}\n"
        assert _put_codes(base_url, len(codes)) == codes


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--requests-per-minute", "-1"), "must be >= 0 (0 for no limit)"),
        (("--fast", "--max-live-activities", "2"), "--fast turns both limits off"),
    ],
)
def test_command_line_refuses_contradicting_limits(args: tuple[str, ...], message: str) -> None:
    command = [sys.executable, "-m", "activitysmith_track.emulator", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def _lines(emu: Emulator) -> list[str]:
    return [format_request(r) for r in emu.requests]


def test_console_line_shows_the_state_sent_and_the_answer(api: Api, emu: Emulator) -> None:
    api.put("nightly", {**SEGMENTED, "subtitle": "Snapshot", "color": "blue"})
    api.put("nightly", {"title": "Deploy", "current_step": 2})
    api.put("bar", {**PROGRESS, "percentage": 45.5})
    api.put("bar", {"title": "Upload", "value": 50, "upper_limit": 200.0})
    api.start(
        {
            "title": "Farm",
            "type": "metrics",
            "metrics": [{"label": "cpu", "value": 72.0, "unit": "%"}],
        }
    )
    api.start({"title": "Bake", "type": "timer", "duration_seconds": 600, "is_running": False})
    api.start({"title": "Disk", "type": "alert", "message": "94% full"})
    api.delete(
        "nightly",
        {"content_state": {"title": "Done", "current_step": 3, "auto_dismiss_seconds": 0}},
    )
    assert _lines(emu) == [
        "PUT /live-activity/stream/nightly -> 200 started · segmented_progress 1/3 · "
        '"Deploy" · subtitle "Snapshot" · color blue',
        'PUT /live-activity/stream/nightly -> 200 updated · segmented_progress step 2 · "Deploy"',
        'PUT /live-activity/stream/bar -> 200 started · progress 45.5% · "Upload"',
        'PUT /live-activity/stream/bar -> 200 updated · progress 50/200 · "Upload"',
        'POST /live-activity/start -> 200 started · metrics cpu=72% · "Farm"',
        'POST /live-activity/start -> 200 started · timer 600 s paused · "Bake"',
        'POST /live-activity/start -> 200 started · alert · "Disk" · message "94% full"',
        "DELETE /live-activity/stream/nightly -> 200 ended · segmented_progress step 3 · "
        '"Done" · dismiss 0 s',
    ]


def test_console_line_of_refusals_faults_and_notes(api: Api, emu: Emulator) -> None:
    api.start({"title": "p", "type": "progress"})
    emu.add_fault(Fault.drop())
    with pytest.raises(requests.ConnectionError):
        api.start()
    api.start({**PROGRESS, "badge": {"title": "B"}, "type": "timer", "duration_seconds": 9})
    activity_id = started(api)
    api.end(activity_id, {"title": "x", "current_step": 3})
    api.end(activity_id, {"title": "x", "current_step": 3})
    refused, dropped, noted, _, _, ignored = _lines(emu)
    assert refused == (
        "POST /live-activity/start -> 400 Bad Request: content_state of a progress activity "
        'needs percentage or value and upper_limit on start · progress · "p"'
    )
    assert dropped == "POST /live-activity/start -> - [fault: drop]"
    assert noted.startswith('POST /live-activity/start -> 200 started · timer 9 s · "Upload"')
    assert "· note: content_state.badge is not drawn on a timer activity" in noted
    assert ignored.startswith("POST /live-activity/end -> 200 ended (ignored) · ")


# -- testing helpers -------------------------------------------------------------------------


def test_running_emulator_points_the_environment_at_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", "https://example.invalid/api")
    monkeypatch.delenv("ACTIVITYSMITH_TRACK_HISTORY", raising=False)
    with running_emulator() as emu:
        assert os.environ["ACTIVITYSMITH_BASE_URL"] == emu.base_url
        key = os.environ["ACTIVITYSMITH_API_KEY"]
        response = requests.get(emu.base_url + "/health", timeout=5)
        assert response.status_code == 200
        assert key
        assert os.environ["ACTIVITYSMITH_TRACK_HISTORY"] == "0"  # same texts every run
    assert os.environ["ACTIVITYSMITH_BASE_URL"] == "https://example.invalid/api"
    assert "ACTIVITYSMITH_API_KEY" not in os.environ
    assert "ACTIVITYSMITH_TRACK_HISTORY" not in os.environ
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_HISTORY", "1")
    with running_emulator():
        assert os.environ["ACTIVITYSMITH_TRACK_HISTORY"] == "1"  # asked for: left alone


def test_running_emulator_has_production_limits_unless_fast() -> None:
    with running_emulator(set_env=False) as emu:
        assert (emu.max_live_activities, emu.requests_per_minute) == (4, 60)
    with running_emulator(set_env=False, fast=True) as emu:
        assert (emu.max_live_activities, emu.requests_per_minute) == (None, None)
    with running_emulator(set_env=False, max_live_activities=2) as emu:
        assert (emu.max_live_activities, emu.requests_per_minute) == (2, 60)


def test_emulator_fixture_can_be_fast() -> None:
    generator = emulator_fixture(fast=True)
    emu = next(generator)
    try:
        assert (emu.max_live_activities, emu.requests_per_minute) == (None, None)
        assert os.environ["ACTIVITYSMITH_BASE_URL"] == emu.base_url
    finally:
        generator.close()
    assert not emu.running


def test_emulator_fixture_generator_starts_and_stops() -> None:
    generator = emulator_fixture()
    emu = next(generator)
    assert emu.running
    with pytest.raises(StopIteration):
        next(generator)
    assert not emu.running


def test_shared_conftest_fixture_is_running(emulator: Emulator) -> None:
    assert emulator.running


# -- the official SDK ------------------------------------------------------------------------


@pytest.fixture
def sdk(emu: Emulator) -> Iterator[Any]:
    activitysmith = pytest.importorskip("activitysmith")
    client = activitysmith.ActivitySmith(api_key=KEY)
    # The SDKs have no base-URL option; the generated configuration's host is the way in.
    api_client = client.live_activities._api.api_client
    api_client.configuration.host = emu.base_url
    yield client
    api_client.rest_client.pool_manager.clear()


def test_official_sdk_drives_the_legacy_lifecycle(sdk: Any, emu: Emulator) -> None:
    start = sdk.live_activities.start(
        title="Deploy", type="segmented_progress", number_of_steps=3, current_step=1
    )
    activity_id = start.activity_id
    sdk.live_activities.update(activity_id=activity_id, title="Deploy", current_step=2)
    end = sdk.live_activities.end(activity_id=activity_id, title="Deployed", current_step=3)
    assert end.success is True
    record = emu.activities[activity_id]
    assert (record.status, record.state["current_step"], record.auto_dismiss) == ("ended", 3, 180)
    assert all(entry.status == 200 for entry in record.history)


def test_official_sdk_drives_a_stream(sdk: Any, emu: Emulator) -> None:
    put = sdk.live_activities.stream(
        "sdk-stream",
        title="Sync",
        type="metrics",
        metrics=[sdk.live_activities.metric("rows", 5)],
    )
    assert str(getattr(put.operation, "value", put.operation)) == "started"
    again = sdk.live_activities.stream(
        "sdk-stream", title="Sync", metrics=[sdk.live_activities.metric("rows", 9)]
    )
    assert str(getattr(again.operation, "value", again.operation)) == "updated"
    ended = sdk.live_activities.end_stream("sdk-stream", title="Synced", auto_dismiss_minutes=0)
    assert ended.success is True
    record = emu.activities[put.activity_id]
    assert record.status == "ended"
    assert record.history[1].request["content_state"]["metrics"][0]["value"] == 9
    assert record.state["title"] == "Synced"
    assert [r.status for r in emu.requests] == [200, 200, 200]


def test_official_sdk_sees_our_errors(sdk: Any, emu: Emulator) -> None:
    exceptions = pytest.importorskip("activitysmith_openapi.exceptions")
    with pytest.raises(exceptions.NotFoundException):
        sdk.live_activities.end_stream("missing", title="x")
    emu.add_fault(Fault.status(503))
    with pytest.raises(exceptions.ServiceException):
        sdk.live_activities.stream("s", title="x", type="progress", percentage=1)
