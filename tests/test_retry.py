"""The retry policy: Retry-After parsing, backoff bounds, the retry table and the limits.

Everything here is pure: the clock and the sleep are fakes, so no test waits for real time.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import pytest
import requests
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from activitysmith_track._errors import (
    APIError,
    BadRequestError,
    LiveActivityLimitError,
    MalformedResponseError,
    RateLimitedError,
    RequestInfo,
    ServerError,
    StartOutcomeUnknownError,
    TransportError,
    error_for_status,
)
from activitysmith_track._model import Operation
from activitysmith_track._retry import (
    RetryPolicy,
    backoff_delay,
    build_retrying,
    is_retryable,
    may_have_reached_server,
    parse_retry_after,
    transport_error,
)

NOW = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
REQUEST = RequestInfo("POST", "/live-activity/start", {"content_state": {"title": "t"}})
NO_POOL = cast(Any, None)


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self.resumed_at: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.resumed_at.append(self.now)


# -- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wednesday, 21-Oct-15 07:30:00 GMT", 120.0),
        ("Wed Oct 21 07:28:05 2015", 5.0),
        ("Wed, 21 Oct 2015 09:28:10 +0200", 10.0),
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),
        ("Tue, 20 Oct 2015 07:28:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
        ("12 34", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected


def test_parse_retry_after_date_uses_the_system_clock_by_default() -> None:
    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)
    header = in_an_hour.strftime("%a, %d %b %Y %H:%M:%S GMT")
    seconds = parse_retry_after(header)
    assert seconds is not None
    assert 3590 <= seconds <= 3600


def test_parse_retry_after_naive_now_is_read_as_utc() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=NOW.replace(tzinfo=None)) == 30.0


# -- RetryPolicy and backoff -----------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.max_elapsed) == (5, 30.0)
    assert (policy.initial_backoff, policy.max_backoff, policy.jitter) == (0.5, 8.0, 0.5)
    assert policy.max_retry_after == 60.0


def test_policy_none_tries_once() -> None:
    assert RetryPolicy.none().max_attempts == 1


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 2.5}, TypeError),
        ({"max_attempts": True}, TypeError),
        ({"max_elapsed": -1.0}, ValueError),
        ({"initial_backoff": float("nan")}, ValueError),
        ({"max_backoff": float("inf")}, ValueError),
        ({"jitter": 1.5}, ValueError),
        ({"jitter": -0.1}, ValueError),
        ({"max_retry_after": "60"}, TypeError),
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=next(iter(kwargs))):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize(
    ("retry_number", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (10_000, 8.0)],
)
def test_backoff_doubles_up_to_the_cap(retry_number: int, expected: float) -> None:
    assert backoff_delay(RetryPolicy(), retry_number, rand=lambda: 0.0) == expected


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.5, 1.0])
@pytest.mark.parametrize("retry_number", [1, 3, 7])
@pytest.mark.parametrize("rand", [0.0, 0.3, 0.999999])
def test_backoff_jitter_stays_within_bounds(jitter: float, retry_number: int, rand: float) -> None:
    policy = RetryPolicy(jitter=jitter)
    base = backoff_delay(policy, retry_number, rand=lambda: 0.0)
    delay = backoff_delay(policy, retry_number, rand=lambda: rand)
    assert base * (1 - jitter) <= delay <= base
    assert delay == pytest.approx(base * (1 - jitter * rand))


def test_backoff_with_real_randomness_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_backoff=1.0, jitter=0.5)
    delays = [backoff_delay(policy, 2) for _ in range(200)]
    assert all(1.0 <= d <= 2.0 for d in delays)
    assert len(set(delays)) > 1


# -- the retry table -------------------------------------------------------------------------


def _refused() -> requests.RequestException:
    reason = NewConnectionError(NO_POOL, "Failed to establish a new connection: refused")
    return requests.ConnectionError(MaxRetryError(NO_POOL, "/api", reason=reason))


def _dns_failure() -> requests.RequestException:
    reason = NameResolutionError("nowhere.invalid", NO_POOL, socket.gaierror(-2, "unknown"))
    return requests.ConnectionError(MaxRetryError(NO_POOL, "/api", reason=reason))


def _connect_timeout() -> requests.RequestException:
    reason = ConnectTimeoutError(NO_POOL, "connect timed out")
    return requests.ConnectTimeout(MaxRetryError(NO_POOL, "/api", reason=reason))


def _read_timeout() -> requests.RequestException:
    return requests.ReadTimeout(ReadTimeoutError(NO_POOL, "/api", "Read timed out."))


def _reset() -> requests.RequestException:
    cause = ConnectionResetError(104, "Connection reset by peer")
    return requests.ConnectionError(ProtocolError("Connection aborted.", cause))


def _closed_without_answer() -> requests.RequestException:
    cause = http.client.RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(ProtocolError("Connection aborted.", cause))


def _broken_body() -> requests.RequestException:
    return requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")


TRANSPORT_FAILURES: dict[str, tuple[Callable[[], requests.RequestException], bool]] = {
    # name: (the requests exception, whether it may have reached the server)
    "refused": (_refused, False),
    "dns": (_dns_failure, False),
    "connect_timeout": (_connect_timeout, False),
    "read_timeout": (_read_timeout, True),
    "reset": (_reset, True),
    "closed_without_answer": (_closed_without_answer, True),
    "broken_body": (_broken_body, True),
}


@pytest.mark.parametrize("name", sorted(TRANSPORT_FAILURES))
def test_may_have_reached_server(name: str) -> None:
    make, reached = TRANSPORT_FAILURES[name]
    assert may_have_reached_server(make()) is reached


def _http(status: int, body: dict[str, Any] | None = None) -> Callable[[], BaseException]:
    return lambda: error_for_status(status, body, request=REQUEST)


FAILURES: dict[str, Callable[[], BaseException]] = {
    **{name: make for name, (make, _) in TRANSPORT_FAILURES.items()},
    "400": _http(400, {"error": "Bad Request", "message": "nope"}),
    "401": _http(401, {"error": "Unauthorized"}),
    "402": _http(402, {"error": "trial_expired"}),
    "403": _http(403, {"error": "Forbidden"}),
    "404": _http(404, {"error": "Not Found"}),
    "409": _http(409, {"error": "Conflict"}),
    "422": _http(422, {"error": "No recipients found"}),
    "429_rate": _http(429, {"code": "rate_limited", "error": "Rate limit exceeded"}),
    "429_capacity": _http(429, {"error": "Live Activity limit reached", "limit": 4, "active": 4}),
    "500": _http(500),
    "502": _http(502),
    "503": _http(503),
    "504": _http(504),
    "malformed": lambda: MalformedResponseError("html", status=200, body="<html>", request=REQUEST),
}

RETRIED_FOR_START = {"refused", "dns", "connect_timeout", "429_rate", "503"}
RETRIED_FOR_OTHERS = {
    *RETRIED_FOR_START,
    "read_timeout",
    "reset",
    "closed_without_answer",
    "broken_body",
    "500",
    "502",
    "504",
}
RETRY_TABLE = [
    pytest.param(
        op,
        name,
        name in (RETRIED_FOR_START if op is Operation.START else RETRIED_FOR_OTHERS),
        id=f"{op.value}-{name}",
    )
    for op in Operation
    for name in FAILURES
]


def _as_library_error(op: Operation, exc: BaseException) -> BaseException:
    if isinstance(exc, requests.RequestException):
        return transport_error(op, exc, REQUEST)
    return exc


@pytest.mark.parametrize(("op", "failure", "retried"), RETRY_TABLE)
def test_retry_table(op: Operation, failure: str, retried: bool) -> None:
    assert is_retryable(op, _as_library_error(op, FAILURES[failure]())) is retried


@pytest.mark.parametrize(("op", "failure", "retried"), RETRY_TABLE)
def test_retry_table_through_tenacity(op: Operation, failure: str, retried: bool) -> None:
    clock = FakeClock()
    error = _as_library_error(op, FAILURES[failure]())
    calls = 0

    def fail_then_succeed() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        return "ok"

    retrying = build_retrying(RetryPolicy(), op, sleep=clock.sleep, clock=clock)
    if retried:
        assert retrying(fail_then_succeed) == "ok"
        assert calls == 2
    else:
        with pytest.raises(type(error)) as info:
            retrying(fail_then_succeed)
        assert info.value is error
        assert calls == 1
        assert clock.sleeps == []


@pytest.mark.parametrize("name", ["read_timeout", "reset", "closed_without_answer", "broken_body"])
def test_uncertain_start_is_reported_as_outcome_unknown(name: str) -> None:
    error = transport_error(Operation.START, TRANSPORT_FAILURES[name][0](), REQUEST)
    assert isinstance(error, StartOutcomeUnknownError)
    assert "may or may not have started" in str(error)
    assert error.request is REQUEST


@pytest.mark.parametrize("name", ["refused", "dns", "connect_timeout"])
def test_unsent_start_is_a_plain_transport_error(name: str) -> None:
    error = transport_error(Operation.START, TRANSPORT_FAILURES[name][0](), REQUEST)
    assert type(error) is TransportError


@pytest.mark.parametrize("op", [op for op in Operation if op is not Operation.START])
def test_other_operations_never_get_outcome_unknown(op: Operation) -> None:
    for make, _ in TRANSPORT_FAILURES.values():
        assert type(transport_error(op, make(), REQUEST)) is TransportError


# -- waits and bounds ------------------------------------------------------------------------


def _always(exc: Callable[[], BaseException]) -> Callable[[], str]:
    def call() -> str:
        raise exc()

    return call


def _server_error() -> BaseException:
    return ServerError(500, request=REQUEST)


def test_gives_up_after_max_attempts_and_reraises_the_last_error() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=3, initial_backoff=1.0, jitter=0.0)
    retrying = build_retrying(policy, Operation.UPDATE, sleep=clock.sleep, clock=clock)
    with pytest.raises(ServerError):
        retrying(_always(_server_error))
    assert clock.sleeps == [1.0, 2.0]


def test_max_elapsed_stops_before_a_wait_that_would_pass_it() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, max_elapsed=2.5, initial_backoff=1.0, jitter=0.0)
    retrying = build_retrying(policy, Operation.UPDATE, sleep=clock.sleep, clock=clock)
    with pytest.raises(ServerError):
        retrying(_always(_server_error))
    # 1 s (resume at +1) fits; the next 2 s would resume at +3 > 2.5.
    assert clock.sleeps == [1.0]


def test_max_elapsed_counts_time_spent_in_requests() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, max_elapsed=5.0, initial_backoff=1.0, jitter=0.0)

    def slow_failure() -> str:
        clock.now += 2.0  # each attempt takes 2 s on the injected clock
        raise _server_error()

    retrying = build_retrying(policy, Operation.UPDATE, sleep=clock.sleep, clock=clock)
    with pytest.raises(ServerError):
        retrying(slow_failure)
    # attempt 1 ends at +2, wait 1 -> +3; attempt 2 ends at +5, a 2 s wait would reach +7.
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize("deadline_in", [0.0, 0.4, 1.0, 2.9, 3.0, 6.5, 100.0])
def test_no_wait_runs_past_the_deadline(deadline_in: float) -> None:
    clock = FakeClock()
    deadline = clock.now + deadline_in
    policy = RetryPolicy(max_attempts=6, max_elapsed=1000, initial_backoff=1.0, jitter=0.0)
    retrying = build_retrying(
        policy, Operation.STREAM_PUT, sleep=clock.sleep, clock=clock, deadline=deadline
    )
    with pytest.raises(ServerError):
        retrying(_always(_server_error))
    assert all(t <= deadline for t in clock.resumed_at)
    expected = {0.0: [], 0.4: [], 1.0: [1.0], 2.9: [1.0], 3.0: [1.0, 2.0], 6.5: [1.0, 2.0]}
    assert clock.sleeps == expected.get(deadline_in, [1.0, 2.0, 4.0, 8.0, 8.0])


def test_deadline_in_the_past_allows_the_first_attempt_only() -> None:
    clock = FakeClock()
    calls = 0

    def fail() -> str:
        nonlocal calls
        calls += 1
        raise _server_error()

    retrying = build_retrying(
        RetryPolicy(), Operation.UPDATE, sleep=clock.sleep, clock=clock, deadline=clock.now - 1
    )
    with pytest.raises(ServerError):
        retrying(fail)
    assert (calls, clock.sleeps) == (1, [])


def _rate_limited(retry_after: float | None) -> Callable[[], BaseException]:
    return lambda: RateLimitedError(429, retry_after=retry_after, request=REQUEST)


def _once_then_ok(exc: Callable[[], BaseException]) -> Callable[[], str]:
    calls = 0

    def call() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise exc()
        return "ok"

    return call


@pytest.mark.parametrize("op", list(Operation))
def test_rate_limit_waits_exactly_retry_after_without_jitter(op: Operation) -> None:
    clock = FakeClock()
    retrying = build_retrying(RetryPolicy(jitter=1.0), op, sleep=clock.sleep, clock=clock)
    assert retrying(_once_then_ok(_rate_limited(7.25))) == "ok"
    assert clock.sleeps == [7.25]


def test_rate_limit_wait_is_capped() -> None:
    clock = FakeClock()
    policy = RetryPolicy(max_retry_after=3.0, max_elapsed=100.0)
    retrying = build_retrying(policy, Operation.UPDATE, sleep=clock.sleep, clock=clock)
    assert retrying(_once_then_ok(_rate_limited(3600.0))) == "ok"
    assert clock.sleeps == [3.0]


def test_rate_limit_without_retry_after_falls_back_to_backoff() -> None:
    clock = FakeClock()
    policy = RetryPolicy(initial_backoff=0.25, jitter=0.0)
    retrying = build_retrying(policy, Operation.UPDATE, sleep=clock.sleep, clock=clock)
    assert retrying(_once_then_ok(_rate_limited(None))) == "ok"
    assert clock.sleeps == [0.25]


def test_rate_limit_wait_past_the_deadline_is_not_started() -> None:
    clock = FakeClock()
    retrying = build_retrying(
        RetryPolicy(), Operation.UPDATE, sleep=clock.sleep, clock=clock, deadline=clock.now + 5
    )
    with pytest.raises(RateLimitedError) as info:
        retrying(_always(_rate_limited(10.0)))
    assert info.value.retry_after == 10.0
    assert clock.sleeps == []


def test_capacity_limit_is_never_retried() -> None:
    clock = FakeClock()
    retrying = build_retrying(RetryPolicy(), Operation.START, sleep=clock.sleep, clock=clock)
    capacity = _http(429, {"error": "Live Activity limit reached", "limit": 4, "active": 4})
    with pytest.raises(LiveActivityLimitError):
        retrying(_always(capacity))
    assert clock.sleeps == []


def test_policy_none_never_retries() -> None:
    clock = FakeClock()
    retrying = build_retrying(RetryPolicy.none(), Operation.UPDATE, sleep=clock.sleep, clock=clock)
    with pytest.raises(ServerError):
        retrying(_always(_server_error))
    assert clock.sleeps == []


def test_success_needs_no_sleep() -> None:
    clock = FakeClock()
    retrying = build_retrying(RetryPolicy(), Operation.START, sleep=clock.sleep, clock=clock)
    assert retrying(lambda: "ok") == "ok"
    assert clock.sleeps == []


def test_sleep_receives_plain_floats() -> None:
    clock = FakeClock()
    retrying = build_retrying(
        RetryPolicy(jitter=0.0), Operation.UPDATE, sleep=clock.sleep, clock=clock
    )
    retrying(_once_then_ok(_server_error))
    assert [type(s) for s in clock.sleeps] == [float]


def test_injected_jitter_source_is_used() -> None:
    clock = FakeClock()
    policy = RetryPolicy(initial_backoff=2.0, jitter=0.5)
    retrying = build_retrying(
        policy, Operation.UPDATE, sleep=clock.sleep, clock=clock, rand=lambda: 0.5
    )
    retrying(_once_then_ok(_server_error))
    assert clock.sleeps == [1.5]


def test_unexpected_exceptions_are_not_retried() -> None:
    clock = FakeClock()
    retrying = build_retrying(RetryPolicy(), Operation.UPDATE, sleep=clock.sleep, clock=clock)
    with pytest.raises(ZeroDivisionError):
        retrying(_always(ZeroDivisionError))
    assert clock.sleeps == []


def test_api_errors_without_a_specific_class_are_not_retried() -> None:
    assert type(error_for_status(418, None)) is APIError
    assert not is_retryable(Operation.UPDATE, error_for_status(418, None))
    assert not is_retryable(Operation.UPDATE, BadRequestError(400))


def test_jitter_leaves_the_applications_random_state_alone() -> None:
    import random

    random.seed(1234)
    before = random.getstate()
    for attempt in range(1, 6):
        backoff_delay(RetryPolicy(), attempt)
    assert random.getstate() == before
