"""Run history in the local store: several runs, bounds, a stable identity, damage ignored
with one warning, concurrent writers in real processes, and the sender-side watch that reads
a job's history before its start and records its run once it succeeded."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from activitysmith_track import _history, _ledger
from activitysmith_track._config import resolve_settings
from activitysmith_track._eta import (
    EtaMode,
    EtaView,
    Expectation,
    Run,
    StepExpectation,
    StepTime,
)
from activitysmith_track._history import (
    KEEP_IDENTITIES,
    KEEP_MARKS,
    KEEP_RUNS,
    History,
    RunWatch,
    identity,
    identity_of,
)
from activitysmith_track._state import ActivityState, Ending, Outcome, Position, plan
from activitysmith_track._store import DATABASE_NAME, forget_stores

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Each test sees its own first warning: the once-only sets are per process.
    monkeypatch.setattr(_history, "_warned", set())
    monkeypatch.setattr(_ledger, "_warned", set())
    yield
    forget_stores()


@pytest.fixture
def history(tmp_path: Path) -> History:
    return History(tmp_path / "state")


@contextlib.contextmanager
def database(path: Path) -> Iterator[sqlite3.Connection]:
    """The history's file, opened directly: committed and closed after the block."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            yield conn
    finally:
        conn.close()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "activitysmith_track" and r.levelno >= logging.WARNING
    ]


def etl_run(extract: float, transform: float, load: float, *, gap: float = 0.0) -> Run:
    return Run(
        total=extract + transform + load + gap,
        steps=(
            StepTime(index=1, name="extract", seconds=extract),
            StepTime(index=2, name="transform", seconds=transform),
            StepTime(index=3, name="load", seconds=load),
        ),
    )


ETL = identity(title="Nightly ETL", step_names=["extract", "transform", "load"])


# -- identity ---------------------------------------------------------------------------------


def test_the_identity_is_the_same_in_every_version() -> None:
    # A SHA-256 of {"steps":["extract","load","transform"],"title":"Nightly ETL","v":1}:
    # if this changes, every user's history is lost with the upgrade.
    assert ETL == "7af67f9bf8f6ef137bf6e3f620e11267"
    assert identity(title="Nightly ETL") == "29170971bc53fdb0dcf6d2a131c3fb5a"
    assert identity(title="x", stream_key="nightly-etl") == "8b0c8e7b654a17a862d7663984428df3"


def test_the_identity_is_the_same_in_every_process() -> None:
    code = (
        "from activitysmith_track._history import identity; "
        "print(identity(title='Nightly ETL', step_names=['extract', 'transform', 'load']))"
    )
    seen = set()
    for seed in ("0", "1", "4242"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        seen.add(done.stdout.strip())
    assert seen == {ETL}


def test_what_the_identity_depends_on() -> None:
    # The order of the steps does not matter (reordered steps keep their history).
    assert identity(title="Nightly ETL", step_names=["load", "extract", "transform"]) == ETL
    # A renamed step or another title is another job.
    assert identity(title="Nightly ETL", step_names=["extract", "clean", "load"]) != ETL
    assert identity(title="nightly etl", step_names=["extract", "transform", "load"]) != ETL
    # A stream key is the job, whatever its title or steps.
    stream = identity(title="a", stream_key="etl")
    assert identity(title="b", step_names=["x"], stream_key="etl") == stream
    assert stream != identity(title="etl")
    # Runs against a local emulator are a job of their own: trying a job out locally, or
    # in a test suite, never changes what its production runs expect.
    assert identity(title="Nightly ETL", step_names=["load", "extract", "transform"]) == ETL
    local = identity(title="Nightly ETL", step_names=["extract", "transform", "load"], local=True)
    assert local != ETL
    assert identity(title="x", stream_key="etl", local=True) != stream
    # Steps given as a count are not part of it (a count may follow the input's size).
    assert identity_of(plan("Batches", steps=3)[0]) == identity_of(plan("Batches", steps=7)[0])
    assert identity_of(plan("Nightly ETL", steps=["extract", "transform", "load"])[0]) == ETL


def test_an_identity_never_holds_the_title_itself() -> None:
    assert "Nightly" not in ETL
    assert len(ETL) == 32
    assert all(c in "0123456789abcdef" for c in ETL)


# -- several runs -----------------------------------------------------------------------------


def test_the_history_of_several_runs(history: History) -> None:
    for extract, transform, load in [(60, 300, 100), (70, 360, 110), (900, 200, 90), (65, 330, 95)]:
        assert history.record(ETL, etl_run(extract, transform, load, gap=5))

    assert history.expected(ETL) == Expectation(
        total=(495 + 545) / 2,  # the totals: 465, 545, 1195, 495
        steps=(
            StepExpectation(index=1, name="extract", seconds=67.5, runs=4),
            StepExpectation(index=2, name="transform", seconds=315, runs=4),
            StepExpectation(index=3, name="load", seconds=97.5, runs=4),
        ),
        runs=4,
    )
    assert history.expected(identity(title="Another job")) is None


def test_only_the_newest_runs_are_kept(history: History) -> None:
    for n in range(KEEP_RUNS + 7):
        history.record(ETL, Run(total=float(n)))
    kept = history.runs(ETL)
    assert [run.total for run in kept] == [float(n) for n in range(KEEP_RUNS + 6, 6, -1)]
    with database(history.path) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM history_runs").fetchone()
    assert rows == KEEP_RUNS


def test_the_parts_of_a_pipeline_are_kept_apart(history: History) -> None:
    job = identity(title="ETL", stream_key="etl")
    for n in range(KEEP_RUNS + 3):
        history.record(job, Run(total=None, steps=(StepTime(index=1, name="a", seconds=n),)))
    history.record(job, Run(total=None, steps=(StepTime(index=2, name="b", seconds=50),)))
    runs = history.runs(job)
    assert len(runs) == KEEP_RUNS + 1  # "a" bounded on its own; "b" not crowded out
    expectation = history.expected(job)
    assert expectation is not None
    assert [(s.name, s.seconds) for s in expectation.steps] == [("a", 12.5), ("b", 50)]
    assert expectation.usual == 62.5


def test_only_the_jobs_that_ran_most_recently_are_remembered(history: History) -> None:
    jobs = [identity(title=f"job {n}") for n in range(KEEP_IDENTITIES + 2)]
    for job in jobs:
        history.record(job, Run(total=1.0))
    remembered = [job for job in jobs if history.runs(job)]
    assert remembered == jobs[2:]  # the two that ran longest ago are forgotten
    # A job that runs again is the most recent one: the oldest other job makes room.
    history.record(jobs[0], Run(total=2.0))
    assert history.runs(jobs[0]) == [Run(total=2.0)]  # its older run was forgotten before
    remembered = [job for job in jobs if history.runs(job)]
    assert remembered == [jobs[0], *jobs[3:]]
    assert len(remembered) == KEEP_IDENTITIES


def test_a_run_with_very_many_steps_keeps_its_duration_only(history: History) -> None:
    many = tuple(StepTime(index=i, name=None, seconds=1.0) for i in range(1, 500))
    history.record(ETL, Run(total=499.0, steps=many))
    assert history.runs(ETL) == [Run(total=499.0)]


def test_forget(history: History) -> None:
    history.record(ETL, Run(total=1.0))
    history.record(ETL, Run(total=2.0))
    other = identity(title="other")
    history.record(other, Run(total=3.0))
    assert history.forget(ETL) == 2
    assert history.runs(ETL) == []
    assert history.forget() == 1
    assert history.runs(other) == []


# -- damage -------------------------------------------------------------------------------------


def test_a_corrupted_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    garbage = b"not a database, whatever its name says\x00" * 300
    (directory / DATABASE_NAME).write_bytes(garbage)
    history = History(directory)
    settings = resolve_settings({"state_dir": str(directory)}, env={})

    assert history.expected(ETL) is None
    assert history.record(ETL, etl_run(1, 2, 3)) is False
    assert history.runs(ETL) == []
    # The ledger shares the file: it says nothing more.
    assert _ledger.record_start(settings, title="Job", stream_key="job") is None
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=ETL)
    state = started(plan("Nightly ETL", steps=["extract", "transform", "load"])[0])
    assert watch.view(state, Position(), 0.0) == EtaView()  # the job carries on without it
    assert watch.finish(ended(state, Outcome.SUCCESS, 10.0)) is False

    (warning,) = warnings_of(caplog)
    assert str(directory / DATABASE_NAME) in warning
    assert "delete it" in warning
    assert (directory / DATABASE_NAME).read_bytes() == garbage  # left for the user to look at


def test_an_unreadable_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    (directory / DATABASE_NAME).mkdir(parents=True)  # cannot be opened as a file
    history = History(directory)

    assert history.expected(ETL) is None
    assert history.record(ETL, Run(total=1.0)) is False
    assert history.expected(ETL) is None
    (warning,) = warnings_of(caplog)
    assert "ACTIVITYSMITH_TRACK_STATE_DIR" in warning


def test_a_state_directory_that_is_a_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    history = History(blocker)
    assert history.record(ETL, Run(total=1.0)) is False
    assert history.expected(ETL) is None
    assert len(warnings_of(caplog)) == 1


def test_rows_that_cannot_be_read_are_skipped_with_one_warning(
    history: History, caplog: pytest.LogCaptureFixture
) -> None:
    history.record(ETL, etl_run(60, 300, 100))
    history.record(ETL, etl_run(80, 320, 120))
    with database(history.path) as conn:
        for total, steps in [
            (10.0, "not json"),
            (10.0, '[[1, "extract", -5]]'),
            ("long", "[]"),
            (10.0, '{"steps": []}'),
            (10.0, '[[0, "extract", 5]]'),
            (10.0, "[[1, 7, 5]]"),
        ]:
            conn.execute(
                "INSERT INTO history_runs (identity, part, finished_at, total, steps) "
                "VALUES (?, 'run', 0, ?, ?)",
                (ETL, total, steps),
            )

    expectation = history.expected(ETL)
    assert expectation is not None
    assert expectation.runs == 2
    assert expectation.total == 490
    (warning,) = warnings_of(caplog)
    assert "run history could not read a run" in warning


def test_tables_of_a_newer_version_are_left_alone(
    history: History, caplog: pytest.LogCaptureFixture
) -> None:
    history.record(ETL, Run(total=1.0))
    forget_stores()
    with database(history.path) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE name = 'history'")

    assert history.expected(ETL) is None
    assert history.record(ETL, Run(total=2.0)) is False
    (warning,) = warnings_of(caplog)
    assert "newer version" in warning
    with database(history.path) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM history_runs").fetchone()
    assert rows == 1  # untouched


# -- concurrent writers -------------------------------------------------------------------------

# A process that records its runs as soon as the parent says go: into one job shared by
# every writer, and into its own job.
WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from activitysmith_track._eta import Run, StepTime
    from activitysmith_track._history import History, identity

    directory, go, me, runs = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    history = History(directory)
    history.expected(identity(title="warm up"))  # open the store before the race
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go")
        time.sleep(0.005)
    recorded = 0
    for n in range(runs):
        step = (StepTime(index=1, name="only", seconds=float(n)),)
        recorded += history.record(identity(title="shared"), Run(total=me * 1000.0 + n, steps=step))
        recorded += history.record(identity(title=f"writer {me}"), Run(total=float(n)))
    print(recorded, flush=True)
""")


def test_concurrent_writers_lose_nothing_and_keep_the_bounds(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    go = tmp_path / "go"
    writers, runs = 6, 12
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(directory), str(go), str(me), str(runs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for me in range(writers)
    ]
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        results = [child.communicate(timeout=120) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (out, err) in zip(children, results, strict=True):
        assert child.returncode == 0, err
        assert err == ""  # not one warning: every write waited for its turn
        assert out.strip() == str(2 * runs)

    history = History(directory)
    for me in range(writers):
        assert [r.total for r in history.runs(identity(title=f"writer {me}"))] == [
            float(n) for n in reversed(range(runs))
        ]
    shared = history.runs(identity(title="shared"))
    assert len(shared) == KEEP_RUNS
    # The ones kept are the newest: of each writer, a run kept means its later ones are too.
    by_writer: dict[int, list[int]] = {}
    for run in shared:
        assert run.total is not None
        by_writer.setdefault(int(run.total) // 1000, []).append(int(run.total) % 1000)
    for kept in by_writer.values():
        assert sorted(kept) == list(range(runs - len(kept), runs))
    with database(directory / DATABASE_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


# -- settings -----------------------------------------------------------------------------------


def test_the_history_lives_in_the_state_directory(tmp_path: Path) -> None:
    settings = resolve_settings({"state_dir": str(tmp_path / "here")}, env={})
    found = History.for_settings(settings)
    assert found is not None
    assert found.directory == tmp_path / "here"
    from_env = resolve_settings(env={"ACTIVITYSMITH_TRACK_STATE_DIR": str(tmp_path / "env")})
    found = History.for_settings(from_env)
    assert found is not None
    assert found.directory == tmp_path / "env"


def test_no_history_when_tracking_is_disabled_or_the_history_is_off(tmp_path: Path) -> None:
    assert History.for_settings(resolve_settings({"disabled": True}, env={})) is None
    off = resolve_settings({"history": False, "state_dir": str(tmp_path)}, env={})
    assert History.for_settings(off) is None
    from_env = resolve_settings(env={"ACTIVITYSMITH_TRACK_HISTORY": "0"})
    assert History.for_settings(from_env) is None


# -- the sender's side --------------------------------------------------------------------------


def started(state: ActivityState, at: float = 0.0) -> ActivityState:
    return attrs.evolve(state, started_at=at)


def ended(
    state: ActivityState, outcome: Outcome, at: float, *, hand_on: bool = False
) -> ActivityState:
    return attrs.evolve(state, ending=Ending(outcome=outcome, at=at, hand_on=hand_on))


STEPS = ["extract", "transform", "load"]
MARKS = [(1.0, 1, "extract"), (61.0, 2, "transform"), (361.0, 3, "load")]


def test_a_job_that_ran_before_tells_how_long_it_has_left(history: History) -> None:
    for run in (etl_run(60, 300, 100), etl_run(70, 330, 110), etl_run(50, 310, 90)):
        history.record(ETL, run)
    state = started(plan("Nightly ETL", steps=STEPS)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=identity_of(state))

    assert watch.view(state, Position(), 0.0) == EtaView(text="usually 8 min · ~8 min left")
    position = Position(step=2, step_name="transform")
    assert watch.view(state, position, 161.0, MARKS[:2]) == EtaView(
        text="usually 8 min · ~5 min left"  # 310 - 100 in transform, then 100 for load
    )


def test_the_history_is_read_once_before_the_start(history: History) -> None:
    history.record(ETL, etl_run(60, 300, 100))
    state = started(plan("Nightly ETL", steps=STEPS)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=ETL)
    assert watch.expectation is None
    watch.view(state, Position(), 0.0)
    first = watch.expectation
    assert first is not None
    assert first.total == 460
    history.record(ETL, etl_run(600, 3000, 1000))  # another process finished meanwhile
    watch.view(state, Position(step=1, step_name="extract"), 1.0, MARKS[:1])
    assert watch.expectation is first


def test_a_successful_run_is_recorded_once(history: History) -> None:
    state = started(plan("Nightly ETL", steps=STEPS)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=ETL)
    done = ended(state, Outcome.SUCCESS, 461.0)

    assert watch.finish(done, MARKS)
    assert not watch.finish(done, MARKS)
    assert history.runs(ETL) == [etl_run(60, 300, 100, gap=1)]


@pytest.mark.parametrize(
    "outcome", [Outcome.FAILURE, Outcome.CANCELLED, Outcome.ABANDONED, Outcome.HANDED_ON]
)
def test_runs_that_did_not_succeed_are_not_usual(history: History, outcome: Outcome) -> None:
    state = started(plan("Nightly ETL", steps=STEPS)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=ETL)
    assert not watch.finish(ended(state, outcome, 30.0), MARKS[:1])
    assert not watch.finish(attrs.evolve(state, ending=None), MARKS[:1])
    assert history.runs(ETL) == []


def test_a_pipeline_step_records_its_own_step(history: History) -> None:
    state, first = plan("ETL", steps=STEPS, stream_key="etl", step=2)
    state = started(state, at=1000.0)
    job = identity_of(state)
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=job, first=first)
    assert watch.finish(ended(state, Outcome.SUCCESS, 1300.0, hand_on=True))
    assert history.runs(job) == [
        Run(total=None, steps=(StepTime(index=2, name="transform", seconds=300.0),))
    ]


def test_a_pipeline_step_that_began_at_its_step_knows_its_time_in_it(history: History) -> None:
    history.record(identity(title="ETL", stream_key="etl"), etl_run(60, 300, 100))
    state, first = plan("ETL", steps=STEPS, stream_key="etl", step=2)
    state = started(state, at=1000.0)
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=identity_of(state), first=first)
    view = watch.view(state, first, 1100.0)  # no marks: the step began with the start
    assert view == EtaView(text="usually 8 min · ~5 min left")  # 200 s + 100 s


def test_with_the_eta_off_the_run_is_still_recorded(history: History) -> None:
    state = started(plan("Nightly ETL", steps=STEPS)[0])
    watch = RunWatch(mode=None, history=history, identity=ETL)
    assert watch.view(state, Position(), 0.0) is None
    assert watch.expectation is None  # not even read
    assert watch.finish(ended(state, Outcome.SUCCESS, 461.0), MARKS)
    assert len(history.runs(ETL)) == 1


def test_with_the_history_off_only_the_rate_tells(tmp_path: Path) -> None:
    state = started(plan("Resize", total=100)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=None, identity=identity_of(state))
    views = [watch.view(state, Position(count=c), float(c)) for c in (0, 10, 20)]
    assert views[-1] == EtaView(text="~1 min left")  # 80 items at 1 a second
    assert not watch.finish(ended(state, Outcome.SUCCESS, 100.0))
    assert not (tmp_path / "state").exists()


def test_a_countdown_from_history(history: History) -> None:
    history.record(ETL, etl_run(60, 300, 100))
    state = started(plan("Nightly ETL", steps=STEPS, type="timer")[0], at=50.0)
    watch = RunWatch(mode=EtaMode.COUNTDOWN, history=history, identity=ETL)
    assert watch.view(state, Position(), 50.0) == EtaView(
        text="usually 8 min", countdown_until=510.0
    )


def test_reading_the_history_is_cheap(history: History) -> None:
    for n in range(KEEP_RUNS):
        history.record(ETL, etl_run(60 + n, 300, 100))
    history.expected(ETL)  # the store is open
    start = time.perf_counter()
    for _ in range(50):
        assert history.expected(ETL) is not None
    each = (time.perf_counter() - start) / 50
    assert each < 0.05  # a few hundred microseconds here; generous for a loaded machine


def test_the_stored_row_is_plain_json(history: History) -> None:
    history.record(ETL, etl_run(60.12345, 300, 100), now=1_700_000_000.0)
    with database(history.path) as conn:
        row = conn.execute(
            "SELECT identity, part, finished_at, total, steps FROM history_runs"
        ).fetchone()
    assert row[:4] == (ETL, "run", 1_700_000_000.0, 460.123)
    assert json.loads(row[4]) == [[1, "extract", 60.123], [2, "transform", 300], [3, "load", 100]]


def test_a_run_whose_step_notes_ran_out_records_its_total_only(history: History) -> None:
    state = started(plan("Many steps", steps=5)[0])
    watch = RunWatch(mode=EtaMode.TEXT, history=history, identity=identity_of(state))
    marks = [(float(n), n % 5 + 1, None) for n in range(KEEP_MARKS)]
    assert watch.finish(ended(state, Outcome.SUCCESS, 2000.0), marks)
    assert history.runs(identity_of(state)) == [Run(total=2000.0)]


def test_importing_the_history_imports_neither_the_store_nor_sqlite3() -> None:
    code = (
        "import sys, activitysmith_track._history\n"
        "print(sorted(m for m in ('sqlite3', 'activitysmith_track._store') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
