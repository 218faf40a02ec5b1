"""The HTTP client: one requests.Session, five Live Activity endpoints, answers parsed leniently.

The client is synchronous and knows nothing about steps or throttling; the dispatcher calls it
from its worker thread. Every call validates its payload before any I/O, is bounded by a timeout
and retried according to :mod:`activitysmith_track._retry`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import attrs
import requests
import requests.auth

from activitysmith_track._config import DEFAULT_BASE_URL, EMULATOR_API_KEY, is_local_url
from activitysmith_track._errors import (
    ArgumentTypeError,
    ConfigurationError,
    MalformedResponseError,
    RequestInfo,
    TransportError,
    ValidationError,
    error_for_status,
)
from activitysmith_track._model import ContentState, Operation, Payload, validate_stream_key
from activitysmith_track._retry import (
    RetryPolicy,
    build_retrying,
    parse_retry_after,
    transport_error,
)
from activitysmith_track._version import __version__

__all__ = ["DEFAULT_BASE_URL", "Client", "Result"]

logger = logging.getLogger("activitysmith_track")

API_KEY_ENV = "ACTIVITYSMITH_API_KEY"
BASE_URL_ENV = "ACTIVITYSMITH_BASE_URL"

_EXCERPT_CHARS = 200
_KEPT_BODY_CHARS = 2000

Timeout = float | tuple[float, float]


@attrs.frozen(kw_only=True)
class Result:
    """What a successful call answered, with the fields the API documents parsed leniently.

    ``operation`` is the server's word (``"started"``, ``"updated"``, ``"rotated"``, ``"noop"``,
    ``"paused"``, ``"ended"``), kept as sent even when it is one this library does not know.
    ``attempts`` is how many tries it took; ``raw`` is the whole parsed answer.
    """

    status: int
    activity_id: str | None = None
    operation: str | None = None
    ignored: bool = False
    warning: str | None = None
    ended_activity_id: str | None = None
    previous_activity_id: str | None = None
    message: str | None = None
    attempts: int = 1
    raw: dict[str, Any] = attrs.field(factory=dict, hash=False, repr=False)


class _BearerAuth(requests.auth.AuthBase):
    """Adds the Authorization header at send time and never shows the key in a repr.

    Passing auth explicitly also stops requests from replacing the header with ~/.netrc
    credentials, which it does when no auth is given.
    """

    def __init__(self, key: str) -> None:
        self._key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self._key}"
        return r

    def __repr__(self) -> str:
        return "<bearer auth, key hidden>"

    def redact(self, text: str) -> str:
        """``text`` with any copy of the key replaced, for excerpts of server answers."""
        return text.replace(self._key, "***") if self._key else text

    def redact_bytes(self, content: bytes) -> bytes:
        """``content`` with any copy of the key replaced, before it is parsed or kept."""
        key = self._key.encode()
        return content.replace(key, b"***") if key and key in content else content


def _resolve_api_key(api_key: str | None, base_url: str) -> str:
    if api_key is not None and not isinstance(api_key, str):
        raise ArgumentTypeError("api_key", "a str", api_key)
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
    if not key and is_local_url(base_url):
        # A local emulator takes any key (unless started with one): try it without setup.
        key = EMULATOR_API_KEY
    if not key:
        raise ConfigurationError(
            "no ActivitySmith API key: pass api_key=... or set the "
            f"{API_KEY_ENV} environment variable (keys start with 'ask_')"
        )
    # A key with spaces, control or non-ASCII characters cannot go into a header, and requests
    # would quote the whole header value (the key) in its error message.
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigurationError(
            "the ActivitySmith API key contains spaces, control or non-ASCII characters; "
            "copy it again from the ActivitySmith app"
        )
    return key


def _resolve_base_url(base_url: str | None) -> str:
    if base_url is not None and not isinstance(base_url, str):
        raise ArgumentTypeError("base_url", "a str", base_url)
    url = (base_url or os.environ.get(BASE_URL_ENV, "") or DEFAULT_BASE_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base_url must be an http(s) URL like {DEFAULT_BASE_URL!r}, not {url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base_url must not have a query or fragment: {url!r}")
    return url.rstrip("/")


def _check_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(name, "a number of seconds", value)
    if not math.isfinite(value) or value <= 0:
        raise ValidationError(name, "must be a finite number of seconds > 0", value)
    return float(value)


def _resolve_timeout(timeout: object) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValidationError("timeout", "must be seconds or a (connect, read) pair", timeout)
        return (_check_seconds("timeout[0]", timeout[0]), _check_seconds("timeout[1]", timeout[1]))
    seconds = _check_seconds("timeout", timeout)
    return (seconds, seconds)


def _user_agent(suffix: str | None) -> str:
    agent = f"activitysmith-track/{__version__} python-requests/{requests.__version__}"
    if suffix is None:
        return agent
    if not isinstance(suffix, str):
        raise ArgumentTypeError("user_agent_suffix", "a str", suffix)
    if not suffix.strip() or not suffix.isascii() or not suffix.isprintable():
        raise ValidationError("user_agent_suffix", "must be printable ASCII text", suffix)
    return f"{agent} {suffix.strip()}"


def _payload_of(payload: object) -> Payload:
    if not isinstance(payload, (Payload, ContentState)):
        raise ArgumentTypeError("payload", "a Payload or ContentState", payload)
    return Payload.of(payload)


def _check_activity_id(activity_id: object) -> str:
    if not isinstance(activity_id, str):
        raise ArgumentTypeError("activity_id", "a str", activity_id)
    if not activity_id.strip():
        raise ValidationError("activity_id", "must not be empty", activity_id)
    return activity_id


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) else None


class Client:
    """A synchronous client for the ActivitySmith Live Activity endpoints.

    ``api_key`` falls back to ``$ACTIVITYSMITH_API_KEY`` and ``base_url`` to
    ``$ACTIVITYSMITH_BASE_URL``, then to the public API. ``timeout`` is seconds, or a
    ``(connect, read)`` pair, for every request. ``sleep`` and ``clock`` are what retries wait
    with and measure ``max_elapsed`` and deadlines on; tests inject fakes. ``on_retry_after``
    is told of every wait a 429 named (it concerns the whole account). A ``session`` passed
    in is used as is and left open by :meth:`close`. Use one client from one thread at a time:
    requests does not promise that a Session is thread-safe.

    Every method takes a :class:`Payload` or a bare :class:`ContentState`, refuses an invalid one
    with :class:`ValidationError` before sending anything, and accepts ``deadline``: an absolute
    time on ``clock`` after which no retry starts and no request waits.

    >>> with Client(base_url=emulator.base_url) as client:   # doctest: +SKIP
    ...     result = client.put_stream("nightly-etl", ContentState(title="ETL", type="progress",
    ...                                                             percentage=40))
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: Timeout = (5.0, 15.0),
        retry: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        user_agent_suffix: str | None = None,
        on_retry_after: Callable[[float], None] | None = None,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ArgumentTypeError("retry", "a RetryPolicy", retry)
        self._base_url = _resolve_base_url(base_url)
        self._auth = _BearerAuth(_resolve_api_key(api_key, self._base_url))
        self._timeout = _resolve_timeout(timeout)
        self._retry = retry if retry is not None else RetryPolicy()
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._sleep = sleep
        self._clock = clock
        self._on_retry_after = on_retry_after
        # Only a User-Agent identifies us. The official SDK's X-ActivitySmith-SDK header names
        # that SDK and its version; sending it from a different library would misreport which
        # client made the request, and no source says the server needs it.
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": _user_agent(user_agent_suffix),
        }

    @property
    def base_url(self) -> str:
        """The API root every path is appended to, without a trailing slash."""
        return self._base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy applied to every call."""
        return self._retry

    def __repr__(self) -> str:
        return f"Client(base_url={self._base_url!r})"

    def close(self) -> None:
        """Close the session if this client created it."""
        if self._owns_session:
            self._session.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the endpoints ---------------------------------------------------------------------

    def start(self, payload: Payload | ContentState, *, deadline: float | None = None) -> Result:
        """Start a Live Activity (``POST /live-activity/start``); the result has its id.

        Not idempotent: see the retry table in ``_retry``. An uncertain outcome raises
        :class:`StartOutcomeUnknownError` rather than risking a second activity.
        """
        body = _payload_of(payload).body(Operation.START)
        return self._call(Operation.START, "POST", "/live-activity/start", body, deadline)

    def update(
        self,
        activity_id: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """Update a started activity (``POST /live-activity/update``)."""
        activity_id = _check_activity_id(activity_id)
        body = {"activity_id": activity_id, **_payload_of(payload).body(Operation.UPDATE)}
        return self._call(Operation.UPDATE, "POST", "/live-activity/update", body, deadline)

    def end(
        self,
        activity_id: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """End a started activity with its final state (``POST /live-activity/end``)."""
        activity_id = _check_activity_id(activity_id)
        body = {"activity_id": activity_id, **_payload_of(payload).body(Operation.END)}
        return self._call(Operation.END, "POST", "/live-activity/end", body, deadline)

    def put_stream(
        self,
        stream_key: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """Start or update the activity of a stream (``PUT /live-activity/stream/{key}``)."""
        key = validate_stream_key(stream_key)
        body = _payload_of(payload).body(Operation.STREAM_PUT)
        path = f"/live-activity/stream/{key}"
        return self._call(Operation.STREAM_PUT, "PUT", path, body, deadline)

    def delete_stream(
        self,
        stream_key: str,
        payload: Payload | ContentState | None = None,
        *,
        deadline: float | None = None,
    ) -> Result:
        """End a stream (``DELETE /live-activity/stream/{key}``), optionally with a final state.

        Without a payload the server ends it showing the last state it knows.
        """
        key = validate_stream_key(stream_key)
        body = None if payload is None else _payload_of(payload).body(Operation.STREAM_DELETE)
        path = f"/live-activity/stream/{key}"
        return self._call(Operation.STREAM_DELETE, "DELETE", path, body, deadline)

    # -- the machinery ---------------------------------------------------------------------

    def _call(
        self,
        op: Operation,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        deadline: float | None,
    ) -> Result:
        if deadline is not None:
            deadline = _check_deadline(deadline)
        data = _encode(body)
        request = RequestInfo(method, path, body)
        retrying = build_retrying(
            self._retry,
            op,
            sleep=self._sleep,
            clock=self._clock,
            deadline=deadline,
            on_retry_after=self._on_retry_after,
        )
        attempts = 0

        def attempt() -> Result:
            nonlocal attempts
            attempts += 1
            return self._send_once(op, request, data, attempts, deadline)

        return retrying(attempt)

    def _timeout_for(self, request: RequestInfo, deadline: float | None) -> tuple[float, float]:
        if deadline is None:
            return self._timeout
        remaining = deadline - self._clock()
        if remaining <= 0:
            # Nothing is sent, so even a start can be retried safely by whoever called us.
            raise TransportError(f"{request}: the deadline passed before the request was sent")
        connect, read = self._timeout
        return (min(connect, remaining), min(read, remaining))

    def _send_once(
        self,
        op: Operation,
        request: RequestInfo,
        data: bytes | None,
        attempt: int,
        deadline: float | None,
    ) -> Result:
        timeout = self._timeout_for(request, deadline)
        try:
            response = self._session.request(
                request.method,
                self._base_url + request.path,
                data=data,
                headers=self._headers,
                auth=self._auth,
                timeout=timeout,
                # A redirect would turn a POST into a GET without its body; the API never
                # redirects, so a 3xx is reported as an error instead of being followed.
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            logger.debug(
                "%s %s -> %s (attempt %d)",
                request.method,
                request.path,
                type(exc).__name__,
                attempt,
            )
            raise transport_error(op, exc, request) from exc
        with response:
            logger.debug(
                "%s %s -> %d (attempt %d)",
                request.method,
                request.path,
                response.status_code,
                attempt,
            )
            return self._interpret(op, request, response, attempt)

    def _excerpt(self, content: bytes, limit: int = _EXCERPT_CHARS) -> str:
        text = " ".join(self._auth.redact(content.decode("utf-8", "replace")).split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _interpret(
        self,
        op: Operation,
        request: RequestInfo,
        response: requests.Response,
        attempt: int,
    ) -> Result:
        status = response.status_code
        # Redact first: whatever the server echoes (an error message, a body) may end up in
        # an exception, a log line or a Result, and none of them may show the key.
        content = self._auth.redact_bytes(response.content or b"")
        parsed = _parse_json(content)
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                what = (
                    "an empty body" if not content.strip() else "a body that is not a JSON object"
                )
                raise MalformedResponseError(
                    f"{request}: HTTP {status} with {what}: {self._excerpt(content)!r}",
                    status=status,
                    body=self._excerpt(content, _KEPT_BODY_CHARS),
                    request=request,
                )
            return self._result(op, request, status, parsed, attempt)
        body = parsed if isinstance(parsed, dict) else None
        if op is Operation.STREAM_DELETE and status == 404 and attempt > 1:
            # The earlier attempt most likely ended the stream and only its answer was lost.
            logger.debug("%s %s -> 404 on a retry: counted as ended", request.method, request.path)
            return Result(
                status=status,
                operation="ended",
                ignored=True,
                message=_opt_str(body, "message") if body is not None else None,
                attempts=attempt,
                raw=body if body is not None else {},
            )
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After")) if status == 429 else None
        )
        raise error_for_status(
            status,
            body,
            request=request,
            retry_after=retry_after,
            text=None if body is not None else (self._excerpt(content) or None),
            hint=self._path_hint(status, body),
        )

    def _path_hint(self, status: int, body: Mapping[str, Any] | None) -> str | None:
        """``did you mean <url>/api?`` when the answer looks like a web site's, not the API's.

        The API never answers 405 and its 404s are JSON objects; a base URL without the
        ``/api`` path reaches the web site instead, which does both.
        """
        if status != 405 and not (status == 404 and body is None):
            return None
        if urlsplit(self._base_url).path.rstrip("/").endswith("/api"):
            return None
        return f"the base URL has no /api path: did you mean {self._base_url}/api?"

    def _result(
        self,
        op: Operation,
        request: RequestInfo,
        status: int,
        raw: dict[str, Any],
        attempt: int,
    ) -> Result:
        activity_id = _opt_str(raw, "activity_id")
        if op is Operation.START and not activity_id:
            raise MalformedResponseError(
                f"{request}: HTTP {status} answer has no activity_id, so the activity cannot be "
                f"updated or ended: {self._excerpt(json.dumps(raw).encode())!r}",
                status=status,
                body=self._excerpt(json.dumps(raw).encode(), _KEPT_BODY_CHARS),
                request=request,
            )
        if activity_id is None and op in (Operation.UPDATE, Operation.END):
            # The contract says these answers carry the id; fall back to the one we sent.
            sent = request.body.get("activity_id") if request.body is not None else None
            activity_id = sent if isinstance(sent, str) else None
        return Result(
            status=status,
            activity_id=activity_id,
            operation=_opt_str(raw, "operation"),
            ignored=raw.get("ignored") is True,
            warning=_opt_str(raw, "warning"),
            ended_activity_id=_opt_str(raw, "ended_activity_id"),
            previous_activity_id=_opt_str(raw, "previous_activity_id"),
            message=_opt_str(raw, "message"),
            attempts=attempt,
            raw=raw,
        )


def _check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise ArgumentTypeError("deadline", "a time on the client's clock (float)", deadline)
    if math.isnan(deadline):
        raise ValidationError("deadline", "must not be NaN", deadline)
    return float(deadline)


def _encode(body: dict[str, Any] | None) -> bytes | None:
    if body is None:
        return None
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"cannot be sent as JSON ({exc})") from exc


def _parse_json(content: bytes) -> object:
    """The decoded JSON, or ``None`` when the body is empty or not JSON at all."""
    if not content.strip():
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None
