"""Redis (Debian's redis-server) and the emulator; each test runs real RQ workers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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


@pytest.fixture
def emu(redis_url: str) -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def queue(redis_url: str) -> Iterator[object]:
    import redis
    from rq import Queue

    connection = redis.Redis.from_url(redis_url)
    connection.flushdb()
    yield Queue("etl", connection=connection)
    connection.close()


def worker_command(redis_url: str, *, burst: bool) -> list[str]:
    command = [sys.executable, "-m", "rq.cli", "worker", "--url", redis_url, "etl"]
    return [*command, "--burst"] if burst else command


def worker_env(emu: Emulator, redis_url: str) -> dict[str, str]:
    env = _support.worker_env(emu, ETL_REDIS_URL=redis_url)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def run_workers(emu: Emulator, redis_url: str) -> object:
    """Run ``n`` burst workers side by side until the queue is empty."""

    def run(n: int = 2) -> None:
        processes = [
            subprocess.Popen(
                worker_command(redis_url, burst=True),
                cwd=HERE,
                env=worker_env(emu, redis_url),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(n)
        ]
        for process in processes:
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, output

    return run
