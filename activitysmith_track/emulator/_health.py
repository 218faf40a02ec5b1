"""``GET /health``: the service's unauthenticated status answer (API contract, section 9).

The contract gives the shape, ``{ok, service, timestamp, checks: [{name, status,
duration_ms}]}``, and 503 when degraded. **Assumption:** no source names the checks or their
status words; the emulator reports ``state`` (its memory answers) and ``delivery`` (pushes
would go out), each ``"ok"`` or ``"error"``. :meth:`Health.degrade` turns a check to
``"error"`` so a test can see what a client (a "check my setup" command) does with a 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CHECKS", "SERVICE", "Health"]

SERVICE = "activitysmith-emulator"
CHECKS = ("state", "delivery")


class Health:
    """Which checks fail, and the answer to ``GET /health``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failing: set[str] = set()

    def degrade(self, check: str) -> None:
        if check not in CHECKS:
            raise ValueError(f"check must be one of {', '.join(CHECKS)}, not {check!r}")
        with self._lock:
            self._failing.add(check)

    def restore(self) -> None:
        with self._lock:
            self._failing.clear()

    def answer(self, probe_state: Callable[[], object], timestamp: str) -> tuple[int, Any]:
        """The status and body; ``probe_state`` is timed as the ``state`` check."""
        with self._lock:
            failing = set(self._failing)
        checks = []
        for name in CHECKS:
            began = time.perf_counter()
            if name == "state":
                probe_state()
            elapsed_ms = round((time.perf_counter() - began) * 1000, 3)
            status = "error" if name in failing else "ok"
            checks.append({"name": name, "status": status, "duration_ms": elapsed_ms})
        ok = not failing
        body = {"ok": ok, "service": SERVICE, "timestamp": timestamp, "checks": checks}
        return (200 if ok else 503), body
