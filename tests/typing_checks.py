"""Static checks that decorated functions keep their types.

mypy checks this file (it is listed in ``[tool.mypy] files``); pytest never collects it and
nothing runs it. ``assert_type`` fails the check when a type is lost, and each
``# type: ignore[...]`` must be needed, since mypy --strict reports unused ignores.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any

from typing_extensions import assert_type

from activitysmith_track import LiveActivity, TrackedSteps, current_activity, tracked_steps

# -- functions -----------------------------------------------------------------------------


@tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])
def nightly(day: str, *, dry_run: bool = False) -> int:
    la = current_activity()
    assert_type(la, LiveActivity)
    la.step("extract")  # always safe: outside an activity it does nothing
    if la:
        la.advance(3)
    return len(day)


assert_type(nightly("mon"), int)
rows: int = nightly("mon", dry_run=True)
nightly(1)  # type: ignore[arg-type]
nightly("mon", dry=True)  # type: ignore[call-arg]
wrong: str = nightly("mon")  # type: ignore[assignment]


@tracked_steps
def bare(n: int) -> list[int]:
    return [n]


assert_type(bare(1), list[int])
bare("1")  # type: ignore[arg-type]


@tracked_steps(steps=3)
def untitled(n: int, /) -> None:
    pass


assert_type(untitled(1), None)

# -- async functions and generators ------------------------------------------------------------


@tracked_steps("Sync feeds", steps=2)
async def sync_feeds(n: int) -> str:
    return str(n)


pending = assert_type(sync_feeds(1), Coroutine[Any, Any, str])
feeds: str = asyncio.run(sync_feeds(1))


@tracked_steps("Import", steps=3)
def import_tables(names: list[str]) -> Iterator[str]:
    yield from names


assert_type(import_tables(["users"]), Iterator[str])
tables: list[str] = list(import_tables(["users"]))


@tracked_steps("Stream pages")
async def pages(n: int) -> AsyncIterator[bytes]:
    yield b""


assert_type(pages(3), AsyncIterator[bytes])

# -- methods -------------------------------------------------------------------------------------


class Warehouse:
    @tracked_steps(steps=2)
    def reload(self, extra: int) -> float:
        return 1.0 + extra

    @tracked_steps(steps=2)
    @classmethod
    def create(cls, size: int) -> Warehouse:
        return cls()

    @classmethod
    @tracked_steps(steps=2)
    def create_below(cls, size: int) -> Warehouse:
        return cls()

    @tracked_steps(steps=2)
    @staticmethod
    def double(n: int) -> int:
        return 2 * n

    @staticmethod
    @tracked_steps(steps=2)
    def triple(n: int) -> int:
        return 3 * n


assert_type(Warehouse().reload(1), float)
assert_type(Warehouse.create(1), Warehouse)
assert_type(Warehouse.create_below(1), Warehouse)
assert_type(Warehouse.double(1), int)
assert_type(Warehouse.triple(1), int)
Warehouse().reload("1")  # type: ignore[arg-type]
Warehouse.create("big")  # type: ignore[arg-type]

# -- pipelines -----------------------------------------------------------------------------------

pipeline = tracked_steps("Nightly ETL")
assert_type(pipeline, TrackedSteps)
assert_type(pipeline.step_names, list[str])


@pipeline.step
def extract(source: str) -> list[dict[str, int]]:
    return []


@pipeline.step("Transform rows")
def transform(rows: list[dict[str, int]]) -> list[int]:
    return []


@pipeline.step
async def load(rows: list[int]) -> int:
    return len(rows)


@pipeline
def run_etl() -> int:
    return len(transform(extract("db")))


assert_type(extract("db"), list[dict[str, int]])
assert_type(transform([]), list[int])
loading = assert_type(load([]), Coroutine[Any, Any, int])
assert_type(run_etl(), int)
extract(1)  # type: ignore[arg-type]
transform("rows")  # type: ignore[arg-type]

with pipeline.activity() as la:
    assert_type(la, LiveActivity)


async def in_a_task() -> None:
    async with pipeline.activity("Nightly ETL (retry)") as la:
        assert_type(la, LiveActivity)
        assert_type(await load([1]), int)


# -- misuse that mypy catches --------------------------------------------------------------------

tracked_steps(5)  # type: ignore[call-overload]
tracked_steps("Job", steps=3.5)  # type: ignore[call-overload]
pipeline.step(3)  # type: ignore[call-overload]
