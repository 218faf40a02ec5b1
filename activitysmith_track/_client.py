"""HTTP: the Live Activity endpoints over requests, answers read with a cap and parsed leniently.

Two layers:

* :class:`Wire` sends one attempt of one request and turns the answer into a :class:`Result` or
  a library error. It owns what every request of an account shares: the base URL, the key,
  the headers and one bounded connection pool; each thread that sends gets its own
  ``requests.Session`` on top of that pool. The dispatcher's sender threads use it directly
  and schedule retries themselves.
* :class:`Client` is the public, blocking layer: validate a payload, send it, retry with
  tenacity according to :mod:`activitysmith_track._retry`, return the result.

What a server answers is read with a size cap (after decompression, which this module does
itself so that a compressed bomb cannot grow past the cap), and any copy of the API key in it
(raw, JSON-escaped, percent-encoded, HTML-escaped, base64 or hex) is blanked before the answer
is parsed, logged, kept in a result or put in an exception.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import logging
import math
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import requests
import requests.adapters
import requests.auth
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from activitysmith_track._checks import check_seconds, check_url
from activitysmith_track._config import (
    DEFAULT_BASE_URL,
    EMULATOR_API_KEY,
    ENV_API_KEY,
    ENV_BASE_URL,
    is_local_url,
)
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

__all__ = ["DEFAULT_BASE_URL", "MAX_ANSWER", "Client", "Inflight", "Result", "Wire"]

logger = logging.getLogger("activitysmith_track")

# The largest answer read, after decompression. Real answers are a few hundred bytes; a server
# that sends more is broken or hostile, and reading on would only grow the job's memory.
MAX_ANSWER = 256 * 1024
_READ_CHUNK = 16 * 1024
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


# -- the key: sent in one header, blanked everywhere it comes back -----------------------------


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


# What a key, or its base64 or hex form, is written with: a match is widened to all of it.
_TOKEN = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")
_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})|\\(/)")


def _json_unescape(text: str) -> str:
    return _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else "/", text)


class Redactor:
    """Blanks every copy of the API key in text a server sent back, whatever its encoding.

    The text is decoded first (JSON escapes such as ``\\u0061`` or ``\\/``, percent-encoding,
    HTML entities, repeatedly, in case they are stacked), then every case-insensitive match of
    the key, of its base64 forms (standard and URL-safe, at each byte alignment) and of its hex
    form is replaced with ``***``. What is shown afterwards is the decoded text.
    """

    __slots__ = ("_needles",)

    def __init__(self, key: str) -> None:
        needles = {key.lower()} if key else set()
        raw = key.encode()
        for prefix in (b"", b"\0", b"\0\0"):
            for encode in (base64.b64encode, base64.urlsafe_b64encode):
                encoded = encode(prefix + raw).decode()
                # Only the characters that depend on the key alone, at this alignment.
                start = -(-len(prefix) * 4 // 3) + 1
                core = encoded[start : len(encoded) - 4]
                if len(core) >= 8:
                    needles.add(core.lower())
        if raw:
            needles.add(raw.hex())
        self._needles = tuple(sorted(needles, key=len, reverse=True))

    def text(self, text: str) -> str:
        if not self._needles:
            return text
        for _ in range(4):  # undo stacked encodings, e.g. a percent-encoded JSON escape
            decoded = html.unescape(unquote(_json_unescape(text)))
            if decoded == text:
                break
            text = decoded
        lowered = text.lower()
        if not any(needle in lowered for needle in self._needles):
            return text
        spans: list[tuple[int, int]] = []
        for needle in self._needles:
            at = lowered.find(needle)
            while at >= 0:
                # The whole token the match sits in goes: an encoded key's first and last
                # characters also depend on the key, and the key's neighbours are no loss.
                begin, end = at, at + len(needle)
                while begin > 0 and text[begin - 1] in _TOKEN:
                    begin -= 1
                while end < len(text) and text[end] in _TOKEN:
                    end += 1
                spans.append((begin, end))
                at = lowered.find(needle, at + 1)
        out, last = [], 0
        for begin, end in sorted(spans):
            if end <= last:
                continue
            out.append(text[last : max(begin, last)])
            out.append("***")
            last = end
        out.append(text[last:])
        return "".join(out)

    def value(self, value: Any) -> Any:
        """A parsed JSON value with every string (keys too) passed through :meth:`text`."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


# -- abandoning a request that is on the wire ---------------------------------------------------
#
# requests cannot cancel a call in progress, and a read only ends at its timeout. The dispatcher
# sometimes must not wait that long (an end is queued behind a hung update of the same activity),
# so each request of a sender thread is described by an Inflight, and the connection class below
# records itself in it when urllib3 hands it the request. Inflight.abandon() then shuts the
# socket down from the dispatcher's thread: the blocked read returns at once with a connection
# error, and urllib3 discards that connection instead of reusing it.

_sending = threading.local()


class Inflight:
    """One request on the wire, which another thread may abandon."""

    __slots__ = ("abandoned", "connection", "timed_out")

    def __init__(self) -> None:
        self.abandoned = False
        self.timed_out = False
        self.connection: HTTPConnection | None = None

    def abandon(self, *, timed_out: bool = False) -> None:
        """Stop waiting for this request: close its socket (the sender sees an error).
        ``timed_out``: because it took longer than its timeouts allow in all."""
        self.timed_out = self.timed_out or timed_out
        self.abandoned = True
        connection = self.connection
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


class _TrackedConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        inflight = getattr(_sending, "inflight", None)
        if inflight is not None:
            inflight.connection = self
        return super().request(*args, **kwargs)


class _TrackedTLSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        inflight = getattr(_sending, "inflight", None)
        if inflight is not None:
            inflight.connection = self
        return super().request(*args, **kwargs)


class _Pool(HTTPConnectionPool):
    ConnectionCls = _TrackedConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedTLSConnection


class _Adapter(requests.adapters.HTTPAdapter):
    """requests' adapter with connections that an Inflight can reach."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(getattr(manager, "pool_classes_by_scheme", None), dict):
            manager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
        return manager


def _timed_out(
    exc: requests.RequestException, inflight: Inflight | None
) -> requests.RequestException:
    """A read the watchdog cut short is reported as the timeout it is."""
    if inflight is not None and inflight.timed_out:
        return requests.ReadTimeout("no complete answer within the request's timeouts")
    return exc


# -- reading an answer with a cap ----------------------------------------------------------------


class _TooLarge(Exception):
    pass


def _decoder(encoding: str) -> Any:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise ValueError(f"an answer in an encoding this client did not ask for ({encoding!r})")


def _read_capped(response: requests.Response, cap: int) -> bytes:
    """The answer's body, decompressed, at most ``cap`` bytes (``_TooLarge`` beyond)."""
    length = response.headers.get("Content-Length", "").strip()
    if length.isdigit() and int(length) > cap:
        raise _TooLarge
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    out = bytearray()
    raw = response.raw
    while True:
        chunk = raw.read(_READ_CHUNK, decode_content=False)
        if not chunk:
            break
        if decoder is None:
            out += chunk
        else:
            data = decoder.decompress(chunk, cap + 1 - len(out))
            out += data
            while decoder.unconsumed_tail and len(out) <= cap:
                out += decoder.decompress(decoder.unconsumed_tail, cap + 1 - len(out))
        if len(out) > cap:
            raise _TooLarge
    if decoder is not None:
        out += decoder.flush()
        if len(out) > cap:
            raise _TooLarge
    return bytes(out)


# -- endpoints -----------------------------------------------------------------------------------


def request_for(
    op: Operation,
    payload: Payload | None,
    *,
    activity_id: str | None = None,
    stream_key: str | None = None,
) -> RequestInfo:
    """The method, path and JSON body of ``op``'s request (the one table of endpoints)."""
    if op in (Operation.STREAM_PUT, Operation.STREAM_DELETE):
        if stream_key is None:
            raise ValidationError("stream_key", f"is required for {op.value}")
        key = validate_stream_key(stream_key)
        body = None if payload is None else payload.body(op)
        if op is Operation.STREAM_PUT and body is None:
            raise ValidationError("payload", "is required for stream_put")
        method = "PUT" if op is Operation.STREAM_PUT else "DELETE"
        return RequestInfo(method, f"/live-activity/stream/{key}", body)
    if payload is None:
        raise ValidationError("payload", f"is required for {op.value}")
    body = payload.body(op)
    if op is not Operation.START:
        body = {"activity_id": _check_activity_id(activity_id), **body}
    return RequestInfo("POST", f"/live-activity/{op.value}", body)


# -- settings helpers ---------------------------------------------------------------------------


def _resolve_api_key(api_key: str | None, base_url: str) -> str:
    import os

    if api_key is not None and not isinstance(api_key, str):
        raise ArgumentTypeError("api_key", "a str", api_key)
    key = (api_key if api_key is not None else os.environ.get(ENV_API_KEY, "")).strip()
    if not key and is_local_url(base_url):
        # A local emulator takes any key (unless started with one): try it without setup.
        key = EMULATOR_API_KEY
    if not key:
        raise ConfigurationError(
            "no ActivitySmith API key: pass api_key=... or set the "
            f"{ENV_API_KEY} environment variable (keys start with 'ask_')"
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
    import os

    if base_url is not None and not isinstance(base_url, str):
        raise ArgumentTypeError("base_url", "a str", base_url)
    return check_url("base_url", base_url or os.environ.get(ENV_BASE_URL, "") or DEFAULT_BASE_URL)


def _resolve_timeout(timeout: object) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValidationError("timeout", "must be seconds or a (connect, read) pair", timeout)
        return (
            check_seconds("timeout[0]", timeout[0], positive=True),
            check_seconds("timeout[1]", timeout[1], positive=True),
        )
    seconds = check_seconds("timeout", timeout, positive=True)
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


def _encode(body: Mapping[str, Any] | None) -> bytes | None:
    if body is None:
        return None
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode(
            "utf-8"
        )
    except (TypeError, ValueError) as exc:
        raise ValidationError("payload", f"cannot be sent as JSON ({exc})") from exc


def _parse_json(text: str) -> object:
    """The decoded JSON, or ``None`` when the body is empty or not JSON at all."""
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


# -- one attempt ---------------------------------------------------------------------------------


class Wire:
    """One account's HTTP: base URL, key, headers, one bounded pool of connections.

    Thread-safe: every thread that sends gets its own ``requests.Session``, all of them on the
    same connection pool (at most ``connections`` kept open). A ``session`` handed in is used
    as it is, by whichever thread sends, and left open by :meth:`close`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        connections: int = 4,
        session: requests.Session | None = None,
        user_agent_suffix: str | None = None,
    ) -> None:
        self.base_url = _resolve_base_url(base_url)
        self._auth = _BearerAuth(_resolve_api_key(api_key, self.base_url))
        self._redactor = Redactor(self._auth._key)
        self._session = session
        self._adapter = _Adapter(pool_connections=1, pool_maxsize=connections, max_retries=0)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        # Only a User-Agent identifies us. The official SDK's X-ActivitySmith-SDK header names
        # that SDK and its version; sending it from a different library would misreport which
        # client made the request, and no source says the server needs it.
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            # This client decompresses answers itself (with a cap), so it asks for none.
            "Accept-Encoding": "identity",
            "User-Agent": _user_agent(user_agent_suffix),
        }
        self._api_hint = self._make_api_hint()

    def __repr__(self) -> str:
        return f"<Wire {self.base_url}>"

    def _make_api_hint(self) -> str | None:
        path = urlsplit(self.base_url).path.rstrip("/")
        if path.endswith("/api"):
            return None
        return f"the base URL has no /api path: did you mean {self.base_url}/api?"

    def redact(self, text: str) -> str:
        """``text`` with any copy of the key blanked."""
        return self._redactor.text(text)

    def _thread_session(self) -> requests.Session:
        if self._session is not None:
            return self._session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = True
            session.mount("http://", self._adapter)
            session.mount("https://", self._adapter)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the connections this wire opened (a session handed in stays open)."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._adapter.close()

    def send(
        self,
        op: Operation,
        request: RequestInfo,
        *,
        timeout: tuple[float, float],
        attempt: int = 1,
        inflight: Inflight | None = None,
        budget: float | None = None,
    ) -> Result:
        """One attempt of ``request``; a Result, or the library error for what happened.

        ``budget`` bounds the whole attempt, answer included (requests bounds each read
        only, so an answer dripped a byte at a time could take as long as the server likes):
        past it, the request is abandoned and reported as timed out.
        """
        data = _encode(request.body)
        watchdog = None
        if budget is not None:
            inflight = inflight or Inflight()
            watchdog = threading.Timer(budget, inflight.abandon, kwargs={"timed_out": True})
            watchdog.daemon = True
            watchdog.start()
        try:
            return self._send(
                op, request, data=data, timeout=timeout, attempt=attempt, inflight=inflight
            )
        finally:
            if watchdog is not None:
                watchdog.cancel()

    def _send(
        self,
        op: Operation,
        request: RequestInfo,
        *,
        data: bytes | None,
        timeout: tuple[float, float],
        attempt: int,
        inflight: Inflight | None,
    ) -> Result:
        _sending.inflight = inflight
        try:
            response = self._thread_session().request(
                request.method,
                self.base_url + request.path,
                data=data,
                headers=self._headers,
                auth=self._auth,
                timeout=timeout,
                # A redirect would turn a POST into a GET without its body; the API never
                # redirects, so a 3xx is reported as an error instead of being followed.
                allow_redirects=False,
                stream=True,
            )
        except requests.RequestException as exc:
            logger.debug("%s -> %s (attempt %d)", request, type(exc).__name__, attempt)
            raise transport_error(op, _timed_out(exc, inflight), request) from exc
        finally:
            _sending.inflight = None
        try:
            try:
                content = _read_capped(response, MAX_ANSWER)
            except _TooLarge:
                raise MalformedResponseError(
                    f"{request}: HTTP {response.status_code} with an answer larger than "
                    f"{MAX_ANSWER // 1024} KiB; it was not read",
                    status=response.status_code,
                    body="",
                    request=request,
                ) from None
            except ValueError as exc:
                raise MalformedResponseError(
                    f"{request}: HTTP {response.status_code} with {exc}",
                    status=response.status_code,
                    body="",
                    request=request,
                ) from None
            except (requests.RequestException, OSError, zlib.error) as exc:
                wrapped = _timed_out(requests.ConnectionError(str(exc)), inflight)
                raise transport_error(op, wrapped, request) from exc
            except Exception as exc:  # urllib3's own read errors (ProtocolError...)
                wrapped = _timed_out(requests.ConnectionError(type(exc).__name__), inflight)
                raise transport_error(op, wrapped, request) from exc
        finally:
            response.close()
        logger.debug("%s -> %d (attempt %d)", request, response.status_code, attempt)
        return self._interpret(op, request, response, content, attempt)

    def _excerpt(self, text: str, limit: int = _EXCERPT_CHARS) -> str:
        text = " ".join(text.split())
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def _interpret(
        self,
        op: Operation,
        request: RequestInfo,
        response: requests.Response,
        content: bytes,
        attempt: int,
    ) -> Result:
        status = response.status_code
        # Decode, then redact: whatever the server echoes (an error message, a body) may end up
        # in an exception, a log line or a Result, and none of them may show the key.
        # JSON is parsed from the text as sent (its escapes decoded by the parser), and each of
        # its strings is redacted; the text shown in excerpts is redacted as a whole.
        raw_text = content.decode("utf-8", "replace")
        parsed = self._redactor.value(_parse_json(raw_text))
        text = self._redactor.text(raw_text)
        if 200 <= status < 300:
            if not isinstance(parsed, dict):
                what = "an empty body" if not text.strip() else "a body that is not a JSON object"
                raise MalformedResponseError(
                    f"{request}: HTTP {status} with {what}: {self._excerpt(text)!r}",
                    status=status,
                    body=self._excerpt(text, _KEPT_BODY_CHARS),
                    request=request,
                )
            return self._result(op, request, status, parsed, attempt)
        body = parsed if isinstance(parsed, dict) else None
        if op is Operation.STREAM_DELETE and status == 404 and attempt > 1:
            # The earlier attempt most likely ended the stream and only its answer was lost.
            logger.debug("%s -> 404 on a retry: counted as ended", request)
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
        # The API never answers 405 and its 404s are JSON objects; a base URL without the /api
        # path reaches the web site instead, which does both.
        looks_like_the_site = status == 405 or (status == 404 and body is None)
        hint = self._api_hint if looks_like_the_site else None
        raise error_for_status(
            status,
            body,
            request=request,
            retry_after=retry_after,
            text=None if body is not None else (self._excerpt(text) or None),
            hint=hint,
        )

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
            shown = self._excerpt(json.dumps(raw))
            raise MalformedResponseError(
                f"{request}: HTTP {status} answer has no activity_id, so the activity cannot be "
                f"updated or ended: {shown!r}",
                status=status,
                body=self._excerpt(json.dumps(raw), _KEPT_BODY_CHARS),
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


# -- the public client ---------------------------------------------------------------------------


class Client:
    """A synchronous client for the ActivitySmith Live Activity endpoints.

    ``api_key`` falls back to ``$ACTIVITYSMITH_API_KEY`` and ``base_url`` to
    ``$ACTIVITYSMITH_BASE_URL``, then to the public API. ``timeout`` is seconds, or a
    ``(connect, read)`` pair, for every request. ``sleep`` and ``clock`` are what retries wait
    with and measure ``max_elapsed`` and deadlines on; tests inject fakes. ``on_retry_after``
    is told of every wait a 429 named (it concerns the whole account). A ``session`` passed
    in is used as is and left open by :meth:`close`.

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
        self._timeout = _resolve_timeout(timeout)
        self._wire = Wire(
            api_key, base_url=base_url, session=session, user_agent_suffix=user_agent_suffix
        )
        self._retry = retry if retry is not None else RetryPolicy()
        self._sleep = sleep
        self._clock = clock
        self._on_retry_after = on_retry_after

    @property
    def base_url(self) -> str:
        """The API root every path is appended to, without a trailing slash."""
        return self._wire.base_url

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy applied to every call."""
        return self._retry

    def __repr__(self) -> str:
        return f"Client(base_url={self.base_url!r})"

    def close(self) -> None:
        """Close the connections this client opened (a session handed in stays open)."""
        self._wire.close()

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

    def send(
        self,
        op: Operation | str,
        payload: Payload | ContentState | None,
        *,
        activity_id: str | None = None,
        stream_key: str | None = None,
        deadline: float | None = None,
    ) -> Result:
        """Send ``op`` (start, update, end, stream_put, stream_delete) with retries.

        ``activity_id`` is needed by update and end, ``stream_key`` by the stream operations.
        """
        op = Operation(op)
        request = request_for(
            op,
            None if payload is None else _payload_of(payload),
            activity_id=activity_id,
            stream_key=stream_key,
        )
        if deadline is not None:
            deadline = _check_deadline(deadline)
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
            timeout = self._timeout_for(request, deadline)
            # The whole attempt, dripped answers included, within its timeouts (and the
            # deadline, which _timeout_for has already applied to them).
            budget = sum(timeout)
            if deadline is not None:
                budget = min(budget, deadline - self._clock())
            return self._wire.send(op, request, timeout=timeout, attempt=attempts, budget=budget)

        return retrying(attempt)

    def start(self, payload: Payload | ContentState, *, deadline: float | None = None) -> Result:
        """Start a Live Activity (``POST /live-activity/start``); the result has its id.

        Not idempotent: see the retry table in ``_retry``. An uncertain outcome raises
        :class:`StartOutcomeUnknownError` rather than risking a second activity.
        """
        return self.send(Operation.START, _payload_of(payload), deadline=deadline)

    def update(
        self,
        activity_id: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """Update a started activity (``POST /live-activity/update``)."""
        return self.send(
            Operation.UPDATE, _payload_of(payload), activity_id=activity_id, deadline=deadline
        )

    def end(
        self,
        activity_id: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """End a started activity with its final state (``POST /live-activity/end``)."""
        return self.send(
            Operation.END, _payload_of(payload), activity_id=activity_id, deadline=deadline
        )

    def put_stream(
        self,
        stream_key: str,
        payload: Payload | ContentState,
        *,
        deadline: float | None = None,
    ) -> Result:
        """Start or update the activity of a stream (``PUT /live-activity/stream/{key}``)."""
        return self.send(
            Operation.STREAM_PUT, _payload_of(payload), stream_key=stream_key, deadline=deadline
        )

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
        return self.send(
            Operation.STREAM_DELETE,
            None if payload is None else _payload_of(payload),
            stream_key=stream_key,
            deadline=deadline,
        )

    def _timeout_for(self, request: RequestInfo, deadline: float | None) -> tuple[float, float]:
        if deadline is None:
            return self._timeout
        remaining = deadline - self._clock()
        if remaining <= 0:
            # Nothing is sent, so even a start can be retried safely by whoever called us.
            raise TransportError(f"{request}: the deadline passed before the request was sent")
        connect, read = self._timeout
        return (min(connect, remaining), min(read, remaining))


def _check_deadline(deadline: object) -> float:
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
        raise ArgumentTypeError("deadline", "a time on the client's clock (float)", deadline)
    if math.isnan(deadline):
        raise ValidationError("deadline", "must not be NaN", deadline)
    return float(deadline)
