"""DAGs for the tests: a retried task, a failing task, and one tracked by callbacks."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

from airflow.sdk import dag, task

from activitysmith_track.airflow import dag_callbacks, task_callbacks

START = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
NO_DELAY = datetime.timedelta(seconds=0)


def _attempt(name: str) -> int:
    """Counts tries across processes, in a file the test chose."""
    path = Path(os.environ["ETL_STATE_DIR"]) / name
    count = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(count))
    return count


@dag(
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={"retries": 1, "retry_delay": NO_DELAY},
)
def nightly_etl() -> None:
    @task
    def extract() -> list[int]:
        return [1, 2, 3]

    @task
    def transform(rows: list[int]) -> list[int]:
        if _attempt("transform") == 1:
            raise ConnectionError("warehouse db-7.internal refused customer 4711")
        return [r * 10 for r in rows]

    @task
    def load_rows(rows: list[int]) -> int:
        return sum(rows)

    load_rows(transform(extract()))


@dag(schedule=None, start_date=START, catchup=False, default_args={"retries": 0})
def failing_etl() -> None:
    @task
    def extract() -> list[int]:
        return [1]

    @task
    def load_rows(rows: list[int]) -> int:
        raise ValueError(f"bad IBAN DE44500105175407324931 in {rows}")

    load_rows(extract())


@dag(
    schedule=None,
    start_date=START,
    catchup=False,
    default_args={**task_callbacks(), "retries": 1, "retry_delay": NO_DELAY},
    **dag_callbacks(title="Callback ETL"),
)
def callback_etl() -> None:
    @task
    def fetch() -> int:
        if _attempt("fetch") == 1:
            raise TimeoutError("slow partner API")
        return 1

    @task
    def store(value: int) -> int:
        return value

    store(fetch())


nightly_etl()
failing_etl()
callback_etl()
