"""A hostile server: each fault ends with the final state on the server when it is reachable
within the deadline, nothing duplicated, the job untouched, and the key in no output."""

from __future__ import annotations

import base64
import logging
import os
import resource
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from conftest import api_requests

from activitysmith_track import (
    ActivitySmithTrackError,
    Client,
    ContentState,
    MalformedResponseError,
    RetryPolicy,
    Settings,
    live_activity,
)
from activitysmith_track.emulator import Emulator, Fault

KEY = "ask_live_h0st1le/key+secret_987"
QUICK = RetryPolicy(initial_backoff=0.01, max_backoff=0.05, jitter=0)


@pytest.fixture
def server() -> Any:
    with Emulator(api_key=KEY, fast=True) as emu:
        yield emu


def settings_for(emu: Emulator, **overrides: Any) -> Settings:
    options: dict[str, Any] = {
        "api_key": KEY,
        "base_url": emu.base_url,
        "debounce": 0.0,
        "flush_timeout": 10.0,
        "retry": QUICK,
        "read_timeout": 2.0,
        "connect_timeout": 2.0,
        "requests_per_minute": 100_000,
    }
    options.update(overrides)
    return Settings(**options)


def encodings_of(key: str) -> list[str]:
    """The key in the forms it must never be shown in."""
    raw = key.encode()
    forms = [key, key.upper(), raw.hex()]
    for prefix in (b"", b"\0", b"\0\0"):
        encoded = base64.b64encode(prefix + raw).decode()
        forms.append(encoded[4:-4])  # the part that depends on the key alone
    return forms


def assert_no_key(*texts: str) -> None:
    for text in texts:
        for form in encodings_of(KEY):
            assert form not in text, (form, text[:300])


def run_job(emu: Emulator, settings: Settings) -> Any:
    """A small job with three steps; returns its handle after the block."""
    result = []
    with live_activity("Backup", steps=["snapshot", "upload", "verify"], settings=settings) as la:
        for name in ("snapshot", "upload", "verify"):
            la.step(name)
            result.append(name)
    assert result == ["snapshot", "upload", "verify"]  # the job ran untouched
    return la


def assert_ended_once(emu: Emulator) -> Any:
    records = list(emu.activities.values())
    assert len(records) == 1, [r.state for r in records]  # no duplicate activity
    record = records[0]
    assert record.status == "ended"
    assert record.state["current_step"] == 3
    assert record.state["subtitle"].startswith("Done in")
    return record


# -- answers that break off, drip or never end ----------------------------------------------


def test_an_update_reset_mid_body_loses_nothing(server: Emulator) -> None:
    settings = settings_for(server)
    with live_activity("Backup", steps=3, settings=settings) as la:
        assert la.flush()
        server.add_fault(Fault.reset_mid_body(), path="/live-activity/update")
        la.step("snapshot")
        assert la.flush()
        la.step("upload")
        la.step("verify")
    assert_ended_once(server)


def test_an_end_reset_mid_body_is_retried_and_arrives_once(server: Emulator) -> None:
    server.add_fault(Fault.reset_mid_body(), path="/live-activity/end")
    run_job(server, settings_for(server))
    assert_ended_once(server)
    ends = [r for r in api_requests(server) if r.path.endswith("/end")]
    assert len(ends) == 2  # the first was processed, its answer lost; the repeat is ignored


def test_a_dripping_answer_never_holds_the_end_past_its_timeouts(server: Emulator) -> None:
    server.add_fault(Fault.drip(30), path="/live-activity/update")
    settings = settings_for(server, read_timeout=1.0, connect_timeout=1.0)
    with live_activity("Backup", steps=3, settings=settings) as la:
        assert la.flush()
        la.step("snapshot")
        la.flush(0.2)
        la.step("upload")
        la.step("verify")
    assert_ended_once(server)


def test_the_client_bounds_a_dripping_answer_by_its_timeouts(server: Emulator) -> None:
    import time

    server.add_fault(Fault.drip(8))
    with Client(KEY, base_url=server.base_url, timeout=1.0, retry=RetryPolicy.none()) as client:
        started = time.monotonic()
        with pytest.raises(ActivitySmithTrackError):
            client.start(ContentState(title="Job", type="timer", counts_down=False))
        assert time.monotonic() - started < 3


# -- answers too large to read ----------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault.oversized(300 * 2**20), id="300 MiB"),
        pytest.param(Fault.oversized(300 * 2**20, chunked=True), id="300 MiB chunked"),
        pytest.param(Fault.gzip_bomb(2**30), id="1 GiB gzip bomb"),
    ],
)
def test_a_huge_answer_is_refused_unread_and_memory_stays_flat(
    server: Emulator, fault: Fault
) -> None:
    with Client(KEY, base_url=server.base_url, retry=RetryPolicy.none()) as client:
        started = client.start(ContentState(title="Job", type="timer", counts_down=False))
        server.add_fault(fault, path="/live-activity/update")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(MalformedResponseError, match="larger than 256 KiB"):
            client.update(started.activity_id or "", ContentState(title="Job"))
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20 * 1024


def test_a_job_against_a_huge_answer_still_ends(server: Emulator) -> None:
    server.add_fault(Fault.gzip_bomb(2**30), path="/live-activity/update")
    run_job(server, settings_for(server))
    assert_ended_once(server)


# -- storms -------------------------------------------------------------------------------------


def test_a_storm_of_5xx_and_429s_on_the_end_still_ends_within_the_deadline(
    server: Emulator,
) -> None:
    server.add_faults(Fault.storm(8, retry_after=0.2, capacity=False), path="/live-activity/end")
    la = run_job(server, settings_for(server))
    assert_ended_once(server)
    assert la.errors == []


def test_a_storm_on_every_request_of_a_stream_loses_nothing(server: Emulator) -> None:
    # A stream's every request is safe to repeat, so even its start goes through a storm (a
    # manual start answered 500 may have been processed, and is not repeated).
    server.add_faults(Fault.storm(6, retry_after=0.1, capacity=False))
    settings = settings_for(server, flush_timeout=20)
    with live_activity("Backup", steps=3, stream_key="backup", settings=settings) as la:
        for name in ("snapshot", "upload", "verify"):
            la.step(name)
    assert_ended_once(server)
    assert la.errors == []


# -- the key stays secret ------------------------------------------------------------------


@pytest.mark.parametrize("status", [None, 400, 500, 429])
def test_an_echoed_key_reaches_no_log_exception_or_repr(
    server: Emulator, status: int | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server.add_fault(Fault.echo_key(status), times=3)
    texts: list[str] = []
    with Client(KEY, base_url=server.base_url, retry=RetryPolicy.none()) as client:
        try:
            result = client.start(ContentState(title="Job", type="timer", counts_down=False))
            texts += [repr(result), str(result.raw), str(result.message), str(result.warning)]
        except ActivitySmithTrackError as exc:
            texts += [str(exc), repr(exc), repr(getattr(exc, "body", None))]
            texts.append(str(getattr(exc, "message", None)))
    texts.append(caplog.text)
    assert_no_key(*texts)


def test_an_echoed_key_in_an_html_page_is_blanked(server: Emulator) -> None:
    server.add_fault(Fault.echo_key(502, html=True), times=5)
    with (
        Client(KEY, base_url=server.base_url, retry=RetryPolicy.none()) as client,
        pytest.raises(ActivitySmithTrackError) as caught,
    ):
        client.start(ContentState(title="Job", type="timer", counts_down=False))
    assert_no_key(str(caught.value), repr(caught.value))


def test_an_echoed_key_never_reaches_the_command_line_output(server: Emulator) -> None:
    server.add_fault(Fault.echo_key(400), times=5)
    env = dict(
        os.environ,
        ACTIVITYSMITH_API_KEY=KEY,
        ACTIVITYSMITH_BASE_URL=server.base_url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "activitysmith_track", "start", "--title", "Job", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert_no_key(done.stdout, done.stderr)
    job = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
        from activitysmith_track import live_activity
        with live_activity("Job", steps=2) as la:
            la.step("one")
        print(repr(la), la.errors)
        """
    )
    server.add_fault(Fault.echo_key(500), times=20)
    done = subprocess.run(
        [sys.executable, "-c", job],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert_no_key(done.stdout, done.stderr)
