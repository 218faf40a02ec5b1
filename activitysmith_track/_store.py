"""The local store: one small SQLite database in the user's state directory.

Several modules keep data here, each in its own tables (the ledger of open activities today,
run history for ETAs later). A module describes its tables with a :class:`Schema` (a name, a
version and the statements that create them) and works inside :meth:`Store.write` or
:meth:`Store.read`, which hand it a connection for one short transaction.

What the store promises:

- **Private**: the directory is ``0700`` and the database ``0600`` (SQLite gives its ``-wal``
  and ``-shm`` files the database's mode); a directory or file owned by another user is not
  used at all. Nothing secret is stored here (the ledger keeps a fingerprint of the API key,
  never the key).
- **Safe for concurrent processes**: WAL journaling, a busy timeout, and write transactions
  that take the write lock at once (``BEGIN IMMEDIATE``) and hold it for a few statements.
- **Never in the way**: a database that cannot be opened, is corrupted or was written by a
  newer version is ignored with one warning naming the file and the fix; callers get
  :class:`StoreUnavailable` and carry on without it.

:mod:`sqlite3` is imported on first use, never by ``import activitysmith_track``. SQLite's
locking needs a local file system: on a network home directory, point
``ACTIVITYSMITH_TRACK_STATE_DIR`` at a local directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import attrs

if TYPE_CHECKING:
    import sqlite3

__all__ = [
    "DATABASE_NAME",
    "Schema",
    "Store",
    "StoreUnavailable",
    "get_store",
    "state_dir",
]

logger = logging.getLogger("activitysmith_track")

APP_DIR = "activitysmith-track"
DATABASE_NAME = "state.sqlite3"
STATE_DIR_ENV = "ACTIVITYSMITH_TRACK_STATE_DIR"
# How long a statement waits for another process's write lock before giving up. Writers hold
# it for a few statements, so this is generous; the caller (a worker thread, a CLI command)
# can afford it, the user's code never waits on it.
BUSY_TIMEOUT = 5.0


class StoreUnavailable(Exception):
    """The store cannot be used in this process (already warned about); carry on without it."""


@attrs.frozen(kw_only=True)
class Schema:
    """The tables one module owns: ``name`` (unique in the store), ``version``, and
    ``create``: the statements that create them from nothing (``IF NOT EXISTS`` each).

    When the stored version is older, the tables are dropped (``tables`` names them) and
    created afresh: what the store keeps can be rebuilt (a ledger entry, a run's duration),
    so a migration is not worth its code until a table holds more. A newer stored version
    (written by a newer activitysmith-track) is left alone and this module's tables are not
    used.
    """

    name: str
    version: int
    tables: tuple[str, ...]
    create: tuple[str, ...]


def state_dir(configured: str | None = None, *, env: Mapping[str, str] | None = None) -> Path:
    """Where activitysmith-track keeps its state.

    ``configured`` (the ``state_dir`` setting, which ``ACTIVITYSMITH_TRACK_STATE_DIR`` also
    feeds) wins; then ``$XDG_STATE_HOME/activitysmith-track``; then the platform's place:
    ``~/.local/state/activitysmith-track`` on Linux and other POSIX systems,
    ``~/Library/Application Support/activitysmith-track`` on macOS and
    ``%LOCALAPPDATA%\\activitysmith-track`` on Windows.
    """
    env = os.environ if env is None else env
    chosen = configured or env.get(STATE_DIR_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    xdg = env.get("XDG_STATE_HOME", "").strip()
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / APP_DIR
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_DIR
    if sys.platform == "win32":
        local = env.get("LOCALAPPDATA", "").strip()
        return (Path(local) if local else Path.home() / "AppData" / "Local") / APP_DIR
    return Path.home() / ".local" / "state" / APP_DIR


class Store:
    """One database file, one connection per process, shared by threads under a lock.

    Open it with :func:`get_store`. A problem found on opening or later (corruption, a
    permission changed under us) makes the store unavailable for the rest of the process,
    after one warning.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / DATABASE_NAME
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._broken: str | None = None
        self._untold = False  # _broken was set where nothing may log (a fork): say it on use
        self._ready: dict[str, bool] = {}  # schema name -> usable

    # -- opening ---------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """The open connection (called with the lock held)."""
        if self._pid != os.getpid():
            # A forked child must not use the parent's connection (SQLite's rule); it is
            # abandoned rather than closed, which could disturb the parent's locks.
            self._conn = None
            self._ready = {}
            self._pid = os.getpid()
        if self._broken is not None:
            if self._untold:
                self._untold = False
                logger.warning("activitysmith-track: ignoring its local state: %s", self._broken)
            raise StoreUnavailable(self._broken)
        if self._conn is None:
            import sqlite3

            try:
                self._conn = self._open()
            except StoreUnavailable:
                raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise  # another process is switching the file to WAL: try again later
                self._give_up(exc)
            except Exception as exc:
                self._give_up(exc)
        return self._conn

    def _open(self) -> sqlite3.Connection:
        import sqlite3

        _private_directory(self.directory)
        _private_file(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT,
            isolation_level=None,  # transactions are explicit: BEGIN IMMEDIATE ... COMMIT
            check_same_thread=False,  # one connection, used under self._lock
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                # Some file systems cannot do WAL; the rollback journal still serializes
                # writers correctly, only readers wait more.
                logger.debug("activitysmith-track: %s is not in WAL mode (%r)", self.path, mode)
            # NORMAL is durable enough in WAL mode: a power cut may lose the last write,
            # never corrupt the file.
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_versions "
                "(name TEXT PRIMARY KEY, version INTEGER NOT NULL)"
            )
        except BaseException:
            conn.close()
            raise
        return conn

    def _give_up(self, exc: BaseException) -> NoReturn:
        import sqlite3

        if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
            fix = "it holds nothing that cannot be rebuilt: delete it to start afresh"
            what = f"{self.path} is not a usable database ({exc})"
        elif isinstance(exc, PermissionError | sqlite3.OperationalError):
            fix = (
                f"check that it is yours and writable, or set {STATE_DIR_ENV} to another "
                "directory (ACTIVITYSMITH_TRACK_LEDGER=0 turns the ledger off)"
            )
            what = f"cannot use {self.path} ({exc})"
        else:
            fix = f"set {STATE_DIR_ENV} to another directory"
            what = f"cannot use {self.path} ({type(exc).__name__}: {exc})"
        self._broken = f"{what}; {fix}"
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        logger.warning("activitysmith-track: ignoring its local state: %s", self._broken)
        raise StoreUnavailable(self._broken) from exc

    def _ensure(self, conn: sqlite3.Connection, schema: Schema) -> None:
        """Create or replace ``schema``'s tables if needed (called with the lock held)."""
        if self._ready.get(schema.name):
            return
        if schema.name in self._ready:
            raise StoreUnavailable(f"{schema.name} tables are from a newer version")
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT version FROM schema_versions WHERE name = ?", (schema.name,)
            ).fetchone()
            stored = None if row is None else int(row[0])
            if stored is not None and stored > schema.version:
                conn.execute("ROLLBACK")
                self._ready[schema.name] = False
                logger.warning(
                    "activitysmith-track: %s holds %s data of a newer version (%d > %d); "
                    "not using it (upgrade activitysmith-track, or set %s elsewhere)",
                    self.path,
                    schema.name,
                    stored,
                    schema.version,
                    STATE_DIR_ENV,
                )
                raise StoreUnavailable(f"{schema.name} tables are from a newer version")
            if stored is not None and stored < schema.version:
                for table in schema.tables:
                    conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            for statement in schema.create:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (name, version) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET version = excluded.version",
                (schema.name, schema.version),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._ready[schema.name] = True

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, schema: Schema) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction on ``schema``'s tables.

        Committed when the block ends, rolled back if it raises. Raises
        :class:`StoreUnavailable` (after one warning) when the store cannot be used.
        """
        with self._transaction(schema, "BEGIN IMMEDIATE") as conn:
            yield conn

    @contextlib.contextmanager
    def read(self, schema: Schema) -> Iterator[sqlite3.Connection]:
        """A connection inside one read transaction (a consistent snapshot)."""
        with self._transaction(schema, "BEGIN") as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self, schema: Schema, begin: str) -> Iterator[sqlite3.Connection]:
        import sqlite3

        with self._lock:
            conn = self._connection()
            try:
                self._ensure(conn, schema)
                conn.execute(begin)
            except StoreUnavailable:
                raise
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise  # another process held the lock too long: this call fails alone
                self._give_up(exc)
            except Exception as exc:
                self._give_up(exc)
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if _is_busy(exc):
                    raise
                self._give_up(exc)
            except sqlite3.DatabaseError as exc:
                self._give_up(exc)

    def close(self) -> None:
        """Close the connection (tests; a process simply exits)."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None
            self._ready = {}


def _is_busy(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _private_directory(directory: Path) -> None:
    """Create ``directory`` as ``0700``; refuse one that another user owns or could change."""
    if not directory.exists():
        # Parents are created with the usual mode (they may be ~/.local/state, shared by
        # other tools); the leaf is ours and private.
        directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{directory} is not a directory")
    if sys.platform == "win32":
        return  # POSIX modes mean little there; the profile directory is already private
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{directory} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        # Our own directory, readable or writable by others: make it private, as it would
        # have been had we created it (mkdir's mode is subject to the umask, chmod is not).
        os.chmod(directory, 0o700)


def _private_file(path: Path) -> None:
    """Create the database file as ``0600`` before SQLite opens it (SQLite would use the
    umask), and refuse or tighten an existing one as :func:`_private_directory` does."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        raise PermissionError(f"{path} is not a regular file")
    if sys.platform == "win32":
        return
    if info.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user (uid {info.st_uid})")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o600)
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(os.lstat(side).st_mode) & 0o077:
                os.chmod(side, 0o600)


_stores: dict[Path, Store] = {}
_stores_lock = threading.Lock()


def get_store(directory: Path | str) -> Store:
    """The process's store for ``directory`` (opened lazily, on its first transaction)."""
    key = Path(directory).expanduser().absolute()
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = Store(key)
        return store


def forget_stores(directories: Sequence[Path] | None = None) -> None:
    """Close and forget open stores (for tests, so one test's broken store stays its own)."""
    with _stores_lock:
        keys = list(_stores) if directories is None else [Path(d).absolute() for d in directories]
        for key in keys:
            store = _stores.pop(key, None)
            if store is not None:
                store.close()


# How long a fork waits for a transaction of another thread to finish (they take
# milliseconds, unless another process holds the file's write lock).
FORK_WAIT = 1.0
_held_at_fork: list[Store] = []


def _before_fork() -> None:
    # SQLite's own mutexes are not Python's: one held by another thread at fork time stays
    # held in the child forever, and the child's first connect() would hang on it. Every use
    # of SQLite here is under a store's lock, so holding each lock across the fork keeps
    # every other thread out of SQLite meanwhile.
    for store in list(_stores.values()):
        if store._lock.acquire(timeout=FORK_WAIT):
            _held_at_fork.append(store)


def _after_fork_in_parent() -> None:
    while _held_at_fork:
        _held_at_fork.pop()._lock.release()


def _after_fork_in_child() -> None:
    # A lock held by another thread at fork time would stay held in the child forever.
    global _stores_lock
    _stores_lock = threading.Lock()
    held = {id(store) for store in _held_at_fork}
    _held_at_fork.clear()
    for store in _stores.values():
        store._lock = threading.Lock()
        if id(store) not in held and store._broken is None:
            # Another thread was inside SQLite when the fork came and did not finish in
            # time: SQLite may be left locked here, so this child does without the store.
            store._broken = (
                f"this process was forked while another thread was using {store.path}; "
                "it keeps no ledger or history"
            )
            store._untold = True


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)
