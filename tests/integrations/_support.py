"""Helpers the engine suites share: a private Redis server and waiting on the emulator.

Each engine's suite runs in its own virtual environment with only that engine installed, so
this module imports nothing beyond the standard library and activitysmith_track.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from activitysmith_track.emulator import ActivityRecord, Emulator

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (Debian's package); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: apt-get install -y redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        process = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 10
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", port), timeout=1) as conn,
                ):
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}"
        finally:
            process.terminate()
            process.wait(timeout=10)


def wait_for(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; the state lives in other processes."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}")
        time.sleep(0.05)


def ended_activity(emu: Emulator, stream_key: str, *, timeout: float = 30.0) -> ActivityRecord:
    """The (latest) activity of ``stream_key`` once it has ended."""

    def check() -> ActivityRecord | None:
        record = emu.stream_activity(stream_key)
        return record if record is not None and record.status == "ended" else None

    return wait_for(check, timeout=timeout, what=f"stream {stream_key} to end")


def activities_of(emu: Emulator, stream_key: str) -> list[ActivityRecord]:
    """Every activity the stream ever had: more than one means the run was split."""
    return [a for a in emu.activities.values() if a.stream_key == stream_key]


def sent_states(record: ActivityRecord) -> list[dict[str, object]]:
    """The content states an activity received, in order (accepted requests only)."""
    states = []
    for entry in record.history:
        body = entry.request
        if (
            entry.status == 200
            and isinstance(body, dict)
            and isinstance(body.get("content_state"), dict)
        ):
            states.append(body["content_state"])
    return states


def worker_env(emu: Emulator, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ACTIVITYSMITH_BASE_URL": emu.base_url, **extra}
    env.pop("ACTIVITYSMITH_API_KEY", None)
    env.setdefault("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    env.setdefault("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "5")
    return env
