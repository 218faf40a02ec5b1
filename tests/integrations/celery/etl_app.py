"""The Celery app the tests' workers run: tasks that retry, fail, and form a chain.

Configured from the environment (the broker URL), so the test process and each worker
process build the same app. Attempts are counted in Redis, shared by every worker.
"""

from __future__ import annotations

import os
import socket
import time

import redis
from celery import Celery

from activitysmith_track import current_activity, tracked_steps
from activitysmith_track.celery import track_celery

BROKER = os.environ["ETL_REDIS_URL"]

app = Celery("etl_app", broker=f"{BROKER}/0", backend=f"{BROKER}/1")
app.conf.update(
    task_default_queue="any",
    task_routes={
        # Two workers, one queue each (and both take "any"): a chain's steps are placed on
        # different workers on purpose.
        "etl_app.extract": {"queue": "first"},
        "etl_app.transform": {"queue": "second"},
        "etl_app.load": {"queue": "first"},
    },
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
track_celery(app)

_store = redis.Redis.from_url(f"{BROKER}/2")


def _note(task_id: str, what: str) -> None:
    _store.rpush(f"ran:{task_id}", f"{what}@{os.environ.get('WORKER_NAME', socket.gethostname())}")


def attempts(task_id: str) -> list[str]:
    """Where each attempt of a task ran, as ``name@worker``."""
    return [item.decode() for item in _store.lrange(f"ran:{task_id}", 0, -1)]


@app.task(bind=True, max_retries=3, default_retry_delay=0)
def flaky(self, failures: int) -> str:  # type: ignore[no-untyped-def]
    """Fails with ConnectionError ``failures`` times, then succeeds."""
    _note(self.request.id, "flaky")
    if self.request.retries < failures:
        try:
            raise ConnectionError("refused by db-7.internal:5432 for customer 4711")
        except ConnectionError as exc:
            raise self.retry(exc=exc, countdown=0) from exc
    return "ok"


@app.task(autoretry_for=(TimeoutError,), max_retries=1, default_retry_delay=0)
def always_times_out() -> None:
    """Retried once by Celery's autoretry, then fails for good."""
    raise TimeoutError("secret-token-abc123 timed out")


@app.task
def explode() -> None:
    raise ValueError("customer 4711 has a bad IBAN DE44500105175407324931")


@app.task(bind=True)
def extract(self) -> list[int]:  # type: ignore[no-untyped-def]
    _note(self.request.root_id, "extract")
    return [1, 2, 3]


@app.task(bind=True)
def transform(self, rows: list[int], fail: bool = False, pause: float = 0.0) -> list[int]:  # type: ignore[no-untyped-def]
    _note(self.request.root_id, "transform")
    time.sleep(pause)
    if fail:
        raise KeyError("id")
    return [r * 10 for r in rows]


@app.task(bind=True)
def load(self, rows: list[int]) -> int:  # type: ignore[no-untyped-def]
    _note(self.request.root_id, "load")
    return sum(rows)


@app.task
def part(n: int) -> int:
    return n


@app.task
def total(parts: list[int]) -> int:
    return sum(parts)


@tracked_steps("Nightly report", steps=["query", "render"])
@app.task
def report() -> str:
    """tracked_steps above the task decorator: the task is still tracked, with its steps."""
    la = current_activity()
    assert la is not None, "the task runs without an activity"
    la.step()
    la.step()
    la.flush(10)  # so the test sees step 2 itself, not only the end that follows at once
    return "sent"


@app.task(bind=True)
def slow_export(self) -> None:  # type: ignore[no-untyped-def]
    """Runs until it is revoked; says when it has started."""
    _note(self.request.id, "slow_export")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.1)
