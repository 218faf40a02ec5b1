"""The local store: where it lives, who may read it, and what happens to a damaged one."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from activitysmith_track import _ledger
from activitysmith_track._config import resolve_settings
from activitysmith_track._store import (
    DATABASE_NAME,
    FORK_WAIT,
    forget_stores,
    get_store,
    state_dir,
)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(autouse=True)
def _fresh_stores() -> Iterator[None]:
    yield
    forget_stores()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "activitysmith_track"]


def record(directory: Path) -> _ledger.Ticket | None:
    settings = resolve_settings(
        {"base_url": "http://127.0.0.1:9/api", "state_dir": str(directory)}, env={}
    )
    return _ledger.record_start(settings, title="Job", stream_key="job")


# -- where it lives ------------------------------------------------------------------------------


def test_state_dir_precedence(tmp_path: Path) -> None:
    home = Path.home()
    assert state_dir(str(tmp_path / "set"), env={}) == tmp_path / "set"
    env = {"ACTIVITYSMITH_TRACK_STATE_DIR": str(tmp_path / "env"), "XDG_STATE_HOME": "/xdg"}
    assert state_dir(None, env=env) == tmp_path / "env"
    assert state_dir(None, env={"XDG_STATE_HOME": "/xdg"}) == Path("/xdg/activitysmith-track")
    # The XDG spec: a relative value is invalid and ignored.
    relative = state_dir(None, env={"XDG_STATE_HOME": "rel"})
    expected = (
        home / "Library" / "Application Support" / "activitysmith-track"
        if sys.platform == "darwin"
        else home / ".local" / "state" / "activitysmith-track"
    )
    assert relative == expected
    assert state_dir("~/jobs-state", env={}) == home / "jobs-state"


def test_the_setting_and_its_environment_variable_choose_the_directory(tmp_path: Path) -> None:
    env = {"ACTIVITYSMITH_TRACK_STATE_DIR": str(tmp_path), "ACTIVITYSMITH_TRACK_LEDGER": "0"}
    settings = resolve_settings(env=env)
    assert settings.state_dir == str(tmp_path)
    assert settings.ledger is False
    assert resolve_settings(env={}).ledger is True


# -- privacy ---------------------------------------------------------------------------------------


def test_directory_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    # A fresh process with umask 0: without care everything would be world-writable.
    directory = tmp_path / "parent" / "state"
    code = textwrap.dedent(f"""
        import os, stat, sys
        os.umask(0)
        from activitysmith_track._config import resolve_settings
        from activitysmith_track._store import get_store
        from activitysmith_track import _ledger
        settings = resolve_settings({{"state_dir": {str(directory)!r},
                                      "base_url": "http://127.0.0.1:9/api"}}, env={{}})
        assert _ledger.record_start(settings, title="T", stream_key="k") is not None
        # While the connection is open SQLite keeps its -wal and -shm files next to it.
        for name in os.listdir({str(directory)!r}):
            mode = stat.S_IMODE(os.stat(os.path.join({str(directory)!r}, name)).st_mode)
            print(name, oct(mode))
    """)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    seen = dict(line.split() for line in done.stdout.splitlines())
    assert seen[DATABASE_NAME] == "0o600"
    assert seen.get(f"{DATABASE_NAME}-wal") == "0o600"
    assert seen.get(f"{DATABASE_NAME}-shm") == "0o600"
    assert mode(directory) == 0o700
    assert mode(directory / DATABASE_NAME) == 0o600


def test_an_existing_directory_and_file_of_ours_are_made_private(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    (directory / DATABASE_NAME).touch()
    os.chmod(directory / DATABASE_NAME, 0o644)

    assert record(directory) is not None
    assert mode(directory) == 0o700
    assert mode(directory / DATABASE_NAME) == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_directory_of_another_user_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, 65534, 65534)

    assert record(directory) is None
    assert not (directory / DATABASE_NAME).exists()
    (warning,) = warnings_of(caplog)
    assert "belongs to another user" in warning


def test_a_symlink_in_place_of_the_database_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    target = tmp_path / "elsewhere.db"
    target.write_bytes(b"")
    (directory / DATABASE_NAME).symlink_to(target)

    assert record(directory) is None
    (warning,) = warnings_of(caplog)
    assert "not a regular file" in warning
    assert target.read_bytes() == b""


# -- damage ----------------------------------------------------------------------------------------


def test_a_corrupted_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    garbage = b"this is not a database\x00" * 400
    (directory / DATABASE_NAME).write_bytes(garbage)
    settings = resolve_settings(
        {"base_url": "http://127.0.0.1:9/api", "state_dir": str(directory)}, env={}
    )

    assert _ledger.record_start(settings, title="Job", stream_key="job") is None
    assert _ledger.open_entries(settings) == []
    assert _ledger.end_orphans(settings) == []
    assert _ledger.record_start(settings, title="Job", activity_id="a1") is None

    (warning,) = warnings_of(caplog)
    assert str(directory / DATABASE_NAME) in warning
    assert "delete it" in warning
    assert (directory / DATABASE_NAME).read_bytes() == garbage  # left for the user to look at


def test_a_directory_in_place_of_the_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    (directory / DATABASE_NAME).mkdir(parents=True)

    assert record(directory) is None
    assert record(directory) is None
    assert len(warnings_of(caplog)) == 1


def test_a_state_dir_that_is_a_file_is_ignored_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")

    assert record(blocker) is None
    assert record(blocker) is None
    (warning,) = warnings_of(caplog)
    assert "ACTIVITYSMITH_TRACK_STATE_DIR" in warning


def test_tables_of_a_newer_version_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "state"
    assert record(directory) is not None
    forget_stores()
    with sqlite3.connect(directory / DATABASE_NAME) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE name = 'ledger'")
    conn.close()

    assert record(directory) is None
    (warning,) = warnings_of(caplog)
    assert "newer version" in warning
    with sqlite3.connect(directory / DATABASE_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger_entries").fetchone() == (1,)
    conn.close()


def test_tables_of_an_older_version_are_rebuilt(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    with sqlite3.connect(directory / DATABASE_NAME) as conn:
        conn.execute("CREATE TABLE schema_versions (name TEXT PRIMARY KEY, version INTEGER)")
        conn.execute("INSERT INTO schema_versions VALUES ('ledger', 0)")
        conn.execute("CREATE TABLE ledger_entries (id INTEGER PRIMARY KEY, old TEXT)")
    conn.close()

    assert record(directory) is not None
    with sqlite3.connect(directory / DATABASE_NAME) as conn:
        assert conn.execute("SELECT version FROM schema_versions").fetchone() == (1,)
        assert conn.execute("SELECT title FROM ledger_entries").fetchall() == [("Job",)]
    conn.close()


def test_importing_the_package_imports_neither_sqlite3_nor_difflib() -> None:
    code = (
        "import sys, activitysmith_track\n"
        "print(sorted(m for m in ('sqlite3', 'difflib', 'activitysmith_track._store',"
        " 'activitysmith_track._ledger') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def _fork_and_record(directory: Path, held: float = 0.0) -> tuple[int, float]:
    """Fork (while another thread is inside a write transaction for ``held`` seconds, if
    any); the child records an entry. Returns the child's exit status and how long fork()
    took."""
    assert record(directory) is not None  # the store is open
    thread = None
    if held:
        store = get_store(directory)
        inside = threading.Event()

        def writer() -> None:
            with store.write(_ledger.SCHEMA):
                inside.set()
                time.sleep(held)

        thread = threading.Thread(target=writer)
        thread.start()
        assert inside.wait(10)
    started = time.monotonic()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a process with threads; the child here only
        # touches the store, which is made safe for it.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through its exit status
        code = 1
        try:
            code = 0 if record(directory) is not None else 3
        finally:
            os._exit(code)
    took = time.monotonic() - started
    if thread is not None:
        thread.join()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), took


def open_entries(directory: Path) -> int:
    settings = resolve_settings(
        {"base_url": "http://127.0.0.1:9/api", "state_dir": str(directory)}, env={}
    )
    return len(_ledger.open_entries(settings))


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    code, _took = _fork_and_record(directory)
    assert code == 0
    assert open_entries(directory) == 2


def test_a_fork_waits_for_another_threads_transaction_to_finish(tmp_path: Path) -> None:
    # Another thread inside SQLite at the fork could leave SQLite's own mutexes held in the
    # child forever: the fork waits for the transaction, and the child uses the store.
    directory = tmp_path / "state"
    code, took = _fork_and_record(directory, held=0.3)
    assert code == 0
    assert 0.2 < took < FORK_WAIT
    assert open_entries(directory) == 2


def test_a_child_forked_during_a_long_transaction_does_without_the_store(
    tmp_path: Path,
) -> None:
    # The fork waits FORK_WAIT at most; the child then keeps no ledger (it says so, once)
    # rather than risk a lock that no thread of its own will ever release.
    directory = tmp_path / "state"
    code, took = _fork_and_record(directory, held=FORK_WAIT + 1.5)
    assert code == 3  # record() found the store unavailable: no entry, no hang
    assert FORK_WAIT - 0.1 < took < FORK_WAIT + 1.0
    assert open_entries(directory) == 1
