"""The exception hierarchy of activitysmith-track.

Everything the library raises on purpose derives from :class:`ActivitySmithTrackError`::

    ActivitySmithTrackError
    ├── ConfigurationError (ValueError)      no API key, a bad base URL, bad settings
    ├── ValidationError (ValueError)         a value the API would refuse; names field and rule
    │   └── ArgumentTypeError (TypeError)    a value of the wrong Python type
    ├── UsageError (RuntimeError)            the handle used out of order
    │   └── ActivityEndedError               an update after the activity ended
    ├── TransportError                       no usable answer: refused, reset, timed out
    │   └── StartOutcomeUnknownError         a start may or may not have reached the server
    ├── MalformedResponseError               an answer that is not the JSON the contract promises
    └── APIError                             the server answered with an error status
        ├── BadRequestError          400
        ├── AuthenticationError      401
        ├── BillingBlockedError      402
        ├── ForbiddenError           403
        ├── NotFoundError            404
        ├── NoRecipientsError        422 (404 in older deployments)
        ├── RateLimitedError         429 rate_limited: retried after Retry-After
        ├── LiveActivityLimitError   429 with limit/active: the device's activity limit is reached
        └── ServerError              5xx

Exceptions carry the request they answered (method, path, body) but never its headers,
so the API key cannot leak through a message, a repr or a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # typing is not imported at run time (checkers treat this as True)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "APIError",
    "ActivityEndedError",
    "ActivitySmithTrackError",
    "ArgumentTypeError",
    "AuthenticationError",
    "BadRequestError",
    "BillingBlockedError",
    "ConfigurationError",
    "ForbiddenError",
    "LiveActivityLimitError",
    "MalformedResponseError",
    "NoRecipientsError",
    "NotFoundError",
    "RateLimitedError",
    "RequestInfo",
    "ServerError",
    "StartOutcomeUnknownError",
    "TransportError",
    "UsageError",
    "ValidationError",
    "error_for_status",
]


class RequestInfo:
    """What was sent, as far as errors and logs may tell: method, path and JSON body.

    Headers are deliberately absent: the API key lives there.
    """

    __slots__ = ("body", "method", "path")

    def __init__(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> None:
        self.method = method
        self.path = path
        self.body = body

    def __repr__(self) -> str:
        return f"RequestInfo(method={self.method!r}, path={self.path!r})"

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class ActivitySmithTrackError(Exception):
    """The root of every error activitysmith-track raises on purpose."""


class ConfigurationError(ActivitySmithTrackError, ValueError):
    """The library cannot work as configured (for example, no API key and no emulator)."""


class ValidationError(ActivitySmithTrackError, ValueError):
    """A value breaks one of the API's rules; raised before anything is sent.

    ``field`` names the offending field (dotted for nested ones, like ``metrics[2].label``)
    and ``rule`` says what it must satisfy.
    """

    def __init__(self, field: str, rule: str, value: object = None) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field} {rule}")


class ArgumentTypeError(ValidationError, TypeError):
    """A value of the wrong Python type, e.g. ``steps="3"``."""

    def __init__(self, field: str, expected: str, value: object) -> None:
        self.expected = expected
        super().__init__(field, f"must be {expected}, not {type(value).__name__}", value)


class UsageError(ActivitySmithTrackError, RuntimeError):
    """The activity handle was used in a way its lifecycle does not allow."""


class ActivityEndedError(UsageError):
    """The activity already ended; it cannot be updated or ended again."""


class TransportError(ActivitySmithTrackError):
    """No usable answer arrived: the connection was refused, reset or timed out."""

    def __init__(self, message: str, *, request: RequestInfo | None = None) -> None:
        self.request = request
        super().__init__(message)


class StartOutcomeUnknownError(TransportError):
    """A start may have reached the server, so it was not retried (a retry could duplicate it)."""


class MalformedResponseError(ActivitySmithTrackError):
    """The server answered with something other than the JSON the contract promises."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        body: str,
        request: RequestInfo | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.request = request
        super().__init__(message)


class APIError(ActivitySmithTrackError):
    """The server answered with an error status.

    ``status`` is the HTTP status, ``error`` and ``message`` the server's own fields (when its
    body had them), ``body`` the parsed JSON body (or ``None``) and ``request`` what was sent.
    ``hint`` is our own guess at the cause, when there is one (``did you mean .../api?``).
    """

    def __init__(
        self,
        status: int,
        *,
        error: str | None = None,
        message: str | None = None,
        body: Mapping[str, Any] | None = None,
        request: RequestInfo | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.body = body
        self.request = request
        self.hint = hint
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts = [f"HTTP {self.status}"]
        if self.request is not None:
            parts.append(f"from {self.request}")
        text = ": ".join(p for p in (self.error, self.message) if p)
        described = " ".join(parts) + (f": {text}" if text else "")
        return f"{described}; {self.hint}" if self.hint else described


class BadRequestError(APIError):
    """400: the server refused the request's content."""


class AuthenticationError(APIError):
    """401: the API key is missing or not valid."""


class BillingBlockedError(APIError):
    """402: the account's trial or billing blocks sending (see ``upgrade_url`` in ``body``)."""


class ForbiddenError(APIError):
    """403: the key may not do this (channel scope, or an activity of another account)."""


class NotFoundError(APIError):
    """404: no such stream or activity."""


class NoRecipientsError(APIError):
    """No device matched the target (422; older deployments answer 404)."""


class RateLimitedError(APIError):
    """429 ``rate_limited``: too many requests; ``retry_after`` is the server's wait in seconds."""

    def __init__(self, status: int, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(status, **kwargs)


class LiveActivityLimitError(APIError):
    """429 with ``limit``/``active``: the device already shows as many activities as it may.

    Not retried: it clears only when another activity ends.
    """

    def __init__(
        self,
        status: int,
        *,
        limit: int | None = None,
        active: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.limit = limit
        self.active = active
        super().__init__(status, **kwargs)


class ServerError(APIError):
    """5xx: the server failed."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingBlockedError,
    403: ForbiddenError,
    404: NotFoundError,
    422: NoRecipientsError,
}


def error_for_status(
    status: int,
    body: Mapping[str, Any] | None,
    *,
    request: RequestInfo | None = None,
    retry_after: float | None = None,
    text: str | None = None,
    hint: str | None = None,
) -> APIError:
    """Build the error for an HTTP error answer, telling the two kinds of 429 apart.

    ``text`` is a short excerpt of a body that was not a JSON object (an HTML error page from a
    proxy, say); it becomes the message so the error still says what came back.
    """
    error = body.get("error") if body is not None else None
    message = body.get("message") if body is not None else text
    common: dict[str, Any] = {
        "error": error if isinstance(error, str) else None,
        "message": message if isinstance(message, str) else None,
        "body": body,
        "request": request,
        "hint": hint,
    }
    if status == 429:
        if body is not None and "limit" in body and "active" in body:
            limit, active = body.get("limit"), body.get("active")
            return LiveActivityLimitError(
                status,
                limit=limit if isinstance(limit, int) else None,
                active=active if isinstance(active, int) else None,
                **common,
            )
        return RateLimitedError(status, retry_after=retry_after, **common)
    if status == 404 and common["error"] == "No recipients found":
        return NoRecipientsError(status, **common)
    if status >= 500:
        return ServerError(status, **common)
    return _BY_STATUS.get(status, APIError)(status, **common)
