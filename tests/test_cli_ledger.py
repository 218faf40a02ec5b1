"""``activitysmith-track list`` and ``cleanup``, run as real subprocesses, against the emulator
and the ledger of real processes that were killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activitysmith_track._store import DATABASE_NAME
from activitysmith_track.emulator import Emulator, Fault

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

CLI = [sys.executable, "-m", "activitysmith_track"]

# Opens a manual activity and a stream as the dispatcher does (recording each in the ledger),
# says "ready", and waits to be killed.
OWNER = textwrap.dedent("""
    import time
    from activitysmith_track import Client, ContentState, _ledger
    from activitysmith_track._config import resolve_settings

    settings = resolve_settings()
    client = Client(base_url=settings.base_url)
    backup = ContentState(title="Nightly backup", type="segmented_progress",
                          number_of_steps=3, current_step=2, subtitle="upload archive")
    result = client.start(backup)
    _ledger.record_start(settings, title=backup.title, activity_id=result.activity_id,
                         state=backup)
    etl = ContentState(title="Nightly ETL", type="progress", percentage=40)
    _ledger.record_start(settings, title=etl.title, stream_key="nightly-etl", state=etl)
    client.put_stream("nightly-etl", etl)
    print("ready", flush=True)
    time.sleep(120)
""")


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def env(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITYSMITH")}
    base["ACTIVITYSMITH_BASE_URL"] = emu.base_url
    base["ACTIVITYSMITH_TRACK_STATE_DIR"] = str(tmp_path / "state")
    return base


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def killed_owner(env: dict[str, str]) -> int:
    """Run OWNER, kill it with SIGKILL once its activities are open; return its pid."""
    with subprocess.Popen(
        [sys.executable, "-c", OWNER], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        listed = cli(env, "list")
        assert listed.returncode == 0, listed.stderr
        assert [line.split()[0] for line in listed.stdout.splitlines()[1:]] == [
            "running",
            "running",
        ]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        return proc.pid


def test_list_and_cleanup_after_a_sigkill(emu: Emulator, env: dict[str, str]) -> None:
    pid = killed_owner(env)

    listed = cli(env, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["STATUS", "PID", "STARTED", "ACTIVITY", "TITLE", "ACCOUNT"]
    rows = [line.split() for line in lines[1:3]]
    assert [(r[0], r[1]) for r in rows] == [("orphaned", str(pid))] * 2
    assert "stream nightly-etl" in lines[2]
    assert "Nightly backup" in lines[1]
    assert "2 orphaned" in listed.stdout
    assert "activitysmith-track cleanup" in listed.stdout

    cleaned = cli(env, "cleanup")

    assert cleaned.returncode == 0, cleaned.stderr
    assert cleaned.stderr == ""
    out = cleaned.stdout.splitlines()
    assert out[0].startswith("ended    'Nightly backup' (activity ")
    assert out[1].startswith(f"ended    'Nightly ETL' (stream nightly-etl, pid {pid})")
    assert out[2] == "2 orphan(s): 2 ended."
    manual = next(a for a in emu.activities.values() if a.stream_key is None)
    assert manual.status == "ended"
    assert manual.state["subtitle"] == "Stopped at upload archive: the process died"
    assert manual.state["current_step"] == 2
    stream = emu.stream_activity("nightly-etl")
    assert stream is not None
    assert stream.status == "ended"
    assert stream.state["subtitle"] == "Stopped at 40%: the process died"
    assert stream.state["percentage"] == 40

    assert cli(env, "list").stdout.startswith("No open Live Activities recorded")
    again = cli(env, "cleanup")
    assert (again.returncode, again.stdout) == (
        0,
        "Nothing to clean up: no recorded activity's process has died.\n",
    )


def test_list_json_holds_the_entries_without_the_key(emu: Emulator, env: dict[str, str]) -> None:
    env["ACTIVITYSMITH_API_KEY"] = "ask_secret_cli_key_123456"
    pid = killed_owner(env)

    listed = cli(env, "list", "--json")

    assert listed.returncode == 0, listed.stderr
    entries: list[dict[str, Any]] = json.loads(listed.stdout)
    assert [e["status"] for e in entries] == ["gone", "gone"]
    assert {e["pid"] for e in entries} == {pid}
    assert entries[1]["stream_key"] == "nightly-etl"
    assert entries[1]["state"] == {"title": "Nightly ETL", "type": "progress", "percentage": 40}
    assert "ask_secret" not in listed.stdout
    assert len(entries[0]["key_fingerprint"]) == 16


def test_cleanup_leaves_orphans_of_another_key(emu: Emulator, env: dict[str, str]) -> None:
    killed_owner(env)
    env["ACTIVITYSMITH_API_KEY"] = "ask_another_key"

    cleaned = cli(env, "cleanup")

    assert cleaned.returncode == 0
    assert cleaned.stdout.count("skipped  ") == 2
    assert "another API key or base URL" in cleaned.stdout
    listed = cli(env, "list")
    assert listed.stdout.count("another API key") == 2


def test_a_failed_cleanup_exits_1_and_keeps_the_entries(emu: Emulator, env: dict[str, str]) -> None:
    killed_owner(env)
    emu.add_fault(Fault.status(503), times=10_000)

    cleaned = cli(env, "cleanup", "--timeout", "1")

    assert cleaned.returncode == 1
    assert cleaned.stdout.startswith("failed   'Nightly backup'")
    assert "503" in cleaned.stdout
    assert len(json.loads(cli(env, "list", "--json").stdout)) == 2


def test_the_ledger_turned_off(env: dict[str, str]) -> None:
    env["ACTIVITYSMITH_TRACK_LEDGER"] = "0"
    for command in ("list", "cleanup"):
        result = cli(env, command)
        assert result.returncode == 0
        assert "the ledger is off (ACTIVITYSMITH_TRACK_LEDGER=0)" in result.stderr
    assert cli(env, "list", "--json").stdout == "[]\n"


def test_an_unreadable_ledger_exits_1_saying_why(env: dict[str, str]) -> None:
    state = Path(env["ACTIVITYSMITH_TRACK_STATE_DIR"])
    state.mkdir(mode=0o700)
    (state / DATABASE_NAME).write_bytes(b"\x00garbage" * 300)

    for command in ("list", "cleanup"):
        result = cli(env, command)
        assert result.returncode == 1
        assert "cannot read the ledger" in result.stderr
        assert "delete it" in result.stderr
