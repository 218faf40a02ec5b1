"""The delivery layer: ordering, coalescing, budgets, flush bounds, faults and fork safety."""

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
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from activitysmith_track import LiveActivity, RetryPolicy, Settings, live_activity
from activitysmith_track import _dispatch as dispatch_module
from activitysmith_track._dispatch import Channel, Dispatcher, TokenBucket
from activitysmith_track.emulator import Emulator, Fault, RecordedRequest

FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02, max_elapsed=5)


@pytest.fixture
def dispatchers() -> Any:
    """Dispatchers a test makes itself, closed (connections released) afterwards."""
    made: list[Dispatcher] = []
    yield made
    for dispatcher in made:
        dispatcher.close()


def settings_for(emu: Emulator, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "base_url": emu.base_url,
        "debounce": 0.0,
        "flush_timeout": 5.0,
        "retry": FAST_RETRY,
        "read_timeout": 2.0,
    }
    options.update(overrides)
    return Settings(**options)


def api(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.path.startswith("/live-activity")]


def kinds(emu: Emulator) -> list[str]:
    return [r.path.rsplit("/", 1)[-1] for r in api(emu)]


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
        for percent in range(0, 101):
            la.percentage(percent / 2)
            if percent % 10 == 0:
                time.sleep(0.01)
        la.flush()
        record = emulator.activity(la.activity_id or "")
        assert record.state["percentage"] == 50
    sent = [
        r.body["content_state"]["percentage"]
        for r in api(emulator)
        if r.body and "update" in r.path
    ]
    assert len(sent) < 50  # far fewer requests than the 101 changes
    assert sent == sorted(sent)  # never a stale state after a newer one
    assert kinds(emulator)[0] == "start"
    assert kinds(emulator)[-1] == "end"


def test_debounce_turns_a_burst_into_one_request(emulator: Emulator) -> None:
    settings = settings_for(emulator, debounce=0.2)
    with live_activity("Burst", steps=100, settings=settings) as la:
        la.flush()
        for _ in range(50):
            la.step()
        la.flush()
        assert emulator.activity(la.activity_id or "").state["current_step"] == 50
    assert kinds(emulator).count("update") == 1


def test_update_budget_holds_back_updates_but_never_the_end(emulator: Emulator) -> None:
    settings = settings_for(emulator, update_burst=3, update_interval=3600)
    with live_activity("Budget", steps=10, settings=settings) as la:
        la.flush()
        for _ in range(3):
            la.step()
            la.flush()
        for _ in range(5):
            la.step()
        assert not la.flush(0.3)  # no token left: the update waits
    assert kinds(emulator).count("update") == 3
    assert kinds(emulator)[-1] == "end"
    end = api(emulator)[-1].body
    assert end is not None
    assert end["content_state"]["current_step"] == 10  # success shows every step complete


def test_identical_states_are_not_sent_twice(emulator: Emulator) -> None:
    with live_activity("Same", steps=3, settings=settings_for(emulator)) as la:
        la.step("a")
        la.flush()
        la.update(subtitle="a")  # no visible change
        la.flush()
    assert kinds(emulator).count("update") <= 1


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


def test_account_rate_limit_spaces_requests_across_activities(
    emulator: Emulator, dispatchers: list[Dispatcher]
) -> None:
    # 8 a minute: a burst of 8 // 4 = 2, then one every 7.5 s.
    settings = settings_for(emulator, requests_per_minute=8, flush_timeout=0.5)
    # The account budget is not applied to a local emulator; pretend this one is remote.
    dispatcher = Dispatcher(settings)
    dispatcher._account = TokenBucket(2, 7.5, now=time.monotonic())
    dispatchers.append(dispatcher)
    first = live_activity("A", settings=settings)
    second = live_activity("B", settings=settings)
    for la in (first, second):
        la._channel = dispatcher.open(la._state, label=la.title)
    assert first._channel is not None
    assert second._channel is not None
    assert first._channel.flush(2)
    assert second._channel.flush(2)
    third = live_activity("C", settings=settings)
    third._channel = dispatcher.open(third._state, label="C")
    assert not third._channel.flush(0.3)  # the account budget is spent for now
    assert kinds(emulator) == ["start", "start"]


# -- faults end in a logged warning, nothing lost ----------------------------------------------


def test_rate_limited_update_waits_for_retry_after_and_is_delivered(emulator: Emulator) -> None:
    with live_activity("Limited", steps=2, settings=settings_for(emulator)) as la:
        la.flush()
        emulator.add_fault(Fault.rate_limited(retry_after=0.3), path="/live-activity/update")
        la.step("one")
        assert la.flush(5)
    updates = [r for r in api(emulator) if r.path.endswith("update")]
    assert [r.status for r in updates] == [429, 200]
    assert updates[1].time - updates[0].time >= 0.29
    assert la.errors == []


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


def test_server_down_fails_open_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    settings = Settings(base_url="http://127.0.0.1:9", retry=FAST_RETRY, debounce=0.0)
    with live_activity("Down", steps=3, settings=settings) as la:
        for _ in range(3):
            la.step()
        answer = sum(range(10))
    assert answer == 45
    assert len([r for r in caplog.records if r.name == "activitysmith_track"]) == 1
    assert la.errors


def test_flush_is_bounded_when_the_server_hangs(
    emulator: Emulator, dispatchers: list[Dispatcher]
) -> None:
    settings = settings_for(emulator, read_timeout=30.0)
    dispatcher = Dispatcher(settings)
    dispatchers.append(dispatcher)
    la = live_activity("Hung end", settings=settings)
    la._channel = dispatcher.open(la._state, label="Hung end")
    assert la._channel.flush(5)
    emulator.add_fault(Fault.hang(), path="/live-activity/end")
    la._channel.close(la._state.snapshot())
    started = time.monotonic()
    left = dispatcher.flush(0.5)
    elapsed = time.monotonic() - started
    assert left == 1  # one end still unsent, and flush says so
    assert 0.45 <= elapsed < 1.0


def test_long_backoff_ends_at_once_when_flush_asks(
    emulator: Emulator, dispatchers: list[Dispatcher]
) -> None:
    retry = RetryPolicy(max_attempts=5, max_retry_after=60, max_elapsed=120)
    settings = settings_for(emulator, retry=retry)
    dispatcher = Dispatcher(settings)
    dispatchers.append(dispatcher)
    la = live_activity("Backoff", settings=settings)
    la._channel = dispatcher.open(la._state, label="Backoff")
    assert la._channel.flush(5)
    emulator.add_fault(Fault.rate_limited(retry_after=30), path="/live-activity/end")
    la._channel.close(la._state.snapshot())
    emulator.wait_for_requests(2)
    started = time.monotonic()
    left = dispatcher.flush(0.5)
    assert time.monotonic() - started < 1.0
    assert left == 0  # the end gave up (it could not be sent before the deadline)
    assert la._channel.errors
    assert len([r for r in api(emulator) if r.path.endswith("end")]) == 1


# -- a hostile runtime ------------------------------------------------------------------------


def test_worker_survives_an_exception_while_reading_state(emulator: Emulator) -> None:
    settings = settings_for(emulator)
    with live_activity("Broken", steps=2, settings=settings) as la:
        la.flush()
        original = la._state.snapshot

        def explode() -> Any:
            raise RuntimeError("snapshot failed")

        la._state.snapshot = explode  # type: ignore[method-assign]
        la.step()
        la.flush(1)
        la._state.snapshot = original  # type: ignore[method-assign]
    with live_activity("Next", settings=settings) as after:
        pass
    assert after.activity_id is not None
    assert emulator.activity(after.activity_id).status == "ended"


def test_logging_from_the_worker_cannot_recurse_or_deadlock(emulator: Emulator) -> None:
    settings = settings_for(emulator, base_url="http://127.0.0.1:9")
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
    finally:
        logger.removeHandler(handler)
    assert la.ended


def test_thread_start_failure_falls_back_to_sending_inline(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, dispatchers: list[Dispatcher]
) -> None:
    def refuse(target: Any) -> threading.Thread:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    monkeypatch.setattr(dispatch_module, "_start_worker_thread", refuse)
    settings = settings_for(emulator)
    dispatcher = Dispatcher(settings)
    dispatchers.append(dispatcher)
    la = live_activity("Shutdown", settings=settings)
    la._channel = dispatcher.open(la._state, label="Shutdown")
    la._channel.close(la._state.snapshot())
    assert dispatcher.flush(2) == 0
    assert kinds(emulator) == ["start", "end"]


def test_dropped_handle_is_collectable(emulator: Emulator) -> None:
    from activitysmith_track import _activity

    la = live_activity("Dropped", settings=settings_for(emulator)).start()
    ref = weakref.ref(la)
    channel = la._channel
    assert channel is not None
    key = id(la._state)
    assert key in _activity._finalizers
    del la
    gc.collect()
    assert ref() is None
    assert key not in _activity._finalizers  # nothing is kept for an activity that ended
    assert channel.flush(5)
    assert kinds(emulator)[-1] == "end"


# -- fork ------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_starts_clean_and_never_resends_the_parents_queue(emulator: Emulator) -> None:
    emulator.latency = 0.05  # the parent's worker is busy (holding its lock) at the fork
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
        for r in api(emulator)
    ]
    assert titles.count(("start", "Parent")) == 1
    assert titles.count(("start", "Child")) == 1
    assert titles.count(("end", "Parent")) == 1
    assert titles.count(("end", "Child")) == 1
    parent_record = emulator.activity(parent.activity_id or "")
    assert parent_record.state["current_step"] == 3


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
    assert [r.path.rsplit("/", 1)[-1] for r in api(emulator)].count("end") == 1


def collect_a_dropped_handle_holding(
    emulator: Emulator, lock_of: Callable[[LiveActivity], Any]
) -> Channel:
    """Drop a started handle in a reference cycle, then collect it on a thread that holds
    ``lock_of(handle)``; fails if that collection never finishes. Returns the channel."""
    la = live_activity("Cycle", settings=settings_for(emulator)).start()
    la.me = la  # type: ignore[attr-defined]  # a cycle: only the cyclic collector frees it
    lock, channel = lock_of(la), la._channel
    assert channel is not None
    gc.disable()  # only the collection below may free the handle
    del la
    collected = threading.Event()

    def collect_inside_the_lock() -> None:
        with lock:
            gc.collect()
        collected.set()

    threading.Thread(target=collect_inside_the_lock, daemon=True).start()
    try:
        assert collected.wait(5)
    finally:
        gc.enable()
    return channel


def test_collecting_a_dropped_handle_while_holding_the_lock_cannot_deadlock(
    emulator: Emulator,
) -> None:
    # Garbage collection may run on any thread at any allocation, also on one that holds the
    # dispatcher's lock; the finalizer then ends the activity through that same lock.
    channel = collect_a_dropped_handle_holding(emulator, lambda la: la._channel._dispatcher._cond)
    assert channel.flush(5)
    assert kinds(emulator)[-1] == "end"


def test_retry_after_longer_than_max_elapsed_is_waited_for_not_dropped(emulator: Emulator) -> None:
    retry = RetryPolicy(max_attempts=3, max_elapsed=0.1, initial_backoff=0.01, max_retry_after=5)
    with live_activity("Patient", settings=settings_for(emulator, retry=retry)) as la:
        la.flush()
        emulator.add_fault(Fault.rate_limited(retry_after=0.4), path="/live-activity/end")
    ends = [r for r in api(emulator) if r.path.endswith("end")]
    assert [r.status for r in ends] == [429, 200]
    assert ends[1].time - ends[0].time >= 0.39
    assert la.errors == []


def test_a_stale_update_stops_retrying_once_the_end_is_queued(
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


def test_a_rate_limit_pauses_every_activity_of_the_account(emulator: Emulator) -> None:
    settings = settings_for(emulator)
    with (
        live_activity("A", steps=2, settings=settings) as first,
        live_activity("B", steps=2, settings=settings) as second,
    ):
        first.flush()
        second.flush()
        emulator.add_fault(Fault.rate_limited(retry_after=0.5), path="/live-activity/update")
        first.step("a")
        emulator.wait_for_requests(3)  # A's update got the 429
        second.step("b")
        second.flush()
    updates = [r for r in api(emulator) if r.path.endswith("update")]
    limited = next(r for r in updates if r.status == 429)
    later = [r for r in updates if r.time > limited.time]
    assert later
    assert min(r.time for r in later) - limited.time >= 0.45


def test_activities_with_different_options_share_one_worker_and_budget(emulator: Emulator) -> None:
    base = settings_for(emulator)
    with (
        live_activity("A", settings=base) as first,
        live_activity("B", settings=attrs.evolve(base, flush_timeout=2.0, debounce=0.5)) as second,
    ):
        assert first._channel is not None
        assert second._channel is not None
        assert first._channel._dispatcher is second._channel._dispatcher
        assert second._channel.debounce == 0.5


def test_collecting_a_dropped_handle_while_its_state_is_read_cannot_deadlock(
    emulator: Emulator,
) -> None:
    # The worker holds the state's lock while it builds a snapshot, and building one
    # allocates: the collector may run the handle's finalizer right there.
    channel = collect_a_dropped_handle_holding(emulator, lambda la: la._state.lock)
    assert channel.flush(5)
    assert kinds(emulator)[-1] == "end"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_blocks_on_a_lock_its_parent_held(emulator: Emulator) -> None:
    with live_activity("Parent", total=100, settings=settings_for(emulator)) as la:
        held, release = threading.Event(), threading.Event()

        def hold_the_state_lock() -> None:  # as a parent thread inside advance() would
            with la._state.lock:
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_state_lock)
        holder.start()
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the inherited handle must neither block nor send
            code = 1
            try:
                la.advance()
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
    assert [r.path.rsplit("/", 1)[-1] for r in api(emulator)].count("end") == 1
