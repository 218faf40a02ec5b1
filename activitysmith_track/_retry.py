"""When and how long the client retries a request: the policy, its classification, the waits.

The client builds a fresh :class:`tenacity.Retrying` for every call (see :func:`build_retrying`),
so the clock, the sleep and the deadline are per call and tests can inject all three.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs

from activitysmith_track._errors import (
    ArgumentTypeError,
    RateLimitedError,
    RequestInfo,
    ServerError,
    StartOutcomeUnknownError,
    TransportError,
    ValidationError,
)
from activitysmith_track._model import Operation

if TYPE_CHECKING:
    import random
    from datetime import datetime

    import requests
    import tenacity

# requests, urllib3 and tenacity are imported where they are used: on the sender thread, when
# the first request goes out, never when an activity is created.

__all__ = [
    "RetryPlan",
    "RetryPolicy",
    "backoff_delay",
    "build_retrying",
    "is_retryable",
    "may_have_reached_server",
    "parse_retry_after",
    "transport_error",
]

logger = logging.getLogger("activitysmith_track")

# Which failures are retried, per operation
# ----------------------------------------
# UPDATE, END, STREAM_PUT, STREAM_DELETE can be repeated without harm: a stream PUT reconciles
# state (a repeat is a "noop"), a repeated end or delete answers "ignored", a repeated update
# only re-sends the same state. They are retried on:
#     connection refused or reset, DNS failure, connect or read timeout   (TransportError)
#     any 5xx                                                             (ServerError)
#     429 rate_limited                                                    (RateLimitedError)
# START is not idempotent: a retry after a start that did reach the server creates a second
# activity, which uses up the device's few slots and may even end an older one. It is retried
# only when the request provably did not reach the server, or the server said it did not
# process it:
#     retried:     connection refused / DNS failure / connect timeout (nothing was sent),
#                  429 rate_limited, 503 (the server refused the work)
#     not retried: read timeout, reset or close after sending -> StartOutcomeUnknownError;
#                  500, 502, 504 -> ServerError (the work may have been done before it failed)
# Never retried, for any operation: 400, 401, 402, 403, 404, 409, 422, the capacity 429
# (LiveActivityLimitError: it clears only when another activity ends, not with time), any other
# non-2xx status, and malformed answers (a repeat would most likely get the same answer).
# STREAM_DELETE: a 404 on a retry (not on the first attempt) counts as success, because the
# earlier attempt most likely ended the stream before its answer was lost. The client handles
# that case itself; it never reaches the retry machinery as an error.
#
# Waits: exponential backoff with jitter between attempts; after a 429 that carries a usable
# Retry-After, exactly that many seconds (capped at max_retry_after) and no jitter, because the
# server named the moment. Everything is bounded by max_attempts, by max_elapsed (on the
# injected clock) and by an optional absolute deadline: a retry whose wait would end past either
# bound is not started, and the last error is raised instead.

_START_RETRYABLE_STATUSES = frozenset({503})

# Jitter comes from a generator of our own: a library must not draw from (and so change) the
# global random state its application may have seeded. Made on first use.
_jitter: random.Random | None = None


def _random() -> float:
    global _jitter
    if _jitter is None:
        import random

        _jitter = random.Random()
    return _jitter.random()


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(attribute.name, "a number of seconds", value)
    if not math.isfinite(value) or value < 0:
        raise ValidationError(attribute.name, f"must be a finite number >= 0, not {value!r}", value)


def _at_least_one(_instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ArgumentTypeError(attribute.name, "an int", value)
    if value < 1:
        raise ValidationError(attribute.name, f"must be >= 1, not {value!r}", value)


def _fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    _non_negative(_instance, attribute, value)
    if value > 1:
        raise ValidationError(attribute.name, f"must be between 0 and 1, not {value!r}", value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How persistently one request is retried.

    ``max_attempts`` counts the first try. ``max_elapsed`` bounds the total time from the first
    try to the start of the last one (seconds on the client's clock). The wait before retry
    ``n`` is ``min(max_backoff, initial_backoff * 2 ** (n - 1))`` reduced by a random share of
    up to ``jitter`` of itself: ``jitter=0.5`` is "equal jitter" (between half and all of the
    backoff), ``jitter=1.0`` is "full jitter" (anywhere from zero), ``0`` is no jitter. Jitter
    keeps many processes that failed together from retrying in lockstep. A 429's Retry-After is
    honoured up to ``max_retry_after`` seconds.
    """

    max_attempts: int = attrs.field(default=5, validator=_at_least_one)
    max_elapsed: float = attrs.field(default=30.0, validator=_non_negative)
    initial_backoff: float = attrs.field(default=0.5, validator=_non_negative)
    max_backoff: float = attrs.field(default=8.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, validator=_fraction)
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative)

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that tries once and never retries."""
        return cls(max_attempts=1)


def backoff_delay(
    policy: RetryPolicy, retry_number: int, *, rand: Callable[[], float] = _random
) -> float:
    """Seconds to wait before retry number ``retry_number`` (1 for the first retry).

    ``rand`` returns a float in [0, 1); the result lies in
    ``[base * (1 - policy.jitter), base]`` where ``base`` is the capped exponential backoff.
    """
    exponent = max(retry_number - 1, 0)
    # Cap the exponent before raising 2 to it so a huge attempt count cannot overflow.
    base = min(policy.max_backoff, policy.initial_backoff * 2.0 ** min(exponent, 64))
    return base * (1.0 - policy.jitter * rand())


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a Retry-After header, or ``None`` when it says nothing usable.

    The header is either a number of seconds (``"120"``, and leniently ``"1.5"``) or an HTTP date
    (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a date in the past means "now" (``0.0``). ``now`` is
    the current wall-clock time for dates (default: the system clock, in UTC).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        # "nan", "inf" and negative numbers parse as floats but are not delays.
        if not math.isfinite(seconds) or seconds < 0:
            return None
        return seconds
    import email.utils
    from datetime import datetime, timezone

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # An HTTP date is always GMT; a date written without a zone is read the same way.
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else datetime.now(timezone.utc)
    if current.tzinfo is None:
        current = current.replace(tzinfo=timezone.utc)
    return max((when - current).total_seconds(), 0.0)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Every exception reachable from ``exc``: its args, causes, contexts and urllib3 reasons."""
    from urllib3.exceptions import MaxRetryError

    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < 32:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, MaxRetryError) and current.reason is not None:
            pending.append(current.reason)
        pending.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)


def may_have_reached_server(exc: requests.RequestException) -> bool:
    """Whether a failed request may have been received (and acted on) by the server.

    Only a failure to connect proves that nothing was sent: a connect timeout, a refused
    connection or a failed DNS lookup (urllib3's NewConnectionError and its subclasses). A read
    timeout, a reset or a closed connection can happen after the server processed the request.
    """
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        return not any(isinstance(cause, NewConnectionError) for cause in _causes(exc))
    return True


def _describe_transport_failure(exc: requests.RequestException) -> str:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return "timed out while connecting"
    if isinstance(exc, requests.Timeout):
        return "timed out waiting for the answer"
    if isinstance(exc, requests.ConnectionError):
        if not may_have_reached_server(exc):
            return "could not connect"
        return "the connection was closed or reset before an answer arrived"
    return f"the request failed ({type(exc).__name__})"


def transport_error(
    op: Operation, exc: requests.RequestException, request: RequestInfo
) -> TransportError:
    """The library error for a failed request, telling an uncertain start apart.

    The caller raises it ``from exc`` so the requests exception stays in the chain.
    """
    what = _describe_transport_failure(exc)
    if op is Operation.START and may_have_reached_server(exc):
        return StartOutcomeUnknownError(
            f"{request}: {what}; the activity may or may not have started, and the start was not "
            "retried because a retry could start it twice",
            request=request,
        )
    return TransportError(f"{request}: {what}", request=request)


def is_retryable(op: Operation, exc: BaseException) -> bool:
    """Whether one failed attempt of ``op`` may be retried (the table in this module's comment)."""
    if isinstance(exc, StartOutcomeUnknownError):
        return False
    if isinstance(exc, TransportError):
        # For START, transport_error() only builds a plain TransportError when nothing was sent.
        return True
    if isinstance(exc, RateLimitedError):
        return True
    if isinstance(exc, ServerError):
        return op is not Operation.START or exc.status in _START_RETRYABLE_STATUSES
    return False


def build_retrying(
    policy: RetryPolicy,
    op: Operation,
    *,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
    deadline: float | None = None,
    persistent: bool = False,
    rand: Callable[[], float] = _random,
    on_retry_after: Callable[[float], None] | None = None,
) -> tenacity.Retrying:
    """A :class:`tenacity.Retrying` for one call of ``op`` under ``policy``.

    ``clock`` measures ``max_elapsed`` and the absolute ``deadline`` (same clock); ``sleep``
    performs the waits (the dispatcher drives the retrying step by step instead, see
    :class:`RetryPlan`). ``persistent`` retries until ``deadline`` whatever the attempt count
    and elapsed time (an end or a start must not be given up while there is time left), and
    then a wait the server named (a 429's Retry-After) is not even a failed attempt. Without
    it, such a wait counts toward ``max_attempts`` but not toward ``max_elapsed``: holding
    back when asked to must not drop the state. ``on_retry_after`` hears of every such wait,
    which concerns the whole account, not only this request. The last error is re-raised as
    itself when retrying stops.
    """
    import tenacity

    started = clock()
    failures = 0  # attempts that failed other than by a wait the server named
    server_waited = 0.0  # seconds spent in waits the server named

    def retry(state: tenacity.RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and is_retryable(op, exc)

    def server_named(state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome is not None else None
        return isinstance(exc, RateLimitedError) and exc.retry_after is not None

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, policy.max_retry_after)
        return backoff_delay(policy, failures, rand=rand)

    def stop(state: tenacity.RetryCallState) -> bool:
        # tenacity computes the wait before asking stop, so upcoming_sleep is the wait that
        # would follow: a retry is started only if it can begin within every bound.
        resume_at = clock() + state.upcoming_sleep
        if deadline is not None and resume_at > deadline:
            return True
        if persistent:
            return False
        if failures >= policy.max_attempts:
            return True
        if server_named(state):
            return False
        return resume_at - started - server_waited > policy.max_elapsed

    def count(state: tenacity.RetryCallState) -> None:
        # Runs first after each attempt (as tenacity's "after" hook), before wait and stop.
        nonlocal failures
        if not (persistent and server_named(state)):
            failures += 1

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal server_waited
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.debug(
            "%s failed on attempt %d (%s); retrying in %.3f s",
            op.value,
            state.attempt_number,
            type(exc).__name__,
            state.upcoming_sleep,
        )
        if server_named(state):
            server_waited += float(state.upcoming_sleep)
            if on_retry_after is not None:
                on_retry_after(float(state.upcoming_sleep))

    def do_sleep(seconds: float) -> None:
        # tenacity hands over a float subclass; pass a plain float on.
        sleep(float(seconds))

    return tenacity.Retrying(
        sleep=do_sleep,
        stop=stop,
        wait=wait,
        retry=retry,
        after=count,
        before_sleep=before_sleep,
        reraise=True,
    )


class RetryPlan:
    """One request's retrying, driven a step at a time by the dispatcher instead of sleeping.

    The same tenacity rules as a blocking :class:`~activitysmith_track.Client` call: after each
    attempt, :meth:`failed` says in how many seconds to try again, or re-raises the error when
    retrying stops. Nothing waits here, so no thread is held by a backoff.
    """

    __slots__ = ("_retrying", "_state")

    def __init__(self, retrying: tenacity.Retrying) -> None:
        import tenacity

        self._retrying = retrying
        self._state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
        retrying.begin()
        first = retrying.iter(self._state)
        assert isinstance(first, tenacity.DoAttempt)

    @property
    def attempt(self) -> int:
        """The number of the attempt about to be made (1 for the first)."""
        return self._state.attempt_number

    def failed(self, exc: BaseException) -> float:
        """Record a failed attempt; the seconds to wait before the next one, or re-raise ``exc``
        (or the error retrying stopped on) when there will be none."""
        import tenacity

        self._state.set_exception((type(exc), exc, exc.__traceback__))
        if "idle_for" not in self._retrying.statistics:
            # tenacity keeps its statistics per thread, and the next attempt may run on
            # another sender thread: give this thread its own (they are only informative).
            self._retrying.begin()
        do = self._retrying.iter(self._state)
        if isinstance(do, tenacity.DoSleep):
            self._state.prepare_for_next_attempt()
            again = self._retrying.iter(self._state)
            assert isinstance(again, tenacity.DoAttempt)
            return float(do)
        raise exc  # pragma: no cover - reraise=True makes tenacity raise in iter() already
