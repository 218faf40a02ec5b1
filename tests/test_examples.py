"""Each example runs with one command, against its own emulator, and shows a start and an end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACTIVITYSMITH_", "PYTEST_", "TQDM_"))  # it starts its own emulator
    }
    # The session's private state directory, history off (see conftest): never the user's.
    for kept in ("ACTIVITYSMITH_TRACK_STATE_DIR", "ACTIVITYSMITH_TRACK_HISTORY"):
        env[kept] = os.environ[kept]
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "name", ["backup_script", "batch_function", "etl_pipeline", "tqdm_loop", "logging_bridge"]
)
def test_example_runs_against_an_emulator(name: str) -> None:
    done = run_example(name)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    start = [line for line in lines if line.startswith("POST /live-activity/start -> 200")]
    end = [line for line in lines if line.startswith("POST /live-activity/end -> 200")]
    assert len(start) == 1, done.stdout
    assert len(end) == 1, done.stdout
    assert lines.index(start[0]) < lines.index(end[0])
    assert "color='green'" in end[0]
    assert "Traceback" not in done.stderr


def test_pipeline_of_processes_shares_one_stream() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACTIVITYSMITH_", "PYTEST_"))}
    for kept in ("ACTIVITYSMITH_TRACK_STATE_DIR", "ACTIVITYSMITH_TRACK_HISTORY"):
        env[kept] = os.environ[kept]
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "pipeline_processes.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "/live-activity/stream/" in line]
    assert all("/stream/nightly-etl -> 200" in line for line in lines)
    assert [line.split()[0] for line in lines].count("DELETE") == 1
    assert lines[-1].startswith("DELETE")
    assert "step 3/3" in lines[-1]
    assert "color='green'" in lines[-1]
    for step in ("extract", "transform", "load"):
        assert any(f"subtitle={step!r}" in line for line in lines), step


def test_tqdm_example_draws_the_bar_and_fills_the_card() -> None:
    done = run_example("tqdm_loop")
    assert done.returncode == 0, done.stderr
    assert "Resize photos: 100%" in done.stderr  # tqdm's own bar, on its own stream
    end = [line for line in done.stdout.splitlines() if line.startswith("POST /live-activity/end")]
    assert len(end) == 1
    assert "'Resize photos'  100%" in end[0]


def test_logging_example_shows_each_logged_step() -> None:
    done = run_example("logging_bridge")
    assert done.returncode == 0, done.stderr
    # The first line may ride on the start (sent in the background) or follow it.
    shown = [line for line in done.stdout.splitlines() if line.startswith("POST /live-activity/")]
    for text in ("extracting orders", "transforming 1,200 orders", "loading orders"):
        assert any(text in line for line in shown), (text, done.stdout)
    assert "connection pool warm" not in done.stdout


def test_a_job_that_ran_before_tells_when_it_will_finish() -> None:
    done = run_example("eta")
    assert done.returncode == 0, done.stderr
    starts = [line for line in done.stdout.splitlines() if "/live-activity/start" in line]
    assert "usually" not in starts[0]  # a first run
    assert "subtitle='extract · usually 10 s · ~10 s left'" in starts[1]
    assert any("left'" in line for line in done.stdout.splitlines() if "Resize photos" in line)
