"""Run history: how long each job took, kept in the local store to tell the next run its ETA.

A job is known by its *identity* (:func:`identity`): its stream key, or else its title and
the names of its steps (in any order: a job whose steps were reordered keeps its history,
and the steps are matched by name). For each identity the store keeps the recent successful
runs (:data:`KEEP_RUNS`), each with its duration and each step's; at most
:data:`KEEP_IDENTITIES` jobs are remembered (the ones that ran most recently). Nothing here
is sent anywhere: it lives in the same SQLite file as the ledger of open activities (see
:mod:`activitysmith_track._store`), under the user's state directory
(``ACTIVITYSMITH_TRACK_STATE_DIR`` points it elsewhere).

Only runs that ended in success are recorded: a failed or cancelled run stopped early (or
took as long as a timeout), so its duration says nothing about how long the job takes, and
it would pull the medians down. A process that runs one step of a pipeline spread over
processes (``step=`` with a stream) records its step alone, as a part of a run.

Every call is cheap, safe from any thread, and never raises: a store that cannot be used is
ignored after one warning (the store's own, shared with the ledger), and a row that cannot be
read is skipped. Calls do file I/O, so the library makes them on its sender thread, never on
the user's: :class:`RunWatch` is what the sender keeps for each activity.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from activitysmith_track._eta import (
    EtaMode,
    EtaView,
    Expectation,
    Foresight,
    Mark,
    Run,
    StepTime,
    expectation_from,
    run_from_marks,
)
from activitysmith_track._state import KEEP_MARKS, ActivityState, Outcome, Position

if TYPE_CHECKING:
    import sqlite3

    from activitysmith_track._config import Settings
    from activitysmith_track._store import Schema, Store

__all__ = [
    "KEEP_IDENTITIES",
    "KEEP_MARKS",
    "KEEP_RUNS",
    "History",
    "RunWatch",
    "identity",
    "identity_of",
]

logger = logging.getLogger("activitysmith_track")

# The recent runs kept per job (and per part of a pipeline): the medians are over these.
KEEP_RUNS = 20
# The jobs remembered: those that recorded a run most recently.
KEEP_IDENTITIES = 200
# A run with more steps than this keeps its duration only (the steps would make its row big,
# and a job of thousands of steps is estimated well enough by its rate or its total).
KEEP_STEPS = 200
# A store that answers "locked" at once (several processes opening a new file together, one
# of them switching it to WAL: SQLite does not wait its busy timeout then) is tried again
# after these pauses; a write waiting for another process's waits the busy timeout instead.
_BUSY_PAUSES = (0.02, 0.05, 0.1, 0.2)
# The identity's version: a change to what goes into an identity bumps it, so old and new
# identities never collide.
_IDENTITY_VERSION = 1

# The table, created on first use. ``part`` is "run" for a whole run, or "from <step>" for
# the part of a pipeline one process ran: each is bounded on its own, so the steps of a
# pipeline are not crowded out by each other. AUTOINCREMENT: ids grow with every run
# recorded, whichever process records it, so "the newest runs" are the highest ids.
_TABLES = ("history_runs",)
_CREATE = (
    """CREATE TABLE IF NOT EXISTS history_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        identity TEXT NOT NULL,
        part TEXT NOT NULL,
        finished_at REAL NOT NULL,
        total REAL,
        steps TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS history_runs_identity ON history_runs (identity, part, id)",
)
_SCHEMA_VERSION = 1
_WHOLE = "run"
_schema: Schema | None = None


def schema() -> Schema:
    """The history's tables in the store. The store (and sqlite3) is imported on first use,
    never by ``import activitysmith_track``."""
    global _schema
    if _schema is None:
        from activitysmith_track._store import Schema

        _schema = Schema(name="history", version=_SCHEMA_VERSION, tables=_TABLES, create=_CREATE)
    return _schema


def _store_in(directory: Path) -> Store:
    from activitysmith_track._store import get_store

    return get_store(directory)


# -- identity ---------------------------------------------------------------------------------


def identity(
    *,
    title: str,
    step_names: Sequence[str] | None = None,
    stream_key: str | None = None,
    local: bool = False,
) -> str:
    """The key a job's history is kept under: 32 hex digits, the same in every process and
    every Python version (a SHA-256 of a canonical JSON text, never Python's ``hash()``).

    A stream key is the job (whatever its title or steps); else the title and the step names,
    sorted, so that reordering steps keeps the history. Steps given as a count are not part of
    it: a job whose step count follows its input (``steps=len(batches)``) stays one job.
    ``local`` marks runs against a local emulator: a job tried out locally (or in a test
    suite) has a history of its own, and never changes what its production runs expect.
    """
    if stream_key is not None:
        key: dict[str, Any] = {"v": _IDENTITY_VERSION, "stream": stream_key}
    else:
        key = {"v": _IDENTITY_VERSION, "title": title, "steps": sorted(step_names or ())}
    if local:
        key["local"] = True
    canonical = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:32]


def identity_of(state: ActivityState, *, local: bool = False) -> str:
    """The identity of the job an activity's state describes (``local``: sent to a local
    emulator, ``Settings.is_local``)."""
    return identity(
        title=state.title,
        step_names=state.step_names,
        stream_key=state.target.stream_key,
        local=local,
    )


# -- warnings, once each ------------------------------------------------------------------------

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _trouble(what: str, exc: BaseException) -> None:
    from activitysmith_track._store import StoreUnavailable  # loaded: it raised

    if isinstance(exc, StoreUnavailable):
        return  # the store said why, once, for every module that uses it
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    logger.warning(
        "activitysmith-track: the run history could not %s (%s: %s); carrying on without it",
        what,
        type(exc).__name__,
        exc,
    )


_T = TypeVar("_T")


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "OperationalError" and ("locked" in text or "busy" in text)


def _patiently(action: Callable[[], _T]) -> _T:
    """``action()``, tried again after a short pause while the store is busy."""
    for pause in _BUSY_PAUSES:
        try:
            return action()
        except Exception as exc:
            if not _is_busy(exc):
                raise
        time.sleep(pause)
    return action()


# -- rows ---------------------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) and value >= 0 else None


def _steps_json(run: Run) -> str:
    if len(run.steps) > KEEP_STEPS:
        return "[]"
    return json.dumps(
        [[step.index, step.name, round(step.seconds, 3)] for step in run.steps],
        separators=(",", ":"),
        allow_nan=False,
    )


def _run_of(total: object, steps_text: object) -> Run:
    """A stored row as a run; ValueError for a row no version of this module wrote."""
    if total is not None and _number(total) is None:
        raise ValueError(f"a total of {total!r}")
    if not isinstance(steps_text, str):
        raise ValueError("steps that are not text")
    raw = json.loads(steps_text)
    if not isinstance(raw, list):
        raise ValueError("steps that are not a list")
    steps = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError(f"a step {item!r}")
        index, name, seconds = item
        value = _number(seconds)
        if isinstance(index, bool) or not isinstance(index, int) or index < 1 or value is None:
            raise ValueError(f"a step {item!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"a step {item!r}")
        steps.append(StepTime(index=index, name=name, seconds=value))
    return Run(total=_number(total), steps=tuple(steps))


# -- the store ----------------------------------------------------------------------------------


class History:
    """The run history in one state directory.

    :meth:`expected` reads what the recent runs of a job lead to expect, :meth:`record` adds
    a finished run. Both are safe from any thread and any number of processes at once (each
    record is one short write transaction), and never raise.
    """

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"<History {str(self.directory)!r}>"

    @classmethod
    def for_settings(cls, settings: Settings) -> History | None:
        """The history ``settings`` use, or ``None`` when it is off (``history=False``,
        ``ACTIVITYSMITH_TRACK_HISTORY=0``) or tracking is disabled."""
        if settings.disabled or not settings.history:
            return None
        from activitysmith_track._store import state_dir

        return cls(state_dir(settings.state_dir))

    @property
    def path(self) -> Path:
        """The database file."""
        return _store_in(self.directory).path

    def expected(self, identity: str) -> Expectation | None:
        """What the recent successful runs of ``identity`` lead to expect (``None``: no
        history, or none readable)."""
        runs = self.runs(identity)
        return expectation_from(runs) if runs else None

    def runs(self, identity: str) -> list[Run]:
        """The recorded runs of ``identity``, newest first (parts of runs included)."""

        def read() -> list[Any]:
            with _store_in(self.directory).read(schema()) as conn:
                return conn.execute(
                    "SELECT total, steps FROM history_runs WHERE identity = ? ORDER BY id DESC",
                    (identity,),
                ).fetchall()

        try:
            rows = _patiently(read)
        except Exception as exc:
            _trouble("be read", exc)
            return []
        runs = []
        for total, steps in rows:
            try:
                runs.append(_run_of(total, steps))
            except (ValueError, TypeError) as exc:
                _trouble("read a run", exc)  # skipped: the others still count
        return runs

    def record(self, identity: str, run: Run, *, now: float | None = None) -> bool:
        """Add ``run`` to the history of ``identity`` and drop what the bounds leave out:
        runs of that job beyond the newest :data:`KEEP_RUNS` (of a whole run, or of the same
        part of a pipeline) and jobs beyond the :data:`KEEP_IDENTITIES` that ran most
        recently. ``now`` is the wall-clock time it finished (default: now). Returns whether
        it was recorded."""
        try:
            if run.total is not None:
                part = _WHOLE
            else:
                part = f"from {min((s.index for s in run.steps), default=0)}"
            row = (
                identity,
                part,
                time.time() if now is None else now,
                None if run.total is None else round(run.total, 3),
                _steps_json(run),
            )

            def write() -> None:
                with _store_in(self.directory).write(schema()) as conn:
                    conn.execute(
                        "INSERT INTO history_runs (identity, part, finished_at, total, steps) "
                        "VALUES (?, ?, ?, ?, ?)",
                        row,
                    )
                    _prune(conn, identity, part)

            _patiently(write)
        except Exception as exc:
            _trouble("record a run", exc)
            return False
        return True

    def forget(self, identity: str | None = None) -> int:
        """Drop the history of ``identity`` (of every job with ``None``); returns the runs
        dropped (0 when the store cannot be used)."""
        try:
            with _store_in(self.directory).write(schema()) as conn:
                if identity is None:
                    cursor = conn.execute("DELETE FROM history_runs")
                else:
                    cursor = conn.execute(
                        "DELETE FROM history_runs WHERE identity = ?", (identity,)
                    )
                return int(cursor.rowcount)
        except Exception as exc:
            _trouble("forget runs", exc)
            return 0


def _prune(conn: sqlite3.Connection, identity: str, part: str) -> None:
    # Inside the write transaction of the insert: no other process sees more than the bounds.
    conn.execute(
        "DELETE FROM history_runs WHERE identity = ?1 AND part = ?2 AND id NOT IN "
        "(SELECT id FROM history_runs WHERE identity = ?1 AND part = ?2 "
        "ORDER BY id DESC LIMIT ?3)",
        (identity, part, KEEP_RUNS),
    )
    conn.execute(
        "DELETE FROM history_runs WHERE identity NOT IN "
        "(SELECT identity FROM history_runs GROUP BY identity ORDER BY MAX(id) DESC LIMIT ?)",
        (KEEP_IDENTITIES,),
    )


# -- the sender's side --------------------------------------------------------------------------


class RunWatch:
    """What the sender keeps for one activity: its ETA, and its run for the history.

    :meth:`view` is called just before each payload is rendered (the first call, before the
    start, reads the job's history); :meth:`finish` once the activity ended (it records a
    successful run). Both run on the sender thread. One lane is sent by one thread at a time,
    so a watch needs no lock of its own.

    ``mode`` is the ``eta=`` option (``None``: no ETA; the run is still recorded), ``history``
    the store (``None``: history off), ``first`` the position the activity began at (a
    pipeline step spread over processes begins at its own step).
    """

    __slots__ = ("_first", "_foresight", "_history", "_identity", "_loaded", "_mode", "_recorded")

    def __init__(
        self,
        *,
        mode: EtaMode | None,
        history: History | None,
        identity: str,
        first: Position | None = None,
    ) -> None:
        self._mode = mode
        self._history = history
        self._identity = identity
        self._first = first or Position()
        self._foresight: Foresight | None = None
        self._loaded = False
        self._recorded = False

    def __repr__(self) -> str:
        mode = self._mode.value if self._mode is not None else "off"
        return f"<RunWatch {self._identity[:8]} eta={mode}>"

    @property
    def last(self) -> EtaView | None:
        """The view given last (the final state keeps its countdown), ``None`` before one."""
        return self._foresight.view if self._foresight is not None else None

    @property
    def expectation(self) -> Expectation | None:
        """The history read for this run (``None`` before the first view, or without one)."""
        return self._foresight.expectation if self._foresight is not None else None

    def _marks(self, state: ActivityState, marks: Sequence[Mark]) -> list[Mark]:
        first = self._first
        if first.step > 0 and state.started_at is not None:
            # The step this process began at has no mark of its own: it began with the start.
            return [(state.started_at, first.step, first.step_name), *marks]
        return list(marks)

    def view(
        self, state: ActivityState, position: Position, now: float, marks: Sequence[Mark] = ()
    ) -> EtaView | None:
        """The ETA to render with ``state`` and ``position`` at ``now`` (``None``: none).

        ``marks`` are the moments the steps began (the handle's, oldest first). Never raises.
        """
        if self._mode is None:
            return None
        try:
            if self._foresight is None:
                expectation = None
                if self._history is not None:
                    expectation = self._history.expected(self._identity)
                self._foresight = Foresight(
                    mode=self._mode, expectation=expectation, first_step=self._first.step
                )
            every = self._marks(state, marks)
            since = None
            if every and every[-1][1] == position.step:
                since = every[-1][0]
            self._foresight = self._foresight.observe(state, position, now, step_since=since)
        except Exception:  # an ETA must never stop a payload from going out
            logger.debug("could not estimate the time left", exc_info=True)
            return None
        return self._foresight.view

    def finish(self, state: ActivityState, marks: Sequence[Mark] = ()) -> bool:
        """Record the run if it ended in success (once; later calls do nothing). Returns
        whether a run was recorded. Never raises."""
        if self._recorded or self._history is None:
            return False
        ending = state.ending
        if ending is None or ending.outcome is not Outcome.SUCCESS or state.started_at is None:
            return False
        self._recorded = True
        try:
            # A run is whole when this process ran it from its first step to its end; a
            # pipeline step handing the stream on, or one that began at a later step, ran a
            # part of it.
            complete = not ending.hand_on and self._first.step <= 1
            run = run_from_marks(
                self._marks(state, marks),
                started_at=state.started_at,
                ended_at=ending.at,
                complete=complete,
            )
            if len(marks) >= KEEP_MARKS:
                run = Run(total=run.total)  # the steps past the bound were not timed
            if not complete and not run.steps:
                return False  # a part without steps says nothing
            return self._history.record(self._identity, run)
        except Exception as exc:
            _trouble("record a run", exc)
            return False


def _reset_after_fork() -> None:
    global _warned_lock
    _warned_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
