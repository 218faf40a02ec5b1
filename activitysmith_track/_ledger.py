"""The ledger: the Live Activities this machine started and has not ended yet.

A job killed with SIGKILL, by the OOM killer or by a power cut cannot end its own activity,
which then stays "live" on the lock screen (and holds one of the account's few slots) until
iOS drops it hours later. So every open activity has an entry here, written by the process
that delivers it, and removed when its end is delivered. An entry whose process is gone is an
*orphan*: a later run of any job (in the background, at its first start) or
``activitysmith-track cleanup`` ends it, showing where it stopped::

    Stopped at upload archive: the process died      (grey, timer frozen)

What an entry holds: the activity id (manual mode) or stream key, the base URL, a fingerprint
of the API key (a truncated SHA-256, never the key), the host, the owner's pid and start time
(so that a pid reused by another process is not mistaken for the owner), the title, when it
started, and the last content state sent.

Rules for ending orphans:

- Only entries of this host, whose owner process is gone.
- Only with the key and base URL they were started with: an entry whose fingerprint or base
  URL differs from the current settings is left for a run that has them.
- A stream is ended only when no live process holds an entry for the same stream (several
  processes of one pipeline share a key); the orphan's entry is then simply dropped. So is
  an orphan older than this process's own taking up of the stream: this process went on
  from it (a pipeline step run again after a crash), even if it has handed the stream on
  and dropped its own entry before its cleanup got to the orphan.
- An answer saying the activity is gone or not this key's (404, 403) drops the entry; a
  transient failure keeps it for the next run.

Every function here is safe to call from any thread, never raises (trouble is logged once
and the call does nothing) and does no network I/O except :func:`end_orphans` and
:func:`sweep_in_background`. The storage is :mod:`activitysmith_track._store`.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import logging
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import attrs

from activitysmith_track._config import Settings, is_local_url
from activitysmith_track._store import Schema, StoreUnavailable, get_store, state_dir

if TYPE_CHECKING:
    import sqlite3

    from activitysmith_track._client import Client
    from activitysmith_track._model import ContentState, Payload

__all__ = [
    "STOPPED_SUBTITLE",
    "Cleanup",
    "Entry",
    "OwnerStatus",
    "Ticket",
    "database_path",
    "end_orphans",
    "final_state",
    "key_fingerprint",
    "open_entries",
    "orphans",
    "problem",
    "record_end",
    "record_start",
    "record_state",
    "sweep_in_background",
]

logger = logging.getLogger("activitysmith_track")

STOPPED_SUBTITLE = "the process died"
# Orphans nobody could end (another key, a base URL never used again) are forgotten after
# this long: iOS removed a manual activity long ago (8 hours at most), and an entry that old
# is noise in `activitysmith-track list`.
FORGET_AFTER = 30 * 24 * 3600.0
# A cleanup that claimed an entry and then died releases it after this long.
CLAIM_TIMEOUT = 120.0
# A background sweep ends at most this many orphans and spends at most this long; the rest
# wait for the next run or `activitysmith-track cleanup`.
SWEEP_LIMIT = 20
SWEEP_TIMEOUT = 30.0
_FINGERPRINT_CHARS = 16
_MAX_SUBTITLE = 120

SCHEMA = Schema(
    name="ledger",
    version=1,
    tables=("ledger_entries",),
    create=(
        # AUTOINCREMENT: an id is never reused, so a ticket can never name someone else's
        # entry after its own was removed by a cleanup.
        """CREATE TABLE IF NOT EXISTS ledger_entries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            process_start TEXT,
            base_url TEXT NOT NULL,
            key_fingerprint TEXT NOT NULL,
            activity_id TEXT,
            stream_key TEXT,
            kind TEXT,
            title TEXT NOT NULL,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            state TEXT,
            claimed_by TEXT,
            claimed_at REAL
        )""",
        "CREATE INDEX IF NOT EXISTS ledger_entries_stream ON ledger_entries (stream_key)",
    ),
)


class OwnerStatus(str, enum.Enum):
    """Whether an entry's owner process still runs, as far as this machine can tell."""

    RUNNING = "running"
    GONE = "gone"  # an orphan
    OTHER_HOST = "other host"  # started on another machine sharing the state directory


@attrs.frozen(kw_only=True)
class Ticket:
    """What :func:`record_start` hands back, to name the entry in later calls."""

    directory: str
    entry_id: int
    pid: int


@attrs.frozen(kw_only=True, eq=False)
class Entry:
    """One open activity, as listed (plain data; ``state`` is the last content state sent)."""

    entry_id: int
    host: str
    pid: int
    process_start: str | None
    base_url: str
    key_fingerprint: str
    activity_id: str | None
    stream_key: str | None
    kind: str | None
    title: str
    started_at: float
    updated_at: float
    state: dict[str, Any] | None
    status: OwnerStatus

    @property
    def target(self) -> str:
        """``stream nightly-etl`` or ``activity 3f2a...``: what a request would name."""
        if self.stream_key is not None:
            return f"stream {self.stream_key}"
        return f"activity {self.activity_id}"

    def to_json(self) -> dict[str, Any]:
        """The entry as JSON-ready data (for ``activitysmith-track list --json``)."""
        return {
            "id": self.entry_id,
            "host": self.host,
            "pid": self.pid,
            "status": self.status.value,
            "base_url": self.base_url,
            "key_fingerprint": self.key_fingerprint,
            "activity_id": self.activity_id,
            "stream_key": self.stream_key,
            "type": self.kind,
            "title": self.title,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "state": self.state,
        }


@attrs.frozen(kw_only=True, eq=False)
class Cleanup:
    """What :func:`end_orphans` did with one orphan.

    ``action`` is ``"ended"`` (the end was delivered), ``"dropped"`` (nothing to end: the
    stream is held by a live process, the server says it is gone, or it belongs to an
    emulator no longer there), ``"skipped"`` (left for a run with the entry's key and base
    URL) or ``"failed"`` (kept for the next try). ``detail`` says why, in words.
    """

    entry: Entry
    action: str
    detail: str


# -- process identity --------------------------------------------------------------------------

_identity_lock = threading.Lock()
_identity: tuple[int, str, str | None] | None = None  # (pid, host, process start)
_boot_id: str | None = None


def _read_boot_id() -> str:
    global _boot_id
    if _boot_id is None:
        try:
            with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
                _boot_id = file.read().strip()
        except OSError:
            _boot_id = ""
    return _boot_id


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time in clock ticks since boot)`` from ``/proc/<pid>/stat``; ``None``
    when there is no such process (or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces or ")": the
    # fields that follow start after the last ")".
    rest = raw[raw.rfind(b")") + 2 :].split()
    if len(rest) < 20:
        return None
    return rest[0].decode("ascii", "replace"), rest[19].decode("ascii", "replace")


def process_start(pid: int) -> str | None:
    """A token that differs between two processes that had the same pid: the boot id and
    the start time on Linux, ``None`` where the system does not say cheaply."""
    if not sys.platform.startswith("linux"):
        return None
    found = _proc_stat(pid)
    if found is None:
        return None
    return f"{_read_boot_id()}:{found[1]}"


def _me() -> tuple[int, str, str | None]:
    global _identity
    pid = os.getpid()
    with _identity_lock:
        if _identity is None or _identity[0] != pid:
            _identity = (pid, socket.gethostname(), process_start(pid))
        return _identity


def owner_running(pid: int, start: str | None) -> bool:
    """Whether the process that recorded ``(pid, start)`` still runs.

    With a start token (Linux) the pid must exist, not be a zombie, and have started at the
    recorded moment: a pid reused since is another process. Without one, only whether the
    pid exists.
    """
    if start is not None and sys.platform.startswith("linux"):
        found = _proc_stat(pid)
        if found is None:
            return False
        state, ticks = found
        if state in ("Z", "X", "x"):  # exited, waiting to be reaped: gone
            return False
        return start == f"{_read_boot_id()}:{ticks}"
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, but belongs to someone else
    except OSError:
        return False
    return True


def key_fingerprint(api_key: str | None) -> str:
    """A short fingerprint of the key: tells keys apart, cannot be turned back into one."""
    if not api_key:
        return ""
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()[:_FINGERPRINT_CHARS]


# -- warnings, once each -------------------------------------------------------------------------

_warned: set[str] = set()
_warned_lock = threading.Lock()


def _warn_once(kind: str, message: str, *args: object) -> None:
    with _warned_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    logger.warning(message, *args)


def _trouble(what: str, exc: BaseException) -> None:
    if isinstance(exc, StoreUnavailable):
        return  # the store already said why, once
    _warn_once(
        f"trouble:{what}",
        "activitysmith-track: the local ledger could not %s (%s: %s); carrying on without it",
        what,
        type(exc).__name__,
        exc,
    )


# -- recording -----------------------------------------------------------------------------------


def _enabled(settings: Settings) -> bool:
    return settings.ledger and not settings.disabled


def _directory(settings: Settings) -> Path:
    return state_dir(settings.state_dir)


def _state_json(state: Mapping[str, Any] | ContentState | Payload | None) -> str | None:
    if state is None:
        return None
    if not isinstance(state, Mapping):
        from activitysmith_track._model import Payload

        content = state.content_state if isinstance(state, Payload) else state
        state = content.to_json()
    return json.dumps(dict(state), separators=(",", ":"), allow_nan=False, default=str)


def _kind_of(state: Mapping[str, Any] | ContentState | Payload | None) -> str | None:
    if state is None:
        return None
    if isinstance(state, Mapping):
        kind = state.get("type")
    else:
        from activitysmith_track._model import Payload

        content = state.content_state if isinstance(state, Payload) else state
        kind = content.type
    if kind is None:
        return None
    return str(getattr(kind, "value", kind))


def record_start(
    settings: Settings,
    *,
    title: str,
    activity_id: str | None = None,
    stream_key: str | None = None,
    state: Mapping[str, Any] | ContentState | Payload | None = None,
) -> Ticket | None:
    """Note that this process opened an activity; ``None`` when the ledger is off or failed.

    Give ``activity_id`` (manual mode: once the start is answered) or ``stream_key`` (stream
    mode: best before the first PUT, so that no other process's cleanup can take the stream
    for an orphan while it starts). ``state`` is the content state sent (a ``Payload``,
    ``ContentState`` or its JSON).
    """
    try:
        if not _enabled(settings):
            return None
        if (activity_id is None) == (stream_key is None):
            raise ValueError("give exactly one of activity_id and stream_key")
        pid, host, start = _me()
        now = time.time()
        row = (
            host,
            pid,
            start,
            settings.base_url,
            key_fingerprint(settings.effective_api_key),
            activity_id,
            stream_key,
            _kind_of(state),
            str(title),
            now,
            now,
            _state_json(state),
        )
        directory = _directory(settings)
        if stream_key is not None:
            streams = _taken_up.setdefault((settings.base_url, row[4]), {})
            if len(streams) < _TAKEN_UP_KEPT:
                streams.setdefault(stream_key, now)
        with get_store(directory).write(SCHEMA) as conn:
            cursor = conn.execute(
                "INSERT INTO ledger_entries (host, pid, process_start, base_url, "
                "key_fingerprint, activity_id, stream_key, kind, title, started_at, "
                "updated_at, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            entry_id = cursor.lastrowid
        if entry_id is None:
            return None
        return Ticket(directory=str(directory), entry_id=entry_id, pid=pid)
    except Exception as exc:
        _trouble("record a start", exc)
        return None


def record_state(
    ticket: Ticket | None,
    state: Mapping[str, Any] | ContentState | Payload,
    *,
    activity_id: str | None = None,
) -> None:
    """Note the latest content state sent (and the activity id, if it changed: a rotation)."""
    if ticket is None or ticket.pid != os.getpid():
        return  # a forked child never speaks for its parent's activities
    try:
        text = _state_json(state)
        kind = _kind_of(state)
        with get_store(ticket.directory).write(SCHEMA) as conn:
            conn.execute(
                "UPDATE ledger_entries SET state = ?, kind = COALESCE(?, kind), "
                "activity_id = COALESCE(?, activity_id), updated_at = ? "
                "WHERE id = ? AND pid = ?",
                (text, kind, activity_id, time.time(), ticket.entry_id, ticket.pid),
            )
    except Exception as exc:
        _trouble("record a state", exc)


def record_end(ticket: Ticket | None) -> None:
    """Note that the activity's end was delivered (or handed on): the entry goes."""
    if ticket is None or ticket.pid != os.getpid():
        return  # a forked child never speaks for its parent's activities
    try:
        with get_store(ticket.directory).write(SCHEMA) as conn:
            conn.execute(
                "DELETE FROM ledger_entries WHERE id = ? AND pid = ?",
                (ticket.entry_id, ticket.pid),
            )
    except Exception as exc:
        _trouble("record an end", exc)


# -- reading ---------------------------------------------------------------------------------


_COLUMNS = (
    "id, host, pid, process_start, base_url, key_fingerprint, activity_id, stream_key, kind, "
    "title, started_at, updated_at, state"
)


def _entry(row: Sequence[Any], host: str) -> Entry:
    (entry_id, e_host, pid, start, base_url, fingerprint, activity_id, stream_key, kind) = row[:9]
    title, started_at, updated_at, state_text = row[9:13]
    state: dict[str, Any] | None = None
    if state_text:
        with contextlib.suppress(ValueError, RecursionError):
            loaded = json.loads(state_text)
            state = loaded if isinstance(loaded, dict) else None
    if e_host != host:
        status = OwnerStatus.OTHER_HOST
    elif owner_running(int(pid), start):
        status = OwnerStatus.RUNNING
    else:
        status = OwnerStatus.GONE
    return Entry(
        entry_id=int(entry_id),
        host=str(e_host),
        pid=int(pid),
        process_start=start,
        base_url=str(base_url),
        key_fingerprint=str(fingerprint),
        activity_id=activity_id,
        stream_key=stream_key,
        kind=kind,
        title=str(title),
        started_at=float(started_at),
        updated_at=float(updated_at),
        state=state,
        status=status,
    )


def _read_all(conn: sqlite3.Connection) -> list[Entry]:
    host = _me()[1]
    rows = conn.execute(f"SELECT {_COLUMNS} FROM ledger_entries ORDER BY id").fetchall()
    return [_entry(row, host) for row in rows]


def open_entries(settings: Settings) -> list[Entry]:
    """Every entry in the ledger of ``settings``' state directory, oldest first, each with
    its owner's status. Empty when the ledger is off or cannot be read."""
    try:
        if not settings.ledger:
            return []
        with get_store(_directory(settings)).read(SCHEMA) as conn:
            return _read_all(conn)
    except Exception as exc:
        _trouble("be read", exc)
        return []


def problem(settings: Settings) -> str | None:
    """Why the ledger cannot be used with ``settings`` (``None`` when it can, or is off):
    for ``activitysmith-track doctor``, ``list`` and ``cleanup``, which must say so."""
    if not settings.ledger:
        return None
    try:
        with get_store(_directory(settings)).read(SCHEMA) as conn:
            conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone()
    except StoreUnavailable as exc:
        return str(exc)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def database_path(settings: Settings) -> Path:
    """Where the ledger of ``settings`` lives."""
    return get_store(_directory(settings)).path


def orphans(settings: Settings) -> list[Entry]:
    """The entries of this host whose owner process is gone (of any key and base URL)."""
    return [e for e in open_entries(settings) if e.status is OwnerStatus.GONE]


# -- ending orphans ----------------------------------------------------------------------------


def _where(state: Mapping[str, Any]) -> str:
    """``at upload archive``, ``at 40%``, ``before the first step`` or ``""``."""
    kind = state.get("type")
    subtitle = state.get("subtitle")
    if kind == "segmented_progress":
        step = state.get("current_step")
        if step == 0:
            return "before the first step"
        if isinstance(subtitle, str) and subtitle.strip():
            return f"at {subtitle.strip()}"
        steps = state.get("number_of_steps")
        if isinstance(step, int) and isinstance(steps, int):
            return f"at step {step} of {steps}"
        return ""
    if kind == "progress":
        percentage = state.get("percentage")
        value, limit = state.get("value"), state.get("upper_limit")
        if _finite(percentage):
            return f"at {percentage:g}%"
        if _finite(value) and _finite(limit) and limit > 0:
            return f"at {min(100.0, 100.0 * value / limit):.0f}%"
    if isinstance(subtitle, str) and subtitle.strip():
        return f"at {subtitle.strip()}"
    return ""


def _finite(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def final_state(entry: Entry) -> dict[str, Any]:
    """The content state an orphan is ended with: its last state, stopped.

    Grey, the subtitle saying where it stopped and why, a timer frozen where it was (no
    ``duration_seconds``, ``is_running`` false); everything the end of its type needs
    (``current_step``, ``percentage`` or ``value``/``upper_limit``, ``message``, ``value``)
    is kept from the last state sent.
    """
    state: dict[str, Any] = dict(entry.state or {})
    state.setdefault("title", entry.title)
    if entry.kind is not None:
        state.setdefault("type", entry.kind)
    where = _where(state)
    subtitle = f"Stopped {where}: {STOPPED_SUBTITLE}" if where else f"Stopped: {STOPPED_SUBTITLE}"
    if len(subtitle) > _MAX_SUBTITLE:
        subtitle = subtitle[: _MAX_SUBTITLE - 1] + "…"
    state["subtitle"] = subtitle
    state["color"] = "gray"
    kind = state.get("type")
    if kind == "segmented_progress":
        state["step_color"] = "gray"
    if kind == "timer":
        state["is_running"] = False
        state.pop("duration_seconds", None)
    for dismissal in ("auto_dismiss_minutes", "auto_dismiss_seconds"):
        state.pop(dismissal, None)
    return state


def _payload_for(entry: Entry) -> Payload | None:
    """The end's payload, checked for the end operation; ``None`` when the stored state
    cannot make a valid one (then a stream is ended bare, an activity with its title)."""
    from activitysmith_track._errors import ValidationError
    from activitysmith_track._model import ContentState, Operation, Payload

    op = Operation.STREAM_DELETE if entry.stream_key is not None else Operation.END
    try:
        payload = Payload(content_state=ContentState.from_json(final_state(entry)))
        payload.body(op)
    except ValidationError:
        return None
    return payload


def _claim(store_dir: Path, entry: Entry, token: str) -> bool:
    now = time.time()
    with get_store(store_dir).write(SCHEMA) as conn:
        cursor = conn.execute(
            "UPDATE ledger_entries SET claimed_by = ?, claimed_at = ? "
            "WHERE id = ? AND (claimed_by IS NULL OR claimed_at < ?)",
            (token, now, entry.entry_id, now - CLAIM_TIMEOUT),
        )
        return cursor.rowcount == 1


def _release(store_dir: Path, entry: Entry, token: str) -> None:
    with get_store(store_dir).write(SCHEMA) as conn:
        conn.execute(
            "UPDATE ledger_entries SET claimed_by = NULL, claimed_at = NULL "
            "WHERE id = ? AND claimed_by = ?",
            (entry.entry_id, token),
        )


def _drop(store_dir: Path, entries: Sequence[Entry]) -> None:
    if not entries:
        return
    with get_store(store_dir).write(SCHEMA) as conn:
        conn.executemany(
            "DELETE FROM ledger_entries WHERE id = ?", [(e.entry_id,) for e in entries]
        )


def _stream_holder(store_dir: Path, entry: Entry) -> Entry | None:
    """A live entry of another process for ``entry``'s stream (same key and base URL)."""
    with get_store(store_dir).read(SCHEMA) as conn:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM ledger_entries WHERE stream_key = ? AND base_url = ? "
            "AND key_fingerprint = ? AND id != ?",
            (entry.stream_key, entry.base_url, entry.key_fingerprint, entry.entry_id),
        ).fetchall()
    host = _me()[1]
    for row in rows:
        other = _entry(row, host)
        # Another machine sharing this directory may be running it too: that counts.
        if other.status is not OwnerStatus.GONE:
            return other
    return None


def _age(entry: Entry, now: float) -> float:
    return now - max(entry.started_at, entry.updated_at)


def end_orphans(
    settings: Settings,
    *,
    timeout: float = SWEEP_TIMEOUT,
    limit: int | None = None,
    client: Client | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[Cleanup]:
    """End this account's orphans now; return what was done with each orphan found.

    ``timeout`` bounds the whole call (retries included); ``limit`` the number of ends sent.
    A ``client`` passed in is used as is (else one is made from ``settings``). Never raises.
    """
    done: list[Cleanup] = []
    try:
        if not settings.ledger:
            return done
        store_dir = _directory(settings)
        found = orphans(settings)
        if not found:
            return done
        deadline = clock() + timeout
        fingerprint = key_fingerprint(settings.effective_api_key)
        now = time.time()
        token = f"{_me()[1]}:{os.getpid()}:{threading.get_ident()}"
        ended_streams: set[tuple[str, str, str]] = set()
        stale: list[Entry] = []
        mine: list[Entry] = []
        for entry in found:
            if entry.base_url == settings.base_url and entry.key_fingerprint == fingerprint:
                mine.append(entry)
            elif is_local_url(entry.base_url) and entry.base_url != settings.base_url:
                # An emulator keeps its activities in memory: gone with it, nothing to end.
                stale.append(entry)
                done.append(Cleanup(entry=entry, action="dropped", detail="a local emulator's"))
            elif _age(entry, now) > FORGET_AFTER:
                stale.append(entry)
                done.append(Cleanup(entry=entry, action="dropped", detail="older than 30 days"))
            else:
                done.append(
                    Cleanup(
                        entry=entry,
                        action="skipped",
                        detail="started with another API key or base URL",
                    )
                )
        _drop(store_dir, stale)
        if not mine or (settings.effective_api_key is None):
            for entry in mine:
                done.append(Cleanup(entry=entry, action="skipped", detail="no API key set"))
            return done
        own_client = client is None
        if client is None:
            from activitysmith_track._client import Client

            client = Client(
                settings.effective_api_key,
                base_url=settings.base_url,
                timeout=(settings.connect_timeout, settings.read_timeout),
                retry=settings.retry,
                clock=clock,
            )
        try:
            sent = 0
            for entry in mine:
                if limit is not None and sent >= limit:
                    done.append(Cleanup(entry=entry, action="skipped", detail="left for later"))
                    continue
                stream = (
                    None
                    if entry.stream_key is None
                    else (entry.stream_key, entry.base_url, entry.key_fingerprint)
                )
                if stream is not None and stream in ended_streams:
                    _drop(store_dir, [entry])
                    done.append(Cleanup(entry=entry, action="dropped", detail="same stream"))
                    continue
                result = _end_one(store_dir, entry, client, token, deadline)
                done.append(result)
                if result.action == "ended":
                    sent += 1
                    if stream is not None:
                        ended_streams.add(stream)
                if result.action == "failed" and clock() >= deadline:
                    for rest in mine[mine.index(entry) + 1 :]:
                        done.append(Cleanup(entry=rest, action="skipped", detail="out of time"))
                    break
        finally:
            if own_client:
                client.close()
    except Exception as exc:
        _trouble("end orphans", exc)
    return done


def _end_one(store_dir: Path, entry: Entry, client: Client, token: str, deadline: float) -> Cleanup:
    from activitysmith_track._errors import (
        ActivitySmithTrackError,
        AuthenticationError,
        BadRequestError,
        ForbiddenError,
        NotFoundError,
    )

    if entry.stream_key is not None:
        holder = _stream_holder(store_dir, entry)
        if holder is not None:
            _drop(store_dir, [entry])
            return Cleanup(
                entry=entry,
                action="dropped",
                detail=f"stream still held by pid {holder.pid} (on {holder.host})",
            )
        taken_up = _taken_up.get((entry.base_url, entry.key_fingerprint), {}).get(entry.stream_key)
        if taken_up is not None and entry.updated_at <= taken_up:
            _drop(store_dir, [entry])
            return Cleanup(entry=entry, action="dropped", detail="this process went on from it")
    if not _claim(store_dir, entry, token):
        return Cleanup(entry=entry, action="skipped", detail="another cleanup is ending it")
    payload = _payload_for(entry)
    try:
        try:
            result = _send_end(client, entry, payload, deadline)
        except BadRequestError:
            if payload is None:
                raise
            # The stored state may not be what the server now accepts: end it bare.
            result = _send_end(client, entry, None, deadline)
    except (NotFoundError, ForbiddenError) as exc:
        _drop(store_dir, [entry])
        return Cleanup(entry=entry, action="dropped", detail=f"the server says: {exc}")
    except BadRequestError as exc:
        _drop(store_dir, [entry])
        return Cleanup(entry=entry, action="dropped", detail=f"refused: {exc}")
    except AuthenticationError as exc:
        _release(store_dir, entry, token)
        return Cleanup(entry=entry, action="failed", detail=f"the API key was refused: {exc}")
    except ActivitySmithTrackError as exc:
        _release(store_dir, entry, token)
        return Cleanup(entry=entry, action="failed", detail=str(exc))
    _drop(store_dir, [entry])
    detail = "it had already ended" if result.ignored else "ended as stopped"
    return Cleanup(entry=entry, action="ended", detail=detail)


def _send_end(client: Client, entry: Entry, payload: Payload | None, deadline: float) -> Any:
    if entry.stream_key is not None:
        return client.delete_stream(entry.stream_key, payload, deadline=deadline)
    assert entry.activity_id is not None
    if payload is None:
        from activitysmith_track._model import ContentState

        bare = ContentState(title=entry.title)
        return client.end(entry.activity_id, bare, deadline=deadline)
    return client.end(entry.activity_id, payload, deadline=deadline)


# -- the background sweep ------------------------------------------------------------------------

_swept: set[tuple[str, str, str, int]] = set()
_swept_lock = threading.Lock()


def sweep_in_background(settings: Settings) -> threading.Thread | None:
    """End this account's orphans on a daemon thread, once per process and account.

    Returns the thread (``None`` when there is nothing to do: the ledger is off, or this
    process already swept for this key and base URL). Call it after this process's own first
    entry is recorded, so that a stream this process holds is never taken for an orphan.
    """
    try:
        if not _enabled(settings) or settings.effective_api_key is None:
            return None
        key = (
            str(_directory(settings)),
            settings.base_url,
            key_fingerprint(settings.effective_api_key),
            os.getpid(),
        )
        with _swept_lock:
            if key in _swept:
                return None
            _swept.add(key)

        def sweep() -> None:
            for cleanup in end_orphans(settings, limit=SWEEP_LIMIT):
                if cleanup.action == "ended":
                    logger.info(
                        "activitysmith-track: ended %r (%s), left open by pid %d",
                        cleanup.entry.title,
                        cleanup.entry.target,
                        cleanup.entry.pid,
                    )
                elif cleanup.action == "failed":
                    _warn_once(
                        "sweep-failed",
                        "activitysmith-track: could not end %r, left open by pid %d: %s "
                        "(the next run, or `activitysmith-track cleanup`, tries again)",
                        cleanup.entry.title,
                        cleanup.entry.pid,
                        cleanup.detail,
                    )

        from activitysmith_track._threads import start_daemon

        return start_daemon(sweep, "activitysmith-track-cleanup")
    except Exception as exc:
        _trouble("start a cleanup", exc)
        return None


# When this process first took up each stream, by account (base URL, key fingerprint) and
# stream key: an orphan last updated before then is one it went on from. A forked child keeps
# its parent's: it goes on from the same point.
_taken_up: dict[tuple[str, str], dict[str, float]] = {}
# The sweep that needs them runs once per process and account, just after the account's first
# entry: its first streams are the ones that count, and a worker running a stream per job for
# months must not grow without bound.
_TAKEN_UP_KEPT = 256


def _reset_after_fork() -> None:
    global _identity_lock, _warned_lock, _swept_lock
    _identity_lock = threading.Lock()
    _warned_lock = threading.Lock()
    _swept_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)
