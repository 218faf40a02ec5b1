"""Annotate the steps of an ETL pipeline: each step function is one step of the activity.

    python examples/etl_pipeline.py

``tracked_steps("Nightly ETL")`` makes a pipeline; ``@pipeline.step`` registers a step (its
name comes from the function, or is given), so the activity knows it has three steps. Each
run of the decorated ``nightly_etl`` is one activity, and calling a step function begins its
step. Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set.
"""

from __future__ import annotations

from _emulated import emulated

from activitysmith_track import tracked_steps

pipeline = tracked_steps("Nightly ETL")


@pipeline.step
def extract() -> list[dict[str, str]]:
    return [{"id": str(n), "amount": f"{n * 1.5:.2f}"} for n in range(100)]


@pipeline.step
def transform(rows: list[dict[str, str]]) -> list[tuple[int, float]]:
    return [(int(row["id"]), float(row["amount"])) for row in rows]


@pipeline.step("Load rows")
def load(rows: list[tuple[int, float]]) -> int:
    return len(rows)  # a real pipeline writes them to its warehouse here


@pipeline
def nightly_etl() -> int:
    return load(transform(extract()))


if __name__ == "__main__":
    with emulated():
        print(f"loaded {nightly_etl()} rows")
