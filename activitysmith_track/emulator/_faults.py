"""Scripted failures: what the emulator does instead of (or around) a normal answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Literal

import attrs

from activitysmith_track.emulator._rules import default_error_body, limit_reached_body

__all__ = ["ANSWERING_KINDS", "Fault", "FaultKind", "FaultQueue"]

FaultKind = Literal[
    "status",
    "rate_limited",
    "limit_reached",
    "hang",
    "drop",
    "process_then_drop",
    "malformed",
    "delay",
]

#: Faults that answer on their own, without the request being processed.
ANSWERING_KINDS = frozenset({"status", "rate_limited", "limit_reached", "malformed"})


def _headers(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (value or {}).items())


def _retry_after_text(value: str | float) -> str:
    if isinstance(value, str):
        return value
    # Whole seconds go out as an integer, the form the service documents; fractions are kept
    # so tests can use tiny waits.
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_status(_inst: object, _attr: object, value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise ValueError(f"status must be between 100 and 599, not {value}")


def _check_seconds(_inst: object, _attr: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"seconds must be >= 0, not {value}")


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted failure; build it with the constructors, e.g. ``Fault.status(503)``.

    Answering faults carry the exact status, body text and headers they send, so a test can
    read back what the client was given.
    """

    kind: FaultKind
    code: int | None = attrs.field(default=None, validator=_check_status)
    body: str | None = None
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float | None = attrs.field(default=None, validator=_check_seconds)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with ``code`` and ``body`` (by default the documented error body for it)."""
        payload = dict(body) if body is not None else default_error_body(code)
        return cls(kind="status", code=code, body=json.dumps(payload), headers=_headers(headers))

    @classmethod
    def rate_limited(cls, retry_after: str | float | None = None) -> Fault:
        """The request-rate 429, with a ``Retry-After`` header when ``retry_after`` is given."""
        headers = () if retry_after is None else (("Retry-After", _retry_after_text(retry_after)),)
        return cls(
            kind="rate_limited",
            code=429,
            body=json.dumps(default_error_body(429)),
            headers=headers,
        )

    @classmethod
    def limit_reached(cls, limit: int = 4, active: int = 4) -> Fault:
        """The capacity 429: the device already shows as many activities as it may."""
        return cls(
            kind="limit_reached", code=429, body=json.dumps(limit_reached_body(limit, active))
        )

    @classmethod
    def hang(cls, seconds: float | None = None) -> Fault:
        """Read the request, never answer (until ``seconds`` pass or the emulator stops), close."""
        return cls(kind="hang", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Reset the connection without reading or processing the request."""
        return cls(kind="drop")

    @classmethod
    def process_then_drop(cls) -> Fault:
        """Process the request fully (state changes), then reset the connection unanswered."""
        return cls(kind="process_then_drop")

    @classmethod
    def malformed(
        cls,
        body: str = "<html>oops</html>",
        status: int = 200,
        content_type: str = "text/html",
    ) -> Fault:
        """Answer with a body that is not the JSON the contract promises."""
        return cls(kind="malformed", code=status, body=body, content_type=content_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds``."""
        return cls(kind="delay", seconds=seconds)


@attrs.define
class _Entry:
    fault: Fault
    path: str | None
    remaining: int


class FaultQueue:
    """Faults waiting for matching requests; the oldest matching entry is used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(self, fault: Fault, *, path: str | None, times: int) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        with self._lock:
            self._entries.append(_Entry(fault, path, times))

    def take(self, path: str) -> Fault | None:
        """The fault for a request to ``path`` (without the /api prefix), consuming one use."""
        with self._lock:
            for entry in self._entries:
                if entry.path is None or path.startswith(entry.path):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._entries.remove(entry)
                    return entry.fault
        return None

    def pending(self) -> list[tuple[Fault, str | None, int]]:
        with self._lock:
            return [(e.fault, e.path, e.remaining) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
