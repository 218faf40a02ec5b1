"""``activitysmith-track doctor``: real subprocesses against the emulator (healthy, dead,
wanting a key, reached without /api) and a loopback server that reports trouble."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from activitysmith_track._config import resolve_settings
from activitysmith_track._doctor import NOTE, OK, PROBLEM, _check_clock, _check_key, _Context
from activitysmith_track.emulator import Emulator

CLI = [sys.executable, "-m", "activitysmith_track", "doctor"]
KEY = "ask_doctor_test_key_0123456789"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITYSMITH")}
    base["ACTIVITYSMITH_TRACK_STATE_DIR"] = str(tmp_path / "state")
    return base


def doctor(env: dict[str, str], *args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [*CLI, "--timeout", "3", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stderr == ""
    return done.returncode, done.stdout.splitlines()


SUBJECTS = ("environment", "API key", "base URL", "health", "account", "clock", "ledger")


def levels(lines: list[str]) -> dict[str, set[str]]:
    """subject -> the levels reported for it."""
    found: dict[str, set[str]] = {}
    for line in lines:
        level, _, rest = line.partition(" ")
        if level in (OK, NOTE, PROBLEM):
            subject = next(s for s in SUBJECTS if rest.lstrip().startswith(s))
            found.setdefault(subject, set()).add(level)
    return found


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_healthy_emulator_has_no_problems(env: dict[str, str]) -> None:
    with Emulator() as emu:
        env["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        code, lines = doctor(env)
    assert code == 0, lines
    assert lines[-1] == "No problems found."
    found = levels(lines)
    assert found["API key"] == {OK}
    assert found["base URL"] == {OK}
    assert found["account"] == {OK}
    assert found["clock"] == {OK}
    assert found["ledger"] == {OK}
    # GET /health is newer than the released SDKs: served, it is ok; not yet, a note.
    assert found["health"] <= {OK, NOTE}
    assert not any(line.startswith(PROBLEM) for line in lines)


def test_a_dead_port_is_a_problem_with_its_fix(env: dict[str, str]) -> None:
    env["ACTIVITYSMITH_BASE_URL"] = f"http://127.0.0.1:{dead_port()}/api"
    code, lines = doctor(env)
    assert code == 1
    (problem,) = [line for line in lines if line.startswith(PROBLEM)]
    assert "cannot reach 127.0.0.1:" in problem
    assert "connection refused" in problem
    fix = lines[lines.index(problem) + 1]
    assert "fix: start the emulator" in fix
    assert lines[-1] == "1 problem found."


def test_a_missing_key_for_an_emulator_that_wants_one(env: dict[str, str]) -> None:
    with Emulator(api_key=KEY) as emu:
        env["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        code, lines = doctor(env)
        assert code == 1
        assert any(
            line.startswith(PROBLEM) and "this emulator wants a key (HTTP 401)" in line
            for line in lines
        ), lines
        env["ACTIVITYSMITH_API_KEY"] = KEY
        code, lines = doctor(env)
        assert code == 0, lines
        assert KEY not in "\n".join(lines)
        assert KEY[4:] not in "\n".join(lines)


def test_a_wrong_key_is_refused(env: dict[str, str]) -> None:
    with Emulator(api_key=KEY) as emu:
        env["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        env["ACTIVITYSMITH_API_KEY"] = "ask_wrong_key"
        code, lines = doctor(env)
    assert code == 1
    (problem,) = [line for line in lines if line.startswith(PROBLEM)]
    assert "the key was refused (HTTP 401)" in problem
    assert "copy the key again" in lines[lines.index(problem) + 1]
    assert "ask_wrong_key" not in "\n".join(lines)


def test_a_base_url_without_api_gets_the_right_url(env: dict[str, str]) -> None:
    with Emulator() as emu:
        site = emu.base_url.removesuffix("/api")
        env["ACTIVITYSMITH_BASE_URL"] = site
        code, lines = doctor(env)
    assert code == 1
    problems = [line for line in lines if line.startswith(PROBLEM)]
    assert len(problems) == 1, lines
    assert f"{site} has no /api path" in problems[0]
    assert lines[lines.index(problems[0]) + 1].strip() == (
        f"fix: export ACTIVITYSMITH_BASE_URL={site}/api"
    )


def test_misspelled_and_unusable_environment_variables(env: dict[str, str]) -> None:
    with Emulator() as emu:
        env["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        env["ACTIVITYSMITH_TRACK_DISABLE"] = "1"
        env["ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT"] = "10s"
        env["ACTIVITYSMITH_CHANNEL"] = "ops"  # not ours, close to nothing of ours: left alone
        code, lines = doctor(env)
    assert code == 1
    problems = [line for line in lines if line.startswith(PROBLEM)]
    assert len(problems) == 2, lines
    assert "did you mean ACTIVITYSMITH_TRACK_DISABLED?" in problems[0]
    assert "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT='10s' is ignored" in problems[1]
    assert "ACTIVITYSMITH_CHANNEL" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("raw", "level", "words"),
    [
        (None, PROBLEM, "is not set"),
        ("", PROBLEM, "is not set"),
        ('"ask_abc123"', PROBLEM, "wrapped in quotes"),
        ("ask_abc 123", PROBLEM, "spaces"),
        ("ask_abc\n123", PROBLEM, "line breaks"),
        ("sk_live_abc123", NOTE, "does not start with 'ask_'"),
        (" ask_abc123 ", NOTE, "spaces around it"),
        ("ask_abc123", OK, "set (10 characters, ask_...)"),
    ],
)
def test_the_key_shape(raw: str | None, level: str, words: str) -> None:
    # A remote base URL, where a key is needed; the check itself sends nothing.
    env = {} if raw is None else {"ACTIVITYSMITH_API_KEY": raw}
    settings = resolve_settings({"base_url": "https://activitysmith.com/api"}, env={})
    ctx = _Context(settings=settings, env=env, timeout=1.0)
    _check_key(ctx)
    assert (ctx.findings[0].level, words in ctx.findings[0].text) == (level, True), ctx.findings
    assert all("abc" not in f.text for f in ctx.findings)  # never a piece of the key


@pytest.mark.parametrize(
    ("skew", "level"),
    [(0, OK), (-12, OK), (29, OK), (120, NOTE), (-200, NOTE), (301, PROBLEM), (-4000, PROBLEM)],
)
def test_the_clock_against_the_servers_date(skew: float, level: str) -> None:
    settings = resolve_settings({"base_url": "http://127.0.0.1:9/api"}, env={})
    ctx = _Context(settings=settings, env={}, timeout=1.0)
    server = 1_800_000_000.0
    _check_clock(ctx, formatdate(server, usegmt=True), now=server + skew)
    (finding,) = ctx.findings
    assert finding.level == level
    if level != OK:
        assert ("ahead of" if skew > 0 else "behind") in finding.text
        assert finding.fix is not None
        assert "NTP" in finding.fix


def test_an_unreadable_date_is_a_note() -> None:
    settings = resolve_settings({"base_url": "http://127.0.0.1:9/api"}, env={})
    ctx = _Context(settings=settings, env={}, timeout=1.0)
    _check_clock(ctx, "yesterday-ish")
    assert ctx.findings[0].level == NOTE


class _Degraded(http.server.BaseHTTPRequestHandler):
    """A loopback API whose health check reports a failing dependency."""

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        checks = [{"name": "database", "status": "ok"}, {"name": "apns", "status": "fail"}]
        self._send(503, {"ok": False, "service": "api", "checks": checks})

    def do_DELETE(self) -> None:
        self._send(404, {"error": "Live Activity stream not found", "message": "no such key"})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def degraded() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Degraded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_degraded_service_is_a_problem_naming_the_failing_check(
    env: dict[str, str], degraded: str
) -> None:
    env["ACTIVITYSMITH_BASE_URL"] = degraded
    code, lines = doctor(env)
    assert code == 1
    (problem,) = [line for line in lines if line.startswith(PROBLEM)]
    assert "the service reports trouble (HTTP 503): apns" in problem
    assert levels(lines)["account"] == {OK}
