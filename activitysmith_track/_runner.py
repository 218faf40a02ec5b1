"""Run a child command with its output passed through and its markers read on the side.

The child's stdout and stderr are pipes read by two threads with ``os.read``; every chunk is
written to our own stdout or stderr and flushed at once, so partial lines, binary data and the
order of writes that are a moment apart reach the terminal as the child made them. Complete
lines are also decoded (invalid bytes replaced) and checked for markers.

Signals and the terminal: the child runs in its own process group, so that a signal reaches
the whole tree it starts (a shell script and the ``sleep`` it waits on), not just the child.
SIGINT, SIGTERM and SIGHUP sent to the wrapper are forwarded to that group and mark the run as
cancelled. When the wrapper is the foreground job of a terminal, it hands the terminal's
foreground to the child's group, as a shell does for a job: the command can read the terminal,
and Ctrl-C (or Ctrl-\\, Ctrl-Z) reaches it directly. The child takes the foreground itself
before it executes the command (as shells do), so it never finds itself in the background. The
wrapper takes the terminal back when the command ends, and when the command is stopped
(Ctrl-Z) the wrapper stops too, so the shell sees the job stop; ``fg`` resumes both.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from activitysmith_track._threads import start_daemon

# On the path of `activitysmith-track run` before the command starts: no attrs, no typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Protocol

    from activitysmith_track._markers import Marker

    class MarkerParser(Protocol):
        """What recognises marker lines (``_markers.MarkerParser``, or one built late)."""

        def parse(self, line: str) -> Marker | None: ...

    from typing import BinaryIO, TextIO

__all__ = ["CannotStart", "RunOutcome", "StreamPump", "run_child", "signal_name"]


def _logger() -> logging.Logger:
    # logging is imported when there is something to say, not before the command starts.
    import logging

    return logging.getLogger("activitysmith_track")


# A longer line cannot be a marker: it is passed on and skipped for parsing.
MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024
# After the command exits, how long to keep passing on output from processes it left running
# with our pipes open (a daemon started with &): their output would otherwise keep us waiting.
_DRAIN_GRACE = 2.0
_FORWARDED = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_POSIX = sys.platform != "win32"
# The stops of job control: a terminal's Ctrl-Z, or a background job touching the terminal.
_JOB_STOPS = frozenset(
    getattr(signal, name) for name in ("SIGTSTP", "SIGTTIN", "SIGTTOU") if hasattr(signal, name)
)


def signal_name(signum: int) -> str:
    """``SIGKILL`` for 9; ``signal 99`` for a number with no name here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StreamPump:
    """Passes one of the child's pipes to ``sink`` and feeds its complete lines to a parser.

    With ``hide_markers`` the output goes on line by line instead, so that marker lines can
    be left out before any of their bytes are written; a partial line then appears when its
    newline or the end of the output arrives (or once it is longer than ``MAX_LINE``).
    """

    def __init__(
        self,
        sink: BinaryIO | None,
        *,
        parser: MarkerParser | None,
        on_marker: Callable[[Marker], None],
        hide_markers: bool = False,
    ) -> None:
        self._sink = sink
        self._parser = parser
        self._on_marker = on_marker
        self._hide = hide_markers and parser is not None
        self._pending = b""
        self._overflow = False  # inside a line too long to be a marker
        self.last_line: str | None = None
        self.broken = False
        self._detached = False

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes the child wrote."""
        if not self._hide:
            self._write(chunk)
        out = bytearray()
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            piece = chunk[start : newline + 1]
            start = newline + 1
            if self._overflow:
                self._overflow = False
                out += piece
                continue
            line, self._pending = self._pending + piece, b""
            if not self._line(line):
                out += line
        rest = chunk[start:]
        if rest:
            if self._overflow:
                out += rest
            else:
                self._pending += rest
                if len(self._pending) > MAX_LINE:
                    out += self._pending
                    self._pending = b""
                    self._overflow = True
        if self._hide and out:
            self._write(bytes(out))

    def close(self) -> None:
        """The child closed the pipe: handle a last line that had no newline."""
        line, self._pending = self._pending, b""
        if line and not self._overflow and not self._line(line) and self._hide:
            self._write(line)

    def _line(self, line: bytes) -> bool:
        """Handle one complete line; True when it was a marker (and so is not shown)."""
        text = line.rstrip(b"\r\n").decode("utf-8", errors="replace")
        marker = self._parser.parse(text) if self._parser is not None else None
        if marker is not None:
            try:
                self._on_marker(marker)
            except Exception as exc:  # tracking must never stop the output
                _logger().warning("could not apply marker %r: %r", text, exc)
            return self._hide
        if text.strip():
            self.last_line = text.strip()
        return False

    def _write(self, data: bytes) -> None:
        sink = self._sink
        if sink is None or self.broken or self._detached:
            return
        try:
            sink.write(data)
            sink.flush()
        except (BrokenPipeError, ValueError, OSError):
            # Whoever reads our output went away (``| head``): stop writing, and let the pump
            # close the child's pipe so the child sees the same broken pipe it would see alone.
            self.broken = True

    def detach(self) -> None:
        """Write nothing more (we are exiting while a leftover process still holds the pipe)."""
        self._detached = True

    def pump(self, fd: int) -> None:
        """Read ``fd`` until the end of output (or a broken sink); always closes ``fd``."""
        try:
            while not self.broken:
                try:
                    chunk = os.read(fd, _CHUNK)
                except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                self.feed(chunk)
        finally:
            with contextlib.suppress(Exception):
                self.close()
            with contextlib.suppress(OSError):
                os.close(fd)


class CannotStart(Exception):
    """The command could not be executed (not found, not executable); ``error`` says why."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(str(error))


class RunOutcome:
    """How the child ended.

    ``exit_code`` is what the wrapper exits with: the child's code, or 128 plus the signal
    number when a signal killed it (as shells report it). ``cancelled_by`` is the first
    SIGINT/SIGTERM/SIGHUP the wrapper received, or SIGINT when the command, holding the
    terminal, died of it (Ctrl-C reaches the command's group, not the wrapper).
    """

    __slots__ = ("cancelled_by", "exit_code", "killed_by", "last_stderr_line")

    def __init__(
        self,
        *,
        exit_code: int,
        killed_by: int | None = None,
        cancelled_by: int | None = None,
        last_stderr_line: str | None = None,
    ) -> None:
        self.exit_code = exit_code
        self.killed_by = killed_by
        self.cancelled_by = cancelled_by
        self.last_stderr_line = last_stderr_line

    def __repr__(self) -> str:
        return (
            f"RunOutcome(exit_code={self.exit_code}, killed_by={self.killed_by}, "
            f"cancelled_by={self.cancelled_by})"
        )

    @property
    def description(self) -> str:
        """``exit code 3`` or ``killed by SIGKILL``."""
        if self.killed_by is not None:
            return f"killed by {signal_name(self.killed_by)}"
        return f"exit code {self.exit_code}"


class _Terminal:
    """The controlling terminal while the wrapper is its foreground job (else not built).

    SIGTTOU is blocked in the wrapper's main thread (and so in the pump threads it starts
    later) while the child holds the terminal: a background process that changes the
    terminal's foreground group or, with ``stty tostop``, writes to it, would otherwise be
    stopped by it.
    """

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.handed_over = False

    @classmethod
    def open(cls) -> _Terminal | None:
        """The terminal, if we have one and are in its foreground; only in the main thread
        (signal masks and handlers are per thread there)."""
        if not _POSIX or threading.current_thread() is not threading.main_thread():
            return None
        try:
            fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        except OSError:
            return None  # no controlling terminal: cron, systemd, a detached supervisor
        terminal = cls(fd)
        if not terminal.is_ours():
            os.close(fd)
            return None
        return terminal

    def is_ours(self) -> bool:
        """Whether our process group is the terminal's foreground group."""
        try:
            return os.tcgetpgrp(self.fd) == os.getpgrp()
        except OSError:
            return False

    def hand_to(self, pgid: int) -> None:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(self.fd, pgid)
            self.handed_over = True

    def take_back(self) -> None:
        with contextlib.suppress(OSError):
            os.tcsetpgrp(self.fd, os.getpgrp())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _block_sigttou() -> set[int] | None:
    """Block SIGTTOU in this thread; the mask before, to restore."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU}))


def _child_setup(terminal_fd: int | None) -> Callable[[], None] | None:
    """What the child runs between fork and exec: its own process group, and, in a terminal's
    foreground, the terminal handed to that group before the command starts (so that a command
    reading the terminal at once is never stopped as a background job). The child inherits
    the parent's blocked SIGTTOU, which lets it take the foreground, and unblocks it."""
    if not _POSIX:
        return None
    if terminal_fd is None:
        if sys.version_info >= (3, 11):
            return None  # Popen(process_group=0) does it without running Python in the child
        return os.setpgrp

    def setup() -> None:
        os.setpgid(0, 0)
        with contextlib.suppress(OSError):
            os.tcsetpgrp(terminal_fd, os.getpgrp())
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTTOU})

    return setup


class _Forwarder:
    """Forwards SIGINT/SIGTERM/SIGHUP to the child's process group; remembers what arrived
    before the child started."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._pending: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._proc is None:
            self._pending.append(signum)
            return
        _signal_group(self._proc, signum)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        pending, self._pending = self._pending, []
        for signum in pending:
            _signal_group(proc, signum)

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        """Install the handlers for the block (Python allows that in the main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self) for signum in _FORWARDED}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    """``signum`` to the child's whole process group (the child alone off POSIX)."""
    if not _POSIX:
        with contextlib.suppress(OSError):
            proc.send_signal(signum)
        return
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signum)
    # A stopped process keeps a termination signal pending until it runs again; shells
    # follow their kill with SIGCONT for the same reason.
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGCONT)


def _wait(proc: subprocess.Popen[bytes], terminal: _Terminal | None, job_control: bool) -> int:
    """Wait for the child to exit and return its return code (``-N`` for signal N).

    With job control (we have a controlling terminal), a child stopped by Ctrl-Z or by
    touching the terminal from the background stops the wrapper too, so the shell sees its
    job stop; when the shell resumes the wrapper (``fg`` or ``bg``), the child is resumed, in
    the terminal's foreground if the wrapper is.
    """
    if not _POSIX:
        return proc.wait()
    flags = os.WUNTRACED if job_control else 0
    while True:
        try:
            _, status = os.waitpid(proc.pid, flags)
        except ChildProcessError:  # reaped elsewhere; nothing more to learn
            return proc.wait()
        if os.WIFSTOPPED(status):
            if os.WSTOPSIG(status) in _JOB_STOPS:
                if terminal is not None:
                    terminal.take_back()
                # Returns once the shell continued us (at once, if our group is orphaned
                # and so cannot be stopped).
                os.kill(os.getpid(), signal.SIGTSTP)
                if terminal is not None and terminal.is_ours():
                    terminal.hand_to(proc.pid)
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGCONT)
            continue
        code = os.waitstatus_to_exitcode(status)
        proc.returncode = code  # Popen's own record: it was reaped here
        return code


def _has_controlling_terminal() -> bool:
    if not _POSIX:
        return False
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    os.close(fd)
    return True


def _binary_sink(stream: TextIO | None) -> BinaryIO:
    # A daemon or supervisor may start us with stdout or stderr closed (sys.stdout is None
    # then): the command still runs, and what it writes there goes nowhere, as it would
    # without the wrapper.
    if stream is None:
        return open(os.devnull, "wb")
    return stream.buffer


def run_child(
    command: Sequence[str],
    *,
    parser: MarkerParser | None,
    on_marker: Callable[[Marker], None],
    on_started: Callable[[], None] | None = None,
    hide_markers: bool = False,
    stdout: BinaryIO | None = None,
    stderr: BinaryIO | None = None,
) -> RunOutcome:
    """Run ``command`` to its end, passing its output through; :class:`CannotStart` if it
    cannot be executed at all.

    ``on_started`` runs once the child is running. ``PYTHONUNBUFFERED=1`` is set in the
    child's environment so Python children write as they go although their output is a pipe.
    """
    out_sink = stdout if stdout is not None else _binary_sink(sys.stdout)
    err_sink = stderr if stderr is not None else _binary_sink(sys.stderr)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    forwarder = _Forwarder()
    terminal = _Terminal.open()
    job_control = terminal is not None or (
        threading.current_thread() is threading.main_thread() and _has_controlling_terminal()
    )
    mask = _block_sigttou() if terminal is not None else None
    try:
        with forwarder.installed():
            setup = _child_setup(None if terminal is None else terminal.fd)
            options: dict[str, object] = {"preexec_fn": setup} if setup is not None else {}
            if setup is None and _POSIX:
                options["process_group"] = 0
            try:
                proc = subprocess.Popen(
                    list(command),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=env,
                    **options,  # type: ignore[call-overload]
                )
            except OSError as exc:
                raise CannotStart(exc) from exc
            if terminal is not None:
                terminal.hand_to(proc.pid)  # done by the child already; this makes it sure
            assert proc.stdout is not None
            assert proc.stderr is not None
            # The pumps own the pipes from here on (they read and close the raw descriptors).
            out_fd, err_fd = os.dup(proc.stdout.fileno()), os.dup(proc.stderr.fileno())
            proc.stdout.close()
            proc.stderr.close()
            out_pump = StreamPump(
                out_sink, parser=parser, on_marker=on_marker, hide_markers=hide_markers
            )
            err_pump = StreamPump(
                err_sink, parser=parser, on_marker=on_marker, hide_markers=hide_markers
            )
            # Started blocking signals: the forwarder's handlers need them on this thread.
            threads = [
                start_daemon(pump.pump, f"activitysmith-track-{name}", fd)
                for pump, fd, name in ((out_pump, out_fd, "stdout"), (err_pump, err_fd, "stderr"))
            ]
            forwarder.attach(proc)
            if on_started is not None:
                try:
                    on_started()
                except Exception as exc:  # tracking must never stop the command
                    _logger().warning("could not start the Live Activity: %r", exc)
            returncode = _wait(proc, terminal, job_control)
            if terminal is not None:
                # Before the end is delivered: Ctrl-C meanwhile must reach us, not a dead group.
                terminal.take_back()
            deadline = time.monotonic() + _DRAIN_GRACE
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            # Writing from a daemon thread while the interpreter shuts down can crash it.
            out_pump.detach()
            err_pump.detach()
    finally:
        if terminal is not None:
            terminal.take_back()
            terminal.close()
        if mask is not None and signal.SIGTTOU not in mask:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTTOU})
    killed_by = -returncode if returncode < 0 else None
    if forwarder.received:
        cancelled_by: int | None = forwarder.received[0]
    elif terminal is not None and terminal.handed_over and killed_by == signal.SIGINT:
        # Ctrl-C went to the command's group, which held the terminal, and not to us: a
        # command that died of it was interrupted by the user.
        cancelled_by = killed_by
    else:
        cancelled_by = None
    return RunOutcome(
        exit_code=128 + killed_by if killed_by is not None else returncode,
        killed_by=killed_by,
        cancelled_by=cancelled_by,
        last_stderr_line=err_pump.last_line,
    )
