"""``tracked_steps`` and pipelines, against the emulator over loopback.

The block exit waits for the end to be delivered, so once a decorated call returns the
emulator holds its start and its end. Updates in between may be coalesced, so the tests
assert on final states, on what the job saw from inside, and on the order of requests.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import inspect
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from activitysmith_track import (
    ActivityEndedError,
    ArgumentTypeError,
    LiveActivity,
    TrackedSteps,
    ValidationError,
    current_activity,
    tracked_steps,
)
from activitysmith_track.emulator import ActivityRecord, Emulator, Fault

START = "/live-activity/start"
END = "/live-activity/end"


def start_and_end(emu: Emulator) -> tuple[dict[str, Any], dict[str, Any]]:
    """The content states of the only activity's start and end, checking their order."""
    requests = emu.requests
    paths = [r.path for r in requests]
    assert paths[0] == START
    assert paths[-1] == END
    assert paths.count(START) == 1
    assert paths.count(END) == 1
    assert all(r.status == 200 for r in requests)
    assert requests[-1].body["activity_id"] == requests[0].response["activity_id"]
    return requests[0].body["content_state"], requests[-1].body["content_state"]


def only_activity(emu: Emulator) -> ActivityRecord:
    (record,) = emu.activities.values()
    return record


class Boom(Exception):
    pass


# -- plain functions --------------------------------------------------------------------------


def test_return_value_passes_through_and_activity_ends_as_success(emu: Emulator) -> None:
    result = object()

    @tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])
    def nightly(x: int) -> object:
        la = current_activity()
        assert la is not None
        for _ in range(3):
            la.step()
        return result

    assert nightly(1) is result

    start, end = start_and_end(emu)
    assert start["title"] == "Nightly ETL"
    assert start["type"] == "segmented_progress"
    assert start["number_of_steps"] == 3
    assert end["title"] == "Nightly ETL"
    assert end["type"] == "segmented_progress"
    assert end["number_of_steps"] == 3
    assert end["current_step"] == 3
    assert end["subtitle"].startswith("Done in ")
    assert end["color"] == "green"
    assert end["step_color"] == "green"
    assert only_activity(emu).status == "ended"


def test_exception_propagates_unchanged(emu: Emulator) -> None:
    error = Boom("disk full")

    @tracked_steps("Nightly ETL", steps=3)
    def nightly() -> None:
        raise error

    with pytest.raises(Boom) as caught:
        nightly()

    assert caught.value is error
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    # The traceback still ends where the job raised.
    assert caught.traceback[-1].name == "nightly"
    start_and_end(emu)


def test_failure_end_names_the_step_and_the_exception_type(emu: Emulator) -> None:
    @tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])
    def nightly() -> None:
        la = current_activity()
        assert la is not None
        la.step()
        la.step()
        raise KeyError("row 17")

    with pytest.raises(KeyError):
        nightly()

    _, end = start_and_end(emu)
    assert end["current_step"] == 2
    assert end["number_of_steps"] == 3
    assert end["subtitle"].startswith("Failed at transform: KeyError")
    assert end["color"] == "red"
    assert end["step_color"] == "red"


def test_keyboard_interrupt_ends_as_cancelled_and_propagates(emu: Emulator) -> None:
    @tracked_steps("Nightly ETL", steps=2)
    def nightly() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nightly()

    _, end = start_and_end(emu)
    assert end["subtitle"].startswith("Cancelled")
    assert end["color"] == "orange"


def test_title_comes_from_the_function_name(emu: Emulator) -> None:
    @tracked_steps(steps=3)
    def nightly_backup() -> str:
        return "ok"

    assert nightly_backup() == "ok"

    start, end = start_and_end(emu)
    assert start["title"] == end["title"] == "Nightly backup"
    assert end["number_of_steps"] == 3
    assert end["current_step"] == 3


def test_bare_decorator_gives_a_timer_named_after_the_function(emu: Emulator) -> None:
    @tracked_steps
    def rebuild_index(n: int) -> int:
        return n + 1

    assert rebuild_index(41) == 42

    start, end = start_and_end(emu)
    assert start["title"] == "Rebuild index"
    assert start["type"] == "timer"
    assert start["counts_down"] is False
    assert end["is_running"] is False
    assert end["color"] == "green"


def test_step_names_become_the_subtitle_of_each_step(emu: Emulator) -> None:
    seen: list[tuple[int | None, str | None]] = []

    @tracked_steps("Backup", steps=["snapshot", "upload", "verify"])
    def backup() -> None:
        la = current_activity()
        assert la is not None
        for _ in range(3):
            la.step()
            seen.append((la.state.current_step, la.state.subtitle))

    backup()

    assert seen == [(1, "snapshot"), (2, "upload"), (3, "verify")]
    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 3


def test_options_are_passed_to_live_activity(emu: Emulator) -> None:
    @tracked_steps("Backup", steps=2, subtitle="starting", tags=["nightly"])
    def backup() -> None:
        pass

    backup()

    start, _ = start_and_end(emu)
    assert start["subtitle"] == "starting"
    assert emu.requests[0].body["tags"] == ["nightly"]


def test_delivery_failure_does_not_change_the_result(emu: Emulator) -> None:
    emu.add_fault(Fault.status(401), path=START)

    @tracked_steps("Backup", steps=2)
    def backup() -> str:
        return "done"

    assert backup() == "done"
    assert [r.status for r in emu.requests] == [401]


# -- current_activity() ------------------------------------------------------------------------


def test_current_activity_is_the_calls_own_and_only_inside(emu: Emulator) -> None:
    inside: list[LiveActivity | None] = []

    @tracked_steps("Outer", steps=1)
    def outer() -> None:
        inside.append(current_activity())
        inner()
        inside.append(current_activity())

    @tracked_steps("Inner", steps=1)
    def inner() -> None:
        inside.append(current_activity())

    assert not current_activity()
    outer()
    assert not current_activity()

    first, nested, after = inside
    assert first is not None
    assert nested is not None
    assert first.title == "Outer"
    assert nested.title == "Inner"
    assert after is first
    assert first is not nested
    assert first.ended
    assert nested.ended
    assert sorted(a.state["title"] for a in emu.activities.values()) == ["Inner", "Outer"]


def test_each_call_gets_a_new_activity(emu: Emulator) -> None:
    seen: list[LiveActivity | None] = []

    @tracked_steps("Job", steps=1)
    def job() -> None:
        seen.append(current_activity())

    job()
    job()

    assert seen[0] is not seen[1]
    assert len(emu.activities) == 2
    assert all(a.status == "ended" for a in emu.activities.values())


# -- methods -------------------------------------------------------------------------------------


class Warehouse:
    """Methods of every kind, decorated above and below the method decorators."""

    factor = 10

    def __init__(self, rows: int) -> None:
        self.rows = rows

    @tracked_steps(steps=2)
    def reload(self, extra: int) -> int:
        """Reload the rows."""
        return self.rows + extra

    @tracked_steps(steps=2)
    @classmethod
    def scaled(cls, n: int) -> int:
        return cls.factor * n

    @classmethod
    @tracked_steps(steps=2)
    def scaled_below(cls, n: int) -> int:
        return cls.factor * n

    @tracked_steps(steps=2)
    @staticmethod
    def double(n: int) -> int:
        return 2 * n

    @staticmethod
    @tracked_steps(steps=2)
    def triple(n: int) -> int:
        return 3 * n


@pytest.mark.parametrize(
    ("call", "expected", "title"),
    [
        (lambda: Warehouse(5).reload(2), 7, "Reload"),
        (lambda: Warehouse.reload(Warehouse(5), 3), 8, "Reload"),
        (lambda: Warehouse.scaled(4), 40, "Scaled"),
        (lambda: Warehouse(1).scaled(4), 40, "Scaled"),
        (lambda: Warehouse.scaled_below(4), 40, "Scaled below"),
        (lambda: Warehouse.double(4), 8, "Double"),
        (lambda: Warehouse(1).double(4), 8, "Double"),
        (lambda: Warehouse.triple(4), 12, "Triple"),
    ],
    ids=[
        "method",
        "method-unbound",
        "classmethod",
        "classmethod-on-instance",
        "classmethod-below",
        "staticmethod",
        "staticmethod-on-instance",
        "staticmethod-below",
    ],
)
def test_methods_run_as_activities(emu: Emulator, call: Any, expected: int, title: str) -> None:
    assert call() == expected

    start, end = start_and_end(emu)
    assert start["title"] == end["title"] == title
    assert end["current_step"] == end["number_of_steps"] == 2


# -- async functions -----------------------------------------------------------------------------


def test_async_function_runs_as_an_activity(emu: Emulator) -> None:
    @tracked_steps("Sync feeds", steps=["fetch", "store"])
    async def sync_feeds(n: int) -> int:
        la = current_activity()
        assert la is not None
        la.step()
        await asyncio.sleep(0)
        la.step()
        return n * 2

    assert asyncio.run(sync_feeds(21)) == 42

    start, end = start_and_end(emu)
    assert start["title"] == "Sync feeds"
    assert end["current_step"] == end["number_of_steps"] == 2
    assert end["color"] == "green"


def test_async_function_exception_propagates_and_fails_the_activity(emu: Emulator) -> None:
    error = Boom("feed down")

    @tracked_steps("Sync feeds", steps=["fetch", "store"])
    async def sync_feeds() -> None:
        la = current_activity()
        assert la is not None
        la.step()
        raise error

    with pytest.raises(Boom) as caught:
        asyncio.run(sync_feeds())

    assert caught.value is error
    _, end = start_and_end(emu)
    assert end["subtitle"].startswith("Failed at fetch: Boom")
    assert end["color"] == "red"


def test_concurrent_async_calls_get_their_own_activities(emu: Emulator) -> None:
    @tracked_steps("Sync feed", steps=1)
    async def sync_feed(n: int) -> LiveActivity | None:
        await asyncio.sleep(0.01)
        return current_activity()

    async def main() -> list[LiveActivity | None]:
        return list(await asyncio.gather(*(sync_feed(i) for i in range(3))))

    seen = asyncio.run(main())

    assert len({id(a) for a in seen}) == 3
    assert len(emu.activities) == 3
    assert [r.path for r in emu.requests].count(END) == 3


# -- generator functions -------------------------------------------------------------------------


def test_each_yield_completes_a_step(emu: Emulator) -> None:
    inside: list[int | None] = []
    between: list[LiveActivity | None] = []

    @tracked_steps("Import", steps=["users", "orders", "invoices"])
    def import_all() -> Iterator[str]:
        for table in ("users", "orders", "invoices"):
            la = current_activity()
            assert la is not None
            inside.append(la.state.current_step)
            yield table

    for table in import_all():
        between.append(current_activity() or None)
        assert table

    assert inside == [1, 2, 3]
    assert between == [None, None, None]  # the consumer's code is not inside the activity
    start, end = start_and_end(emu)
    assert start["title"] == "Import"
    assert end["current_step"] == end["number_of_steps"] == 3
    assert end["color"] == "green"


def test_generator_without_steps_counts_its_yields(emu: Emulator) -> None:
    @tracked_steps
    def batches() -> Iterator[int]:
        yield from range(4)

    assert list(batches()) == [0, 1, 2, 3]

    start, end = start_and_end(emu)
    # An open-ended generator counts its items; it is not drawn as a bar of segments.
    assert start["type"] == "timer"
    assert "number_of_steps" not in end
    assert end["subtitle"].startswith("Done in ")
    updates = [r.body for r in emu.requests if r.path.endswith("/update") and r.body]
    assert all(u["content_state"]["subtitle"].endswith(" done") for u in updates)


def test_generator_with_more_yields_than_steps_grows_the_count(emu: Emulator) -> None:
    @tracked_steps("Batches", steps=2)
    def batches() -> Iterator[int]:
        yield from range(3)

    assert list(batches()) == [0, 1, 2]

    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 3


def test_generator_return_value_and_sent_values_pass_through(emu: Emulator) -> None:
    @tracked_steps("Echo", steps=2)
    def echo() -> Iterator[int]:
        got = yield 1
        got = yield got * 10
        return f"finished with {got}"

    def delegate() -> Any:
        return (yield from echo())

    gen = delegate()
    assert next(gen) == 1
    assert gen.send(2) == 20
    with pytest.raises(StopIteration) as stop:
        gen.send(3)
    assert stop.value.value == "finished with 3"
    start_and_end(emu)


def test_generator_starts_its_activity_only_when_iterated(emu: Emulator) -> None:
    @tracked_steps("Lazy", steps=1)
    def lazy() -> Iterator[int]:
        yield 1

    gen = lazy()
    gen.close()

    assert emu.requests == []


def test_generator_closed_early_ends_as_cancelled(emu: Emulator) -> None:
    cleaned_up = threading.Event()

    @tracked_steps("Import", steps=["users", "orders", "invoices"])
    def import_all() -> Iterator[str]:
        try:
            yield "users"
            yield "orders"
            yield "invoices"
        finally:
            cleaned_up.set()

    gen = import_all()
    assert next(gen) == "users"
    assert next(gen) == "orders"
    gen.close()

    assert cleaned_up.is_set()
    _, end = start_and_end(emu)
    assert end["subtitle"] == "Cancelled at orders"
    assert end["current_step"] == 2
    assert end["color"] == "orange"


def test_generator_dropped_unfinished_ends_as_cancelled(emu: Emulator) -> None:
    @tracked_steps("Import", steps=["users", "orders"])
    def import_all() -> Iterator[str]:
        yield "users"
        yield "orders"

    for table in import_all():
        assert table == "users"
        break  # the loop drops the generator, which closes it

    gc.collect()
    _, end = start_and_end(emu)
    assert end["subtitle"] == "Cancelled at users"


def test_exception_thrown_into_generator_fails_the_next_step(emu: Emulator) -> None:
    # The exception lands where the generator resumes: in the step after the last yield.
    error = Boom("consumer gave up")

    @tracked_steps("Import", steps=["users", "orders"])
    def import_all() -> Iterator[str]:
        yield "users"
        yield "orders"

    gen = import_all()
    next(gen)
    with pytest.raises(Boom) as caught:
        gen.throw(error)

    assert caught.value is error
    _, end = start_and_end(emu)
    assert end["current_step"] == 2
    assert end["subtitle"].startswith("Failed at orders: Boom")
    assert end["color"] == "red"


def test_exception_thrown_in_can_be_handled_by_the_generator(emu: Emulator) -> None:
    @tracked_steps("Import", steps=2)
    def import_all() -> Iterator[str]:
        try:
            yield "first"
        except Boom:
            yield "recovered"

    gen = import_all()
    assert next(gen) == "first"
    assert gen.throw(Boom()) == "recovered"
    assert list(gen) == []

    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 2
    assert end["color"] == "green"


def test_exception_inside_generator_propagates_unchanged(emu: Emulator) -> None:
    error = Boom("bad row")

    @tracked_steps("Import", steps=["users", "orders"])
    def import_all() -> Iterator[str]:
        yield "users"
        raise error

    with pytest.raises(Boom) as caught:
        list(import_all())

    assert caught.value is error
    assert caught.traceback[-1].name == "import_all"
    _, end = start_and_end(emu)
    assert end["subtitle"].startswith("Failed at orders: Boom")


def test_generator_that_ends_its_own_activity_keeps_running(emu: Emulator) -> None:
    @tracked_steps("Import", steps=3)
    def import_all() -> Iterator[int]:
        yield 1
        la = current_activity()
        assert la is not None
        la.end(subtitle="finished early")
        yield 2
        yield 3

    assert list(import_all()) == [1, 2, 3]

    _, end = start_and_end(emu)
    assert end["subtitle"] == "finished early"


# -- async generators ----------------------------------------------------------------------------


def test_async_generator_completes_a_step_per_yield(emu: Emulator) -> None:
    inside: list[int | None] = []

    @tracked_steps("Stream pages", steps=3)
    async def pages() -> AsyncIterator[int]:
        for page in range(3):
            la = current_activity()
            assert la is not None
            inside.append(la.state.current_step)
            await asyncio.sleep(0)
            yield page

    async def consume() -> list[int]:
        return [page async for page in pages()]

    assert asyncio.run(consume()) == [0, 1, 2]
    assert inside == [1, 2, 3]
    start, end = start_and_end(emu)
    assert start["title"] == "Stream pages"
    assert end["current_step"] == end["number_of_steps"] == 3
    assert end["color"] == "green"


def test_async_generator_closed_early_ends_as_cancelled(emu: Emulator) -> None:
    @tracked_steps("Stream pages", steps=["first", "second", "third"])
    async def pages() -> AsyncIterator[int]:
        for page in range(3):
            yield page

    async def take_one() -> int:
        gen = pages()
        first = await gen.__anext__()
        await gen.aclose()
        return first

    assert asyncio.run(take_one()) == 0
    _, end = start_and_end(emu)
    assert end["subtitle"] == "Cancelled at first"
    assert end["color"] == "orange"


def test_async_generator_exception_propagates_unchanged(emu: Emulator) -> None:
    error = Boom("page 2 missing")

    @tracked_steps("Stream pages", steps=["first", "second"])
    async def pages() -> AsyncIterator[int]:
        yield 1
        raise error

    async def consume() -> list[int]:
        return [page async for page in pages()]

    with pytest.raises(Boom) as caught:
        asyncio.run(consume())

    assert caught.value is error
    _, end = start_and_end(emu)
    assert end["subtitle"].startswith("Failed at second: Boom")


# -- pipelines -----------------------------------------------------------------------------------


def make_pipeline(log: list[tuple[str, int | None, str | None]]) -> Any:
    """A three-step pipeline whose steps record what the activity showed when they ran."""
    pipeline = tracked_steps("Nightly ETL")

    def seen(name: str) -> None:
        la = current_activity()
        log.append((name, la.state.current_step if la else None, la.state.subtitle if la else None))

    @pipeline.step
    def extract() -> list[int]:
        seen("extract")
        return [1, 2, 3]

    @pipeline.step
    def transform(rows: list[int]) -> list[int]:
        seen("transform")
        return [r * 10 for r in rows]

    @pipeline.step("Load rows")
    def load(rows: list[int]) -> int:
        seen("load")
        return len(rows)

    return pipeline, extract, transform, load


def test_pipeline_steps_come_from_the_registered_functions(emu: Emulator) -> None:
    log: list[tuple[str, int | None, str | None]] = []
    pipeline, extract, transform, load = make_pipeline(log)
    assert pipeline.step_names == ["Extract", "Transform", "Load rows"]

    @pipeline
    def nightly_etl() -> int:
        n: int = load(transform(extract()))
        return n

    assert nightly_etl() == 3

    assert log == [
        ("extract", 1, "Extract"),
        ("transform", 2, "Transform"),
        ("load", 3, "Load rows"),
    ]
    start, end = start_and_end(emu)
    assert start["title"] == "Nightly ETL"
    assert start["type"] == "segmented_progress"
    assert start["number_of_steps"] == 3
    assert end["current_step"] == end["number_of_steps"] == 3
    assert end["color"] == "green"


def test_pipeline_run_with_a_block(emu: Emulator) -> None:
    log: list[tuple[str, int | None, str | None]] = []
    pipeline, extract, transform, load = make_pipeline(log)

    with pipeline.activity() as la:
        assert current_activity() is la
        load(transform(extract()))

    assert [entry[1] for entry in log] == [1, 2, 3]
    start, end = start_and_end(emu)
    assert start["title"] == "Nightly ETL"
    assert end["current_step"] == end["number_of_steps"] == 3


def test_pipeline_steps_called_outside_a_run_simply_run(emu: Emulator) -> None:
    log: list[tuple[str, int | None, str | None]] = []
    _, extract, transform, load = make_pipeline(log)

    assert load(transform(extract())) == 3

    assert log == [("extract", None, None), ("transform", None, None), ("load", None, None)]
    assert emu.requests == []


def test_pipeline_step_called_again_does_not_advance(emu: Emulator) -> None:
    log: list[tuple[str, int | None, str | None]] = []
    pipeline, extract, transform, load = make_pipeline(log)

    @pipeline
    def nightly_etl() -> None:
        rows = extract()
        for _ in range(3):  # one batch at a time
            load(transform(rows))

    nightly_etl()

    # extract, then transform/load alternate: a repeated *consecutive* step stays put,
    # a different step advances, growing the count past the registered three.
    assert [entry[1] for entry in log] == [1, 2, 3, 4, 5, 6, 7]
    _, end = start_and_end(emu)
    assert end["number_of_steps"] == 7


def test_pipeline_step_in_a_loop_stays_on_its_step(emu: Emulator) -> None:
    pipeline = tracked_steps("Load")
    shown: list[int | None] = []

    @pipeline.step
    def load_batch(n: int) -> None:
        la = current_activity()
        assert la is not None
        shown.append(la.state.current_step)

    @pipeline.step
    def verify() -> None:
        la = current_activity()
        assert la is not None
        shown.append(la.state.current_step)

    @pipeline
    def job() -> None:
        for n in range(3):
            load_batch(n)
        verify()

    job()

    assert shown == [1, 1, 1, 2]
    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 2


def test_pipeline_failure_names_the_step(emu: Emulator) -> None:
    pipeline = tracked_steps("Nightly ETL")
    error = Boom("schema changed")

    @pipeline.step
    def extract() -> None:
        pass

    @pipeline.step("Load rows")
    def load() -> None:
        raise error

    @pipeline
    def nightly_etl() -> None:
        extract()
        load()

    with pytest.raises(Boom) as caught:
        nightly_etl()

    assert caught.value is error
    _, end = start_and_end(emu)
    assert end["current_step"] == 2
    assert end["subtitle"].startswith("Failed at Load rows: Boom")
    assert end["color"] == "red"


def test_pipeline_steps_run_out_of_order_show_their_own_names(emu: Emulator) -> None:
    pipeline = tracked_steps("Report")

    @pipeline.step
    def render() -> None:
        raise Boom

    @pipeline.step
    def query() -> None:
        pass

    @pipeline
    def report() -> None:
        query()
        render()

    with pytest.raises(Boom):
        report()

    _, end = start_and_end(emu)
    assert end["subtitle"].startswith("Failed at Render: Boom")


def test_pipeline_with_async_steps(emu: Emulator) -> None:
    pipeline = tracked_steps("Async ETL")
    shown: list[int | None] = []

    @pipeline.step
    async def extract() -> list[int]:
        la = current_activity()
        assert la is not None
        shown.append(la.state.current_step)
        return [1, 2]

    @pipeline.step
    async def load(rows: list[int]) -> int:
        la = current_activity()
        assert la is not None
        shown.append(la.state.current_step)
        return sum(rows)

    @pipeline
    async def etl() -> int:
        return await load(await extract())

    assert asyncio.run(etl()) == 3
    assert shown == [1, 2]
    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 2


def test_pipeline_step_after_the_job_ended_the_activity_still_runs(emu: Emulator) -> None:
    pipeline = tracked_steps("ETL")

    @pipeline.step
    def extract() -> None:
        la = current_activity()
        assert la is not None
        la.end(subtitle="nothing to do")

    @pipeline.step
    def load() -> str:
        return "loaded"

    @pipeline
    def etl() -> str:
        extract()
        return load()

    assert etl() == "loaded"
    _, end = start_and_end(emu)
    assert end["subtitle"] == "nothing to do"


def test_pipeline_without_steps_needs_no_registration(emu: Emulator) -> None:
    pipeline = tracked_steps("Cleanup")

    @pipeline
    def cleanup() -> int:
        return 0

    assert cleanup() == 0
    start, _ = start_and_end(emu)
    assert start["type"] == "timer"


def test_steps_of_another_pipeline_do_not_advance_this_one(emu: Emulator) -> None:
    ours, theirs = tracked_steps("Ours"), tracked_steps("Theirs")

    @ours.step
    def mine() -> None:
        pass

    @theirs.step
    def foreign() -> None:
        pass

    @ours
    def run() -> None:
        foreign()
        mine()

    run()

    _, end = start_and_end(emu)
    assert end["number_of_steps"] == 1


def test_pipeline_steps_in_worker_threads_need_the_context(emu: Emulator) -> None:
    pipeline = tracked_steps("Threaded ETL")
    shown: list[int | None] = []

    @pipeline.step
    def extract() -> None:
        la = current_activity()
        shown.append(la.state.current_step if la else None)

    @pipeline.step
    def load() -> None:
        la = current_activity()
        shown.append(la.state.current_step if la else None)

    @pipeline
    async def etl() -> None:
        with ThreadPoolExecutor(1) as pool:
            pool.submit(extract).result()  # a plain worker thread: outside the run
            pool.submit(contextvars.copy_context().run, extract).result()
        await asyncio.to_thread(load)  # to_thread passes the context along

    asyncio.run(etl())

    assert shown == [None, 1, 2]
    _, end = start_and_end(emu)
    assert end["current_step"] == end["number_of_steps"] == 2


def test_pipeline_block_title_must_be_known() -> None:
    pipeline = tracked_steps()
    with pytest.raises(ValidationError) as caught:
        pipeline.activity()
    assert caught.value.field == "title"


# -- threads -------------------------------------------------------------------------------------


def test_same_function_in_three_threads_gets_three_activities(emu: Emulator) -> None:
    together = threading.Barrier(3, timeout=10)
    seen: dict[int, LiveActivity | None] = {}

    @tracked_steps("Shard", steps=2)
    def shard(n: int) -> int:
        together.wait()  # all three are inside their activity at once
        seen[n] = current_activity()
        la = current_activity()
        assert la is not None
        la.step()
        la.step()
        return n * n

    decorator_state = {k: v for k, v in vars(shard).items() if not k.startswith("_self_")}
    results: dict[int, int] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, shard(n))) for n in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert results == {0: 0, 1: 1, 2: 4}
    assert len({id(a) for a in seen.values()}) == 3
    activities = emu.activities.values()
    assert len(activities) == 3
    for record in activities:
        ends = [h for h in record.history if h.endpoint.endswith("end")]
        assert len(ends) == 1
        assert record.status == "ended"
        assert record.state["current_step"] == 2
    # Nothing about a run was left on the decorated function.
    assert {k: v for k, v in vars(shard).items() if not k.startswith("_self_")} == (decorator_state)


def test_pipeline_runs_in_threads_do_not_share_steps(emu: Emulator) -> None:
    pipeline = tracked_steps("Shard ETL")
    together = threading.Barrier(3, timeout=10)
    shown: list[int | None] = []
    lock = threading.Lock()

    @pipeline.step
    def extract() -> None:
        together.wait()

    @pipeline.step
    def load() -> None:
        la = current_activity()
        assert la is not None
        with lock:
            shown.append(la.state.current_step)

    @pipeline
    def run() -> None:
        extract()
        load()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert shown == [2, 2, 2]
    assert len(emu.activities) == 3
    assert all(a.state["current_step"] == 2 for a in emu.activities.values())


# -- what the decorated function looks like ----------------------------------------------------


def plain(a: int, b: str = "x", *, c: float = 1.0) -> str:
    """Plain docstring."""
    return f"{a}{b}{c}"


async def coro(a: int) -> int:
    """Coroutine docstring."""
    return a


def gen(a: int) -> Iterator[int]:
    """Generator docstring."""
    yield a


async def agen(a: int) -> AsyncIterator[int]:
    """Async generator docstring."""
    yield a


KINDS = [
    (plain, (False, False, False)),
    (coro, (True, False, False)),
    (gen, (False, True, False)),
    (agen, (False, False, True)),
]


def kind_of(func: Any) -> tuple[bool, bool, bool]:
    return (
        inspect.iscoroutinefunction(func),
        inspect.isgeneratorfunction(func),
        inspect.isasyncgenfunction(func),
    )


@pytest.mark.parametrize(("func", "kind"), KINDS, ids=lambda v: getattr(v, "__name__", ""))
@pytest.mark.parametrize("how", ["decorator", "step"])
def test_decorated_function_keeps_its_metadata(
    func: Any, kind: tuple[bool, bool, bool], how: str
) -> None:
    decorated = tracked_steps(steps=2)(func) if how == "decorator" else tracked_steps().step(func)

    assert decorated.__name__ == func.__name__
    assert decorated.__qualname__ == func.__qualname__
    assert decorated.__doc__ == func.__doc__
    assert decorated.__module__ == func.__module__
    assert decorated.__wrapped__ is func
    assert inspect.signature(decorated) == inspect.signature(func)
    assert kind_of(decorated) == kind


def test_methods_keep_their_metadata() -> None:
    assert Warehouse.reload.__doc__ == "Reload the rows."
    assert Warehouse.reload.__name__ == "reload"
    assert list(inspect.signature(Warehouse(1).reload).parameters) == ["extra"]
    assert list(inspect.signature(Warehouse.scaled).parameters) == ["n"]
    assert list(inspect.signature(Warehouse.double).parameters) == ["n"]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"steps": 0}, ValidationError, "steps"),
        ({"steps": -2}, ValidationError, "steps"),
        ({"steps": []}, ValidationError, "steps"),
        ({"steps": "3"}, ArgumentTypeError, "steps"),
        ({"steps": 2.5}, ArgumentTypeError, "steps"),
        ({"steps": True}, ArgumentTypeError, "steps"),
        ({"steps": ["extract", 2]}, ArgumentTypeError, "steps[1]"),
        ({"title": 5}, ArgumentTypeError, "title"),
        ({"title": ""}, ValidationError, "title"),
        ({"title": "   "}, ValidationError, "title"),
        ({"colour": "red"}, ValidationError, "colour"),
        ({"color": "chartreuse"}, ValidationError, "color"),
    ],
    ids=repr,
)
def test_bad_arguments_fail_at_the_decorator(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        tracked_steps(**kwargs)
    assert isinstance(caught.value, ValidationError)
    assert caught.value.field == field
    assert field in str(caught.value)


def test_bad_argument_errors_are_builtin_flavoured() -> None:
    with pytest.raises(ValueError, match=r"steps \(0\) must be at least 1"):
        tracked_steps(steps=0)
    with pytest.raises(TypeError, match=r"steps must be an int or a list of step names, not str"):
        tracked_steps(steps="3")
    with pytest.raises(TypeError, match=r"title must be a str, not int"):
        tracked_steps(5)  # type: ignore[call-overload]


def test_function_with_options_is_refused() -> None:
    def job() -> None:
        pass

    with pytest.raises(ArgumentTypeError, match="title"):
        tracked_steps(job, steps=3)  # type: ignore[call-overload]


@pytest.mark.parametrize("thing", [5, "not a function", None])
def test_decorating_a_non_function_is_refused(thing: Any) -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        TrackedSteps("Job")(thing)
    assert caught.value.field == "func"


@pytest.mark.parametrize(
    ("arg", "error"), [(5, ArgumentTypeError), ("", ValidationError), ("  ", ValidationError)]
)
def test_bad_step_registration_is_refused(arg: Any, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        tracked_steps("ETL").step(arg)
    assert isinstance(caught.value, ValidationError)
    assert caught.value.field == "step"


def test_named_step_decorator_refuses_a_non_function() -> None:
    with pytest.raises(ArgumentTypeError):
        tracked_steps("ETL").step("Load")(42)  # type: ignore[call-overload]


def test_decoration_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A bad setting in the environment fails the call that uses it, not the import.
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "soon")

    @tracked_steps("Job", steps=2)
    def job() -> None:
        pass

    assert job.__name__ == "job"


def test_ending_the_activity_twice_inside_is_the_jobs_own_error(emu: Emulator) -> None:
    # The decorator never ends an activity the job ended, and never hides the job's misuse.
    @tracked_steps("Job", steps=1)
    def job() -> None:
        la = current_activity()
        assert la is not None
        la.end()
        la.end()

    with pytest.raises(ActivityEndedError):
        job()
    start_and_end(emu)


def test_every_option_is_checked_at_the_decorator_as_at_each_call() -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        tracked_steps("Job", preview="yes")
    assert caught.value.field == "preview"
    with pytest.raises(ValidationError, match="flush_timeout"):
        tracked_steps("Job", flush_timeout=-1)
    with pytest.raises(ValidationError, match="did you mean 'subtitle'"):
        tracked_steps("Job", subtitel="typo")
    with pytest.raises(ArgumentTypeError) as caught:
        tracked_steps("Job", on_cancel=5)
    assert caught.value.field == "on_cancel"
