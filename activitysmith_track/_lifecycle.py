"""What ends an activity when its own code does not: garbage collection, exit, fork, signals.

* A handle that is dropped without being ended is ended from what its lane last showed (the
  abandoned look, or a hand-on for a pipeline step) by a finalizer.
* At interpreter exit every activity still open is ended the same way, and one bounded flush
  (the longest ``flush_timeout`` among them) delivers every end that is still on its way.
* A forked child forgets its parent's open activities: it never ends them.
* SIGTERM and SIGHUP, while an activity is open in the main thread, end every open activity
  as stopped ("Stopped by SIGTERM at upload archive"), wait a short while for those ends to
  arrive, then let the signal have its usual effect: the process still dies of it. An
  application's own handler, installed before, is called instead (it decides what happens;
  the activities then end as their blocks exit, naming the signal); one installed after wins
  and is left alone. ``Settings(signals=False)`` (``ACTIVITYSMITH_TRACK_SIGNALS=0``) leaves
  signals alone.

The handle module registers its lanes here; this module never imports it.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from activitysmith_track._dispatch import Lane, dispatchers, set_default_observer, shutdown_all

if TYPE_CHECKING:
    from activitysmith_track._client import Result
    from activitysmith_track._config import Settings
    from activitysmith_track._model import Payload

__all__ = [
    "SIGNAL_FLUSH",
    "closed",
    "flush",
    "opened",
    "recent_signal",
    "stop_all",
]

logger = logging.getLogger("activitysmith_track")

# The longest a stopping signal waits for the ends it sends (also bounded by flush_timeout):
# supervisors give a stopped job a grace period (Docker 10 s, Kubernetes 30 s) before SIGKILL.
SIGNAL_FLUSH = 5.0

# How long exit waits for this process's cleanup of orphans left by earlier runs, at least.
SWEEP_GRACE = 5.0
_sweeps: list[threading.Thread] = []

# The lanes of started activities that have not ended, and their finalizers, by id(lane).
# No lock: a finalizer may run inside garbage collection on a thread that holds any lock, so
# only single dict operations (atomic) touch these.
_open: dict[int, Lane] = {}
_finalizers: dict[int, weakref.finalize[Any, Any]] = {}

_HANDLED: tuple[signal.Signals, ...] = tuple(
    sig for sig in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if sig
)
_previous: dict[int, Any] = {}  # the handler each signal had before ours
# The open activities started in the main thread: our handlers are installed meanwhile. Left
# installed when the last one ends on another thread (only the main thread may change them);
# with nothing open they only pass the signal on.
_main_lanes: set[int] = set()
_last_signal: tuple[str, float] | None = None  # a signal an application's handler got


def _abandon(lane: Lane) -> None:
    """The finalizer of a dropped handle: end its activity from what its lane last showed."""
    _finalizers.pop(id(lane), None)
    _open.pop(id(lane), None)
    _main_lanes.discard(id(lane))
    dispatcher = lane.dispatcher
    if dispatcher is not None:
        try:
            dispatcher.abandon(lane)
        except Exception:  # a finalizer has no caller to tell
            logger.debug("could not end a dropped Live Activity", exc_info=True)


def opened(handle: object, lane: Lane, *, signals: bool) -> None:
    """An activity started: end it if ``handle`` is dropped, at exit, or on SIGTERM/SIGHUP."""
    finalizer = weakref.finalize(handle, _abandon, lane)
    finalizer.atexit = False  # _at_exit ends it, before the flush
    _finalizers[id(lane)] = finalizer
    _open[id(lane)] = lane
    if signals and threading.current_thread() is threading.main_thread():
        if not _main_lanes:
            _install()
        _main_lanes.add(id(lane))


def closed(lane: Lane) -> None:
    """The activity's own code ended it: nothing more to do for it here."""
    finalizer = _finalizers.pop(id(lane), None)
    if finalizer is not None:
        finalizer.detach()
    _open.pop(id(lane), None)
    if id(lane) in _main_lanes:
        _main_lanes.discard(id(lane))
        if not _main_lanes and threading.current_thread() is threading.main_thread():
            _uninstall()


def _at_exit() -> None:
    # End every activity that is still open, then give their ends flush_timeout to arrive.
    _end_open(stopped_by=None)
    started = time.monotonic()
    longest = max((d.exit_timeout() for d in dispatchers()), default=0.0)
    left = shutdown_all()
    if left:
        logger.warning("%d Live Activity end(s) could not be delivered before exit", left)
    # A short job's own cleanup of orphans (ended by this run) gets the rest of the bound.
    bound = max(longest, SWEEP_GRACE) - (time.monotonic() - started)
    for sweep in list(_sweeps):
        sweep.join(max(0.0, bound - (time.monotonic() - started)))


def _end_open(*, stopped_by: str | None) -> None:
    pid = os.getpid()
    for key, lane in list(_open.items()):
        if lane.pid != pid:
            continue
        _open.pop(key, None)
        _main_lanes.discard(key)
        finalizer = _finalizers.pop(key, None)
        if finalizer is not None:
            finalizer.detach()
        dispatcher = lane.dispatcher
        if dispatcher is not None:
            dispatcher.abandon(lane, stopped_by=stopped_by)


atexit.register(_at_exit)


def _after_fork_in_child() -> None:
    # The parent's activities are the parent's: a child never ends them. Nor does it keep
    # the parent's signal handlers (a pool worker must die of SIGTERM as promptly as if this
    # library were not there); its own first activity installs them again.
    _open.clear()
    _main_lanes.clear()
    _sweeps.clear()
    if threading.current_thread() is threading.main_thread():
        _uninstall()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- signals --------------------------------------------------------------------------------------


def _install() -> None:
    for sig in _HANDLED:
        try:
            current = signal.getsignal(sig)
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            continue
        if current is _on_signal or current is signal.SIG_IGN or current is None:
            # Ours already; ignored on purpose (nohup); or set from C, where Python cannot
            # chain it: each is left as it is.
            continue
        try:
            signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # pragma: no cover
            continue
        _previous[sig] = current


def _uninstall() -> None:
    for sig in list(_previous):
        previous = _previous.pop(sig)
        # A handler installed after ours wins: it is left alone.
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous)


def recent_signal(within: float = 60.0) -> str | None:
    """The name of the stopping signal an application's handler got lately, if any: a block
    that exits because of it (SystemExit, KeyboardInterrupt) ends as stopped by it."""
    last = _last_signal
    if last is None or time.monotonic() - last[1] > within:
        return None
    return last[0]


def stop_all(name: str, *, bound: float = SIGNAL_FLUSH) -> int:
    """End every open activity of this process as stopped by ``name`` and wait at most
    ``bound`` seconds (and the longest flush_timeout) for the ends; return how many are left."""
    _end_open(stopped_by=name)
    every = dispatchers()
    longest = max((d.exit_timeout() for d in every), default=0.0)
    deadline = time.monotonic() + min(bound, longest)
    left = 0
    for dispatcher in every:
        left += dispatcher.flush(max(0.0, deadline - time.monotonic()))
    return left


def _on_signal(signum: int, frame: Any) -> None:
    global _last_signal
    name = signal.Signals(signum).name
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        # The application's own handler decides what the signal does; our blocks end as they
        # exit, naming the signal.
        _last_signal = (name, time.monotonic())
        handler: Callable[[int, Any], Any] = previous
        handler(signum, frame)
        return
    try:
        left = stop_all(name)
        if left:
            logger.warning("%s: %d Live Activity end(s) could not be delivered in time", name, left)
    except Exception:  # the signal must still have its effect
        logger.debug("could not end the open Live Activities on %s", name, exc_info=True)
    # Die of the signal, as the process would have without us.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def flush(timeout: float | None = None) -> bool:
    """Wait until every activity that ended has its end delivered, whatever its account.

    ``timeout`` defaults to the longest ``flush_timeout`` among those still on their way.
    Returns False when some were still on their way at the timeout (they go on in the
    background). Useful at the end of a notebook cell, in tests, or before ``os._exit``.
    """
    if timeout is not None:
        from activitysmith_track._checks import check_seconds

        timeout = check_seconds("timeout", timeout)
    # Not an exit: what is still on its way when this returns goes on in the background.
    return shutdown_all(timeout, exiting=False) == 0


# -- the ledger of open activities ----------------------------------------------------------------


def _note_delivery(event: str, lane: Lane, payload: Payload | None, result: Result | None) -> None:
    """Keep the local ledger (see ``_ledger``) in step with what was delivered, on the
    sender thread: an activity is noted when it starts, its last state as it is sent, and it
    is dropped once its end arrived; an activity whose end never arrived stays, as an orphan
    that a later run or ``activitysmith-track cleanup`` ends."""
    settings = lane.settings
    if settings is None or not settings.ledger:
        return
    from activitysmith_track import _ledger

    stream_key = lane.state.target.stream_key
    if event == "starting" and lane.ticket is None:
        lane.ticket = _ledger.record_start(
            settings, title=lane.label, stream_key=stream_key, state=payload
        )
        _sweep(settings)
    elif event == "started":
        if lane.ticket is None and result is not None and result.activity_id:
            lane.ticket = _ledger.record_start(
                settings, title=lane.label, activity_id=result.activity_id, state=payload
            )
            _sweep(settings)
        elif lane.ticket is not None and payload is not None:
            _ledger.record_state(lane.ticket, payload, activity_id=lane.activity_id)
    elif event == "sent" and lane.ticket is not None and payload is not None:
        _ledger.record_state(lane.ticket, payload, activity_id=lane.activity_id)
    elif event == "ended" and lane.ticket is not None:
        _ledger.record_end(lane.ticket)
        lane.ticket = None


def _sweep(settings: Settings) -> None:
    from activitysmith_track import _ledger

    thread = _ledger.sweep_in_background(settings)
    if thread is not None:
        _sweeps.append(thread)


set_default_observer(_note_delivery)
