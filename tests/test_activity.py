"""live_activity() and the LiveActivity handle, against the emulator over loopback."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from conftest import api_requests, last_body, paths

from activitysmith_track import (
    ActivityEndedError,
    ArgumentTypeError,
    Dispatcher,
    EndLook,
    LiveActivityLimitError,
    Outcome,
    ServerError,
    TransportError,
    UsageError,
    ValidationError,
    current_activity,
    live_activity,
)
from activitysmith_track._config import resolve_settings
from activitysmith_track.emulator import Emulator, Fault

# -- the lifecycle -----------------------------------------------------------------------------


def test_block_starts_updates_and_ends_the_activity(emu: Emulator) -> None:
    with live_activity("Nightly backup", steps=3) as la:
        la.step("create snapshot")
        la.flush()
        la.step("upload archive")
        la.flush()
        la.step("verify")
    names = paths(emu)
    assert names[0] == "start"
    assert names[-1] == "end"
    assert names.count("start") == 1
    assert names.count("end") == 1
    start = last_body(emu, "start")["content_state"]
    assert start["title"] == "Nightly backup"
    assert start["type"] == "segmented_progress"
    assert start["number_of_steps"] == 3
    end = last_body(emu, "end")
    assert end["activity_id"] == la.activity_id
    state = end["content_state"]
    assert state["current_step"] == 3
    assert state["number_of_steps"] == 3
    assert state["color"] == "green"
    assert state["step_color"] == "green"
    assert state["subtitle"].startswith("Done in ")
    record = emu.activity(la.activity_id or "")
    assert record.status == "ended"
    assert la.outcome is Outcome.SUCCESS


def test_each_step_reaches_the_server_in_order(emu: Emulator) -> None:
    with live_activity("Nightly backup", steps=["snapshot", "upload", "verify"]) as la:
        seen = []
        for _ in range(3):
            la.step()
            la.flush()
            seen.append(emu.activity(la.activity_id or "").state["current_step"])
    assert seen == [1, 2, 3]
    # The first step may ride on the start (the worker reads the newest state when it sends).
    sent = [r.body for r in api_requests(emu) if not r.path.endswith("end")]
    subtitles = [b["content_state"].get("subtitle") for b in sent if b]
    assert [s for s in subtitles if s] == ["snapshot", "upload", "verify"]


def test_exception_ends_activity_as_failed_and_propagates_unchanged(emu: Emulator) -> None:
    error = ValueError("disk full")
    with (
        pytest.raises(ValueError, match="disk full") as caught,
        live_activity("Nightly backup", steps=["snapshot", "upload", "verify"]) as la,
    ):
        la.step()
        la.step()
        raise error
    assert caught.value is error
    assert (
        caught.traceback[-1].name
        == "test_exception_ends_activity_as_failed_and_propagates_unchanged"
    )
    end = last_body(emu, "end")["content_state"]
    assert end["color"] == "red"
    assert end["current_step"] == 2
    # Private by default: the type, not the text the exception carries.
    assert end["subtitle"] == "Failed at upload: ValueError"
    assert la.outcome is Outcome.FAILURE


def test_long_error_text_is_trimmed(emu: Emulator) -> None:
    with pytest.raises(RuntimeError), live_activity("Job", show_error_message=True):
        raise RuntimeError("x" * 500)
    subtitle = last_body(emu, "end")["content_state"]["subtitle"]
    assert len(subtitle) <= 64
    assert subtitle.endswith("…")


def test_the_exception_text_stays_off_the_phone_by_default(emu: Emulator) -> None:
    with pytest.raises(KeyError), live_activity("Job", steps=2) as la:
        la.step("load")
        raise KeyError("customer 42 secret")
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Failed at load: KeyError"
    assert "customer 42" not in json.dumps([r.body for r in api_requests(emu)])


def test_the_exception_text_is_shown_when_asked(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeyError), live_activity("Job", steps=2, show_error_message=True) as la:
        la.step("load")
        raise KeyError("row 7")
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Failed at load: KeyError: 'row 7'"

    monkeypatch.setenv("ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE", "1")
    with pytest.raises(OSError, match="disk full"), live_activity("Job"):
        raise OSError("disk full")
    assert last_body(emu, "end")["content_state"]["subtitle"].endswith(": OSError: disk full")


def test_keyboard_interrupt_ends_as_cancelled(emu: Emulator) -> None:
    with pytest.raises(KeyboardInterrupt), live_activity("Job", steps=2) as la:
        la.step("load")
        raise KeyboardInterrupt
    end = last_body(emu, "end")["content_state"]
    assert end["subtitle"] == "Cancelled at load"
    assert end["color"] == "orange"
    assert la.outcome is Outcome.CANCELLED


@pytest.mark.parametrize(
    ("code", "outcome"), [(0, Outcome.SUCCESS), (None, Outcome.SUCCESS), (3, Outcome.FAILURE)]
)
def test_system_exit(emu: Emulator, code: int | None, outcome: Outcome) -> None:
    with pytest.raises(SystemExit), live_activity("Job") as la:
        raise SystemExit(code)
    assert la.outcome is outcome
    if outcome is Outcome.FAILURE:
        assert "exit code 3" in last_body(emu, "end")["content_state"]["subtitle"]


def test_custom_looks(emu: Emulator) -> None:
    looks = {
        "on_success": EndLook(subtitle="All {steps} steps done", color="blue"),
        "on_failure": EndLook(subtitle="Broke in step {step}", color="magenta"),
    }
    with live_activity("Job", steps=2, **looks) as la:
        la.step()
    assert last_body(emu, "end")["content_state"]["subtitle"] == "All 2 steps done"
    assert last_body(emu, "end")["content_state"]["color"] == "blue"
    with pytest.raises(OSError, match="disk"), live_activity("Job", steps=2, **looks) as la:
        la.step()
        raise OSError("disk")
    end = last_body(emu, "end")["content_state"]
    assert (end["subtitle"], end["color"]) == ("Broke in step 1", "magenta")


def test_no_steps_gives_an_elapsed_timer(emu: Emulator) -> None:
    with live_activity("Backup"):
        pass
    start = last_body(emu, "start")["content_state"]
    assert start["type"] == "timer"
    assert start["counts_down"] is False
    end = last_body(emu, "end")["content_state"]
    assert end["is_running"] is False


def test_countdown_keeps_its_end_moment_across_updates(emu: Emulator) -> None:
    with live_activity("Deploy", duration_seconds=600) as la:
        la.flush()
        time.sleep(0.3)
        la.update(subtitle="canary")
        la.flush()
    start = last_body(emu, "start")["content_state"]
    assert start["type"] == "timer"
    assert 599 <= start["duration_seconds"] <= 600
    update = last_body(emu, "update")["content_state"]
    # Re-sending the full 600 s would restart the countdown; the seconds left keep its end.
    assert 598 <= update["duration_seconds"] <= 599.8
    end = last_body(emu, "end")["content_state"]
    # The end freezes the countdown at what was left, which is valid for every request an
    # end may go out as (a start too, when the first one never got through).
    assert end["is_running"] is False
    assert 597 <= end["duration_seconds"] <= 599.8
    assert end["is_running"] is False


def test_total_gives_progress_and_track_counts(emu: Emulator) -> None:
    rows = list(range(40))
    seen = []
    with live_activity("Import", total=40) as la:
        for row in la.track(rows):
            seen.append(row)
            if row == 19:
                la.flush()
                state = emu.activity(la.activity_id or "").state
                assert state["value"] == 19
                assert state["upper_limit"] == 40
    assert seen == rows
    end = last_body(emu, "end")["content_state"]
    assert end["type"] == "progress"
    assert end["percentage"] == 100


def test_percentage_and_progress(emu: Emulator) -> None:
    with live_activity("Upload", type="progress") as la:
        la.percentage(40)
        la.flush()
        assert emu.activity(la.activity_id or "").state["percentage"] == 40
        la.progress(3, 4)
        la.flush()
        state = emu.activity(la.activity_id or "").state
        assert (state["value"], state["upper_limit"]) == (3, 4)


def test_metrics(emu: Emulator) -> None:
    with live_activity("Crawl", metrics={"pages": 0}) as la:
        la.metrics(pages=120, errors=3)
    end = last_body(emu, "end")["content_state"]
    assert end["type"] == "metrics"
    assert end["metrics"] == [{"label": "pages", "value": 120}, {"label": "errors", "value": 3}]


def test_track_on_a_step_activity_counts_in_the_subtitle(emu: Emulator) -> None:
    with live_activity("ETL", steps=["extract", "load"]) as la:
        la.step()
        for _ in la.track(range(3)):
            pass
        la.flush()
        assert emu.activity(la.activity_id or "").state["subtitle"] == "extract · 3/3"


def test_pass_through_options(emu: Emulator) -> None:
    from activitysmith_track import Action

    with live_activity(
        "Deploy",
        steps=2,
        subtitle="web",
        color="cyan",
        step_color="blue",
        icon="server.rack",
        badge="prod",
        action=Action.open_url("Logs", "https://example.com/logs"),
        tags=["deploy"],
        metadata={"build": 42},
        channels=["ops"],
        auto_dismiss_minutes=1,
    ):
        pass
    start = last_body(emu, "start")
    state = start["content_state"]
    assert state["subtitle"] == "web"
    assert state["icon"] == {"symbol": "server.rack"}
    assert state["badge"] == {"title": "prod"}
    assert state["step_color"] == "blue"
    assert start["action"] == {
        "title": "Logs",
        "type": "open_url",
        "url": "https://example.com/logs",
    }
    assert start["tags"] == ["deploy"]
    assert start["metadata"] == {"build": 42}
    assert start["target"] == {"channels": ["ops"]}
    end = last_body(emu, "end")
    assert "target" not in end
    assert end["content_state"]["auto_dismiss_minutes"] == 1


def test_update_sets_fields_and_refuses_bad_ones_without_changing_state(emu: Emulator) -> None:
    with live_activity("Job", steps=3) as la:
        la.update(subtitle="warming up", color="yellow")
        with pytest.raises(ValidationError, match="color"):
            la.update(color="chartreuse")
        with pytest.raises(ValidationError, match="bogus"):
            la.update(bogus=1)
        assert la.state.color is not None
        assert la.state.color.value == "yellow"
        assert la.state.subtitle == "warming up"


# -- ending exactly once -------------------------------------------------------------------


def test_end_early_then_block_exit_sends_one_end(emu: Emulator) -> None:
    with live_activity("Job", steps=2) as la:
        la.step()
        la.end(subtitle="Finished early")
        with pytest.raises(ActivityEndedError):
            la.step()
        with pytest.raises(ActivityEndedError):
            la.end()
    assert paths(emu).count("end") == 1
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Finished early"


def test_a_step_name_given_to_step_wins_over_the_planned_one(emu: Emulator) -> None:
    with pytest.raises(OSError, match="full"), live_activity("Job", steps=["upload"]) as la:
        la.step("upload archive")
        raise OSError("full")
    subtitle = last_body(emu, "end")["content_state"]["subtitle"]
    assert subtitle == "Failed at upload archive: OSError"


def test_fail_with_message(emu: Emulator) -> None:
    with live_activity("Job", steps=2) as la:
        la.step("load")
        la.fail("3 rows rejected")
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Failed at load: 3 rows rejected"
    assert paths(emu).count("end") == 1
    assert la.outcome is Outcome.FAILURE


def test_manual_start_and_end(emu: Emulator) -> None:
    la = live_activity("Job", steps=1).start()
    with pytest.raises(UsageError):
        la.start()
    la.step("only")
    la.end()
    assert la.flush(5)
    assert paths(emu)[0] == "start"
    assert paths(emu)[-1] == "end"


def test_dropped_handle_is_ended_once_when_collected(emu: Emulator) -> None:
    dispatcher = Dispatcher()
    la = live_activity("Forgotten", steps=2, dispatcher=dispatcher).start()
    la.step("half")
    del la
    gc.collect()
    assert dispatcher.flush(5) == 0
    end = last_body(emu, "end")["content_state"]
    assert end["subtitle"] == "Stopped at half"
    assert paths(emu).count("end") == 1


def test_activity_left_open_is_ended_at_interpreter_exit(emulator: Emulator) -> None:
    script = textwrap.dedent(
        """
        from activitysmith_track import live_activity
        la = live_activity("Left open", steps=3).start()
        la.step("first")
        KEEP = la   # still referenced at exit: the atexit hook must end it
        """
    )
    env = {"ACTIVITYSMITH_BASE_URL": emulator.base_url, "PATH": ""}
    done = subprocess.run([sys.executable, "-c", script], env=env, timeout=30, check=False)
    assert done.returncode == 0
    ends = [r for r in emulator.requests if r.path.endswith("/end")]
    assert len(ends) == 1
    assert ends[0].body is not None
    assert ends[0].body["content_state"]["subtitle"] == "Stopped at first"


def test_exit_with_a_hung_server_is_bounded_by_flush_timeout(emulator: Emulator) -> None:
    script = textwrap.dedent(
        """
        import time
        from activitysmith_track import live_activity
        t = time.monotonic()
        with live_activity("Hung", steps=1, flush_timeout=1):
            pass
        print(round(time.monotonic() - t, 1))
        """
    )
    emulator.add_fault(Fault.hang(), path="/live-activity/start", times=5)
    env = {"ACTIVITYSMITH_BASE_URL": emulator.base_url, "PATH": ""}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        timeout=30,
        capture_output=True,
        text=True,
        check=False,
    )
    whole_run = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    # The block waited about flush_timeout; the exit waited once more for the same end (no
    # end is given up at exit while there is time), within one more flush_timeout.
    block = float(done.stdout.strip())
    assert 0.9 <= block < 2
    assert whole_run - block < 2.5


# -- failures never reach the job (unless strict) ---------------------------------------------


def test_server_down_is_logged_once_and_the_job_runs_on(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.add_fault(Fault.status(500), path="/live-activity/start", times=10)
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Job", steps=3) as la:
        for _ in range(3):
            la.step()
        result = 42
    assert result == 42
    warnings = [r for r in caplog.records if r.name == "activitysmith_track"]
    assert len(warnings) == 1
    assert "start failed" in warnings[0].getMessage()
    assert isinstance(la.errors[0], ServerError)
    assert "update" not in paths(emu)


def test_strict_mode_raises_at_the_end_of_the_block(emu: Emulator) -> None:
    emu.add_fault(Fault.status(500), path="/live-activity/start", times=10)
    with pytest.raises(ServerError), live_activity("Job", strict=True):
        pass


def test_strict_mode_never_hides_the_jobs_own_exception(emu: Emulator) -> None:
    emu.add_fault(Fault.status(500), path="/live-activity/start", times=10)
    with pytest.raises(ZeroDivisionError), live_activity("Job", strict=True):
        _ = 1 / 0


def test_capacity_limit_is_reported_once_clearly(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emu.add_fault(Fault.limit_reached(limit=4, active=4), path="/live-activity/start", times=10)
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    with live_activity("Fifth", steps=2) as la:
        la.step()
        la.flush()  # refused for capacity before the block ends (not a race with the end)
        la.step()
    messages = [r.getMessage() for r in caplog.records if r.name == "activitysmith_track"]
    assert len(messages) == 1
    assert "4 of 4" in messages[0]
    assert isinstance(la.errors[0], LiveActivityLimitError)
    # The end is tried once, as a start with the final state; still no slot, so no more.
    assert paths(emu) == ["start", "start"]


def test_unreachable_server_with_strict_raises_transport_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "3")
    from activitysmith_track import RetryPolicy, Settings

    settings = Settings(
        base_url="http://127.0.0.1:9",
        retry=RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01),
        strict=True,
        debounce=0,
    )
    with pytest.raises(TransportError), live_activity("Job", settings=settings):
        pass


def test_disabled_switch_sends_nothing(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DISABLED", "1")
    with live_activity("Job", steps=2) as la:
        la.step("a")
        la.step("b")
    assert la.activity_id is None
    assert api_requests(emu) == []


def test_missing_api_key_warns_once_and_tracks_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import activitysmith_track._activity as activity_module

    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.delenv("ACTIVITYSMITH_BASE_URL", raising=False)
    monkeypatch.setattr(activity_module, "_warned_no_key", False)
    caplog.set_level(logging.WARNING, logger="activitysmith_track")
    for _ in range(2):
        with live_activity("Job") as la:
            pass
        assert la.activity_id is None
    messages = [r.getMessage() for r in caplog.records if r.name == "activitysmith_track"]
    assert len(messages) == 1
    assert "ACTIVITYSMITH_API_KEY" in messages[0]


def test_api_key_never_appears_in_logs_or_reprs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "ask_live_supersecret_123"
    with Emulator(api_key="another-key", fast=True) as other:
        monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", other.base_url)
        monkeypatch.setenv("ACTIVITYSMITH_API_KEY", secret)
        caplog.set_level(logging.DEBUG)
        with live_activity("Job") as la:
            pass
        assert la.errors
        settings = repr(resolve_settings())
        text = caplog.text + repr(la) + repr(la.errors) + str(la.errors[0]) + settings
        assert secret not in text
        assert "401" in caplog.text


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"steps": 0}, ValidationError, "steps"),
        ({"steps": "3"}, ArgumentTypeError, "steps"),
        ({"steps": True}, ArgumentTypeError, "steps"),
        ({"steps": [1, 2]}, ArgumentTypeError, "steps[0]"),
        ({"total": -1}, ValidationError, "total"),
        ({"total": "10"}, ArgumentTypeError, "total"),
        ({"color": "chartreuse"}, ValidationError, "color"),
        ({"type": "gauge"}, ValidationError, "type"),
        ({"stream_key": "has space"}, ValidationError, "stream_key"),
        ({"colour": "red"}, ValidationError, "colour"),
        ({"flush_timeout": -1}, ValidationError, "flush_timeout"),
    ],
)
def test_bad_arguments_fail_at_the_call(
    emu: Emulator, kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        live_activity("Job", **kwargs)
    assert field in str(caught.value)
    assert api_requests(emu) == []


def test_bad_title(emu: Emulator) -> None:
    with pytest.raises(ArgumentTypeError, match="title"):
        live_activity(5)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="title"):
        live_activity("  ")


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda la: la.step(3), ArgumentTypeError),
        (lambda la: la.advance("1"), ArgumentTypeError),
        (lambda la: la.advance(-1), ValidationError),
        (lambda la: la.set_steps(0), ValidationError),
        (lambda la: la.set_steps(1), ValidationError),  # two steps already begun
        (lambda la: la.percentage(50), UsageError),  # not a progress activity
        (lambda la: la.metrics(rows=-1), ValidationError),
    ],
)
def test_bad_handle_calls_fail_at_the_call(
    emu: Emulator, call: Any, error: type[Exception]
) -> None:
    with live_activity("Job", steps=3) as la:
        la.step()
        la.step()
        with pytest.raises(error):
            call(la)


def test_stepping_past_the_last_step_grows_the_step_count(emu: Emulator) -> None:
    with live_activity("Job", steps=2) as la:
        for name in ("a", "b", "c"):
            la.step(name)
        la.flush()
        state = emu.activity(la.activity_id or "").state
        assert (state["current_step"], state["number_of_steps"]) == (3, 3)
    end = last_body(emu, "end")["content_state"]
    assert (end["current_step"], end["number_of_steps"]) == (3, 3)


def test_set_steps_changes_the_count(emu: Emulator) -> None:
    with live_activity("Job", steps=2) as la:
        la.step()
        la.set_steps(5)
    end = last_body(emu, "end")["content_state"]
    assert end["number_of_steps"] == 5


def test_calls_before_start_raise_for_lifecycle(emu: Emulator) -> None:
    la = live_activity("Job")
    with pytest.raises(UsageError):
        la.end()


# -- context: nesting, threads, asyncio ----------------------------------------------------


def test_current_activity_is_the_innermost(emu: Emulator) -> None:
    assert not current_activity()
    with live_activity("Outer") as outer:
        assert current_activity() is outer
        with live_activity("Inner") as inner:
            assert current_activity() is inner
        assert current_activity() is outer
    assert not current_activity()
    assert paths(emu).count("start") == 2
    assert paths(emu).count("end") == 2


def test_current_activity_in_threads_follows_contextvars(emu: Emulator) -> None:
    found: dict[str, object] = {}
    with live_activity("Job") as la:
        plain = threading.Thread(target=lambda: found.setdefault("plain", current_activity()))
        ctx = contextvars.copy_context()
        copied = threading.Thread(
            target=lambda: ctx.run(lambda: found.setdefault("copied", current_activity()))
        )
        for thread in (plain, copied):
            thread.start()
            thread.join()
    assert not found["plain"]  # a new thread starts with an empty context
    assert found["copied"] is la


def test_threads_share_one_handle_safely(emu: Emulator) -> None:
    with live_activity("Import", total=4000) as la:

        def work() -> None:
            for _ in range(1000):
                la.advance()

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        la.flush()
        assert emu.activity(la.activity_id or "").state["value"] == 4000


def test_async_with(emu: Emulator) -> None:
    async def job() -> str:
        async with live_activity("Async job", steps=2) as la:
            la.step("one")
            await asyncio.sleep(0)
            inner = asyncio.create_task(asyncio.sleep(0, result=current_activity()))
            assert await inner is la
            la.step("two")
        return "ok"

    assert asyncio.run(job()) == "ok"
    assert paths(emu)[0] == "start"
    assert paths(emu)[-1] == "end"
    assert last_body(emu, "end")["content_state"]["current_step"] == 2


def test_async_exception_propagates(emu: Emulator) -> None:
    async def job() -> None:
        async with live_activity("Async job", show_error_message=True):
            raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        asyncio.run(job())
    assert "LookupError: gone" in last_body(emu, "end")["content_state"]["subtitle"]


# -- found in review -----------------------------------------------------------------------


def test_end_look_takes_an_icon_name_as_the_readme_shows(emu: Emulator) -> None:
    look = EndLook(subtitle="Backed up in {elapsed}", color="blue", icon="checkmark")
    with live_activity("Nightly backup", steps=3, on_success=look) as la:
        la.step()
    end = last_body(emu, "end")["content_state"]
    assert end["icon"] == {"symbol": "checkmark"}
    assert end["subtitle"].startswith("Backed up in ")


@pytest.mark.parametrize("template", ["Broke: {err}", "Took {elapsed} {}", "Oops {where"])
def test_end_look_template_is_checked_when_built(template: str) -> None:
    with pytest.raises(ValidationError, match="subtitle"):
        EndLook(subtitle=template)


@pytest.mark.parametrize(
    ("kwargs", "fields"),
    [
        ({"type": "alert", "message": "disk"}, {"message": None}),
        ({}, {"type": "value"}),
        ({"steps": 2}, {"tags": [f"t{i}" for i in range(25)]}),
    ],
)
def test_update_is_checked_by_the_rules_of_update_and_end(
    emu: Emulator, kwargs: dict[str, Any], fields: dict[str, Any]
) -> None:
    with live_activity("Job", **kwargs) as la:
        before = la.state
        with pytest.raises(ValidationError):
            la.update(**fields)
        assert la.state == before
    assert emu.activity(la.activity_id or "").status == "ended"


def test_more_tags_than_update_and_end_accept_are_refused_at_the_start(emu: Emulator) -> None:
    with pytest.raises(ValidationError, match="tags"):
        live_activity("Job", tags=[f"t{i}" for i in range(25)])
    assert api_requests(emu) == []


def test_step_on_a_progress_activity_keeps_the_bar(emu: Emulator) -> None:
    with live_activity("Import", total=1000) as la:
        la.advance(500)
        la.step("phase 2")
        la.flush()
        state = emu.activity(la.activity_id or "").state
        assert (state["value"], state["subtitle"]) == (500, "phase 2")


def test_atrack_drives_a_progress_bar_like_track(emu: Emulator) -> None:
    async def rows() -> Any:
        for i in range(10):
            yield i

    async def job() -> None:
        async with live_activity("Async import", type="progress") as la:
            async for _ in la.atrack(rows(), total=10):
                pass
            await asyncio.to_thread(la.flush)
            state = emu.activity(la.activity_id or "").state
            assert (state["value"], state["upper_limit"]) == (10, 10)
            assert "percentage" not in state

    asyncio.run(job())


def test_sys_exit_with_a_message_is_a_failure_naming_it(emu: Emulator) -> None:
    with pytest.raises(SystemExit), live_activity("Job", show_error_message=True):
        sys.exit("config file missing")
    subtitle = last_body(emu, "end")["content_state"]["subtitle"]
    assert subtitle.startswith("Failed after ")
    assert subtitle.endswith(": exit code 1: config file missing")


def test_a_named_step_on_a_timer_shows_in_the_failure(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="bad"), live_activity("Script") as la:
        la.step("load")
        raise ValueError("bad")
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Failed at load: ValueError"


def test_an_exception_whose_str_fails_still_propagates_unchanged(emu: Emulator) -> None:
    class Weird(Exception):
        def __str__(self) -> str:
            raise ZeroDivisionError

    error = Weird()
    with pytest.raises(Weird) as caught, live_activity("Job", steps=2) as la:
        la.step("load")
        raise error
    assert caught.value is error
    assert last_body(emu, "end")["content_state"]["subtitle"] == "Failed at load: Weird"


def test_async_exits_are_bounded_and_hold_no_executor_threads(emulator: Emulator) -> None:
    from activitysmith_track import Settings

    emulator.add_fault(Fault.hang(seconds=10), times=200)
    settings = Settings(base_url=emulator.base_url, flush_timeout=0.5, debounce=0.0)

    async def job(exits: list[float]) -> None:
        started = time.monotonic()
        async with live_activity("Async", settings=settings):
            pass
        exits.append(time.monotonic() - started)

    async def main() -> tuple[list[float], float]:
        exits: list[float] = []
        jobs = [asyncio.create_task(job(exits)) for _ in range(20)]
        await asyncio.sleep(0.05)
        probe = time.monotonic()
        await asyncio.to_thread(lambda: None)  # the application's own use of the executor
        probe_wait = time.monotonic() - probe
        await asyncio.gather(*jobs)
        return exits, probe_wait

    exits, probe_wait = asyncio.run(main())
    assert len(exits) == 20
    assert max(exits) < 1.5  # each exit waits about flush_timeout, not in turn
    assert probe_wait < 0.5


# -- anything a call accepts is sendable; leaving a block raises only the job's exception -------


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda la: la.advance(float("inf")), "n"),
        (lambda la: la.advance(float("nan")), "n"),
        (lambda la: la.advance(-1), "n"),
        (lambda la: la.advance(10**30), "n"),
        (lambda la: la.advance("3"), "n"),
        (lambda la: la.progress(float("inf")), "value"),
        (lambda la: la.progress(5, upper_limit=0), "upper_limit"),
        (lambda la: la.percentage(float("nan")), "percentage"),
        (lambda la: la.percentage(101), "percentage"),
        (lambda la: la.step("a\x00b"), "name"),
        (lambda la: la.step("\udfff"), "name"),
        (lambda la: la.step("x" * 300), "name"),
        (lambda la: la.update(subtitle="\x00"), "subtitle"),
        (lambda la: la.update(colour="red"), "colour"),
    ],
)
def test_a_value_the_service_would_refuse_is_refused_at_the_call_and_changes_nothing(
    emu: Emulator, call: Any, field: str
) -> None:
    with live_activity("Rows", total=100) as la:
        la.advance(7)
        before = la.state
        with pytest.raises(ValidationError) as caught:
            call(la)
        assert caught.value.field == field
        assert la.state == before
        la.advance(3)
    end = last_body(emu, "end")["content_state"]
    assert end["percentage"] == 100
    assert all(r.status == 200 for r in api_requests(emu))


def test_the_misspelled_field_gets_a_did_you_mean(emu: Emulator) -> None:
    with live_activity("Job") as la, pytest.raises(ValidationError, match="did you mean 'color'"):
        la.update(colour="red")
    with pytest.raises(ValidationError, match="did you mean 'subtitle'"):
        live_activity("Job", subtitel="x")


@pytest.mark.parametrize("disabled", [False, True])
def test_leaving_a_block_raises_only_the_jobs_own_exception(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, disabled: bool
) -> None:
    if disabled:
        monkeypatch.setenv("ACTIVITYSMITH_TRACK_DISABLED", "1")
    for error in (KeyError("id"), KeyboardInterrupt()):
        with pytest.raises(type(error)) as caught, live_activity("Job", total=10) as la:
            with pytest.raises(ValidationError):
                la.advance(float("inf"))
            raise error
        assert caught.value is error


def test_a_stream_countdown_whose_first_put_failed_still_ends(emu: Emulator) -> None:
    emu.add_fault(Fault.status(503), path="/live-activity/stream/", times=1)
    with live_activity("Deploy", stream_key="deploy-web", duration_seconds=600):
        pass
    record = emu.stream_activity("deploy-web")
    assert record is not None
    assert record.status == "ended"
    assert record.state["subtitle"].startswith("Done in")
    assert [r.status for r in api_requests(emu)][:2] == [503, 200]


def test_pausing_a_countdown_keeps_the_time_that_was_left(emu: Emulator) -> None:
    from activitysmith_track.testing import FakeClock

    clock = FakeClock()
    dispatcher = Dispatcher(clock=clock)
    with live_activity("Deploy", duration_seconds=600, dispatcher=dispatcher) as la:
        assert la.flush()  # the start arrives before the clock jumps (see FakeClock)
        clock.advance(100)
        la.update(is_running=False)
        assert (la.state.duration_seconds, la.state.is_running) == (500, False)
        clock.advance(300)  # paused: nothing counts down
        assert la.state.duration_seconds == 500
        la.update(is_running=True)
        clock.advance(50)
        assert (la.state.duration_seconds, la.state.is_running) == (450, True)
        la.flush()
    end = last_body(emu, "end")["content_state"]
    assert (end["duration_seconds"], end["is_running"]) == (450, False)


def test_percentage_after_counting_leaves_no_stale_count_text(emu: Emulator) -> None:
    with live_activity("Copy", total=100, subtitle="files") as la:
        la.advance(70)
        la.progress(80)
        la.percentage(90)
        shown = la.state
        assert shown.subtitle == "files"
        assert (shown.value, shown.upper_limit) == (90, 100)
    with live_activity("Copy", steps=["scan", "copy"]) as la:
        la.step()
        la.advance(70)
        assert la.state.subtitle == "scan · 70 done"
        la.step()
        assert la.state.subtitle == "copy"


def test_explicit_options_win_over_settings(emu: Emulator) -> None:
    from activitysmith_track import Settings

    elsewhere = Settings(base_url="http://127.0.0.1:9/api", flush_timeout=30, strict=False)
    with live_activity("Job", settings=elsewhere, base_url=emu.base_url, strict=True) as la:
        pass
    assert la.activity_id is not None
    assert paths(emu) == ["start", "end"]
    with pytest.raises(ValidationError):
        live_activity("Job", settings=elsewhere, flush_timeout=-1)


def test_end_looks_are_checked_under_their_own_names() -> None:
    with pytest.raises(ArgumentTypeError) as caught:
        live_activity("Job", on_cancel=5)  # type: ignore[arg-type]
    assert caught.value.field == "on_cancel"


def test_one_account_is_one_dispatcher_whatever_the_options() -> None:
    from activitysmith_track import RetryPolicy, Settings
    from activitysmith_track._dispatch import get_dispatcher

    one = Settings(api_key="ask_a", retry=RetryPolicy(max_attempts=2), debounce=0)
    two = Settings(api_key="ask_a", retry=RetryPolicy(max_attempts=9), read_timeout=3)
    other = Settings(api_key="ask_b")
    assert get_dispatcher(one) is get_dispatcher(two)
    assert get_dispatcher(one) is not get_dispatcher(other)


def test_current_activity_outside_any_activity_is_a_safe_falsy_handle() -> None:
    done: list[bool] = []

    def job() -> None:
        la = current_activity()
        la.step("load")
        la.advance(3)
        la.update(subtitle="x")
        la.end()
        for _ in la.track(range(3)):
            pass
        done.append(bool(la))

    thread = threading.Thread(target=job)
    thread.start()
    thread.join()
    assert done == [False]


def test_the_no_op_handle_overrides_every_public_method() -> None:
    from activitysmith_track import LiveActivity

    none = current_activity()
    public = {
        name
        for name in dir(LiveActivity)
        if not name.startswith("_") and callable(getattr(LiveActivity, name))
    }
    for name in public | {"__enter__", "__exit__", "__aenter__", "__aexit__"}:
        assert getattr(type(none), name) is not getattr(LiveActivity, name), name
