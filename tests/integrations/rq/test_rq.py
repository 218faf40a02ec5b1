"""RQ with Redis and real worker processes, checked on the emulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import rq_jobs
from _support import activities_of, ended_activity, sent_states, wait_for
from conftest import HERE, worker_command, worker_env
from rq import Callback, Retry
from rq.command import send_stop_job_command

from activitysmith_track import stream_key_from
from activitysmith_track.emulator import Emulator
from activitysmith_track.rq import on_stopped


def key(job: Any) -> str:
    return stream_key_from(f"rq-{job.id}")


def test_a_retried_job_is_one_activity_showing_its_retries(
    queue: Any, emu: Emulator, run_workers: Any
) -> None:
    job = queue.enqueue(rq_jobs.import_orders, 2, retry=Retry(max=3))
    run_workers()
    assert job.get_status(refresh=True) == "finished"
    record = ended_activity(emu, key(job))
    assert len(activities_of(emu, key(job))) == 1
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Retrying 1/3: ConnectionError" in subtitles
    assert "Retrying 2/3: ConnectionError" in subtitles
    assert all(s.get("color") != "red" for s in sent_states(record))
    assert record.state["color"] == "green"
    assert record.state["current_step"] == 2
    assert record.state["title"] == "Import orders"
    # The time of all three attempts, not only the last one's.
    subtitle = record.state["subtitle"]
    assert subtitle.startswith("Done in ")
    assert int(subtitle.removeprefix("Done in ").removesuffix("s")) >= 1
    assert "4711" not in json.dumps([r.body for r in emu.requests])


def test_a_job_out_of_retries_fails_at_its_step(
    queue: Any, emu: Emulator, run_workers: Any
) -> None:
    job = queue.enqueue(rq_jobs.import_orders, 5, retry=Retry(max=1))
    run_workers()
    assert job.get_status(refresh=True) == "failed"
    record = ended_activity(emu, key(job))
    assert len(activities_of(emu, key(job))) == 1
    assert "Retrying 1/1: ConnectionError" in [s.get("subtitle") for s in sent_states(record)]
    assert record.state["color"] == "red"
    assert record.state["subtitle"] == "Failed at download: ConnectionError"


def test_a_failing_job_names_the_exception_type_only(
    queue: Any, emu: Emulator, run_workers: Any
) -> None:
    job = queue.enqueue(rq_jobs.nightly_cleanup)
    run_workers(1)
    record = ended_activity(emu, key(job))
    assert record.state["title"] == "Nightly cleanup"
    assert record.state["color"] == "red"
    assert record.state["subtitle"].endswith(": ValueError")
    assert "4711" not in json.dumps([r.body for r in emu.requests])


def test_a_job_returning_retry_is_one_activity(queue: Any, emu: Emulator, run_workers: Any) -> None:
    job = queue.enqueue(rq_jobs.poll_export)
    run_workers(1)
    assert job.get_status(refresh=True) == "finished"
    record = ended_activity(emu, key(job))
    assert len(activities_of(emu, key(job))) == 1
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Retrying 1/3" in subtitles
    assert "Retrying 2/3" in subtitles
    assert record.state["color"] == "green"


def test_a_stopped_job_ends_cancelled(
    queue: Any, emu: Emulator, redis_url: str, tmp_path: Path
) -> None:
    job = queue.enqueue(rq_jobs.long_export, on_stopped=Callback(on_stopped))
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            worker_command(redis_url, burst=True),
            cwd=HERE,
            env=worker_env(emu, redis_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(lambda: queue.connection.get(f"started:{job.id}"), what="the job to start")
            wait_for(lambda: emu.stream_activity(key(job)), what="the activity to start")
            send_stop_job_command(queue.connection, job.id)
            record = ended_activity(emu, key(job))
        finally:
            worker.wait(timeout=60)
    assert job.get_status(refresh=True) == "stopped"
    assert record.state["color"] == "orange"
    assert record.state["subtitle"].startswith("Cancelled")
    assert len(activities_of(emu, key(job))) == 1


def test_called_outside_a_worker_the_function_just_runs(emu: Emulator) -> None:
    assert rq_jobs.poll_export.__name__ == "poll_export"
    assert rq_jobs.nightly_cleanup.__module__ == "rq_jobs"
    with pytest.raises(ValueError, match="locked"):
        rq_jobs.nightly_cleanup()
    assert emu.requests == []
