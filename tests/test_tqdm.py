"""The tqdm drop-in: the terminal output of tqdm, byte for byte, and a Live Activity beside it.

**Byte-identical output.** Each scenario below is one of tqdm's documented usage patterns
(its README's examples, with small counts). It runs twice with the same arguments, once
through plain ``tqdm.std.tqdm`` and once through ``activitysmith_track.tqdm``, both writing to
an ``io.StringIO``, and the two texts must be equal. What makes that exact rather than
approximate: tqdm reads the time through the name ``time`` of its ``tqdm.std`` module (it
keeps ``self._time = time`` per bar), so the tests replace that name with a manual clock that
moves only when a scenario says so. Every elapsed time, rate and refresh decision is then the
same in both runs however fast the machine is, and the bars keep their real formats, timing
fields included. tqdm's monitor thread (which would redraw on the real clock) is off. The
drop-in's runs are mirrored to an emulator at the same time, and each scenario says how many
activities that must give, so a drop-in that stopped mirroring fails too.

**The card.** The other tests assert the final state the emulator holds: ended, the look
(colour, subtitle), the percentage or the count.
"""

from __future__ import annotations

import asyncio
import gc
import io
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import tqdm.std as tqdm_std

import activitysmith_track
import activitysmith_track.tqdm as live_tqdm
from activitysmith_track import ArgumentTypeError, ValidationError, live_activity
from activitysmith_track.emulator import ActivityRecord, Emulator, Fault
from activitysmith_track.tqdm import Reading, default_title, error_text, title_from, tqdm, trange

# -- fixtures ---------------------------------------------------------------------------------


class ManualClock:
    """Stands in for ``tqdm.std.time``: the time moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 0.5) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> ManualClock:
    manual = ManualClock()
    monkeypatch.setattr(tqdm_std, "time", manual)
    # The monitor thread redraws bars on the real clock; tqdm's own tests turn it off too.
    for cls in (tqdm_std.tqdm, tqdm):
        monitor = cls.__dict__.get("monitor")
        if monitor is not None:
            monitor.exit()
            monkeypatch.setattr(cls, "monitor", None)
    monkeypatch.setattr(tqdm_std.tqdm, "monitor_interval", 0)
    return manual


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(server: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The module's emulator, emptied, with the library pointed at it."""
    server.reset()
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", server.base_url)
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_DEBOUNCE", "0")
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT", "5")
    for name in ("DISABLED", "STRICT", "PREVIEW", "SHOW_ERROR_MESSAGE"):
        monkeypatch.delenv(f"ACTIVITYSMITH_TRACK_{name}", raising=False)
    return server


def settle(*bars: Any) -> None:
    """Wait until what each mirrored bar sent (its end included) reached the emulator."""
    for bar in bars:
        la = bar.live_activity
        assert la is not None, "the bar is not mirrored"
        assert la.flush(5)


def only(emu: Emulator) -> ActivityRecord:
    (record,) = emu.activities.values()
    return record


# -- byte-identical terminal output -----------------------------------------------------------

Scenario = Callable[[Any, Callable[..., Any], io.StringIO, ManualClock], None]


def iterate_a_range(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in cls(range(30), file=f):
        clock.tick(0.05)


def trange_with_desc(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in trange(12, desc="Resize photos", file=f):
        clock.tick(0.3)


def set_description_per_item(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    pbar = cls(["a", "b", "c", "d"], file=f)
    for char in pbar:
        clock.tick(0.25)
        pbar.set_description(f"Processing {char}")


def manual_update_in_with(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    with cls(total=100, file=f) as pbar:
        for _ in range(10):
            clock.tick(0.2)
            pbar.update(10)


def manual_update_then_close(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    pbar = cls(total=100, file=f, desc="upload")
    for _ in range(10):
        clock.tick(0.2)
        pbar.update(10)
    pbar.close()


def nested_loops(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in trange(3, desc="1st loop", file=f):
        for _ in trange(4, desc="2nd loop", file=f):
            for _ in trange(5, desc="3rd loop", leave=False, file=f):
                clock.tick(0.04)


def description_and_postfix(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    with trange(8, file=f) as t:
        for i in t:
            t.set_description(f"GEN {i}")
            t.set_postfix(loss=1 / (i + 1), gen=i * 37 % 999, str="h", lst=[1, 2])
            clock.tick(0.2)


def custom_bar_format(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in cls(range(20), file=f, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}", ncols=60):
        clock.tick(0.1)


def download_in_bytes(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    size = 9 * 1024 * 1024
    with cls(
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        miniters=1,
        desc="dataset.zip",
        total=size,
        file=f,
    ) as t:
        for _ in range(9):
            clock.tick(0.4)
            t.update(1024 * 1024)


def write_messages_between(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for i in cls(range(5), file=f, desc="tasks"):
        clock.tick(0.5)
        if i % 2:
            cls.write(f"Done task {i}", file=f)


def no_total_generator(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    def rows() -> Iterator[int]:
        yield from range(25)

    for _ in cls(rows(), desc="rows", file=f):
        clock.tick(0.07)


def ascii_narrow_not_left(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in cls(range(10), ascii=True, ncols=50, leave=False, file=f):
        clock.tick(0.3)


def every_update_drawn(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    bar = cls(
        total=20,
        initial=5,
        mininterval=0,
        miniters=1,
        smoothing=0,
        postfix={"stage": "load"},
        file=f,
    )
    for _ in range(15):
        clock.tick(0.01)
        bar.update()
    bar.close()


def reset_for_a_second_pass(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    with cls(total=4, file=f, desc="passes") as bar:
        for _ in range(4):
            clock.tick(0.5)
            bar.update()
        bar.reset(total=6)
        for _ in range(6):
            clock.tick(0.5)
            bar.update()


def wrapped_file_reads(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    data = io.BytesIO(b"x" * 50_000)
    with cls.wrapattr(data, "read", total=50_000, file=f, desc="read") as source:
        while source.read(7_000):
            clock.tick(0.3)


def left_with_break(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for i in cls(range(10), file=f, desc="search"):
        clock.tick(0.3)
        if i == 4:
            break


def raising_in_a_with_block(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    with pytest.raises(OSError, match="disk full"), cls(total=10, file=f, desc="copy") as bar:
        for _ in range(3):
            clock.tick(0.4)
            bar.update()
        raise OSError("disk full")


def delayed_bar(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in cls(range(3), delay=1, file=f, desc="quick"):  # done before the delay: no bar
        clock.tick(0.1)
    for _ in cls(range(6), delay=1, file=f, desc="slow"):
        clock.tick(0.5)


def disabled_bar(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for _ in cls(range(10), disable=True, file=f):
        clock.tick(0.5)


def scaled_count(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    bar = cls(unit_scale=True, unit=" rows", file=f, desc="scan")
    for _ in range(6):
        clock.tick(0.4)
        bar.update(250_000)
    bar.close()


def description_and_postfix_strings(
    cls: Any, trange: Any, f: io.StringIO, clock: ManualClock
) -> None:
    bar = cls(total=3, file=f)
    for step in ("fetch", "parse", "store"):
        clock.tick(0.5)
        bar.set_description_str(step)
        bar.set_postfix_str(f"last={step}")
        bar.update()
    bar.close()


def dynamic_miniters(cls: Any, trange: Any, f: io.StringIO, clock: ManualClock) -> None:
    for i in cls(range(2_000), file=f, desc="fast then slow"):
        clock.tick(0.001 if i < 1_500 else 0.02)


# (scenario, activities the drop-in must create for it)
SCENARIOS: list[tuple[Scenario, int]] = [
    (iterate_a_range, 1),
    (trange_with_desc, 1),
    (set_description_per_item, 1),
    (manual_update_in_with, 1),
    (manual_update_then_close, 1),
    (nested_loops, 1),  # only the outermost bar
    (description_and_postfix, 1),
    (custom_bar_format, 1),
    (download_in_bytes, 1),
    (write_messages_between, 1),
    (no_total_generator, 1),
    (ascii_narrow_not_left, 1),
    (every_update_drawn, 1),
    (reset_for_a_second_pass, 1),
    (wrapped_file_reads, 1),
    (left_with_break, 1),
    (raising_in_a_with_block, 1),
    (delayed_bar, 1),  # the quick bar never drew, so it has no card either
    (disabled_bar, 0),
    (scaled_count, 1),
    (description_and_postfix_strings, 1),
    (dynamic_miniters, 1),
]


def run(scenario: Scenario, cls: Any, trange: Any, clock: ManualClock) -> str:
    clock.now = 1_000.0
    f = io.StringIO()
    scenario(cls, trange, f, clock)
    gc.collect()  # bars left to the collector close the same way in both runs
    return f.getvalue()


@pytest.mark.parametrize(
    ("scenario", "activities"), [pytest.param(s, n, id=s.__name__) for s, n in SCENARIOS]
)
def test_terminal_output_is_byte_identical_to_tqdm(
    scenario: Scenario, activities: int, emu: Emulator, clock: ManualClock
) -> None:
    plain = run(scenario, tqdm_std.tqdm, tqdm_std.trange, clock)
    assert emu.activities == {}
    ours = run(scenario, tqdm, trange, clock)

    assert ours == plain
    assert plain or scenario is disabled_bar
    assert activitysmith_track.flush(5)  # every end the drop-in sent has arrived
    records = list(emu.activities.values())
    assert len(records) == activities
    assert all(r.status == "ended" for r in records)


# -- the card: how it ends --------------------------------------------------------------------


def test_a_loop_that_runs_out_ends_done_at_100_percent(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(20), desc="Resize photos", file=io.StringIO())
    for _ in bar:
        clock.tick(0.1)
    settle(bar)

    record = only(emu)
    assert record.status == "ended"
    assert record.type == "progress"
    assert record.state["title"] == "Resize photos"
    assert record.state["percentage"] == 100
    assert record.state["color"] == "green"
    assert record.state["subtitle"].startswith("Done in ")


def test_progress_reaches_the_server_while_the_loop_runs(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(10), desc="copy", file=io.StringIO())
    for i in bar:
        clock.tick(0.5)  # every item redraws the bar, and so updates the card
        if i == 3:
            assert bar.live_activity is not None
            assert bar.live_activity.flush(5)
            state = only(emu).state
            assert state["value"] == 3  # tqdm counts an item done when the next is asked for
            assert state["upper_limit"] == 10
            assert only(emu).status == "live"
    settle(bar)
    assert only(emu).state["percentage"] == 100


def test_the_card_changes_only_where_tqdm_redraws(emu: Emulator, clock: ManualClock) -> None:
    # With the clock still, tqdm never redraws inside the loop, and the bar hands the card
    # nothing either: no work per item. The end still carries the final count.
    bar = tqdm(iter(range(5_000)), desc="rows", file=io.StringIO())
    for _ in bar:
        pass
    settle(bar)
    paths = [r.path.rsplit("/", 1)[-1] for r in emu.requests]
    assert paths == ["start", "end"]
    assert only(emu).state["subtitle"] == "Done: 5,000 items"


def test_a_loop_without_total_counts_items(emu: Emulator, clock: ManualClock) -> None:
    def rows() -> Iterator[int]:
        yield from range(1_234)

    bar = tqdm(rows(), desc="Import rows", file=io.StringIO(), miniters=1, mininterval=0)
    for i in bar:
        clock.tick(0.01)
        if i == 99:
            assert bar.live_activity is not None
            bar.live_activity.flush(5)
            assert only(emu).state["subtitle"] == "99 done"  # as the terminal: 99it
    settle(bar)

    record = only(emu)
    assert record.type == "timer"
    assert record.state["subtitle"] == "Done: 1,234 items"
    assert record.state["color"] == "green"


def test_break_ends_the_card_as_stopped(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(10), desc="search", file=io.StringIO())
    for i in bar:
        clock.tick(0.2)
        if i == 2:
            break
    settle(bar)  # the loop's generator was dropped at the break: that ended it

    # Items 0 and 1 were done, 2 was under way: tqdm shows 2/10, and so does the card.
    record = only(emu)
    assert record.status == "ended"
    assert record.state["subtitle"] == "Stopped at 20%"
    assert record.state["color"] == "orange"
    assert record.state["value"] == 2


def test_break_without_total_says_how_far_it_got(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(iter(range(100)), file=io.StringIO(), unit=" files", desc="scan")
    for i in bar:
        clock.tick(0.2)
        if i == 41:
            break
    settle(bar)
    assert only(emu).state["subtitle"] == "Stopped after 41 files"


def test_an_iterator_dropped_mid_way_ends_stopped(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(10), desc="partial", file=io.StringIO())
    items = iter(bar)
    next(items)
    next(items)
    del items  # collected: the iteration is closed, as after a break
    gc.collect()
    settle(bar)
    assert only(emu).state["subtitle"] == "Stopped at 10%"


def test_close_while_the_loop_is_paused_ends_stopped(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(10), desc="paused", file=io.StringIO())
    items = iter(bar)
    for _ in range(4):
        next(items)
        clock.tick(0.5)  # so that tqdm redraws: its loop keeps the count to itself till then
    bar.close()  # the iteration is still alive, paused at its fourth item
    settle(bar)
    assert only(emu).state["subtitle"] == "Stopped at 30%"
    del items  # tqdm's loop now closes the bar again: the card has ended already
    gc.collect()
    assert len(emu.activities) == 1


def test_a_loop_run_out_inside_an_except_block_is_done(emu: Emulator, clock: ManualClock) -> None:
    # The caller's exception is being handled while the loop ends: it is not the loop's.
    bar = tqdm(range(5), desc="retry", file=io.StringIO())
    try:
        raise ConnectionError("first attempt")
    except ConnectionError:
        for _ in bar:
            clock.tick(0.2)
    settle(bar)
    assert only(emu).state["color"] == "green"
    assert only(emu).state["percentage"] == 100


def test_an_exception_thrown_into_the_loop_ends_failed(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(10), desc="thrown", file=io.StringIO())
    items = iter(bar)
    next(items)
    next(items)
    with pytest.raises(TimeoutError):
        items.throw(TimeoutError("took too long"))
    settle(bar)
    assert only(emu).state["subtitle"] == "Failed at 10%: TimeoutError"


def test_a_loop_body_raising_outside_with_ends_stopped(emu: Emulator, clock: ManualClock) -> None:
    # Without a with block the bar sees only that its loop was left (Python closes the loop
    # before the exception reaches a handler): stopped, where it stopped. README says to
    # use ``with tqdm(...) as bar`` for a failure to show as one.
    bar = tqdm(range(10), desc="body", file=io.StringIO())
    with pytest.raises(ZeroDivisionError):
        for i in bar:
            if i == 3:
                _ = 1 / 0
    settle(bar)
    assert only(emu).state["subtitle"] == "Stopped at 30%"


def test_a_with_block_that_raises_ends_failed(emu: Emulator, clock: ManualClock) -> None:
    with (
        pytest.raises(OSError, match="disk full"),
        tqdm(total=10, desc="copy", file=io.StringIO()) as bar,
    ):
        bar.update(4)
        raise OSError("disk full")
    settle(bar)

    record = only(emu)
    assert record.state["subtitle"] == "Failed at 40%: OSError"
    assert record.state["color"] == "red"
    assert record.state["value"] == 4


def test_a_loop_body_raising_inside_with_ends_failed_not_stopped(
    emu: Emulator, clock: ManualClock
) -> None:
    # The loop's generator is closed first (as after a break); the with block still decides.
    with pytest.raises(KeyError), tqdm(range(10), desc="load", file=io.StringIO()) as bar:
        for i in bar:
            clock.tick(0.2)
            if i == 5:
                raise KeyError("row 5")
    settle(bar)
    assert only(emu).state["subtitle"] == "Failed at 50%: KeyError"


def test_an_iterable_that_raises_ends_failed(emu: Emulator, clock: ManualClock) -> None:
    def rows() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("bad row 3")

    bar = tqdm(rows(), desc="parse", file=io.StringIO())
    with pytest.raises(ValueError, match="bad row 3"):
        for _ in bar:
            clock.tick(0.2)
    settle(bar)
    record = only(emu)
    assert record.state["subtitle"] == "Failed after 2 items: ValueError"
    assert record.state["color"] == "red"


def test_loop_left_early_inside_with_ends_stopped(emu: Emulator, clock: ManualClock) -> None:
    with tqdm(range(10), file=io.StringIO(), desc="peek") as bar:
        for i in bar:
            if i == 1:
                break
    settle(bar)
    assert only(emu).state["subtitle"] == "Stopped at 10%"


def test_ctrl_c_in_a_with_block_ends_cancelled(emu: Emulator, clock: ManualClock) -> None:
    with pytest.raises(KeyboardInterrupt), tqdm(total=5, file=io.StringIO(), desc="x") as bar:
        bar.update(2)
        raise KeyboardInterrupt
    settle(bar)
    record = only(emu)
    assert record.state["subtitle"] == "Cancelled at 40%"
    assert record.state["color"] == "orange"


def test_sys_exit_zero_in_a_with_block_is_done(emu: Emulator, clock: ManualClock) -> None:
    with pytest.raises(SystemExit), tqdm(total=5, file=io.StringIO(), desc="x") as bar:
        bar.update(5)
        sys.exit(0)
    settle(bar)
    assert only(emu).state["color"] == "green"


def test_failure_text_can_be_shown(emu: Emulator, clock: ManualClock) -> None:
    options = {"show_error_message": True}
    with (
        pytest.raises(ValueError, match="row"),
        tqdm(total=4, file=io.StringIO(), desc="x", activity=options) as bar,
    ):
        bar.update(1)
        raise ValueError("bad row 2")
    settle(bar)
    assert only(emu).state["subtitle"] == "Failed at 25%: ValueError: bad row 2"


def test_failure_text_can_be_hidden_explicitly(emu: Emulator, clock: ManualClock) -> None:
    options = {"show_error_message": False}
    with (
        pytest.raises(ValueError, match="secret"),
        tqdm(total=4, file=io.StringIO(), desc="x", activity=options) as bar,
    ):
        bar.update(1)
        raise ValueError("secret customer name")
    settle(bar)
    assert only(emu).state["subtitle"] == "Failed at 25%: ValueError"


def test_the_environment_can_show_failure_text(
    emu: Emulator, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE", "1")
    with (
        pytest.raises(ValueError, match="shown"),
        tqdm(total=4, file=io.StringIO(), desc="x") as bar,
    ):
        raise ValueError("shown")
    settle(bar)
    assert only(emu).state["subtitle"] == "Failed at 0%: ValueError: shown"


def test_close_short_of_the_total_shows_where_it_closed(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(total=200, desc="upload", file=io.StringIO())
    bar.update(60)
    bar.close()
    settle(bar)
    record = only(emu)
    assert record.state["percentage"] == 30
    assert record.state["color"] == "green"


def test_count_past_the_total_is_kept_within_the_bar(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(total=10, desc="estimate", file=io.StringIO(), mininterval=0, miniters=1)
    bar.update(15)
    assert bar.live_activity is not None
    bar.live_activity.flush(5)
    assert only(emu).state["value"] == 10
    bar.close()
    settle(bar)
    assert only(emu).state["percentage"] == 100


def test_trange_is_mirrored(emu: Emulator, clock: ManualClock) -> None:
    bar = trange(3, desc="epochs", file=io.StringIO())
    for _ in bar:
        clock.tick(1)
    settle(bar)
    assert isinstance(bar, tqdm_std.tqdm)
    assert only(emu).state["title"] == "epochs"


def test_title_follows_the_description(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(3), file=io.StringIO())
    for i in bar:
        bar.set_description(f"Epoch {i + 1}")
    settle(bar)
    assert only(emu).state["title"] == "Epoch 3"


def test_without_desc_the_title_is_the_scripts_name() -> None:
    assert default_title(["/srv/jobs/resize_photos.py", "--all"]) == "resize_photos.py"
    assert default_title(["/srv/venv/lib/mypkg/__main__.py"]) == "mypkg"
    assert default_title(["-c"]) == "Progress"
    assert default_title([]) == "Progress"


# -- which bars are mirrored ------------------------------------------------------------------


def test_only_the_outermost_nested_bar_is_mirrored(emu: Emulator, clock: ManualClock) -> None:
    outer = trange(3, desc="outer", file=io.StringIO())
    inners = []
    for _ in outer:
        inner = trange(4, desc="inner", file=io.StringIO())
        for _ in inner:
            clock.tick(0.2)
        inners.append(inner)
    settle(outer)
    assert all(inner.live_activity is None for inner in inners)
    assert [r.state["title"] for r in emu.activities.values()] == ["outer"]


def test_live_true_mirrors_a_nested_bar(emu: Emulator, clock: ManualClock) -> None:
    f = io.StringIO()
    outer = trange(2, desc="outer", file=f)
    inners = []
    for _ in outer:
        inners.append(inner := trange(2, desc="inner", file=f, live=True))
        for _ in inner:
            clock.tick(0.2)
    settle(outer, *inners)
    assert sorted(r.state["title"] for r in emu.activities.values()) == ["inner", "inner", "outer"]


def test_live_false_is_never_mirrored(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(3), file=io.StringIO(), live=False)
    for _ in bar:
        pass
    assert bar.live_activity is None
    with live_activity("flush", total=1) as la:
        pass
    la.flush(5)
    assert [r.state["title"] for r in emu.activities.values()] == ["flush"]


def test_a_bar_inside_an_activity_is_part_of_it(emu: Emulator, clock: ManualClock) -> None:
    with live_activity("Nightly ETL", steps=["extract", "load"]) as la:
        la.step()
        bar = tqdm(range(5), file=io.StringIO(), desc="rows")
        for _ in bar:
            pass
        la.step()
    assert bar.live_activity is None
    assert [r.state["title"] for r in emu.activities.values()] == ["Nightly ETL"]


def test_disable_true_sends_nothing(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(5), disable=True, desc="quiet")
    for _ in bar:
        pass
    assert bar.live_activity is None
    assert emu.requests == []


def test_disable_none_off_a_terminal_draws_nothing_but_keeps_the_card(
    emu: Emulator, clock: ManualClock
) -> None:
    plain_file, our_file = io.StringIO(), io.StringIO()  # not terminals
    for _ in tqdm_std.tqdm(range(5), disable=None, file=plain_file):
        clock.tick(0.5)
    bar = tqdm(range(5), disable=None, file=our_file, desc="cron job")
    for _ in bar:
        clock.tick(0.5)
    settle(bar)
    assert our_file.getvalue() == plain_file.getvalue() == ""
    assert only(emu).state["percentage"] == 100


def test_disable_none_inner_bar_stays_disabled(emu: Emulator, clock: ManualClock) -> None:
    outer = trange(2, desc="outer", file=io.StringIO())
    for _ in outer:
        inner = trange(3, disable=None, file=io.StringIO())
        assert inner.disable
        for _ in inner:
            pass
    settle(outer)
    assert len(emu.activities) == 1


def test_delay_not_reached_sends_nothing(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(range(3), delay=5, file=io.StringIO())
    for _ in bar:
        clock.tick(1)
    assert bar.live_activity is not None
    assert not bar.live_activity.flush(0.1)  # never started: nothing to wait for
    assert emu.requests == []


# -- options ----------------------------------------------------------------------------------


def test_activity_options_pass_through(emu: Emulator, clock: ManualClock) -> None:
    options = {
        "stream_key": "nightly-photos",
        "tags": ["nightly"],
        "title": "Photos",
        "color": "blue",
    }
    bar = tqdm(range(4), desc="ignored for the title", file=io.StringIO(), activity=options)
    for _ in bar:
        bar.set_description("still ignored")
    settle(bar)
    record = only(emu)
    assert record.stream_key == "nightly-photos"
    assert record.tags == ["nightly"]
    assert record.state["title"] == "Photos"
    assert all("/stream/nightly-photos" in r.path for r in emu.requests)


def test_a_caller_look_wins_over_the_bars_texts(emu: Emulator, clock: ManualClock) -> None:
    from activitysmith_track import EndLook

    options = {"on_cancel": EndLook(subtitle="Gave up {where}", color="purple")}
    bar = tqdm(range(10), file=io.StringIO(), desc="x", activity=options)
    for i in bar:
        if i == 4:
            break
    settle(bar)
    assert only(emu).state["subtitle"] == "Gave up at 40%"
    assert only(emu).state["color"] == "purple"


@pytest.mark.parametrize(
    ("activity", "error", "field"),
    [
        ({"steps": 3}, ValidationError, "steps"),
        ({"total": 10}, ValidationError, "total"),
        ({"color": "chartreuse"}, ValidationError, "color"),
        ({"tags": ["x" * 65]}, ValidationError, "tags"),
        ({"title": ""}, ValidationError, "title"),
        ("nightly", ArgumentTypeError, "activity"),
    ],
)
def test_bad_activity_options_are_refused_before_drawing(
    emu: Emulator, activity: Any, error: type[Exception], field: str
) -> None:
    f = io.StringIO()
    with pytest.raises(error, match=field):
        tqdm(range(3), file=f, activity=activity)
    gc.collect()
    assert f.getvalue() == ""
    assert emu.requests == []


def test_strict_mode_without_a_key_raises_at_the_bar(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock
) -> None:
    from activitysmith_track import ConfigurationError

    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", "https://activitysmith.invalid/api")
    with pytest.raises(ConfigurationError, match="API key"):
        tqdm(range(3), file=io.StringIO(), activity={"strict": True})


def test_live_must_be_a_bool_or_none() -> None:
    with pytest.raises(ArgumentTypeError, match="live"):
        tqdm(range(3), file=io.StringIO(), live="yes")  # type: ignore[arg-type]


def test_tqdms_own_argument_errors_stay_tqdms() -> None:
    with pytest.raises(tqdm_std.TqdmKeyError):
        tqdm(range(3), file=io.StringIO(), colour_scheme="dark")


# -- the job comes first ----------------------------------------------------------------------


def test_a_failing_server_never_reaches_the_loop(emu: Emulator, clock: ManualClock) -> None:
    emu.add_fault(Fault.status(400), times=10)
    plain, ours = io.StringIO(), io.StringIO()
    for _ in tqdm_std.tqdm(range(5), file=plain):
        clock.tick(0.5)
    clock.now = 1_000.0
    bar = tqdm(range(5), file=ours)
    for _ in bar:
        clock.tick(0.5)
    assert bar.live_activity is not None
    bar.live_activity.flush(5)
    assert ours.getvalue() == plain.getvalue()
    assert bar.live_activity.errors


def test_no_api_key_still_draws_the_bar(
    monkeypatch: pytest.MonkeyPatch, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)
    monkeypatch.setenv("ACTIVITYSMITH_BASE_URL", "https://activitysmith.invalid/api")
    f = io.StringIO()
    for _ in tqdm(range(3), file=f):
        clock.tick(0.5)
    assert "3/3" in f.getvalue()


def test_a_handle_ended_by_the_caller_is_left_alone(emu: Emulator, clock: ManualClock) -> None:
    bar = tqdm(total=4, file=io.StringIO(), desc="x")
    assert bar.live_activity is not None
    bar.live_activity.end(subtitle="finished my way")
    bar.update(4)
    bar.close()
    settle(bar)
    assert only(emu).state["subtitle"] == "finished my way"


# -- async ------------------------------------------------------------------------------------


def test_async_for_is_mirrored(emu: Emulator, clock: ManualClock) -> None:
    async def pages() -> AsyncIterator[int]:
        for i in range(6):
            await asyncio.sleep(0)
            yield i

    async def main() -> tqdm:
        bar = tqdm(pages(), total=6, desc="fetch pages", file=io.StringIO())
        async for _ in bar:
            clock.tick(0.3)
        return bar

    bar = asyncio.run(main())
    settle(bar)
    record = only(emu)
    assert record.state["percentage"] == 100
    assert record.state["color"] == "green"


def test_async_for_left_early_ends_stopped(emu: Emulator, clock: ManualClock) -> None:
    async def main() -> tqdm:
        bar = tqdm(range(10), desc="fetch", file=io.StringIO())
        async for i in bar:
            if i == 3:
                break
        bar.close()
        return bar

    bar = asyncio.run(main())
    settle(bar)
    # tqdm.asyncio counts an item when it hands it out: 4/10 on the terminal and the card.
    assert only(emu).state["subtitle"] == "Stopped at 40%"


def test_gather_is_mirrored(emu: Emulator, clock: ManualClock) -> None:
    async def square(x: int) -> int:
        await asyncio.sleep(0)
        return x * x

    async def main() -> list[int]:
        return await tqdm.gather(*(square(i) for i in range(5)), desc="squares", file=io.StringIO())

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]
    assert activitysmith_track.flush(5)
    squares = [r for r in emu.activities.values() if r.state["title"] == "squares"]
    assert len(squares) == 1
    assert squares[0].state["percentage"] == 100


# -- the pure parts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "count", "where"),
    [
        (Reading(n=1_200, total=None, desc=""), "1,200 done", "after 1,200 items"),
        (Reading(n=40, total=None, desc="", unit="files"), "40 files", "after 40 files"),
        (
            Reading(n=1_234_567, total=None, desc="", unit="B", unit_scale=True),
            "1.23MB",
            "after 1.23MB",
        ),
        (Reading(n=2.5, total=None, desc="", unit="GB"), "2.50 GB", "after 2.50 GB"),
        (Reading(n=30, total=120, desc=""), "30/120 done", "at 25%"),
        (Reading(n=-3, total=10, desc=""), "0/10 done", "at 0%"),
        (Reading(n=15, total=10, desc=""), "10/10 done", "at 100%"),
    ],
)
def test_reading_texts(reading: Reading, count: str, where: str) -> None:
    assert reading.count() == count
    assert reading.where() == where


def test_titles_from_descriptions() -> None:
    assert title_from("Processing a.txt: ") == "Processing a.txt"
    assert title_from("  two\nlines ") == "two lines"
    assert title_from("") is None
    assert title_from(": ") is None
    assert len(title_from("x" * 100) or "") == 64


def test_error_texts() -> None:
    assert error_text(OSError("disk full"), show_message=True) == "OSError: disk full"
    assert error_text(OSError("disk full"), show_message=False) == "OSError"
    assert error_text(SystemExit(3), show_message=True) == "exit code 3"
    assert error_text(SystemExit("bye"), show_message=True) == "exit code 1: bye"

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    assert error_text(Unprintable(), show_message=True) == "Unprintable"


def test_tqdm_is_imported_only_by_the_drop_in() -> None:
    import subprocess

    code = "import sys, activitysmith_track; print('tqdm' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
    assert live_tqdm.__all__ == ["tqdm", "trange"]
