"""Delivery: lanes, order and coalescing, budgets, deadlines, faults, and a hostile runtime.

Tests about time hand a Dispatcher with a FakeClock to live_activity(dispatcher=...): what
waits for time (debounce, budgets, retries) waits until the test moves the clock, and
``dispatcher.quiet()`` says when everything due has been sent, so what the emulator received
is exactly what was due.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import api_requests, paths

from activitysmith_track import Dispatcher, RetryPolicy, Settings, live_activity
from activitysmith_track import _dispatch as dispatch_module
from activitysmith_track._client import Wire
from activitysmith_track._dispatch import SlidingWindow, TokenBucket
from activitysmith_track.emulator import Emulator, Fault
from activitysmith_track.testing import FakeClock

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_elapsed=5)


def settings_for(emu: Emulator, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "base_url": emu.base_url,
        "debounce": 0.0,
        "flush_timeout": 5.0,
        "retry": FAST_RETRY,
        "read_timeout": 2.0,
        "requests_per_minute": 100_000,
    }
    options.update(overrides)
    return Settings(**options)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed(emulator: Emulator, clock: FakeClock) -> Iterator[Dispatcher]:
    """A dispatcher for the emulator's account whose every wait is on the fake clock."""
    dispatcher = Dispatcher(settings_for(emulator), clock=clock)
    yield dispatcher
    dispatcher.close()


def updates(emu: Emulator) -> list[dict[str, Any]]:
    return [r.body["content_state"] for r in api_requests(emu) if r.path.endswith("/update")]


# -- the caller never waits for the network ----------------------------------------------------


def test_calls_return_at_once_while_the_server_hangs(emulator: Emulator) -> None:
    emulator.add_fault(Fault.hang(), times=100)
    settings = settings_for(emulator, flush_timeout=0.5)
    started = time.monotonic()
    with live_activity("Hung", total=1000, settings=settings) as la:
        body_started = time.monotonic()
        for _ in range(1000):
            la.advance()
        body = time.monotonic() - body_started
    elapsed = time.monotonic() - started
    # A thousand calls cost microseconds each; leaving waits at most about flush_timeout.
    assert body < 0.5
    assert elapsed < 0.5 + 1.5
    assert la.state.value == 1000


# -- order and coalescing --------------------------------------------------------------------


def test_latest_state_wins_in_order_with_a_slow_server(emulator: Emulator) -> None:
    emulator.latency = 0.02
    settings = settings_for(emulator, debounce=0.01)
    with live_activity("Upload", type="progress", settings=settings) as la:
        for percent in range(101):
            la.percentage(percent / 2)
            if percent % 10 == 0:
                time.sleep(0.01)
        assert la.flush()
        assert emulator.activity(la.activity_id or "").state["percentage"] == 50
    sent = [state["percentage"] for state in updates(emulator)]
    assert 0 < len(sent) < 50  # far fewer requests than the 101 changes
    assert sent == sorted(sent)  # never a stale state after a newer one
    assert paths(emulator)[0] == "start"
    assert paths(emulator)[-1] == "end"


def test_debounce_waits_on_the_clock_and_turns_a_burst_into_one_request(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    settings = settings_for(emulator, debounce=2.0)
    with live_activity("Burst", steps=100, settings=settings, dispatcher=timed) as la:
        assert timed.quiet()
        assert paths(emulator) == ["start"]
        for _ in range(50):
            la.step()
        clock.advance(1.9)
        assert timed.quiet()
        assert updates(emulator) == []  # still inside the debounce
        clock.advance(0.2)
        assert timed.quiet()
        assert [state["current_step"] for state in updates(emulator)] == [50]
    assert paths(emulator) == ["start", "update", "end"]


def test_update_budget_holds_back_updates_but_never_the_end(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    settings = settings_for(emulator, update_burst=3, update_interval=120)
    with live_activity("Budget", steps=10, settings=settings, dispatcher=timed) as la:
        assert timed.quiet()
        for _ in range(3):
            la.step()
            assert timed.quiet()
        assert len(updates(emulator)) == 3
        for _ in range(5):
            la.step()
        assert timed.quiet()
        assert len(updates(emulator)) == 3  # no token left: the change waits
        clock.advance(120)  # one token back
        assert timed.quiet()
        assert [state["current_step"] for state in updates(emulator)][-1] == 8
        la.step()
    assert paths(emulator)[-1] == "end"  # the end does not wait for the budget
    end = api_requests(emulator)[-1].body
    assert end is not None
    assert end["content_state"]["current_step"] == 10  # success shows every step complete


def test_identical_states_are_not_sent_twice(emulator: Emulator) -> None:
    with live_activity("Same", steps=3, settings=settings_for(emulator)) as la:
        la.flush()
        la.step("a")
        la.flush()
        la.update(subtitle="a")  # no visible change
        la.flush()
    assert paths(emulator).count("update") == 1


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(2, 10.0, now=0.0)
    assert bucket.ready_at(0.0) == 0.0
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.ready_at(0.0) == pytest.approx(10.0)
    assert bucket.ready_at(5.0) == pytest.approx(10.0)
    assert bucket.ready_at(10.0) == 10.0
    bucket.take(10.0)
    assert bucket.ready_at(100.0) == 100.0  # refilled, but never above capacity
    bucket.take(100.0)
    bucket.take(100.0)
    assert bucket.ready_at(100.0) == pytest.approx(110.0)


def test_the_account_budget_never_exceeds_its_rate_in_any_window() -> None:
    window = SlidingWindow(3, 60.0)
    for at in (0.0, 1.0, 2.0):
        assert window.ready_at(at) == at
        window.take(at)
    assert window.ready_at(30.0) == 60.0  # the first request leaves the window at 60
    window.take(60.0)
    assert window.ready_at(60.5) == 61.0


def test_the_account_budget_spaces_requests_across_activities(
    emulator: Emulator, clock: FakeClock
) -> None:
    settings = settings_for(emulator, requests_per_minute=3)
    dispatcher = Dispatcher(settings, clock=clock)
    try:
        handles = [live_activity(t, settings=settings, dispatcher=dispatcher) for t in "ABCD"]
        for la in handles:
            la.start()
        assert dispatcher.quiet()
        assert paths(emulator) == ["start", "start", "start"]  # the fourth waits its turn
        clock.advance(59)
        assert dispatcher.quiet()
        assert len(api_requests(emulator)) == 3
        clock.advance(1)
        assert dispatcher.quiet()
        assert paths(emulator) == ["start"] * 4
    finally:
        dispatcher.close()


def test_the_budget_applies_to_a_local_emulator_too(emulator: Emulator, clock: FakeClock) -> None:
    # A local run shows what production will do: the same 60 requests a minute.
    settings = Settings(base_url=emulator.base_url, debounce=0)
    assert settings.requests_per_minute == 60
    dispatcher = Dispatcher(settings, clock=clock)
    try:
        for index in range(70):
            live_activity(f"Job {index}", settings=settings, dispatcher=dispatcher).start()
        assert dispatcher.quiet(10)
        assert len(api_requests(emulator)) == 60
    finally:
        dispatcher.close()


# -- deadlines, not attempt counts ----------------------------------------------------------------


def test_the_end_is_retried_until_delivered_through_a_burst_of_429s(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    once = RetryPolicy(max_attempts=2, max_elapsed=1, initial_backoff=0.01)
    settings = settings_for(emulator, retry=once)
    la = live_activity("Patient", steps=2, settings=settings, dispatcher=timed).start()
    assert timed.quiet()
    emulator.add_fault(Fault.rate_limited(retry_after=1), path="/live-activity/end", times=5)
    la.end()
    for _ in range(6):
        assert timed.quiet()
        clock.advance(1.0)
    assert timed.quiet()
    ends = [r.status for r in api_requests(emulator) if r.path.endswith("/end")]
    assert ends == [429] * 5 + [200]  # five server-named waits are not five failed attempts
    assert emulator.activity(la.activity_id or "").status == "ended"
    assert la.errors == []


def test_a_retry_after_is_honoured_exactly_on_the_clock(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    la = live_activity("Limited", steps=2, settings=settings_for(emulator), dispatcher=timed)
    la.start()
    assert timed.quiet()
    emulator.add_fault(Fault.rate_limited(retry_after=30), path="/live-activity/update")
    la.step("one")
    assert timed.quiet()
    clock.advance(29.9)
    assert timed.quiet()
    assert [r.status for r in api_requests(emulator) if r.path.endswith("update")] == [429]
    clock.advance(0.1)
    assert timed.quiet()
    assert [r.status for r in api_requests(emulator) if r.path.endswith("update")] == [429, 200]
    la.end()
    assert timed.flush(5) == 0


def test_a_rate_limit_pauses_every_activity_of_the_account(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    settings = settings_for(emulator)
    first = live_activity("A", steps=2, settings=settings, dispatcher=timed).start()
    second = live_activity("B", steps=2, settings=settings, dispatcher=timed).start()
    assert timed.quiet()
    emulator.add_fault(Fault.rate_limited(retry_after=10), path="/live-activity/update")
    first.step("a")
    assert timed.quiet()
    second.step("b")
    assert timed.quiet()
    statuses = [r.status for r in api_requests(emulator) if r.path.endswith("/update")]
    assert statuses == [429]  # B waits too: the pause is the account's
    clock.advance(10)
    assert timed.quiet()
    delivered = [r.body for r in api_requests(emulator) if r.status == 200 and r.body]
    assert sorted(b["content_state"].get("subtitle") for b in delivered[2:]) == ["a", "b"]


def test_flush_is_bounded_and_says_what_is_left(emulator: Emulator) -> None:
    settings = settings_for(emulator, read_timeout=30.0)
    dispatcher = Dispatcher(settings)
    try:
        la = live_activity("Hung end", settings=settings, dispatcher=dispatcher).start()
        assert la.flush(5)
        emulator.add_fault(Fault.hang(), path="/live-activity/end")
        la.end()
        started = time.monotonic()
        left = dispatcher.flush(0.5)
        elapsed = time.monotonic() - started
        assert left == 1  # one end still unsent, and flush says so
        assert 0.45 <= elapsed < 1.0
    finally:
        dispatcher.close()


def test_a_flush_while_the_process_goes_on_gives_up_nothing(emulator: Emulator) -> None:
    # activitysmith_track.flush() is not an exit: an end still on its way when it returns
    # keeps its own timeouts and retries, and arrives once the server answers again.
    import activitysmith_track

    settings = settings_for(emulator, read_timeout=1.0)
    la = live_activity("Slow end", settings=settings).start()
    assert la.flush(5)
    # The first try fails at once, so its retry is planned while flush() waits; the retry
    # hangs past the flush.
    emulator.add_faults([Fault.status(503), Fault.hang(3.0)], path="/live-activity/end")
    la.end()
    started = time.monotonic()
    assert activitysmith_track.flush(0.3) is False  # still on its way, and said so
    assert time.monotonic() - started < 1.0
    assert la.flush(10)  # the hung try timed out on its own timeout, the next one went through
    assert paths(emulator).count("end") == 3
    assert emulator.activity(la.activity_id or "").status == "ended"
    assert la.errors == []


def test_a_long_retry_wait_never_holds_the_exit_flush(emulator: Emulator) -> None:
    settings = settings_for(emulator, retry=RetryPolicy(max_retry_after=60))
    dispatcher = Dispatcher(settings)
    try:
        la = live_activity("Backoff", settings=settings, dispatcher=dispatcher).start()
        assert la.flush(5)
        emulator.add_fault(Fault.rate_limited(retry_after=30), path="/live-activity/end")
        la.end()
        assert dispatcher.quiet()  # the 429 is in: the end waits 30 s to try again
        started = time.monotonic()
        left = dispatcher.flush(0.5)
        assert time.monotonic() - started < 1.0
        assert left == 1  # still on its way: reported, not waited for past the bound
    finally:
        dispatcher.close()


# -- the end comes first -------------------------------------------------------------------


def test_a_hung_change_never_holds_back_the_end(emulator: Emulator) -> None:
    # The update hangs (the server still answers new connections); the end is queued behind
    # it. The change is abandoned, its connection closed, and the end lands in time.
    settings = settings_for(emulator, flush_timeout=4, read_timeout=15)
    with live_activity("Deploy", steps=3, settings=settings) as la:
        assert la.flush()
        emulator.add_fault(Fault.hang(), path="/live-activity/update")
        la.step("build")
        emulator.wait_for_requests(2)
        left_at = time.monotonic()
    landed = time.monotonic() - left_at
    assert landed < 4  # within flush_timeout, though the read timeout is 15 s
    record = emulator.activity(la.activity_id or "")
    assert record.status == "ended"
    assert record.state["current_step"] == 3


def test_a_stale_change_stops_retrying_once_the_end_is_queued(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    retry = RetryPolicy(max_attempts=5, initial_backoff=3, max_backoff=3, jitter=0, max_elapsed=30)
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Stale", steps=2, settings=settings_for(emulator, retry=retry)) as la:
        la.flush()
        emulator.add_fault(Fault.status(500), path="/live-activity/update", times=10)
        la.step("one")
        emulator.wait_for_requests(2)  # the update failed; its retry now waits 3 s
        left_at = time.monotonic()
    assert time.monotonic() - left_at < 2  # the end did not wait behind the stale update
    record = emulator.activity(la.activity_id or "")
    assert record.status == "ended"
    assert record.state["current_step"] == 2
    assert not caplog.records  # a superseded update is not a failure


def test_one_activity_s_hung_requests_never_delay_another_s_start_or_end(
    emulator: Emulator,
) -> None:
    settings = settings_for(emulator, connections=2, flush_timeout=5)
    hung = [live_activity(f"Hung {i}", steps=2, settings=settings).start() for i in range(3)]
    for la in hung:
        assert la.flush()
    emulator.add_fault(Fault.hang(), path="/live-activity/update", times=3)
    for la in hung:
        la.step("stuck")
    emulator.wait_for_requests(3 + 2)  # two updates hang on the two connections for changes
    started = time.monotonic()
    with live_activity("Healthy", settings=settings) as other:
        pass
    assert time.monotonic() - started < 2
    assert emulator.activity(other.activity_id or "").status == "ended"


def test_a_hundred_activities_at_once_all_start_and_end(emulator: Emulator) -> None:
    emulator.latency = 0.05
    settings = settings_for(emulator, flush_timeout=30)
    errors: list[BaseException] = []

    def job(index: int) -> None:
        try:
            with live_activity(f"Job {index}", steps=2, settings=settings) as la:
                la.step("one")
                la.step("two")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(100)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    elapsed = time.monotonic() - started
    assert errors == []
    records = list(emulator.activities.values())
    assert len(records) == 100  # no duplicates, none lost
    assert all(r.status == "ended" and r.state["current_step"] == 2 for r in records)
    # One after another would take 100 x 2 x 50 ms = 10 s at least.
    assert elapsed < 8


# -- capacity ------------------------------------------------------------------------------


def test_a_capacity_refusal_is_reported_once_and_retried_once_per_interval(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    emulator.add_fault(Fault.limit_reached(), path="/live-activity/stream/", times=2)
    settings = settings_for(emulator, capacity_retry_interval=60)
    la = live_activity("Full", steps=9, stream_key="full", settings=settings, dispatcher=timed)
    la.start()
    assert timed.quiet()  # refused: the next try is 60 s away
    for _ in range(6):
        la.step()
        clock.advance(5)
        assert timed.quiet()
    assert len(api_requests(emulator)) == 1  # not re-sent on every change
    clock.advance(30)  # 60 s after the refusal: one more try, refused again
    assert timed.quiet()
    assert len(api_requests(emulator)) == 2
    clock.advance(60)  # a slot is free now: the newest state goes out
    assert timed.quiet()
    record = emulator.stream_activity("full")
    assert record is not None
    assert record.state["current_step"] == 6
    la.end()
    assert timed.flush(5) == 0
    warnings = [r for r in caplog.records if "limit" in r.getMessage()]
    assert len(warnings) == 1


def test_the_end_is_still_attempted_after_a_capacity_refusal(
    emulator: Emulator, clock: FakeClock, timed: Dispatcher
) -> None:
    emulator.add_fault(Fault.limit_reached(), path="/live-activity/start", times=1)
    settings = settings_for(emulator, capacity_retry_interval=600)
    with live_activity("Full", steps=2, settings=settings, dispatcher=timed) as la:
        assert timed.quiet()
        la.step("a")
    # A slot freed meanwhile: the start goes out with the end right behind it.
    record = emulator.activity(la.activity_id or "")
    assert record.status == "ended"
    assert paths(emulator) == ["start", "start", "end"]


# -- faults end in a logged warning, nothing lost ----------------------------------------------


def test_server_errors_then_recovery_lose_nothing(emulator: Emulator) -> None:
    emulator.add_fault(Fault.status(503), times=2)
    emulator.add_fault(Fault.drop(), path="/live-activity/end")
    with live_activity("Flaky", steps=2, settings=settings_for(emulator)) as la:
        la.step("a")
        la.step("b")
    assert la.errors == []
    record = emulator.activity(la.activity_id or "")
    assert record.status == "ended"
    assert record.state["current_step"] == 2


def test_server_down_fails_open_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    settings = Settings(
        base_url="http://127.0.0.1:9", retry=FAST_RETRY, debounce=0.0, flush_timeout=0.5
    )
    with live_activity("Down", steps=3, settings=settings) as la:
        for _ in range(3):
            la.step()
        answer = sum(range(10))
    assert answer == 45
    messages = [r.getMessage() for r in caplog.records if r.name == "activitysmith_track"]
    assert len(messages) == 1
    assert "not confirmed within flush_timeout" in messages[0]


def test_strict_mode_raises_the_root_cause_with_the_timeout_as_context() -> None:
    from activitysmith_track import TransportError

    settings = Settings(base_url="http://127.0.0.1:9", debounce=0.0, flush_timeout=0.5)
    with (
        pytest.raises(TransportError) as caught,
        live_activity("Down", settings=settings, strict=True),
    ):
        pass
    assert "could not connect" in str(caught.value)
    assert "flush_timeout" in str(caught.value.__context__)


# -- a hostile runtime ------------------------------------------------------------------------


def test_the_sender_survives_a_failure_inside_it(emulator: Emulator) -> None:
    calls: list[int] = []

    def flaky_wire(settings: Settings) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the connection pool could not be built")
        return Wire(settings.effective_api_key, base_url=settings.base_url)

    settings = settings_for(emulator)
    dispatcher = Dispatcher(settings, wire_factory=flaky_wire)
    try:
        with live_activity("Broken", settings=settings, dispatcher=dispatcher):
            pass
        with live_activity("Next", settings=settings, dispatcher=dispatcher) as after:
            pass
    finally:
        dispatcher.close()
    assert after.activity_id is not None
    assert emulator.activity(after.activity_id).status == "ended"


def test_logging_from_the_sender_cannot_recurse_or_deadlock() -> None:
    settings = Settings(base_url="http://127.0.0.1:9", retry=FAST_RETRY, flush_timeout=1)
    holder: dict[str, Any] = {}

    class Reentrant(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            la = holder.get("la")
            if la is not None and not la.ended:
                la.update(subtitle="logged")

    handler = Reentrant()
    logger = logging.getLogger("activitysmith_track")
    logger.addHandler(handler)
    try:
        with live_activity("Reentrant", settings=settings) as la:
            holder["la"] = la
            la.step("x")
            la.flush(0.5)
    finally:
        logger.removeHandler(handler)
    assert la.ended


def test_thread_start_failure_falls_back_to_sending_inline(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(target: Any) -> threading.Thread:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(dispatch_module, "_start_thread", refuse)
    settings = settings_for(emulator)
    dispatcher = Dispatcher(settings)
    try:
        with live_activity("Shutdown", settings=settings, dispatcher=dispatcher):
            pass
        assert dispatcher.flush(2) == 0
    finally:
        dispatcher.close()
    assert paths(emulator) == ["start", "end"]


def test_a_dropped_handle_is_collectable_and_ended(emulator: Emulator) -> None:
    settings = settings_for(emulator)
    dispatcher = Dispatcher(settings)
    try:
        la = live_activity("Dropped", settings=settings, dispatcher=dispatcher).start()
        ref = weakref.ref(la)
        del la
        gc.collect()
        assert ref() is None
        assert dispatcher.flush(5) == 0
    finally:
        dispatcher.close()
    assert paths(emulator)[-1] == "end"
    assert api_requests(emulator)[-1].body["content_state"]["subtitle"].startswith("Stopped")


def test_collecting_a_dropped_handle_while_the_dispatcher_lock_is_held_cannot_deadlock(
    emulator: Emulator,
) -> None:
    # Garbage collection may run on any thread at any allocation, also on one that holds the
    # dispatcher's lock; the finalizer then ends the activity through that same lock.
    settings = settings_for(emulator)
    dispatcher = Dispatcher(settings)
    try:
        la = live_activity("Cycle", settings=settings, dispatcher=dispatcher).start()
        la.step("x")
        cycle: list[Any] = [la]
        cycle.append(cycle)  # only the cyclic collector frees it
        gc.disable()
        del la, cycle
        collected = threading.Event()

        def collect_inside_the_lock() -> None:
            with dispatcher._cond:
                gc.collect()
            collected.set()

        threading.Thread(target=collect_inside_the_lock, daemon=True).start()
        try:
            assert collected.wait(5)
        finally:
            gc.enable()
        assert dispatcher.flush(5) == 0
    finally:
        dispatcher.close()
    assert paths(emulator)[-1] == "end"


# -- fork ------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_starts_clean_and_never_resends_the_parents_queue(emulator: Emulator) -> None:
    emulator.latency = 0.05  # the parent's sender is busy at the fork
    settings = settings_for(emulator)
    with live_activity("Parent", steps=3, settings=settings) as parent:
        parent.step("one")
        parent.step("two")
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                parent.step("three")  # the parent's activity: inert in the child
                with live_activity("Child", settings=settings) as child:
                    pass
                code = 0 if child.activity_id and not child.errors else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    titles = [
        (r.path.rsplit("/", 1)[-1], (r.body or {}).get("content_state", {}).get("title"))
        for r in api_requests(emulator)
    ]
    assert titles.count(("start", "Parent")) == 1
    assert titles.count(("start", "Child")) == 1
    assert titles.count(("end", "Parent")) == 1
    assert titles.count(("end", "Child")) == 1
    assert emulator.activity(parent.activity_id or "").state["current_step"] == 3


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_blocks_on_a_lock_its_parent_held(emulator: Emulator) -> None:
    settings = settings_for(emulator)
    with live_activity("Parent", steps=3, settings=settings) as la:
        held, release = threading.Event(), threading.Event()

        def hold_the_dispatcher_lock() -> None:  # as a parent thread inside touch() would
            dispatcher = dispatch_module.get_dispatcher(settings)
            with dispatcher._cond:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_dispatcher_lock)
        holder.start()
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the inherited handle must neither block nor send
            code = 1
            try:
                la.step("in the child")
                la.end()
                code = 0
            finally:
                os._exit(code)
        release.set()
        holder.join()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.02)
        else:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the child blocked on the inherited lock")
        assert os.waitstatus_to_exitcode(status) == 0
    assert paths(emulator).count("end") == 1


def test_no_thread_starts_until_first_use(emulator: Emulator) -> None:
    script = textwrap.dedent(
        """
        import threading
        import activitysmith_track
        from activitysmith_track import live_activity
        la = live_activity("Lazy", steps=2)
        la.step("a")
        before = threading.active_count()
        la.start()
        la.end()
        la.flush(5)
        print(before, threading.active_count() > before)
        """
    )
    env = {"ACTIVITYSMITH_BASE_URL": emulator.base_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "True"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_after_a_dropped_handle_prints_nothing(emulator: Emulator) -> None:
    script = textwrap.dedent(
        """
        import gc, os
        from activitysmith_track import live_activity
        la = live_activity("Dropped", steps=2).start()
        la.step("a")
        del la
        gc.collect()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        """
    )
    env = {"ACTIVITYSMITH_BASE_URL": emulator.base_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0
    assert done.stderr == ""
    assert paths(emulator).count("end") == 1
