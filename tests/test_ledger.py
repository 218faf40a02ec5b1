"""The ledger of open activities: recording, orphans after real kills, and ending them on the
emulator as the contract wants each type ended."""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activitysmith_track import Client, ContentState, RetryPolicy, Settings
from activitysmith_track import _ledger as ledger
from activitysmith_track._config import resolve_settings
from activitysmith_track._store import DATABASE_NAME, forget_stores
from activitysmith_track.emulator import Emulator, Fault

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes and signals")

LINUX = sys.platform.startswith("linux")
KEY = "ask_ledger_test_key_1234567890"


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    yield
    forget_stores()


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def settings_for(emu_url: str, state: Path, *, api_key: str = KEY, **extra: Any) -> Settings:
    return resolve_settings(
        {"base_url": emu_url, "state_dir": str(state), "api_key": api_key, **extra}, env={}
    )


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "activitysmith_track" and r.levelno >= logging.WARNING
    ]


# A child process that starts activities on the emulator the way the dispatcher will (start,
# then record; a stream recorded before its first PUT), sends a state, and then either exits
# without ending them or waits to be killed.
OWNER = textwrap.dedent("""
    import json, sys, time
    from activitysmith_track import Client, ContentState
    from activitysmith_track import _ledger
    from activitysmith_track._config import resolve_settings

    spec = json.loads(sys.argv[1])
    settings = resolve_settings(spec["settings"], env={})
    client = Client(settings.api_key, base_url=settings.base_url)
    for item in spec["activities"]:
        state = ContentState.from_json(item["start"])
        if item.get("stream_key"):
            ticket = _ledger.record_start(
                settings, title=state.title, stream_key=item["stream_key"], state=state
            )
            client.put_stream(item["stream_key"], state)
        else:
            result = client.start(state)
            ticket = _ledger.record_start(
                settings, title=state.title, activity_id=result.activity_id, state=state
            )
        assert ticket is not None
        if item.get("update"):
            later = ContentState.from_json(item["update"])
            if item.get("stream_key"):
                client.put_stream(item["stream_key"], later)
            else:
                client.update(result.activity_id, later)
            _ledger.record_state(ticket, later)
    print("ready", flush=True)
    if spec.get("wait"):
        time.sleep(120)
""")


def owner_spec(settings: Settings, activities: list[dict[str, Any]], *, wait: bool) -> str:
    return json.dumps(
        {
            "settings": {
                "base_url": settings.base_url,
                "state_dir": settings.state_dir,
                "api_key": settings.api_key,
            },
            "activities": activities,
            "wait": wait,
        }
    )


def run_owner(settings: Settings, activities: list[dict[str, Any]]) -> None:
    """Start ``activities`` in a child that exits without ending them: orphans."""
    done = subprocess.run(
        [sys.executable, "-c", OWNER, owner_spec(settings, activities, wait=False)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def requests_to(emu: Emulator, method: str) -> list[Any]:
    return [r for r in emu.requests if r.method == method]


SEGMENTED = {
    "start": {
        "title": "Nightly backup",
        "type": "segmented_progress",
        "number_of_steps": 3,
        "current_step": 1,
        "subtitle": "create snapshot",
    },
    "update": {
        "title": "Nightly backup",
        "type": "segmented_progress",
        "number_of_steps": 3,
        "current_step": 2,
        "subtitle": "upload archive",
    },
}


# -- recording -------------------------------------------------------------------------------


def test_an_entry_holds_what_cleanup_needs_and_never_the_key(state: Path) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    ticket = ledger.record_start(
        settings,
        title="Backup",
        activity_id="act-1",
        state=ContentState(title="Backup", type="timer", counts_down=False),
    )
    assert ticket is not None
    ledger.record_state(ticket, {"title": "Backup", "subtitle": "upload", "type": "timer"})

    (entry,) = ledger.open_entries(settings)
    assert entry.activity_id == "act-1"
    assert entry.stream_key is None
    assert entry.title == "Backup"
    assert entry.pid == os.getpid()
    assert entry.base_url == "http://127.0.0.1:9/api"
    assert entry.key_fingerprint == ledger.key_fingerprint(KEY)
    assert len(entry.key_fingerprint) == 16
    assert entry.state == {"title": "Backup", "subtitle": "upload", "type": "timer"}
    assert entry.kind == "timer"
    assert entry.status is ledger.OwnerStatus.RUNNING
    if LINUX:
        assert entry.process_start is not None

    raw = b"".join(p.read_bytes() for p in state.iterdir())
    assert KEY.encode() not in raw
    assert KEY[4:20].encode() not in raw

    ledger.record_end(ticket)
    assert ledger.open_entries(settings) == []


def test_a_state_without_type_keeps_the_recorded_type(state: Path) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    ticket = ledger.record_start(
        settings,
        title="T",
        activity_id="a",
        state={"title": "T", "type": "progress", "percentage": 5},
    )
    ledger.record_state(ticket, {"title": "T", "percentage": 40})
    (entry,) = ledger.open_entries(settings)
    assert entry.kind == "progress"
    assert ledger.final_state(entry)["type"] == "progress"


def test_the_ledger_can_be_turned_off(state: Path) -> None:
    off = settings_for("http://127.0.0.1:9/api", state, ledger=False)
    assert ledger.record_start(off, title="T", stream_key="k") is None
    assert not state.exists()
    from_env = resolve_settings(
        env={"ACTIVITYSMITH_TRACK_LEDGER": "0", "ACTIVITYSMITH_TRACK_STATE_DIR": str(state)}
    )
    assert ledger.record_start(from_env, title="T", stream_key="k") is None
    assert not state.exists()
    disabled = settings_for("http://127.0.0.1:9/api", state, disabled=True)
    assert ledger.record_start(disabled, title="T", stream_key="k") is None


def test_misuse_never_raises(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    assert ledger.record_start(settings, title="T") is None  # neither id nor key
    ledger.record_state(None, {"title": "T"})
    ledger.record_end(None)
    bogus = ledger.Ticket(directory=str(state / "nowhere" / "x"), entry_id=5, pid=os.getpid())
    ledger.record_state(bogus, {"title": object()})  # not JSON: default=str copes
    ledger.record_end(bogus)
    assert len(warnings_of(caplog)) <= 2


def test_threads_of_one_process_share_the_ledger(state: Path) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(40):
                ticket = ledger.record_start(settings, title=f"t{n}-{i}", stream_key=f"k{n}-{i}")
                assert ticket is not None
                ledger.record_state(ticket, {"title": f"t{n}-{i}", "subtitle": "x"})
                if i % 4:
                    ledger.record_end(ticket)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(ledger.open_entries(settings)) == 6 * 10


WRITER = textwrap.dedent("""
    import sys
    from activitysmith_track import _ledger
    from activitysmith_track._config import resolve_settings

    name, state_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = resolve_settings(
        {"base_url": "http://127.0.0.1:9/api", "state_dir": state_dir, "api_key": "ask_x"},
        env={},
    )
    sys.stdin.readline()  # every writer starts at the same moment
    for i in range(rounds):
        ticket = _ledger.record_start(settings, title=f"{name}-{i}", activity_id=f"{name}-{i}")
        assert ticket is not None, "record_start failed"
        _ledger.record_state(ticket, {"title": f"{name}-{i}", "subtitle": "step"})
        if i % 10:
            _ledger.record_end(ticket)
    print(len(_ledger.open_entries(settings)), flush=True)
""")


def test_concurrent_processes_write_without_losing_or_failing(state: Path) -> None:
    writers, rounds = 5, 60
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, f"w{n}", str(state), str(rounds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err == ""  # not one warning: nothing was skipped
        assert int(out) >= rounds // 10
    settings = settings_for("http://127.0.0.1:9/api", state, api_key="ask_x")
    entries = ledger.open_entries(settings)
    assert sorted(e.title for e in entries) == sorted(
        f"w{n}-{i}" for n in range(writers) for i in range(0, rounds, 10)
    )
    assert all(e.state == {"title": e.title, "subtitle": "step"} for e in entries)
    # Every writer has exited: each of its entries is an orphan now.
    assert {e.status for e in entries} == {ledger.OwnerStatus.GONE}


# -- owners ------------------------------------------------------------------------------------


@pytest.mark.skipif(not LINUX, reason="process start times come from /proc")
def test_a_reused_pid_is_not_taken_for_the_owner(state: Path) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    ticket = ledger.record_start(settings, title="T", stream_key="k")
    assert ticket is not None
    (entry,) = ledger.open_entries(settings)
    assert entry.status is ledger.OwnerStatus.RUNNING
    # The same pid, started at another moment: another process has the pid now.
    with sqlite3.connect(state / DATABASE_NAME) as conn:
        conn.execute("UPDATE ledger_entries SET process_start = process_start || '0'")
    conn.close()
    (entry,) = ledger.open_entries(settings)
    assert entry.pid == os.getpid()
    assert entry.status is ledger.OwnerStatus.GONE


@pytest.mark.skipif(not LINUX, reason="zombies are read from /proc")
def test_an_exited_owner_not_yet_reaped_is_gone() -> None:
    with subprocess.Popen([sys.executable, "-c", "print('x')"], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        start = ledger.process_start(proc.pid)
        assert start is not None
        proc.stdout.read()
        deadline = time.monotonic() + 10
        while ledger.owner_running(proc.pid, start) and time.monotonic() < deadline:
            time.sleep(0.01)  # polling the process table, not waiting on a thread
        assert not ledger.owner_running(proc.pid, start)
        assert os.waitpid(proc.pid, os.WNOHANG)[0] in (0, proc.pid)
        proc.wait()


def test_without_a_start_time_the_pid_alone_decides() -> None:
    assert ledger.owner_running(os.getpid(), None)
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    assert not ledger.owner_running(proc.pid, None)


def test_an_entry_from_another_host_is_listed_but_never_ended(
    emulator: Emulator, state: Path
) -> None:
    settings = settings_for(emulator.base_url, state)
    ticket = ledger.record_start(settings, title="T", stream_key="k")
    assert ticket is not None
    with sqlite3.connect(state / DATABASE_NAME) as conn:
        conn.execute("UPDATE ledger_entries SET host = 'elsewhere', pid = 999999999")
    conn.close()
    (entry,) = ledger.open_entries(settings)
    assert entry.status is ledger.OwnerStatus.OTHER_HOST
    assert ledger.orphans(settings) == []
    assert ledger.end_orphans(settings) == []
    assert emulator.requests == []


# -- orphans -----------------------------------------------------------------------------------


def test_orphans_of_a_sigkilled_process_are_ended_showing_where_they_stopped(
    emulator: Emulator, state: Path
) -> None:
    settings = settings_for(emulator.base_url, state)
    timer = {"start": {"title": "Export", "type": "timer", "duration_seconds": 600}}
    stream = {"stream_key": "nightly-etl", **SEGMENTED}
    spec = owner_spec(settings, [SEGMENTED, timer, stream], wait=True)
    with subprocess.Popen(
        [sys.executable, "-c", OWNER, spec], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        assert {e.status for e in ledger.open_entries(settings)} == {ledger.OwnerStatus.RUNNING}
        assert ledger.end_orphans(settings) == []  # the owner still runs: nothing to do
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL

    found = ledger.orphans(settings)
    assert sorted(e.target.split()[0] for e in found) == ["activity", "activity", "stream"]
    assert {e.pid for e in found} == {proc.pid}
    before = len(emulator.requests)

    results = ledger.end_orphans(settings)

    assert [r.action for r in results] == ["ended", "ended", "ended"], results
    assert ledger.open_entries(settings) == []
    assert len(emulator.requests) == before + 3
    manual = {a.state["title"]: a for a in emulator.activities.values() if a.stream_key is None}
    backup, export = manual["Nightly backup"], manual["Export"]
    assert backup.status == "ended"
    assert backup.state["subtitle"] == "Stopped at upload archive: the process died"
    assert backup.state["current_step"] == 2
    assert (backup.state["color"], backup.state["step_color"]) == ("gray", "gray")
    assert export.status == "ended"
    assert export.state["is_running"] is False
    assert export.state["color"] == "gray"
    assert export.state["subtitle"] == "Stopped: the process died"
    record = emulator.stream_activity("nightly-etl")
    assert record is not None
    assert record.status == "ended"
    assert record.state["subtitle"] == "Stopped at upload archive: the process died"
    delete = requests_to(emulator, "DELETE")[-1]
    assert delete.body["content_state"]["current_step"] == 2
    end = [r for r in emulator.requests if r.path == "/live-activity/end"]
    assert all("duration_seconds" not in r.body["content_state"] for r in end)


@pytest.mark.parametrize(
    "start",
    [
        {"title": "S", "type": "segmented_progress", "number_of_steps": 4, "current_step": 0},
        {"title": "P", "type": "progress", "percentage": 40},
        {"title": "P", "type": "progress", "value": 3, "upper_limit": 12},
        {"title": "M", "type": "metrics", "metrics": [{"label": "rows", "value": 5}]},
        {"title": "S", "type": "stats", "metrics": [{"label": "rows", "value": 5}]},
        {"title": "A", "type": "alert", "message": "disk almost full"},
        {"title": "T", "type": "timer", "counts_down": False},
        {"title": "T", "type": "timer", "duration_seconds": 90},
        {"title": "V", "type": "value", "value": "$1,240"},
    ],
    ids=lambda s: f"{s['type']}-{len(s)}",
)
@pytest.mark.parametrize("mode", ["manual", "stream"])
def test_every_type_of_orphan_ends_as_the_contract_wants(
    emulator: Emulator, state: Path, start: dict[str, Any], mode: str
) -> None:
    from activitysmith_openapi.models.live_activity_end_request import LiveActivityEndRequest
    from activitysmith_openapi.models.live_activity_stream_delete_request import (
        LiveActivityStreamDeleteRequest,
    )

    settings = settings_for(emulator.base_url, state)
    item = {"start": start, **({"stream_key": "k"} if mode == "stream" else {})}
    run_owner(settings, [item])

    (result,) = ledger.end_orphans(settings)

    assert result.action == "ended", result.detail
    (sent,) = [r for r in emulator.requests if r.method == "DELETE" or r.path.endswith("/end")]
    assert sent.status == 200
    # The official SDK's models are the oracle for the end request's shape.
    if mode == "stream":
        LiveActivityStreamDeleteRequest.from_dict(sent.body)
    else:
        LiveActivityEndRequest.from_dict(sent.body)
    final = sent.body["content_state"]
    assert final["color"] == "gray"
    assert final["subtitle"].endswith("the process died")
    assert final["type"] == start["type"]
    for field in ("current_step", "percentage", "value", "upper_limit", "message", "metrics"):
        if field in start:
            assert final[field] == start[field]
    if start["type"] == "timer":
        assert final["is_running"] is False
        assert "duration_seconds" not in final


def test_a_stream_still_held_by_a_live_process_is_not_ended(
    emulator: Emulator, state: Path
) -> None:
    settings = settings_for(emulator.base_url, state)
    run_owner(settings, [{"stream_key": "pipeline", **SEGMENTED}])
    # This process holds the same stream now (the next stage of the pipeline).
    holder = ledger.record_start(settings, title="Nightly backup", stream_key="pipeline")
    assert holder is not None
    before = len(emulator.requests)

    (result,) = ledger.end_orphans(settings)

    assert result.action == "dropped"
    assert f"held by pid {os.getpid()}" in result.detail
    assert len(emulator.requests) == before
    record = emulator.stream_activity("pipeline")
    assert record is not None
    assert record.status != "ended"
    (left,) = ledger.open_entries(settings)
    assert left.pid == os.getpid()


def test_a_stream_this_process_went_on_from_is_not_ended_after_it_handed_it_on(
    emulator: Emulator, state: Path
) -> None:
    # A pipeline step run again after a crash takes up the stream, hands it on and drops its
    # own entry, all before its cleanup reaches the crashed step's orphan: that orphan is one
    # it went on from, not an activity to end.
    settings = settings_for(emulator.base_url, state)
    # Streams of another account, more than the ledger keeps per account, change nothing.
    elsewhere = settings_for("http://127.0.0.1:9/api", state)
    for n in range(ledger._TAKEN_UP_KEPT + 1):
        ledger.record_end(ledger.record_start(elsewhere, title="Other", stream_key=f"other-{n}"))
    run_owner(settings, [{"stream_key": "resumed", **SEGMENTED}])
    ticket = ledger.record_start(settings, title="Nightly backup", stream_key="resumed")
    assert ticket is not None
    ledger.record_end(ticket)  # handed on
    before = len(emulator.requests)

    (result,) = ledger.end_orphans(settings)

    assert (result.action, result.detail) == ("dropped", "this process went on from it")
    assert len(emulator.requests) == before
    record = emulator.stream_activity("resumed")
    assert record is not None
    assert record.status == "live"
    assert ledger.open_entries(settings) == []


def test_a_streams_orphan_newer_than_this_process_taking_it_up_is_still_ended(
    emulator: Emulator, state: Path
) -> None:
    # A later step that crashed after this process handed the stream on left a newer orphan.
    settings = settings_for(emulator.base_url, state)
    ticket = ledger.record_start(settings, title="Nightly backup", stream_key="handed-on")
    assert ticket is not None
    ledger.record_end(ticket)
    run_owner(settings, [{"stream_key": "handed-on", **SEGMENTED}])

    (result,) = ledger.end_orphans(settings)

    assert result.action == "ended"
    record = emulator.stream_activity("handed-on")
    assert record is not None
    assert record.status == "ended"


def test_orphans_of_another_key_or_base_url_are_left_for_their_own(
    emulator: Emulator, state: Path
) -> None:
    theirs = settings_for(emulator.base_url, state, api_key="ask_someone_else")
    run_owner(theirs, [SEGMENTED])
    ours = settings_for(emulator.base_url, state)
    before = len(emulator.requests)

    (result,) = ledger.end_orphans(ours)
    assert (result.action, result.detail) == ("skipped", "started with another API key or base URL")
    assert len(emulator.requests) == before
    (result,) = ledger.end_orphans(theirs)
    assert result.action == "ended"


def test_orphans_of_an_emulator_that_is_gone_are_dropped_without_a_request(
    emulator: Emulator, state: Path
) -> None:
    with Emulator() as old:
        run_owner(settings_for(old.base_url, state), [SEGMENTED])
    settings = settings_for(emulator.base_url, state)

    (result,) = ledger.end_orphans(settings)

    assert result.action == "dropped"
    assert emulator.requests == []
    assert ledger.open_entries(settings) == []


def test_a_failed_end_is_kept_for_the_next_run(emulator: Emulator, state: Path) -> None:
    settings = settings_for(emulator.base_url, state, retry=RetryPolicy(max_attempts=2))
    run_owner(settings, [SEGMENTED])
    emulator.add_fault(Fault.status(503), path="/live-activity/end", times=2)

    (result,) = ledger.end_orphans(settings)
    assert result.action == "failed"
    assert "503" in result.detail
    assert len(ledger.orphans(settings)) == 1
    assert emulator.pending_faults == []

    (result,) = ledger.end_orphans(settings)
    assert result.action == "ended"
    assert ledger.open_entries(settings) == []


def test_an_activity_the_server_does_not_know_is_dropped(emulator: Emulator, state: Path) -> None:
    settings = settings_for(emulator.base_url, state)
    run_owner(settings, [{"stream_key": "gone", **SEGMENTED}])
    client = Client(KEY, base_url=emulator.base_url)
    client.delete_stream("gone")  # ended by someone else meanwhile
    client.close()
    emulator.reset()

    (result,) = ledger.end_orphans(settings)

    assert result.action == "dropped"
    assert "404" in result.detail
    assert ledger.open_entries(settings) == []


def test_two_cleanups_at_once_end_each_orphan_once(emulator: Emulator, state: Path) -> None:
    settings = settings_for(emulator.base_url, state)
    run_owner(settings, [SEGMENTED, SEGMENTED, SEGMENTED])
    emulator.latency = 0.2  # both cleanups are inside their requests at the same time
    results: list[list[ledger.Cleanup]] = []
    threads = [
        threading.Thread(target=lambda: results.append(ledger.end_orphans(settings)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    ended = [r for batch in results for r in batch if r.action == "ended"]
    assert len(ended) == 3
    assert len([r for r in emulator.requests if r.path == "/live-activity/end"]) == 3


def test_the_background_sweep_runs_once_per_process_and_account(
    emulator: Emulator, state: Path
) -> None:
    settings = settings_for(emulator.base_url, state)
    run_owner(settings, [SEGMENTED])

    thread = ledger.sweep_in_background(settings)
    assert thread is not None
    assert thread.daemon
    thread.join(30)
    assert ledger.open_entries(settings) == []
    assert [a.status for a in emulator.activities.values()] == ["ended"]
    assert ledger.sweep_in_background(settings) is None
    assert ledger.sweep_in_background(settings_for(emulator.base_url, state, ledger=False)) is None


def test_a_forked_child_never_ends_its_parents_entries(state: Path) -> None:
    settings = settings_for("http://127.0.0.1:9/api", state)
    ticket = ledger.record_start(settings, title="Parent's", stream_key="parent")
    assert ticket is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            ledger.record_state(ticket, {"title": "child's"})
            ledger.record_end(ticket)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (entry,) = ledger.open_entries(settings)
    assert entry.title == "Parent's"
    assert entry.state is None
