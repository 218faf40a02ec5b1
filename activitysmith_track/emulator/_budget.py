"""The account's request budget: how many Live Activity requests a key may send per window.

The sources disagree on the figure (API contract, section 6): the public Rate Limits page
gives one account budget of 60 requests a minute shared by push, stream PUT, stream DELETE
and metrics (an older copy listed start, update and end instead), while the generated SDK
docs give Live Activities 300 a minute per account. The emulator defaults to the public
page's 60, the stricter figure, so that a job that passes locally passes against the
service; ``Emulator(requests_per_minute=...)`` picks another.

**Assumption:** no source says how the window moves. The emulator uses a fixed window that
opens with the first request and closes ``window`` seconds later (the common counter with an
expiry), counts every authorized request to a Live Activity endpoint whatever its answer,
and keys the count by API key. The ``RateLimit`` and ``RateLimit-Policy`` headers follow the
IETF draft the SDK docs name (``r`` remaining and ``t`` seconds to reset; ``q`` quota and
``w`` window), and a refused request gets ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import hashlib
import math
import threading

import attrs

__all__ = ["POLICY", "RequestBudget", "Spend"]

#: The policy's name in the ``RateLimit`` headers.
POLICY = "live-activities"


@attrs.frozen
class Spend:
    """The outcome of spending one request: allowed or not, and the headers to send."""

    allowed: bool
    remaining: int
    reset_in: float
    #: Whole seconds to wait when refused (the ``Retry-After`` value), else ``None``.
    retry_after: int | None
    headers: tuple[tuple[str, str], ...]


@attrs.define
class _Window:
    opened: float
    count: int


class RequestBudget:
    """``limit`` requests per ``window`` seconds for each account (API key)."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        if limit < 1:
            raise ValueError(f"requests_per_minute must be >= 1, not {limit}")
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def spend(self, key: str, now: float) -> Spend:
        """Count one request of ``key`` at ``now`` unless its window is used up."""
        # Only a digest is kept, so the key never sits in the emulator's memory in clear.
        account = hashlib.sha256(key.encode()).hexdigest()
        with self._lock:
            window = self._windows.get(account)
            if window is None or now >= window.opened + self.window or now < window.opened:
                window = self._windows[account] = _Window(opened=now, count=0)
            allowed = window.count < self.limit
            if allowed:
                window.count += 1
            remaining = self.limit - window.count
            reset_in = max(0.0, window.opened + self.window - now)
        seconds = max(1, math.ceil(reset_in))
        headers = [
            ("RateLimit-Policy", f'"{POLICY}";q={self.limit};w={self.window:g}'),
            ("RateLimit", f'"{POLICY}";r={remaining};t={seconds}'),
        ]
        if not allowed:
            headers.append(("Retry-After", str(seconds)))
        return Spend(allowed, remaining, reset_in, None if allowed else seconds, tuple(headers))

    def reset(self) -> None:
        with self._lock:
            self._windows.clear()
