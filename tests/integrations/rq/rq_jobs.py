"""Jobs the tests' RQ workers run; attempts are counted in Redis, shared by every worker."""

from __future__ import annotations

import os
import time

import redis
from rq import Retry, get_current_job

from activitysmith_track import current_activity
from activitysmith_track.rq import tracked_job


def _store() -> redis.Redis:
    return redis.Redis.from_url(os.environ["ETL_REDIS_URL"])


def _attempt() -> int:
    job = get_current_job()
    assert job is not None
    return int(_store().incr(f"attempts:{job.id}"))


@tracked_job("Import orders", steps=["download", "load"])
def import_orders(failures: int) -> int:
    la = current_activity()
    assert la is not None
    la.step()
    if _attempt() <= failures:
        time.sleep(0.6)  # the attempts add up to over a second
        raise ConnectionError("sftp.partner-4711.example refused the login")
    la.step()
    return 42


@tracked_job
def nightly_cleanup() -> str:
    raise ValueError("row for customer 4711 is locked")


@tracked_job
def poll_export() -> Retry | str:
    """Asks RQ to run it again (returns Retry) until its third attempt."""
    if _attempt() < 3:
        return Retry(max=3)
    return "ready"


@tracked_job("Long export")
def long_export() -> None:
    _store().set(f"started:{get_current_job().id}", 1)  # type: ignore[union-attr]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
