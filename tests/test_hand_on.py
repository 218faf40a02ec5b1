"""hand_on(): a stream handed to the next attempt or process without ending the activity."""

from __future__ import annotations

import pytest

from activitysmith_track import Outcome, UsageError, live_activity
from activitysmith_track.emulator import Emulator


@pytest.fixture
def emu(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", emulator.base_url)
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    return emulator


def test_hand_on_keeps_the_activity_live_and_the_next_attempt_continues_it(emu: Emulator) -> None:
    with live_activity("Sync", stream_key="sync-1", steps=["fetch", "store"]) as la:
        la.step()
        la.hand_on(subtitle="Retrying 1/3: ConnectionError")
        assert la.ended
        assert la.outcome is Outcome.HANDED_ON  # this process is done; the activity is not
    record = emu.stream_activity("sync-1")
    assert record is not None
    assert record.status == "live"
    assert record.state["subtitle"] == "Retrying 1/3: ConnectionError"
    assert [e.endpoint for e in record.history][-1].startswith("PUT")

    with live_activity("Sync", stream_key="sync-1", steps=["fetch", "store"], step="store"):
        pass
    (activity,) = emu.activities.values()  # the same activity, ended by the second attempt
    assert activity.status == "ended"
    assert activity.state["current_step"] == 2


def test_hand_on_needs_stream_mode(emu: Emulator) -> None:
    with live_activity("Sync") as la, pytest.raises(UsageError, match="stream_key"):
        la.hand_on()
    assert la.outcome is not None  # refused: the block still ended it normally


def test_hand_on_refuses_an_unknown_field_and_changes_nothing(emu: Emulator) -> None:
    with live_activity("Sync", stream_key="sync-2") as la:
        with pytest.raises(ValueError, match="colour"):
            la.hand_on(colour="red")
        assert not la.ended


def test_hand_on_of_a_state_already_shown_sends_nothing_more(emu: Emulator) -> None:
    # A task retried before it changed anything hands the stream on as it is: the PUT that
    # started it already shows that state, so no second request is needed.
    with live_activity("Sync", stream_key="sync-3", steps=["fetch", "store"]) as la:
        la.flush()
        la.hand_on()
    puts = [r for r in emu.requests if r.method == "PUT"]
    assert len(puts) == 1
    assert la.outcome is Outcome.HANDED_ON
    record = emu.stream_activity("sync-3")
    assert record is not None
    assert record.status == "live"


def test_hand_on_with_a_change_sends_it(emu: Emulator) -> None:
    with live_activity("Sync", stream_key="sync-4", steps=["fetch", "store"]) as la:
        la.flush()
        la.step()
        la.hand_on()
    puts = [r for r in emu.requests if r.method == "PUT"]
    assert puts[-1].body["content_state"]["current_step"] == 1
    record = emu.stream_activity("sync-4")
    assert record is not None
    assert record.state["current_step"] == 1
