"""The HTTP client against the emulator over loopback: bodies, answers, faults, retries, secrets."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from activitysmith_track._client import Client, Result
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    APIError,
    ArgumentTypeError,
    AuthenticationError,
    ConfigurationError,
    LiveActivityLimitError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    StartOutcomeUnknownError,
    TransportError,
    ValidationError,
)
from activitysmith_track._model import ContentState, Payload
from activitysmith_track._retry import RetryPolicy
from activitysmith_track.emulator import Emulator, Fault

KEY = "ask_test_0123456789abcdef_SECRET"
FAST = RetryPolicy(max_attempts=4, max_elapsed=10.0, initial_backoff=0.01, max_backoff=0.02)

PROGRESS = ContentState(title="Nightly ETL", type="progress", percentage=40)
UPDATED = ContentState(title="Nightly ETL", subtitle="loading", percentage=80)
FINAL = ContentState(title="Nightly ETL", subtitle="done", percentage=100)


class Sleeps:
    """An injected sleep that records what it was asked and waits for nothing."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeClock:
    """A clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 50.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, fast=True) as emu:
        yield emu


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    server.latency = 0.0
    return server


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def make_client(emu: Emulator, sleeps: Sleeps) -> Iterator[Callable[..., Client]]:
    clients: list[Client] = []

    def make(**kwargs: Any) -> Client:
        options: dict[str, Any] = {
            "base_url": emu.base_url,
            "retry": FAST,
            "sleep": sleeps,
            "timeout": (1.0, 2.0),
        }
        options.update(kwargs)
        client = Client(options.pop("api_key", KEY), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: Callable[..., Client]) -> Client:
    return make_client()


def _only_activity(emu: Emulator) -> Any:
    activities = emu.activities
    assert len(activities) == 1, activities
    return next(iter(activities.values()))


# -- request bodies, field by field ----------------------------------------------------------


def test_start_sends_the_documented_body(emu: Emulator, client: Client) -> None:
    payload = Payload(
        content_state=PROGRESS,
        channels=("ops",),
        tags=("etl", "nightly"),
        metadata={"run": 42, "host": "db1"},
    )
    result = client.start(payload)

    [request] = emu.requests
    assert (request.method, request.path, request.status) == ("POST", "/live-activity/start", 200)
    assert request.authorized
    body = request.body
    assert body["content_state"] == {"title": "Nightly ETL", "type": "progress", "percentage": 40}
    assert body["target"] == {"channels": ["ops"]}
    assert body["tags"] == ["etl", "nightly"]
    assert body["metadata"] == {"run": 42, "host": "db1"}
    assert set(body) == {"content_state", "target", "tags", "metadata"}

    assert result.status == 200
    assert result.attempts == 1
    assert result.activity_id == _only_activity(emu).id
    assert result.raw == request.response


def test_update_and_end_carry_the_activity_id(emu: Emulator, client: Client) -> None:
    activity_id = client.start(PROGRESS).activity_id
    assert activity_id is not None

    updated = client.update(activity_id, UPDATED)
    ended = client.end(activity_id, Payload(content_state=FINAL, tags=("done",)))

    _start, update, end = emu.requests
    assert update.path == "/live-activity/update"
    assert update.body == {
        "activity_id": activity_id,
        "content_state": {"title": "Nightly ETL", "subtitle": "loading", "percentage": 80},
    }
    assert end.path == "/live-activity/end"
    assert end.body["activity_id"] == activity_id
    assert end.body["content_state"] == {
        "title": "Nightly ETL",
        "subtitle": "done",
        "percentage": 100,
    }
    assert end.body["tags"] == ["done"]
    assert (updated.activity_id, ended.activity_id) == (activity_id, activity_id)
    assert _only_activity(emu).status == "ended"


def test_stream_put_then_delete(emu: Emulator, client: Client) -> None:
    first = client.put_stream("nightly-etl", Payload(content_state=PROGRESS, channels=("ops",)))
    second = client.put_stream(
        "nightly-etl", ContentState(title="Nightly ETL", type="progress", percentage=60)
    )
    ended = client.delete_stream("nightly-etl", ContentState(title="Nightly ETL", percentage=100))

    put1, put2, delete = emu.requests
    assert (put1.method, put1.path) == ("PUT", "/live-activity/stream/nightly-etl")
    assert put1.body["channels"] == ["ops"]
    assert put1.body["content_state"]["type"] == "progress"
    assert put2.body["content_state"]["percentage"] == 60
    assert (delete.method, delete.path) == ("DELETE", "/live-activity/stream/nightly-etl")
    assert delete.body["content_state"] == {"title": "Nightly ETL", "percentage": 100}

    assert (first.operation, second.operation, ended.operation) == ("started", "updated", "ended")
    assert first.activity_id == second.activity_id == ended.activity_id
    assert _only_activity(emu).status == "ended"


def test_delete_stream_without_a_payload_sends_no_body(emu: Emulator, client: Client) -> None:
    client.put_stream("bare", PROGRESS)
    result = client.delete_stream("bare")
    assert emu.requests[-1].body is None
    assert result.operation == "ended"


def test_headers_identify_the_library_and_carry_the_key(emu: Emulator, sleeps: Sleeps) -> None:
    seen: list[requests.PreparedRequest] = []
    session = requests.Session()
    session.hooks["response"].append(lambda r, *args, **kwargs: seen.append(r.request))
    with Client(KEY, base_url=emu.base_url, session=session, user_agent_suffix="etl/1.0") as c:
        c.put_stream("headers", PROGRESS)
    [sent] = seen
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"
    agent = sent.headers["User-Agent"]
    assert agent.startswith("activitysmith-track/")
    assert f"python-requests/{requests.__version__}" in agent
    assert agent.endswith(" etl/1.0")
    assert "X-ActivitySmith-SDK" not in sent.headers
    session.close()


def test_lenient_answer_parsing_keeps_unknown_operations(emu: Emulator, client: Client) -> None:
    answer = {
        "success": True,
        "operation": "teleported",
        "stream_key": "k",
        "activity_id": "act_2",
        "previous_activity_id": "act_1",
        "ended_activity_id": "act_0",
        "warning": "updating too often",
        "ignored": True,
        "message": "hello",
        "something_new": [1, 2, 3],
    }
    emu.add_fault(Fault.status(200, body=answer))
    result = client.put_stream("k", PROGRESS)
    assert result == Result(
        status=200,
        activity_id="act_2",
        operation="teleported",
        ignored=True,
        warning="updating too often",
        ended_activity_id="act_0",
        previous_activity_id="act_1",
        message="hello",
        attempts=1,
        raw=answer,
    )


def test_wrongly_typed_answer_fields_are_ignored_not_crashed_on(
    emu: Emulator, client: Client
) -> None:
    emu.add_fault(
        Fault.status(
            200, body={"activity_id": 7, "operation": None, "ignored": "yes", "warning": {"x": 1}}
        )
    )
    result = client.put_stream("k", PROGRESS)
    assert (result.activity_id, result.operation, result.ignored, result.warning) == (
        None,
        None,
        False,
        None,
    )


# -- refused before any I/O ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "field"),
    [
        (lambda c: c.start(ContentState(title="no type")), ValidationError, "type"),
        (lambda c: c.put_stream("stream", ContentState(title="no type")), ValidationError, "type"),
        (lambda c: c.put_stream("bad key!", PROGRESS), ValidationError, "stream_key"),
        (lambda c: c.put_stream("", PROGRESS), ValidationError, "stream_key"),
        (lambda c: c.put_stream("x" * 256, PROGRESS), ValidationError, "stream_key"),
        (lambda c: c.delete_stream("a/b"), ValidationError, "stream_key"),
        (lambda c: c.update("", UPDATED), ValidationError, "activity_id"),
        (lambda c: c.update(None, UPDATED), ArgumentTypeError, "activity_id"),
        (lambda c: c.end("act", {"title": "dict"}), ArgumentTypeError, "payload"),
        (lambda c: c.start("a title"), ArgumentTypeError, "payload"),
        (lambda c: c.update("act", UPDATED, deadline="soon"), ArgumentTypeError, "deadline"),
    ],
)
def test_bad_input_is_refused_before_anything_is_sent(
    emu: Emulator,
    client: Client,
    call: Callable[[Client], Any],
    error: type[Exception],
    field: str,
) -> None:
    with pytest.raises(error) as info:
        call(client)
    assert field in str(info.value)
    assert emu.requests == []


def test_deadline_already_passed_sends_nothing(emu: Emulator, make_client: Any) -> None:
    clock = FakeClock()
    client = make_client(clock=clock, sleep=clock.sleep)
    with pytest.raises(TransportError, match="deadline passed"):
        client.start(PROGRESS, deadline=clock.now - 1)
    assert emu.requests == []
    assert clock.sleeps == []


# -- retries ---------------------------------------------------------------------------------


def test_500_then_200_is_retried_for_update(emu: Emulator, client: Client, sleeps: Sleeps) -> None:
    activity_id = client.start(PROGRESS).activity_id
    assert activity_id is not None
    emu.add_fault(Fault.status(500), path="/live-activity/update")
    result = client.update(activity_id, UPDATED)
    assert result.attempts == 2
    assert [r.status for r in emu.requests] == [200, 500, 200]
    assert len(sleeps.calls) == 1
    assert 0.005 <= sleeps.calls[0] <= 0.01


@pytest.mark.parametrize("status", [500, 502, 504])
def test_start_is_not_retried_after_a_server_failure(
    emu: Emulator, client: Client, sleeps: Sleeps, status: int
) -> None:
    emu.add_fault(Fault.status(status), path="/live-activity/start")
    with pytest.raises(ServerError) as info:
        client.start(PROGRESS)
    assert info.value.status == status
    assert len(emu.requests) == 1
    assert sleeps.calls == []


def test_start_is_retried_after_503(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.status(503), path="/live-activity/start", times=2)
    result = client.start(PROGRESS)
    assert result.attempts == 3
    assert [r.status for r in emu.requests] == [503, 503, 200]
    _only_activity(emu)


def test_503_on_every_try_gives_up_after_max_attempts(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.status(503), times=10)
    with pytest.raises(ServerError):
        client.put_stream("k", PROGRESS)
    assert len(emu.requests) == FAST.max_attempts


@pytest.mark.parametrize(("header", "expected"), [("2", 2.0), ("0.25", 0.25), ("0", 0.0)])
def test_rate_limit_waits_exactly_retry_after(
    emu: Emulator, client: Client, sleeps: Sleeps, header: str, expected: float
) -> None:
    emu.add_fault(Fault.rate_limited(retry_after=header), path="/live-activity/start")
    result = client.start(PROGRESS)
    assert sleeps.calls == [expected]
    assert result.attempts == 2
    _only_activity(emu)


def test_rate_limit_retry_after_as_http_date_in_the_past(
    emu: Emulator, client: Client, sleeps: Sleeps
) -> None:
    emu.add_fault(Fault.rate_limited(retry_after="Wed, 21 Oct 2015 07:28:00 GMT"))
    client.put_stream("k", PROGRESS)
    assert sleeps.calls == [0.0]


def test_rate_limit_retry_after_is_capped(emu: Emulator, make_client: Any, sleeps: Sleeps) -> None:
    policy = RetryPolicy(max_retry_after=1.5, max_elapsed=100.0, jitter=0.0)
    client = make_client(retry=policy)
    emu.add_fault(Fault.rate_limited(retry_after=3600))
    client.put_stream("k", PROGRESS)
    assert sleeps.calls == [1.5]


def test_rate_limit_garbage_retry_after_falls_back_to_backoff(
    emu: Emulator, make_client: Any, sleeps: Sleeps
) -> None:
    client = make_client(retry=RetryPolicy(initial_backoff=0.125, jitter=0.0))
    emu.add_fault(Fault.rate_limited(retry_after="whenever"))
    client.put_stream("k", PROGRESS)
    assert sleeps.calls == [0.125]


def test_rate_limit_that_persists_surfaces_retry_after(emu: Emulator, make_client: Any) -> None:
    client = make_client(retry=RetryPolicy.none())
    emu.add_fault(Fault.rate_limited(retry_after=30))
    with pytest.raises(RateLimitedError) as info:
        client.put_stream("k", PROGRESS)
    assert info.value.retry_after == 30.0


def test_capacity_429_is_not_retried(emu: Emulator, client: Client, sleeps: Sleeps) -> None:
    emu.add_fault(Fault.limit_reached(limit=4, active=4))
    with pytest.raises(LiveActivityLimitError) as info:
        client.start(PROGRESS)
    assert (info.value.limit, info.value.active) == (4, 4)
    assert len(emu.requests) == 1
    assert sleeps.calls == []


def test_real_capacity_limit_is_not_retried(sleeps: Sleeps) -> None:
    with (
        Emulator(api_key=KEY, max_live_activities=1) as emu,
        Client(KEY, base_url=emu.base_url, retry=FAST, sleep=sleeps) as client,
    ):
        client.start(PROGRESS)
        with pytest.raises(LiveActivityLimitError):
            client.start(PROGRESS)
        assert len(emu.requests) == 2
        assert sleeps.calls == []


def test_hang_times_out_and_update_is_retried(emu: Emulator, make_client: Any) -> None:
    client = make_client(timeout=(1.0, 0.2))
    activity_id = client.start(PROGRESS).activity_id
    assert activity_id is not None
    emu.add_fault(Fault.hang(seconds=2.0), path="/live-activity/update")
    result = client.update(activity_id, UPDATED)
    assert result.attempts == 2


def test_hang_without_retries_raises_a_transport_error(emu: Emulator, make_client: Any) -> None:
    client = make_client(timeout=(1.0, 0.2), retry=RetryPolicy.none())
    emu.add_fault(Fault.hang(seconds=2.0))
    with pytest.raises(TransportError) as info:
        client.put_stream("k", PROGRESS)
    assert type(info.value) is TransportError
    assert "timed out" in str(info.value)
    assert isinstance(info.value.__cause__, requests.Timeout)


def test_hang_on_start_is_an_unknown_outcome(emu: Emulator, make_client: Any) -> None:
    client = make_client(timeout=(1.0, 0.2))
    emu.add_fault(Fault.hang(seconds=2.0), path="/live-activity/start")
    with pytest.raises(StartOutcomeUnknownError):
        client.start(PROGRESS)
    assert [r.fault for r in emu.requests] == ["hang"]


def test_reset_is_retried_for_stream_put(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.drop())
    result = client.put_stream("k", PROGRESS)
    assert result.attempts == 2
    assert result.operation == "started"
    _only_activity(emu)


def test_reset_on_start_is_an_unknown_outcome_and_not_retried(
    emu: Emulator, client: Client, sleeps: Sleeps
) -> None:
    emu.add_fault(Fault.drop(), path="/live-activity/start")
    with pytest.raises(StartOutcomeUnknownError):
        client.start(PROGRESS)
    assert [r.fault for r in emu.requests] == ["drop"]
    assert emu.activities == {}
    assert sleeps.calls == []


def test_start_processed_but_unanswered_is_never_duplicated(
    emu: Emulator, client: Client, sleeps: Sleeps
) -> None:
    emu.add_fault(Fault.process_then_drop(), path="/live-activity/start")
    with pytest.raises(StartOutcomeUnknownError) as info:
        client.start(PROGRESS)
    assert "may or may not have started" in str(info.value)
    _only_activity(emu)
    assert [r.path for r in emu.requests] == ["/live-activity/start"]
    assert sleeps.calls == []


def test_update_processed_but_unanswered_is_retried(emu: Emulator, client: Client) -> None:
    activity_id = client.start(PROGRESS).activity_id
    assert activity_id is not None
    emu.add_fault(Fault.process_then_drop(), path="/live-activity/update")
    result = client.update(activity_id, UPDATED)
    assert result.attempts == 2
    assert result.activity_id == activity_id
    assert _only_activity(emu).state["percentage"] == 80


def test_delete_processed_but_unanswered_then_repeated_is_success(
    emu: Emulator, client: Client
) -> None:
    client.put_stream("k", PROGRESS)
    emu.add_fault(Fault.process_then_drop(), path="/live-activity/stream/")
    result = client.delete_stream("k")
    assert result.attempts == 2
    assert result.operation == "ended"
    assert _only_activity(emu).status == "ended"


def test_delete_404_after_a_retry_counts_as_success(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.drop(), path="/live-activity/stream/")
    emu.add_fault(
        Fault.status(404, body={"error": "Live Activity stream not found", "message": "k"}),
        path="/live-activity/stream/",
    )
    result = client.delete_stream("k")
    assert (result.status, result.operation, result.ignored, result.attempts) == (
        404,
        "ended",
        True,
        2,
    )
    assert result.message == "k"


def test_delete_404_on_the_first_attempt_is_not_found(emu: Emulator, client: Client) -> None:
    with pytest.raises(NotFoundError) as info:
        client.delete_stream("never-started")
    assert info.value.error == "Live Activity stream not found"
    assert len(emu.requests) == 1


def test_connection_refused_is_retried_even_for_start(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = Client(KEY, base_url=f"http://127.0.0.1:{port}/api", retry=FAST, sleep=sleeps)
    with client, pytest.raises(TransportError) as info:
        client.start(PROGRESS)
    assert type(info.value) is TransportError
    assert "could not connect" in str(info.value)
    assert len(sleeps.calls) == FAST.max_attempts - 1


def test_deadline_stops_retrying(emu: Emulator, make_client: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, initial_backoff=1.0, jitter=0.0, max_elapsed=100.0)
    client = make_client(retry=policy, clock=clock, sleep=clock.sleep)
    emu.add_fault(Fault.status(503), times=10)
    with pytest.raises(ServerError):
        client.put_stream("k", PROGRESS, deadline=clock.now + 2.5)
    # waits of 1 s then 2 s: the second would end at +3, past the deadline
    assert clock.sleeps == [1.0]
    assert len(emu.requests) == 2


def test_max_elapsed_is_measured_on_the_injected_clock(emu: Emulator, make_client: Any) -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, initial_backoff=1.0, jitter=0.0, max_elapsed=3.5)
    client = make_client(retry=policy, clock=clock, sleep=clock.sleep)
    emu.add_fault(Fault.status(502), times=10)
    with pytest.raises(ServerError):
        client.put_stream("k", PROGRESS)
    assert clock.sleeps == [1.0, 2.0]


# -- malformed answers -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (Fault.malformed(), "<html>oops</html>"),
        (Fault.malformed(body="[1, 2, 3]", content_type="application/json"), "[1, 2, 3]"),
        (Fault.malformed(body='"ok"', content_type="application/json"), '"ok"'),
        (Fault.malformed(body="", content_type="application/json"), "empty body"),
        (Fault.malformed(body='{"success": tru', content_type="application/json"), "tru"),
    ],
)
def test_malformed_success_answers_raise_a_clear_error(
    emu: Emulator, client: Client, sleeps: Sleeps, fault: Fault, needle: str
) -> None:
    emu.add_fault(fault)
    with pytest.raises(MalformedResponseError) as info:
        client.put_stream("k", PROGRESS)
    assert needle in str(info.value)
    assert info.value.status == 200
    assert info.value.request is not None
    assert str(info.value.request) == "PUT /live-activity/stream/k"
    assert len(emu.requests) == 1
    assert sleeps.calls == []


def test_start_answer_without_activity_id_is_malformed(emu: Emulator, client: Client) -> None:
    body = '{"success": true, "timestamp": "2026-01-28T09:57:22.929Z"}'
    emu.add_fault(Fault.malformed(body=body, content_type="application/json"))
    with pytest.raises(MalformedResponseError, match="no activity_id"):
        client.start(PROGRESS)


def test_long_html_bodies_are_cut_short(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.malformed(body="<html>" + "x" * 10_000 + "</html>"))
    with pytest.raises(MalformedResponseError) as info:
        client.put_stream("k", PROGRESS)
    assert len(str(info.value)) < 400
    assert len(info.value.body) <= 2000


def test_html_error_page_with_5xx_is_a_server_error_with_an_excerpt(
    emu: Emulator, make_client: Any
) -> None:
    client = make_client(retry=RetryPolicy.none())
    emu.add_fault(Fault.malformed(body="<html><h1>502 Bad Gateway</h1></html>", status=502))
    with pytest.raises(ServerError) as info:
        client.put_stream("k", PROGRESS)
    assert info.value.status == 502
    assert info.value.body is None
    assert "502 Bad Gateway" in str(info.value)


def test_html_error_page_with_5xx_is_retried_for_stream_put(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.malformed(body="<html>bad gateway</html>", status=502))
    assert client.put_stream("k", PROGRESS).attempts == 2


# -- authentication and secrets --------------------------------------------------------------


def test_wrong_key_is_an_authentication_error(emu: Emulator, make_client: Any) -> None:
    client = make_client(api_key="ask_wrong_key_NOT_THE_ONE")
    with pytest.raises(AuthenticationError) as info:
        client.start(PROGRESS)
    assert info.value.status == 401
    assert "ask_wrong_key_NOT_THE_ONE" not in str(info.value)
    assert "ask_wrong_key_NOT_THE_ONE" not in repr(info.value)
    assert len(emu.requests) == 1
    assert emu.activities == {}


def _texts_of(exc: BaseException) -> Iterator[str]:
    seen: BaseException | None = exc
    while seen is not None:
        yield str(seen)
        yield repr(seen)
        yield repr(getattr(seen, "request", None))
        yield str(getattr(seen, "args", ""))
        seen = seen.__cause__ or seen.__context__


FAILING_CALLS: list[tuple[Fault | None, str]] = [
    (Fault.status(400), "bad request"),
    (Fault.status(500), "server error"),
    (Fault.rate_limited(retry_after=0), "rate limited"),
    (Fault.limit_reached(), "capacity"),
    (Fault.malformed(), "malformed"),
    (Fault.hang(seconds=1.0), "hang"),
    (Fault.drop(), "reset"),
    (Fault.process_then_drop(), "processed then dropped"),
]


@pytest.mark.parametrize(("fault", "label"), FAILING_CALLS, ids=[x[1] for x in FAILING_CALLS])
def test_the_key_never_shows_in_errors_or_logs(
    emu: Emulator,
    make_client: Any,
    caplog: pytest.LogCaptureFixture,
    fault: Fault,
    label: str,
) -> None:
    client = make_client(timeout=(1.0, 0.2), retry=RetryPolicy.none())
    caplog.set_level(logging.DEBUG)
    emu.add_fault(fault, path="/live-activity/start")
    with pytest.raises(ActivitySmithTrackError) as info:
        client.start(PROGRESS)
    for text in _texts_of(info.value):
        assert KEY not in text, label
    assert KEY not in caplog.text
    assert KEY not in repr(client)
    assert "POST /live-activity/start" in caplog.text  # the debug line per attempt is there


def test_a_key_echoed_by_the_server_is_redacted(emu: Emulator, client: Client) -> None:
    emu.add_fault(Fault.malformed(body=f"<html>token {KEY} rejected</html>", status=200))
    with pytest.raises(MalformedResponseError) as info:
        client.put_stream("k", PROGRESS)
    assert KEY not in str(info.value)
    assert KEY not in info.value.body
    assert "***" in str(info.value)


def test_repr_shows_only_the_base_url(emu: Emulator, client: Client) -> None:
    assert repr(client) == f"Client(base_url={emu.base_url!r})"
    assert KEY not in repr(vars(client).get("_auth"))


# -- configuration ---------------------------------------------------------------------------


def test_missing_key_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ACTIVITYSMITH_API_KEY"):
        Client()
    with pytest.raises(ConfigurationError):
        Client("   ")


def test_key_and_base_url_come_from_the_environment(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_API_KEY", KEY)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", emu.base_url + "/")
    with Client(sleep=Sleeps()) as client:
        assert client.base_url == emu.base_url
        assert client.put_stream("env", PROGRESS).operation == "started"
    assert emu.requests[0].authorized


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_BASE_URL", raising=False)
    with Client(KEY) as client:
        assert client.base_url == "https://activitysmith.com/api"


@pytest.mark.parametrize(
    "base_url", ["activitysmith.com/api", "ftp://x/api", "http://", "https://h/api?x=1"]
)
def test_bad_base_url_is_a_configuration_error(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="base_url"):
        Client(KEY, base_url=base_url)


@pytest.mark.parametrize("key", ["ask_with space", "ask_new\nline", "ask_ünicode"])
def test_unusable_key_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(key, base_url="http://127.0.0.1:1/api")
    assert key.strip() not in str(info.value)


@pytest.mark.parametrize(
    ("timeout", "error"),
    [
        (0, ValidationError),
        (-1.0, ValidationError),
        ((1.0,), ValidationError),
        ((1.0, float("inf")), ValidationError),
        ("5", ArgumentTypeError),
        (True, ArgumentTypeError),
    ],
)
def test_bad_timeouts_are_refused(timeout: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="timeout"):
        Client(KEY, base_url="http://127.0.0.1:1/api", timeout=timeout)


def test_a_session_passed_in_is_left_open(emu: Emulator) -> None:
    closed: list[str] = []

    class TrackingSession(requests.Session):
        def close(self) -> None:
            closed.append("closed")
            super().close()

    session = TrackingSession()
    with Client(KEY, base_url=emu.base_url, session=session):
        pass
    assert closed == []
    session.close()


def test_key_echoed_in_a_json_error_body_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    secret = "ask_echoed_secret_987"
    with Emulator(api_key=secret, fast=True) as emu:
        emu.add_fault(
            Fault.status(400, body={"error": "Bad", "message": f"bad key Bearer {secret}"}),
            path="/live-activity/start",
        )
        caplog.set_level(logging.DEBUG)
        with Client(secret, base_url=emu.base_url) as client, pytest.raises(APIError) as caught:
            client.start(ContentState(title="x", type="timer", counts_down=False))
    error = caught.value
    shown = str(error) + repr(error) + str(error.message) + repr(error.body) + caplog.text
    assert secret not in shown
    assert "***" in str(error.message)


def test_a_local_emulator_needs_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    with Emulator(fast=True) as emu, Client(base_url=emu.base_url) as client:
        result = client.start(ContentState(title="Local", type="timer", counts_down=False))
    assert result.activity_id


def test_a_remote_url_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ACTIVITYSMITH_API_KEY"):
        Client(base_url="https://example.com/api")


@pytest.mark.parametrize(
    ("call", "status"),
    [
        (lambda c: c.start(ContentState(title="T", type="timer", counts_down=False)), 405),
        (
            lambda c: c.put_stream("k", ContentState(title="T", type="timer", counts_down=False)),
            405,
        ),
        (lambda c: c.delete_stream("k"), 405),
    ],
)
def test_a_base_url_without_api_asks_did_you_mean(
    emu: Emulator, make_client: Callable[..., Client], call: Callable[[Client], Any], status: int
) -> None:
    site = emu.base_url.removesuffix("/api")
    client = make_client(base_url=site)
    with pytest.raises(APIError) as caught:
        call(client)
    assert caught.value.status == status
    assert caught.value.hint == f"the base URL has no /api path: did you mean {site}/api?"
    assert str(caught.value).endswith(f"did you mean {site}/api?")


def test_a_real_404_from_the_api_gets_no_path_hint(emu: Emulator, client: Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.delete_stream("never-started")
    assert caught.value.hint is None
    assert "did you mean" not in str(caught.value)
