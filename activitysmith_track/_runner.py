"""Run a child command with its output passed through and its markers read on the side.

The child's stdout and stderr are pipes read by two threads with ``os.read``; every chunk is
written to our own stdout or stderr and flushed at once, so partial lines, binary data and the
order of writes that are a moment apart reach the terminal as the child made them. Complete
lines are also decoded (invalid bytes replaced) and checked for markers.

Signals: the child stays in our process group, so it keeps the terminal (it can read from it,
and job control works). Ctrl-C in a terminal signals the whole foreground group, which already
includes the child, so a SIGINT is forwarded only when we are *not* in a terminal's foreground
group (cron, a supervisor, ``kill -INT`` from a script). SIGTERM is always forwarded, since
nothing sends it to the group on its own. Either one marks the run as cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import BinaryIO, TextIO

import attrs

from activitysmith_track._markers import Marker, MarkerParser

__all__ = ["RunOutcome", "StreamPump", "run_child", "signal_name"]

logger = logging.getLogger("activitysmith_track")

# A longer line cannot be a marker: it is passed on and skipped for parsing.
MAX_LINE = 64 * 1024
_CHUNK = 64 * 1024
# After the command exits, how long to keep passing on output from processes it left running
# with our pipes open (a daemon started with &): their output would otherwise keep us waiting.
_DRAIN_GRACE = 2.0
_FORWARDED = (signal.SIGINT, signal.SIGTERM)


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
                logger.warning("could not apply marker %r: %r", text, exc)
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


@attrs.frozen(kw_only=True)
class RunOutcome:
    """How the child ended.

    ``exit_code`` is what the wrapper exits with: the child's code, or 128 plus the signal
    number when a signal killed it (as shells report it). ``cancelled_by`` is the first
    SIGINT/SIGTERM the wrapper received, if any.
    """

    exit_code: int
    killed_by: int | None = None
    cancelled_by: int | None = None
    last_stderr_line: str | None = None

    @property
    def description(self) -> str:
        """``exit code 3`` or ``killed by SIGKILL``."""
        if self.killed_by is not None:
            return f"killed by {signal_name(self.killed_by)}"
        return f"exit code {self.exit_code}"


def _in_terminal_foreground() -> bool:
    """Whether our process group is the foreground group of our controlling terminal."""
    for fd in (0, 1, 2):
        with contextlib.suppress(OSError):
            return os.tcgetpgrp(fd) == os.getpgrp()
    try:
        tty = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal: cron, systemd, a detached supervisor
    try:
        return os.tcgetpgrp(tty) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(tty)


class _Forwarder:
    """Forwards SIGINT/SIGTERM to the child; remembers what arrived before it started."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._pending: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if signum == signal.SIGINT and _in_terminal_foreground():
            return  # the terminal signalled the child's group too; once is enough
        if self._proc is None:
            self._pending.append(signum)
            return
        with contextlib.suppress(OSError):
            self._proc.send_signal(signum)

    def attach(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        pending, self._pending = self._pending, []
        for signum in pending:
            with contextlib.suppress(OSError):
                proc.send_signal(signum)

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
    """Run ``command`` to its end, passing its output through; ``OSError`` if it cannot start.

    ``on_started`` runs once the child is running (the activity starts then, so a command
    that cannot be found never shows up on a phone). ``PYTHONUNBUFFERED=1`` is set in the
    child's environment so Python children write as they go although their output is a pipe.
    """
    out_sink = stdout if stdout is not None else _binary_sink(sys.stdout)
    err_sink = stderr if stderr is not None else _binary_sink(sys.stderr)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    forwarder = _Forwarder()
    with forwarder.installed():
        proc = subprocess.Popen(
            list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
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
        threads = [
            threading.Thread(target=pump.pump, args=(fd,), name=f"activitysmith-track-{name}")
            for pump, fd, name in ((out_pump, out_fd, "stdout"), (err_pump, err_fd, "stderr"))
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        forwarder.attach(proc)
        if on_started is not None:
            try:
                on_started()
            except Exception as exc:  # tracking must never stop the command
                logger.warning("could not start the Live Activity: %r", exc)
        returncode = proc.wait()
        deadline = time.monotonic() + _DRAIN_GRACE
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # Writing from a daemon thread while the interpreter shuts down can crash it.
        out_pump.detach()
        err_pump.detach()
    killed_by = -returncode if returncode < 0 else None
    return RunOutcome(
        exit_code=128 + killed_by if killed_by is not None else returncode,
        killed_by=killed_by,
        cancelled_by=forwarder.received[0] if forwarder.received else None,
        last_stderr_line=err_pump.last_line,
    )
