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
* Python runs a handler only when the main thread next runs Python code, so a main thread
  that waits in a call the signal did not interrupt (it landed on another thread, or just
  before the call began) or computes in C would not see it until that call returns: a
  stopped job would run on until its supervisor kills it. A watcher thread, woken by the
  signal itself (``signal.set_wakeup_fd``), makes sure it is seen: it interrupts the main
  thread again, and if the main thread still has not taken it up after ``TAKE_OVER``
  seconds, it ends the activities itself and lets the process die of the signal.

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

# How long the watcher waits for the main thread to take up a stopping signal (interrupting
# it meanwhile) before it ends the activities itself: the main thread runs a handler within
# milliseconds whenever it runs Python code at all.
TAKE_OVER = 1.0
# When the main thread began handling a stopping signal itself (it ends the process).
_handling_since: float | None = None
# How long the watcher stays after the last activity of the main thread ended: a job that
# opens activity after activity pays for its pipe and thread once.
LINGER = 2.0


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
    global _handling_since
    _open.clear()
    _main_lanes.clear()
    _sweeps.clear()
    _handling_since = None
    _watch.after_fork_in_child()  # first: it takes no lock (a parent thread may have held it)
    if threading.current_thread() is threading.main_thread():
        _uninstall()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- signals --------------------------------------------------------------------------------------


def _install() -> None:
    _watch.arm()
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
    if not _previous:
        _watch.disarm()  # none of ours to watch for (armed first: no window without it)


def _uninstall() -> None:
    for sig in list(_previous):
        previous = _previous.pop(sig)
        # A handler installed after ours wins: it is left alone.
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous)
    _watch.disarm()


class _Watcher:
    """A pipe the C-level handler writes each signal's number to (``signal.set_wakeup_fd``),
    on whatever thread the signal landed, and a thread that reads it. The wakeup fd points at
    the pipe while our handlers are installed (``arm``, ``disarm``: main thread only)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.lock = threading.Lock()
        self.read_fd: int | None = None
        self.write_fd: int | None = None
        self.armed = False  # the wakeup fd is ours
        # Someone replaced our wakeup fd and may put it back later: the pipe stays open, read.
        self.kept = False
        self.idle_since = 0.0

    def arm(self) -> None:
        if not hasattr(signal, "pthread_kill"):  # pragma: no cover - Windows
            return
        with self.lock:
            if self.write_fd is None and not self._open():
                return
            assert self.write_fd is not None
            try:
                previous = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
            except (ValueError, OSError):  # pragma: no cover - not the main thread
                return
            if previous not in (-1, self.write_fd):
                # Someone else's (an event loop's added signal handlers): its loop polls it in
                # the main thread, which then runs the handlers at once. Theirs stays.
                signal.set_wakeup_fd(previous)
                return
            self.armed = True

    def disarm(self) -> None:
        with self.lock:
            if not self.armed:
                return
            self.armed = False
            self.idle_since = time.monotonic()
            try:
                current = signal.set_wakeup_fd(-1)
            except (ValueError, OSError):  # pragma: no cover - not the main thread
                return
            if current != self.write_fd:
                signal.set_wakeup_fd(current)  # a handler installed after ours wins
                self.kept = True

    def _open(self) -> bool:
        from activitysmith_track._threads import start_daemon

        read_fd, write_fd = os.pipe()
        try:
            os.set_blocking(write_fd, False)  # the C handler must never block
            start_daemon(self._run, "activitysmith-track-signals", read_fd)
        except (OSError, RuntimeError):  # pragma: no cover - interpreter shutdown
            os.close(read_fd)
            os.close(write_fd)
            return False
        self.read_fd, self.write_fd = read_fd, write_fd
        return True

    def _run(self, read_fd: int) -> None:
        import select

        try:
            poller = select.poll()  # not select(): the pipe's fd may be above FD_SETSIZE
            poller.register(read_fd, select.POLLIN)
            while True:
                if not poller.poll(LINGER * 1000):
                    if self._retire(read_fd):
                        return
                    continue
                data = os.read(read_fd, 64)
                if not data:  # pragma: no cover - we never close the write end first
                    return
                for signum in set(data):
                    if signum in _HANDLED and _ends_process(signum) and not _being_handled():
                        _see_to(signum)
        except Exception:  # a watcher must never raise into the job
            logger.debug("the signal watcher stopped", exc_info=True)

    def _retire(self, read_fd: int) -> bool:
        """Close the pipe and end the thread, once nothing was open for LINGER seconds."""
        with self.lock:
            if self.read_fd != read_fd:  # pragma: no cover - not ours any more
                return True
            if self.armed or self.kept or time.monotonic() - self.idle_since < LINGER:
                return False
            assert self.write_fd is not None
            os.close(self.write_fd)
            os.close(read_fd)
            self.read_fd = self.write_fd = None
            return True

    def after_fork_in_child(self) -> None:
        # Still the parent's pipe, which the parent's watcher reads: the child's signals must
        # never be written to it (the parent would act on them), and the child has no watcher.
        write_fd, read_fd = self.write_fd, self.read_fd
        if write_fd is not None:
            with contextlib.suppress(ValueError, OSError):
                current = signal.set_wakeup_fd(-1)
                if current != write_fd:
                    signal.set_wakeup_fd(current)
        for fd in (write_fd, read_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._reset()  # a fresh lock too: a parent thread may have held this one


_watch = _Watcher()


def _ends_process(signum: int) -> bool:
    """Whether our own handler is to take ``signum`` (and so end the process)."""
    try:
        current = signal.getsignal(signum)
    except (ValueError, OSError):  # pragma: no cover
        return False
    return current is _on_signal and not callable(_previous.get(signum))


def _being_handled() -> bool:
    since = _handling_since
    return since is not None and time.monotonic() - since < SIGNAL_FLUSH + TAKE_OVER


def _see_to(signum: int) -> None:
    """Interrupt the main thread until it takes up ``signum``; after TAKE_OVER, take it."""
    main = threading.main_thread().ident
    waited, pause = 0.0, 0.02
    while waited < TAKE_OVER:
        time.sleep(pause)
        waited += pause
        if _being_handled():
            return
        if main is not None:
            # Wakes a wait that began just after the signal, or on another thread.
            if waited == pause:
                logger.debug("%s not taken up yet: interrupting the main thread", signum)
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_kill(main, signum)
        pause = min(pause * 2, 0.25)
    if _being_handled() or not _ends_process(signum):
        return
    name = signal.Signals(signum).name
    logger.debug("%s: the main thread is busy in a call; ending the activities from here", name)
    _stop_for(name)
    if not _being_handled():
        _die_of(signum)


def _die_of(signum: int) -> None:  # pragma: no cover - the process ends here (tested by exit)
    """End the process as the signal's default action would, from a thread that is not the
    main thread (which Python lets change a signal's handler): through the C library."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        libc.signal(signum, None)  # NULL is SIG_DFL
        os.kill(os.getpid(), signum)
        time.sleep(1.0)
    except Exception:
        pass
    os._exit(128 + signum)  # what a shell reports for death by the signal


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


def _stop_for(name: str) -> None:
    """End every open activity as stopped by the signal ``name``; never raises: the signal
    must still have its effect."""
    try:
        left = stop_all(name)
        if left:
            logger.warning("%s: %d Live Activity end(s) could not be delivered in time", name, left)
    except Exception:
        logger.debug("could not end the open Live Activities on %s", name, exc_info=True)


def _on_signal(signum: int, frame: Any) -> None:
    global _last_signal, _handling_since
    name = signal.Signals(signum).name
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        # The application's own handler decides what the signal does; our blocks end as they
        # exit, naming the signal.
        _last_signal = (name, time.monotonic())
        handler: Callable[[int, Any], Any] = previous
        handler(signum, frame)
        return
    _handling_since = time.monotonic()  # the watcher leaves it to this thread
    _stop_for(name)
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
