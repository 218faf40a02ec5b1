"""The library's own threads never take the process's signals.

A signal sent to a process (``kill``, a supervisor's SIGTERM, Ctrl-C) is delivered by the
kernel to any one of its threads that does not block it. Python runs its handlers only in the
main thread, and a main thread that waits in a blocking call (``time.sleep``, the asyncio
selector, ``Popen.wait``) is woken only if the signal landed on it. Landed on one of our sender
threads instead, a SIGTERM or Ctrl-C would wait unseen until the job's sleep ended (measured:
about one SIGTERM in 65 to an asyncio job, under load).

So every thread this library starts blocks the asynchronous signals from its first
instruction: it is started while its creator blocks them (a new thread inherits the mask),
and the creator's own mask is put back at once, so a signal that arrives meanwhile is only
held until then, never lost. Faults that a thread raises on itself (SIGSEGV and the like) are
left unblocked, for ``faulthandler`` and the kernel.
"""

from __future__ import annotations

import signal
import threading

# Also on the path of `activitysmith-track run` before the command starts: no typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["QUIET", "start_daemon"]

# Raised by a thread on itself: blocking them would not stop them, only hide them.
_FAULTS = {
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGABRT", "SIGSYS")
    if hasattr(signal, name)
}
QUIET: frozenset[int] = (
    frozenset(int(sig) for sig in signal.valid_signals() if sig not in _FAULTS)
    if hasattr(signal, "pthread_sigmask")
    else frozenset()
)


def start_daemon(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` that blocks every signal in QUIET."""
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    if not QUIET:  # pragma: no cover - no POSIX signal masks (Windows)
        thread.start()
        return thread
    before = signal.pthread_sigmask(signal.SIG_BLOCK, QUIET)
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    return thread
