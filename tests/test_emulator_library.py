"""The library's whole option set, sent through its public API, is never refused by the emulator.

The emulator now checks requests against the API contract alone, not against the library's
own model, so this is a real check of the library too: a request the library builds that the
contract does not allow shows up here as a refused request. Every type, in manual and stream
mode, with channels, tags, metadata, buttons and dismissal, ending in each outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from activitysmith_track import Action, LiveActivity, Metric, live_activity
from activitysmith_track.emulator import Emulator, RecordedRequest

CHANNELS = ["ops", "on-call"]
TAGS = ["nightly", "etl", "eu-west-1"]
METADATA = {"run_id": "2026-11-25-01", "attempt": 2, "dry_run": False, "ratio": 0.25}
OPEN = Action.open_url("Dashboard", "https://example.com/dash")
HOOK = Action.webhook("Retry", "https://example.com/retry", method="POST", body={"job": 7})
SHORTCUT = Action.shortcut("Run shortcut", "Deploy")


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    # The limits are not the subject (test_emulator.py has them): validation is.
    with Emulator(fast=True) as running:
        monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", running.base_url)
        monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
        # Every change is its own request, so updates are sent and checked, not coalesced.
        monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
        yield running


def refused(emu: Emulator) -> list[RecordedRequest]:
    return [r for r in emu.requests if r.status != 200]


def describe(requests: list[RecordedRequest]) -> str:
    return "\n".join(
        f"{r.method} {r.path} -> {r.status}: {r.response} (sent {r.body})" for r in requests
    )


# Each kind: the options that make it, and what to do with the handle while it is open.
Drive = Callable[[LiveActivity], None]


def _steps(la: LiveActivity) -> None:
    la.step()
    la.flush(10)
    la.step("transform")
    la.flush(10)
    la.set_steps(4)
    la.step()
    la.step()
    la.step()  # past the last: the count grows


def _progress(la: LiveActivity) -> None:
    for _ in range(3):
        la.advance(40)
        la.flush(10)
    la.progress(150, upper_limit=200)
    la.flush(10)
    la.percentage(90)


def _metrics(la: LiveActivity) -> None:
    la.metrics(rows=1200, errors=0)
    la.flush(10)
    la.metrics(
        Metric(label="rows", value=2400, unit="k", color="green"),
        Metric(label="lag", value="-3 s"),
    )


def _alert(la: LiveActivity) -> None:
    la.update(message="Still 94% full", color="orange")
    la.flush(10)
    la.update(subtitle="paging", action=SHORTCUT)


def _timer(la: LiveActivity) -> None:
    la.update(is_running=False)
    la.flush(10)
    la.update(is_running=True, subtitle="resumed")


def _value(la: LiveActivity) -> None:
    la.update(value="$1,300")
    la.flush(10)
    la.update(value=1310.5, subtitle="up 5%")


def _subtitle_only(la: LiveActivity) -> None:
    la.update(subtitle="halfway")
    la.flush(10)
    la.update(subtitle="almost", tags=["retagged"], metadata={})


KINDS: dict[str, tuple[dict[str, Any], Drive]] = {
    "segmented_progress": (
        {
            "steps": ["extract", "transform", "load"],
            "color": "blue",
            "step_color": "cyan",
            "icon": "externaldrive.fill",
            "badge": "ETL",
            "action": OPEN,
            "secondary_action": HOOK,
        },
        _steps,
    ),
    "progress": (
        {"total": 200, "color": "orange", "badge": "42", "secondary_action": SHORTCUT},
        _progress,
    ),
    "metrics": (
        {"metrics": {"rows": 0, "errors": 0}, "icon": "cpu", "color": "green", "action": OPEN},
        _metrics,
    ),
    "stats": (
        {"type": "stats", "metrics": [Metric(label=f"m{i}", value=i) for i in range(8)]},
        _metrics,
    ),
    "alert": (
        {
            "type": "alert",
            "message": "Disk 94% full",
            "color": "red",
            "badge": "P1",
            "icon": "exclamationmark.triangle.fill",
            "action": OPEN,
            "secondary_action": HOOK,
        },
        _alert,
    ),
    "timer-countdown": (
        {"type": "timer", "duration_seconds": 600, "color": "yellow", "action": OPEN},
        _timer,
    ),
    "timer-count-up": ({}, _subtitle_only),
    "value": (
        {"type": "value", "value": "$1,240", "badge": "today", "secondary_action": OPEN},
        _value,
    ),
}

OUTCOMES = ("success", "failure", "cancel")


def _finish(la: LiveActivity, outcome: str) -> None:
    if outcome == "failure":
        la.fail("disk full")
    elif outcome == "cancel":
        la.cancel("stopped by the operator")
    else:
        la.end()


@pytest.mark.parametrize("mode", ["manual", "stream"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_type_and_option_is_accepted(emu: Emulator, kind: str, mode: str) -> None:
    options, drive = KINDS[kind]
    for index, outcome in enumerate(OUTCOMES):
        dismissal: dict[str, int] = (
            {"auto_dismiss_seconds": 5 * index} if index % 2 else {"auto_dismiss_minutes": index}
        )
        la = live_activity(
            f"{kind} {outcome}",
            subtitle="starting",
            channels=CHANNELS,
            tags=TAGS,
            metadata=METADATA,
            stream_key=f"{kind}-{outcome}" if mode == "stream" else None,
            **dismissal,
            **options,
        ).start()
        assert la.flush(10)
        drive(la)
        assert la.flush(10)
        _finish(la, outcome)
        assert la.flush(10)
    assert not refused(emu), describe(refused(emu))
    activities = emu.activities.values()
    assert len(activities) == len(OUTCOMES)
    assert all(a.status == "ended" for a in activities)
    # Enough traffic to mean something: a start, several updates and an end per activity.
    assert len(emu.requests) >= 4 * len(OUTCOMES)
    if mode == "stream":
        assert {r.method for r in emu.requests} == {"PUT", "DELETE"}
        assert all(a.channels == CHANNELS for a in activities)
    else:
        assert {r.path for r in emu.requests} >= {
            "/live-activity/start",
            "/live-activity/update",
            "/live-activity/end",
        }


def test_a_pipeline_spread_over_processes_is_accepted(emu: Emulator) -> None:
    """The stream hand-over of ``step=``: each step's process PUTs, the last one ends."""
    steps = ["extract", "transform", "load"]
    for step in steps:
        with live_activity(
            "Nightly ETL",
            stream_key="nightly-etl",
            steps=steps,
            step=step,
            channels=CHANNELS,
            tags=TAGS,
            auto_dismiss_seconds=0,
        ) as la:
            la.advance(10)
        assert la.flush(10)
    assert not refused(emu), describe(refused(emu))
    (activity,) = emu.activities.values()
    assert activity.status == "ended"
    assert activity.auto_dismiss == 0


def test_a_block_that_raises_ends_in_an_accepted_failure(emu: Emulator) -> None:
    def job() -> None:
        with live_activity(
            "Import", total=10, stream_key="import", channels=CHANNELS, show_error_message=True
        ) as la:
            la.advance(3)
            raise RuntimeError("bad row 4")

    with pytest.raises(RuntimeError):
        job()
    assert not refused(emu), describe(refused(emu))
    (activity,) = emu.activities.values()
    assert activity.status == "ended"
    assert "bad row 4" in activity.state.get("subtitle", "")
