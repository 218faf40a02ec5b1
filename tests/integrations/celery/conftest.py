"""A Redis broker, the emulator and two real Celery workers, shared by the module's tests."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activitysmith_track.emulator import Emulator

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import _support  # noqa: E402


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with _support.redis_server() as url:
        os.environ["ETL_REDIS_URL"] = url
        yield url


@pytest.fixture(scope="session")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def _start_worker(name: str, queues: str, emu: Emulator, redis_url: str, log: Path) -> Any:
    env = _support.worker_env(emu, ETL_REDIS_URL=redis_url, WORKER_NAME=name)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    handle = log.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "etl_app",
            "worker",
            "-n",
            f"{name}@%h",
            "-Q",
            queues,
            "-P",
            "prefork",
            "-c",
            "1",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        cwd=HERE,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    return process, handle


@pytest.fixture(scope="session")
def workers(
    emu: Emulator, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Path]]:
    """Two worker processes: w1 takes the queues first and any, w2 takes second and any."""
    logs = tmp_path_factory.mktemp("celery")
    started = {
        name: _start_worker(name, queues, emu, redis_url, logs / f"{name}.log")
        for name, queues in (("w1", "first,any"), ("w2", "second,any"))
    }
    try:
        for name in started:
            log = logs / f"{name}.log"
            _support.wait_for(
                lambda log=log: "ready." in log.read_text(errors="replace"),
                timeout=60,
                what=f"worker {name} to be ready",
            )
        yield {name: logs / f"{name}.log" for name in started}
    finally:
        for process, _log in started.values():
            process.terminate()
        for process, handle in started.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            handle.close()


@pytest.fixture(scope="session")
def etl(workers: dict[str, Path]) -> Iterator[Any]:
    """The app module, as the test process (the client) imports it."""
    import etl_app

    yield etl_app
    # Results unsubscribe from Redis when they are collected: let them go, and the app's
    # connections with them, while Redis still runs.
    gc.collect()
    # The backend keeps every result it waited on; each one unsubscribes when it goes, which
    # after Redis stopped ends in a noisy reconnect loop at exit.
    pending = etl_app.app.backend._pending_results
    pending.concrete.clear()
    pending.weak.clear()
    etl_app.app.close()
