"""ActivityLogHandler: log records as the current activity's subtitle, against the emulator."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from activitysmith_track import (
    ActivityLogHandler,
    ArgumentTypeError,
    LiveActivity,
    current_activity,
    live_activity,
    tracked_steps,
)
from activitysmith_track.emulator import Emulator


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    server.reset()
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", server.base_url)
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "5")
    return server


@pytest.fixture
def handler() -> Iterator[ActivityLogHandler]:
    """A handler at INFO on a job's logger (which passes everything from DEBUG up)."""
    bridge = ActivityLogHandler(logging.INFO)
    log = logging.getLogger("tests.job")
    log.setLevel(logging.DEBUG)
    log.addHandler(bridge)
    yield bridge
    log.removeHandler(bridge)
    log.setLevel(logging.NOTSET)


log = logging.getLogger("tests.job")


def shown(emu: Emulator, la: LiveActivity) -> Any:
    """The subtitle the emulator holds for the activity, once everything was delivered."""
    assert la.flush(5)
    assert la.activity_id is not None
    return emu.activities[la.activity_id].state.get("subtitle")


def test_the_latest_record_is_the_subtitle(emu: Emulator, handler: ActivityLogHandler) -> None:
    with live_activity("Nightly ETL") as la:
        log.info("extracting orders")
        assert shown(emu, la) == "extracting orders"
        log.info("loaded %d rows into %s", 1200, "orders")
        assert shown(emu, la) == "loaded 1200 rows into orders"


def test_records_below_the_level_are_not_shown(emu: Emulator, handler: ActivityLogHandler) -> None:
    handler.setLevel(logging.WARNING)
    with live_activity("Nightly ETL", subtitle="starting") as la:
        log.info("routine detail")
        log.debug("noise")
        assert shown(emu, la) == "starting"
        log.warning("disk almost full")
        assert shown(emu, la) == "disk almost full"
        log.error("disk full")
        assert shown(emu, la) == "disk full"


def test_a_level_can_be_given_by_name() -> None:
    assert ActivityLogHandler("WARNING").level == logging.WARNING
    assert ActivityLogHandler().level == logging.INFO
    with pytest.raises(ArgumentTypeError, match="show_exceptions"):
        ActivityLogHandler(show_exceptions="yes")  # type: ignore[arg-type]


def test_long_and_multiline_messages_are_trimmed_to_one_line(
    emu: Emulator, handler: ActivityLogHandler
) -> None:
    with live_activity("Nightly ETL") as la:
        log.info("first line\n   second line\twith a tab")
        assert shown(emu, la) == "first line second line with a tab"
        log.info("x" * 100)
        text = shown(emu, la)
        assert len(text) == 64
        assert text.endswith("…")


def test_exception_text_stays_off_the_phone(emu: Emulator, handler: ActivityLogHandler) -> None:
    with live_activity("Nightly ETL") as la:
        try:
            raise ValueError("customer 4711 has no address")
        except ValueError:
            log.exception("could not load a row")
        assert shown(emu, la) == "could not load a row"


def test_show_exceptions_adds_the_exceptions_type_and_message(
    emu: Emulator, handler: ActivityLogHandler
) -> None:
    handler.show_exceptions = True
    with live_activity("Nightly ETL") as la:
        try:
            raise ValueError("bad row 17")
        except ValueError:
            log.exception("could not load a row")
        assert shown(emu, la) == "could not load a row: ValueError: bad row 17"


def test_a_formatter_shapes_the_text_but_adds_no_traceback(
    emu: Emulator, handler: ActivityLogHandler
) -> None:
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    with live_activity("Nightly ETL") as la:
        try:
            raise OSError("secret path /home/me")
        except OSError:
            log.error("upload failed", exc_info=True, stack_info=True)
        assert shown(emu, la) == "ERROR tests.job: upload failed"


def test_outside_an_activity_nothing_happens(emu: Emulator, handler: ActivityLogHandler) -> None:
    assert not current_activity()
    log.info("no activity here")
    assert emu.requests == []


def test_inside_tracked_steps_the_calls_activity_shows_it(
    emu: Emulator, handler: ActivityLogHandler
) -> None:
    seen: list[Any] = []

    @tracked_steps("Nightly ETL", steps=["extract", "load"])
    def nightly() -> None:
        la = current_activity()
        assert la
        la.step()
        log.info("extracted 1,200 orders")
        seen.append(shown(emu, la))
        la.step()
        log.info("loading orders")
        seen.append(shown(emu, la))

    nightly()
    assert seen == ["extracted 1,200 orders", "loading orders"]
    (record,) = emu.activities.values()
    assert record.status == "ended"


def test_the_librarys_own_records_are_ignored(emu: Emulator) -> None:
    bridge = ActivityLogHandler(logging.DEBUG)
    root = logging.getLogger()
    library = logging.getLogger("activitysmith_track")
    saved = library.level
    library.setLevel(logging.DEBUG)
    root.addHandler(bridge)
    try:
        with live_activity("Nightly ETL", subtitle="working") as la:
            library.warning("Live Activity %r: delivery trouble", "Nightly ETL")
            logging.getLogger("activitysmith_track.worker").error("still trouble")
            assert shown(emu, la) == "working"
            logging.getLogger("tests.other").warning("a job's record")
            assert shown(emu, la) == "a job's record"
    finally:
        root.removeHandler(bridge)
        library.setLevel(saved)


def test_a_record_after_the_end_raises_nothing(
    emu: Emulator, handler: ActivityLogHandler, capsys: pytest.CaptureFixture[str]
) -> None:
    with live_activity("Nightly ETL") as la:
        la.end(subtitle="finished early")
        log.info("still logging after the end")
    assert shown(emu, la) == "finished early"
    assert "Logging error" not in capsys.readouterr().err


def test_a_broken_record_follows_loggings_own_rules(
    emu: Emulator, handler: ActivityLogHandler, capsys: pytest.CaptureFixture[str]
) -> None:
    # The caller's bug (arguments that do not fit the message): logging's rule is to report
    # it on stderr through handleError, never to raise. Handed to the handler directly, as
    # pytest's own capture handlers (on every logger) raise on such a record by design.
    record = logging.LogRecord("tests.job", logging.INFO, __file__, 1, "%d rows", ("x",), None)
    with live_activity("Nightly ETL", subtitle="working") as la:
        handler.handle(record)
        assert "--- Logging error ---" in capsys.readouterr().err
        assert shown(emu, la) == "working"


def test_the_activity_is_updated_only_when_the_text_changes(
    emu: Emulator, handler: ActivityLogHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    updates: list[dict[str, Any]] = []
    real_update = LiveActivity.update

    def counting_update(self: LiveActivity, **fields: Any) -> None:
        updates.append(fields)
        real_update(self, **fields)

    monkeypatch.setattr(LiveActivity, "update", counting_update)
    with live_activity("Nightly ETL"):
        for _ in range(1_000):
            log.info("waiting for the database")
        log.info("database ready")
        log.info("database ready")
    assert updates == [{"subtitle": "waiting for the database"}, {"subtitle": "database ready"}]


def test_each_activity_gets_its_own_latest_text(emu: Emulator, handler: ActivityLogHandler) -> None:
    with live_activity("first") as first:
        log.info("same text")
        assert shown(emu, first) == "same text"
    with live_activity("second") as second:
        log.info("same text")  # a new activity: shown again, not skipped as unchanged
        assert shown(emu, second) == "same text"
