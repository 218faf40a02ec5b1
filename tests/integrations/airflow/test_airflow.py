"""Airflow DAG runs with `airflow dags test` and `airflow tasks test`, checked on the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _support import sent_states

from activitysmith_track.emulator import ActivityRecord, Emulator


def only_activity(emu: Emulator) -> ActivityRecord:
    (record,) = emu.activities.values()
    return record


def test_a_dag_run_is_one_activity_with_its_tasks_as_steps_and_retries(
    airflow: Any, emu: Emulator
) -> None:
    done = airflow("dags", "test", "nightly_etl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = only_activity(emu)
    assert record.status == "ended"
    assert record.stream_key is not None
    assert record.stream_key.startswith("airflow-nightly_etl-manual")
    assert record.state["title"] == "Nightly etl"
    assert record.state["number_of_steps"] == 3
    assert record.state["current_step"] == 3
    assert record.state["color"] == "green"
    assert record.state["subtitle"].startswith("Done in ")
    shown = [(s.get("current_step"), s.get("subtitle")) for s in sent_states(record)]
    assert (1, "Extract") in shown
    assert (2, "Retrying 1/1: ConnectionError") in shown
    assert (2, "Transform · retry 1/1") in shown
    assert (3, "Load rows") in shown
    assert all(s.get("color") != "red" for s in sent_states(record))
    assert "4711" not in json.dumps([r.body for r in emu.requests])


def test_a_failing_task_fails_the_run_at_its_step(airflow: Any, emu: Emulator) -> None:
    done = airflow("dags", "test", "failing_etl")
    assert done.returncode != 0  # the DAG run failed, and the command says so
    record = only_activity(emu)
    assert record.status == "ended"
    assert record.state["color"] == "red"
    assert record.state["current_step"] == 2
    assert record.state["subtitle"] == "Failed at Load rows: task failed"
    subtitles = [s.get("subtitle") for s in sent_states(record)]
    assert "Failed at Load rows: ValueError" in subtitles  # what the task itself reported
    assert "IBAN" not in json.dumps([r.body for r in emu.requests])


def test_callbacks_in_default_args_track_the_run(airflow: Any, emu: Emulator) -> None:
    done = airflow("dags", "test", "callback_etl")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = only_activity(emu)
    assert record.status == "ended"
    assert record.state["title"] == "Callback ETL"
    assert record.state["color"] == "green"
    assert "Retrying 1/1: TimeoutError" in [s.get("subtitle") for s in sent_states(record)]


def test_tasks_in_separate_processes_advance_one_activity(
    airflow: Any, emu: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "transform").write_text("1")  # its first try already happened: this one passes
    done = airflow("dags", "trigger", "nightly_etl", "--run-id", "shared_run")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for task_id in ("extract", "transform", "load_rows"):
        # Each task in a process of its own, against the same DAG run, as workers run them.
        done = airflow("tasks", "test", "nightly_etl", task_id, "shared_run")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = only_activity(emu)
    assert record.stream_key == "airflow-nightly_etl-shared_run"
    assert record.status == "live"  # no scheduler here to end the run: only tasks ran
    shown = [(s.get("current_step"), s.get("subtitle")) for s in sent_states(record)]
    assert [step for step, _ in shown] == sorted(step for step, _ in shown)
    assert shown[0] == (1, "Extract")
    assert (2, "Transform") in shown
    assert shown[-1] == (3, "Load rows")
