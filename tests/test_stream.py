"""Stream mode: one activity driven through PUT/DELETE, across processes and restarts."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from activitysmith_track import (
    ArgumentTypeError,
    ValidationError,
    live_activity,
    stream_key_from,
)
from activitysmith_track.emulator import Emulator, Fault, RecordedRequest

STEPS = ["extract", "transform", "load"]


def stream_requests(emu: Emulator, key: str) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.path == f"/live-activity/stream/{key}"]


def run_step(emu: Emulator, code: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACTIVITYSMITH_BASE_URL": emu.base_url,
        "ACTIVITYSMITH_TRACK_DEBOUNCE": "0",
        "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT": "5",
    }
    env.pop("ACTIVITYSMITH_API_KEY", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


STEP_SCRIPT = """
    import sys
    from activitysmith_track import live_activity
    step = {step!r}
    with live_activity("Nightly ETL", stream_key="nightly-etl", steps={steps!r}, step=step) as la:
        if {fail!r}:
            raise RuntimeError("bad rows")
    print(la.operation)
"""


def test_single_process_stream_lifecycle(emu: Emulator) -> None:
    with live_activity("Backup", stream_key="nightly-backup", steps=2) as la:
        la.step("snapshot")
        la.flush()
        assert la.operation in {"started", "updated"}
        la.step("upload")
        la.flush()
        assert la.operation == "updated"
    assert la.operation == "ended"
    requests = stream_requests(emu, "nightly-backup")
    assert [r.method for r in requests][-1] == "DELETE"
    assert all(r.method == "PUT" for r in requests[:-1])
    # Every PUT carries the type, so a fresh activity can always start from it.
    assert all(
        r.body and r.body["content_state"]["type"] == "segmented_progress" for r in requests[:-1]
    )
    final = requests[-1].body
    assert final is not None
    assert final["content_state"]["current_step"] == 2
    assert final["content_state"]["color"] == "green"
    assert len(emu.activities) == 1
    record = next(iter(emu.activities.values()))
    assert record.status == "ended"
    assert record.stream_key == "nightly-backup"
    assert la.activity_id == record.id


def test_three_process_pipeline_ends_in_success(emu: Emulator) -> None:
    outputs = [
        run_step(emu, STEP_SCRIPT.format(step=name, steps=STEPS, fail=False)).stdout.strip()
        for name in STEPS
    ]
    # Steps 1 and 2 hand the stream on (their last PUT repeats the state: noop); 3 ends it.
    assert outputs[-1] == "ended"
    assert set(outputs[:2]) <= {"started", "updated", "noop"}
    assert len(emu.activities) == 1
    record = next(iter(emu.activities.values()))
    assert record.status == "ended"
    assert record.state["current_step"] == 3
    assert record.state["color"] == "green"
    methods = [r.method for r in stream_requests(emu, "nightly-etl")]
    assert methods.count("DELETE") == 1
    assert methods[-1] == "DELETE"
    puts = [r.body for r in stream_requests(emu, "nightly-etl") if r.method == "PUT"]
    steps_seen = [b["content_state"]["current_step"] for b in puts if b]
    assert steps_seen == sorted(steps_seen)
    assert {1, 2, 3} <= set(steps_seen)


def test_three_process_pipeline_ends_in_failure(emu: Emulator) -> None:
    run_step(emu, STEP_SCRIPT.format(step="extract", steps=STEPS, fail=False))
    failed = run_step(
        emu, STEP_SCRIPT.format(step="transform", steps=STEPS, fail=True), check=False
    )
    assert failed.returncode == 1
    assert "RuntimeError: bad rows" in failed.stderr
    record = next(iter(emu.activities.values()))
    assert record.status == "ended"
    assert record.state["color"] == "red"
    assert record.state["current_step"] == 2
    assert record.state["subtitle"] == "Failed at transform: RuntimeError"


def test_restarted_process_continues_the_same_activity(emu: Emulator) -> None:
    crash = """
        import os
        from activitysmith_track import live_activity
        la = live_activity("Import", stream_key="import-42", steps=4).start()
        la.step("download")
        la.flush()
        os._exit(9)   # killed: no end, no atexit
    """
    run_step(emu, crash, check=False)
    first = emu.stream_activity("import-42")
    assert first is not None
    assert first.status == "live"
    resume = """
        from activitysmith_track import live_activity
        with live_activity("Import", stream_key="import-42", steps=4, step={step}) as la:
            pass
    """
    run_step(emu, resume.format(step=2))
    record = emu.stream_activity("import-42")
    assert record is not None
    assert (record.id, record.status, record.state["current_step"]) == (first.id, "live", 2)
    run_step(emu, resume.format(step=4))
    assert len(emu.activities) == 1
    record = emu.stream_activity("import-42")
    assert record is not None
    assert (record.id, record.status, record.state["current_step"]) == (first.id, "ended", 4)


def test_concurrent_writers_share_one_activity_and_the_last_state_wins(emu: Emulator) -> None:
    writer = """
        from activitysmith_track import live_activity
        with live_activity("Shards", stream_key="shards", steps=8, step={n}) as la:
            la.update(subtitle="shard {n}")
            la.flush()
    """
    env = {
        **os.environ,
        "ACTIVITYSMITH_BASE_URL": emu.base_url,
        "ACTIVITYSMITH_TRACK_DEBOUNCE": "0",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(writer.format(n=n))],
            env=env,
        )
        for n in range(1, 5)
    ]
    for proc in procs:
        proc.wait(timeout=60)
        assert proc.returncode == 0
    # The last PUT the server accepted is the state it shows (and shows once: one activity).
    stream_puts = [
        r for r in stream_requests(emu, "shards") if r.method == "PUT" and r.status == 200
    ]
    record = emu.stream_activity("shards")
    assert record is not None
    assert [a.stream_key for a in emu.activities.values()] == ["shards"]
    last = stream_puts[-1].body
    assert last is not None
    assert record.state["subtitle"] == last["content_state"]["subtitle"]
    assert record.state["current_step"] == last["content_state"]["current_step"]


def test_delete_of_a_stream_already_ended_elsewhere_counts_as_ended(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Job", stream_key="gone", strict=True) as la:
        la.flush()
        # Another process of the pipeline ends the stream first: our DELETE gets a 404.
        emu.add_fault(Fault.status(404), path="/live-activity/stream/gone")
    assert la.errors == []
    assert not caplog.records


def test_paused_stream_is_logged_once_and_not_retried_in_a_loop(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Job", stream_key="muted", steps=3) as la:
        la.flush()
        emu.pause_stream("muted")
        la.step("a")
        la.flush()
        assert la.operation == "paused"
        la.step("b")
        la.flush()
    paused_logs = [r for r in caplog.records if "paused" in r.getMessage()]
    assert len(paused_logs) == 1
    puts = [r for r in stream_requests(emu, "muted") if r.method == "PUT"]
    assert len(puts) <= 4


def test_unknown_operation_is_logged_not_fatal(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    body: dict[str, Any] = {
        "success": True,
        "operation": "teleported",
        "stream_key": "odd",
        "activity_id": "abc",
        "timestamp": "2026-01-01T00:00:00.000Z",
    }
    emu.add_fault(Fault.status(200, body=body), path="/live-activity/stream/odd")
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Job", stream_key="odd", strict=True) as la:
        la.flush()
        assert la.operation == "teleported"
    assert any("teleported" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"stream_key": "a b"}, ValidationError, "stream_key"),
        ({"stream_key": "x" * 256}, ValidationError, "stream_key"),
        ({"stream_key": 5}, ArgumentTypeError, "stream_key"),
        ({"stream_key": "ok", "steps": 3, "step": 4}, ValidationError, "step"),
        ({"stream_key": "ok", "steps": ["a"], "step": "b"}, ValidationError, "step"),
        ({"steps": 3, "step": 2}, ValidationError, "step"),
        ({"stream_key": "ok", "step": 1}, ValidationError, "step"),
    ],
)
def test_bad_stream_arguments(
    emu: Emulator, kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        live_activity("Job", **kwargs)
    assert field in str(caught.value)
    assert emu.requests == []


def test_stream_key_from_any_text() -> None:
    key = stream_key_from("/var/backups/nightly db.sql")
    assert key == "var-backups-nightly-db-sql"
    with live_activity("Job", stream_key=key, settings=None, strict=False, flush_timeout=0):
        pass


def test_ending_a_middle_step_with_fields_hands_the_stream_on(emu: Emulator) -> None:
    with live_activity("Nightly ETL", stream_key="etl-mid", steps=STEPS, step="extract") as la:
        la.end(subtitle="extracted 5 rows")
    requests = stream_requests(emu, "etl-mid")
    assert [r.method for r in requests] == ["PUT", "PUT"]
    record = emu.stream_activity("etl-mid")
    assert record is not None
    assert record.status == "live"
    assert record.state["subtitle"] == "extracted 5 rows"
    assert record.state["current_step"] == 1
