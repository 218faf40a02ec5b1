"""A job that is stopped or killed still tells the phone the truth: real processes, real signals.

Each test runs a small script in its own interpreter against the test's emulator, sends it a
real signal once it says it is inside its activity, and checks what the emulator holds and how
the process ended.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from activitysmith_track import live_activity
from activitysmith_track.emulator import ActivityRecord, Emulator

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def environment(emu: Emulator, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        "ACTIVITYSMITH_BASE_URL": emu.base_url,
        "ACTIVITYSMITH_TRACK_DEBOUNCE": "0",
        "ACTIVITYSMITH_TRACK_REQUESTS_PER_MINUTE": "100000",
        "ACTIVITYSMITH_TRACK_STATE_DIR": str(state_dir),
        "PATH": os.environ.get("PATH", ""),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(extra)
    return env


class Job:
    """A script in a child interpreter that prints READY once it is where it should be hit."""

    def __init__(self, code: str, env: dict[str, str], *, args: list[str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *(args or ["-c", textwrap.dedent(code)])],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.strip() == "READY":
                return
            if not line and self.proc.poll() is not None:
                break
        _out, err = self.proc.communicate(timeout=5)
        pytest.fail(f"the job never got ready (exit {self.proc.returncode}): {err}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 20.0) -> tuple[int, str, str]:
        # Not communicate(): it reads the pipes beneath the text buffer that readline() in
        # wait_ready() may have filled already. The outputs here are a few lines.
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        code = self.proc.wait(timeout)
        with self.proc.stdout as out, self.proc.stderr as err:
            return code, out.read(), err.read()


@pytest.fixture
def jobs() -> Iterator[list[Job]]:
    started: list[Job] = []
    yield started
    for job in started:
        if job.proc.poll() is None:
            job.proc.kill()
            job.proc.wait()
        for pipe in (job.proc.stdout, job.proc.stderr):
            if pipe is not None:
                pipe.close()


def signalled(jobs: list[Job], code: str, env: dict[str, str], signum: int) -> tuple[int, str, str]:
    """Run ``code`` as a job, send it ``signum`` once it is ready, and let it finish."""
    job = Job(code, env)
    jobs.append(job)
    job.wait_ready()
    job.signal(signum)
    return job.finish()


def only(emu: Emulator) -> ActivityRecord:
    records = list(emu.activities.values())
    assert len(records) == 1, [r.state for r in records]
    return records[0]


def assert_ended(emu: Emulator, subtitle: str) -> None:
    """The emulator holds one activity, ended, showing ``subtitle``."""
    record = only(emu)
    assert record.status == "ended"
    assert record.state["subtitle"] == subtitle


def wait_until(condition: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


BLOCK = """
    import time
    from activitysmith_track import live_activity
    with live_activity("Nightly backup", steps=["create snapshot", "upload archive"]) as la:
        la.step()
        la.step()
        la.flush()
        print("READY", flush=True)
        time.sleep(60)
"""


# -- SIGTERM and SIGHUP inside an activity --------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopping_signal_ends_the_activity_and_the_process_still_dies_of_it(
    emulator: Emulator, state_dir: Path, jobs: list[Job], signum: int
) -> None:
    code, _out, err = signalled(jobs, BLOCK, environment(emulator, state_dir), signum)
    assert code == -signum, err  # died of the signal, as it would have without tracking
    record = only(emulator)
    assert record.status == "ended"
    name = signal.Signals(signum).name
    assert record.state["subtitle"] == f"Stopped by {name} at upload archive"
    assert record.state["color"] == "orange"


def test_ctrl_c_still_raises_keyboard_interrupt_and_ends_as_cancelled(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    code, _out, err = signalled(jobs, BLOCK, environment(emulator, state_dir), signal.SIGINT)
    assert code != 0
    assert "KeyboardInterrupt" in err
    record = only(emulator)
    assert record.status == "ended"
    assert record.state["subtitle"] == "Cancelled at upload archive"


def test_signals_can_be_left_alone(emulator: Emulator, state_dir: Path, jobs: list[Job]) -> None:
    job = Job(BLOCK, environment(emulator, state_dir, ACTIVITYSMITH_TRACK_SIGNALS="0"))
    jobs.append(job)
    job.wait_ready()
    job.signal(signal.SIGTERM)
    code, _out, _err = job.finish()
    assert code == -signal.SIGTERM
    assert only(emulator).status == "live"  # nothing ended it: exactly what was asked


def test_an_application_handler_installed_before_is_chained(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    code = """
        import signal, sys, time
        from activitysmith_track import live_activity
        def stop(signum, frame):
            print("app handler", flush=True)
            sys.exit(3)
        signal.signal(signal.SIGTERM, stop)
        with live_activity("Sync", steps=["fetch", "store"]) as la:
            la.step()
            la.flush()
            print("READY", flush=True)
            time.sleep(60)
    """
    exit_code, out, err = signalled(jobs, code, environment(emulator, state_dir), signal.SIGTERM)
    assert exit_code == 3, err  # the application decided
    assert "app handler" in out
    assert_ended(emulator, "Stopped by SIGTERM at fetch")


def test_an_application_handler_installed_later_wins_and_the_job_finishes(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    code = """
        import signal, time
        from activitysmith_track import live_activity
        stopping = []
        with live_activity("Worker", steps=2) as la:
            signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
            la.step("draining")
            la.flush()
            print("READY", flush=True)
            while not stopping:
                time.sleep(0.01)
            la.step("stopped gracefully")
        print("done", flush=True)
    """
    exit_code, out, err = signalled(jobs, code, environment(emulator, state_dir), signal.SIGTERM)
    assert exit_code == 0, err
    assert "done" in out
    record = only(emulator)
    assert record.status == "ended"
    assert record.state["subtitle"].startswith("Done in")  # the truth: it finished


def test_activities_of_other_threads_end_too(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    code = """
        import threading, time
        from activitysmith_track import live_activity
        ready = threading.Event()
        def worker():
            with live_activity("Worker thread", total=100) as la:
                la.advance(40)
                la.flush()
                ready.set()
                time.sleep(60)
        threading.Thread(target=worker, daemon=True).start()
        with live_activity("Main", steps=2) as main:
            main.step("waiting")
            main.flush()
            ready.wait(10)
            print("READY", flush=True)
            time.sleep(60)
    """
    exit_code, _out, err = signalled(jobs, code, environment(emulator, state_dir), signal.SIGTERM)
    assert exit_code == -signal.SIGTERM, err
    records = {r.state["title"]: r for r in emulator.activities.values()}
    assert records["Main"].status == "ended"
    assert records["Main"].state["subtitle"] == "Stopped by SIGTERM at waiting"
    assert records["Worker thread"].status == "ended"
    assert records["Worker thread"].state["subtitle"] == "Stopped by SIGTERM at 40%"


def test_asyncio_jobs_end_on_sigterm(emulator: Emulator, state_dir: Path, jobs: list[Job]) -> None:
    code = """
        import asyncio
        from activitysmith_track import live_activity
        async def main():
            async with live_activity("Async job", steps=["download", "parse"]) as la:
                la.step()
                la.flush()
                print("READY", flush=True)
                await asyncio.sleep(60)
        asyncio.run(main())
    """
    exit_code, _out, err = signalled(jobs, code, environment(emulator, state_dir), signal.SIGTERM)
    assert exit_code == -signal.SIGTERM, err
    assert only(emulator).state["subtitle"] == "Stopped by SIGTERM at download"


# -- a signal the main thread did not see at once ------------------------------------------------
#
# Python runs a handler only when the main thread next runs Python code. A signal that landed
# on another thread, or just before the main thread began to wait, leaves a sleeping main
# thread asleep; one that arrives while it computes in C waits for the computation. Without
# the watcher these jobs run on for a minute after SIGTERM (the race itself struck about one
# SIGTERM in 65 to the asyncio job above, under load).

# Each job ends up in a long wait after calling this: a thread of the job's own, which blocks
# no signal, takes a SIGTERM meant for the process.
SIGTERM_SOON = """
import signal, threading, time
def sigterm_soon():
    def take():
        time.sleep(0.3)
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
    threading.Thread(target=take).start()
"""

LANDS_ELSEWHERE = {
    "sleep": """
        from activitysmith_track import live_activity
        with live_activity("Nightly backup", steps=["create snapshot", "upload archive"]) as la:
            la.step()
            la.flush()
            sigterm_soon()
            print("READY", flush=True)
            time.sleep(60)
    """,
    # A job with more files open than select() can watch (FD_SETSIZE, 1024).
    "many files": """
        import os, resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1200 and (hard == resource.RLIM_INFINITY or hard >= 1200):
            resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
        files = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
        from activitysmith_track import live_activity
        with live_activity("Nightly backup", steps=["create snapshot"]) as la:
            la.step()
            la.flush()
            sigterm_soon()
            print("READY", flush=True)
            time.sleep(60)
    """,
    "asyncio": """
        import asyncio
        from activitysmith_track import live_activity
        async def main():
            async with live_activity("Nightly backup", steps=["create snapshot"]) as la:
                la.step()
                la.flush()
                sigterm_soon()
                print("READY", flush=True)
                await asyncio.sleep(60)
        asyncio.run(main())
    """,
}


@pytest.mark.parametrize("kind", sorted(LANDS_ELSEWHERE))
def test_a_signal_that_lands_on_another_thread_still_stops_the_job(
    emulator: Emulator, state_dir: Path, jobs: list[Job], kind: str
) -> None:
    script = SIGTERM_SOON + textwrap.dedent(LANDS_ELSEWHERE[kind])
    job = Job(script, environment(emulator, state_dir))
    jobs.append(job)
    job.wait_ready()
    started = time.monotonic()
    exit_code, _out, err = job.finish()
    assert exit_code == -signal.SIGTERM, err
    assert time.monotonic() - started < 15  # not the minute the job would have slept
    assert_ended(emulator, "Stopped by SIGTERM at create snapshot")


def test_a_job_busy_in_c_code_still_ends_its_activity_and_dies_of_sigterm(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    # pbkdf2 computes without the GIL and never looks at signals until it is done (minutes).
    code = """
        import hashlib
        from activitysmith_track import live_activity
        with live_activity("Key derivation", steps=["derive"]) as la:
            la.step()
            la.flush()
            print("READY", flush=True)
            hashlib.pbkdf2_hmac("sha256", b"secret", b"salt", 10**9)
    """
    job = Job(code, environment(emulator, state_dir))
    jobs.append(job)
    job.wait_ready()
    started = time.monotonic()
    job.signal(signal.SIGTERM)
    exit_code, _out, err = job.finish()
    assert exit_code == -signal.SIGTERM, err  # died of the signal, as it would have untracked
    assert time.monotonic() - started < 15
    assert_ended(emulator, "Stopped by SIGTERM at derive")


def test_a_tracked_function_ends_on_sigterm(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    code = """
        import time
        from activitysmith_track import current_activity, tracked_steps
        @tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])
        def etl():
            current_activity().step()
            current_activity().flush()
            print("READY", flush=True)
            time.sleep(60)
        etl()
    """
    exit_code, _out, err = signalled(jobs, code, environment(emulator, state_dir), signal.SIGTERM)
    assert exit_code == -signal.SIGTERM, err
    assert only(emulator).state["subtitle"] == "Stopped by SIGTERM at extract"


def test_script_mode_ends_on_sigterm(
    emulator: Emulator, state_dir: Path, jobs: list[Job], tmp_path: Path
) -> None:
    script = tmp_path / "etl.py"
    script.write_text(
        textwrap.dedent(
            """
            import time
            from activitysmith_track import current_activity
            current_activity().step("load")
            current_activity().flush()
            print("READY", flush=True)
            time.sleep(60)
            """
        )
    )
    job = Job(
        "",
        environment(emulator, state_dir),
        args=["-m", "activitysmith_track", "--steps", "2", str(script)],
    )
    jobs.append(job)
    job.wait_ready()
    job.signal(signal.SIGTERM)
    exit_code, _out, err = job.finish()
    assert exit_code in (-signal.SIGTERM, 128 + signal.SIGTERM), err
    assert only(emulator).state["subtitle"] == "Stopped by SIGTERM at load"


# The child: sleeps until the parent kills it; or opens an activity of its own first, which
# installs its own handlers (and wakeup pipe: the parent's, inherited, must never hear the
# child's signals, or the parent would act on them).
# Written at the depth they take in the script below.
CHILDREN = {
    "plain": """\
                os.write(tell, b"x")
                time.sleep(60)
""",
    "tracked": """\
                with live_activity("Child", steps=1) as child:
                    child.step("waiting")
                    child.flush()
                    os.write(tell, b"x")
                    time.sleep(60)
""",
}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("child", sorted(CHILDREN))
def test_a_forked_child_killed_by_sigterm_never_ends_its_parents_activity(
    emulator: Emulator, state_dir: Path, jobs: list[Job], child: str
) -> None:
    code = """
        import os, signal, time
        from activitysmith_track import live_activity
        with live_activity("Parent", steps=2) as la:
            la.step("forking")
            la.flush()
            ready, tell = os.pipe()
            pid = os.fork()
            if pid == 0:
                CHILD
                os._exit(0)
            os.read(ready, 1)
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
            child = os.waitstatus_to_exitcode(status)
            time.sleep(1.5)  # longer than a watcher that heard the child would take to act
            la.step("after the child")
        print("READY", flush=True)
        print("child", child, flush=True)
    """
    script = code.replace("                CHILD\n", CHILDREN[child])
    job = Job(script, environment(emulator, state_dir))
    jobs.append(job)
    job.wait_ready()
    exit_code, out, err = job.finish()
    assert exit_code == 0, err
    assert "child -15" in out
    records = {r.state["title"]: r for r in emulator.activities.values()}
    assert records["Parent"].status == "ended"
    assert records["Parent"].state["subtitle"].startswith("Done in")
    if child == "tracked":
        assert records["Child"].state["subtitle"] == "Stopped by SIGTERM at waiting"


# -- killed: the next run cleans up -------------------------------------------------------------


def test_a_killed_job_is_ended_by_the_next_run(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    env = environment(emulator, state_dir)
    job = Job(BLOCK, env)
    jobs.append(job)
    job.wait_ready()
    job.signal(signal.SIGKILL)  # nothing in the process can react to this one
    job.finish()
    (orphan,) = emulator.activities.values()
    assert orphan.status == "live"
    later = Job(
        """
        from activitysmith_track import live_activity
        with live_activity("Next run"):
            pass
        print("READY", flush=True)
        """,
        env,
    )
    jobs.append(later)
    later.wait_ready()
    exit_code, _out, err = later.finish()
    assert exit_code == 0, err
    record = emulator.activity(orphan.id)
    assert record.status == "ended"
    assert "the process died" in record.state["subtitle"]
    assert record.state["subtitle"].startswith("Stopped at upload archive")


def test_a_killed_job_is_ended_by_cleanup(
    emulator: Emulator, state_dir: Path, jobs: list[Job]
) -> None:
    env = environment(emulator, state_dir)
    job = Job(BLOCK, env)
    jobs.append(job)
    job.wait_ready()
    listed = _command(env, "list")
    assert listed.returncode == 0, listed.stderr
    assert "Nightly backup" in listed.stdout
    job.signal(signal.SIGKILL)
    job.finish()
    cleaned = _command(env, "cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert only(emulator).status == "ended"
    assert wait_until(lambda: "Nightly backup" not in _listed(env))


def _command(env: dict[str, str], name: str) -> subprocess.CompletedProcess[str]:
    """Run ``activitysmith-track <name>`` in ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "activitysmith_track", name],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _listed(env: dict[str, str]) -> str:
    return _command(env, "list").stdout


def test_an_activity_that_ended_leaves_nothing_in_the_ledger(
    emulator: Emulator, state_dir: Path
) -> None:
    env = environment(emulator, state_dir)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(BLOCK).replace("time.sleep(60)", "pass")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Nightly backup" not in _listed(env)


# -- the library's threads and the wakeup fd, in this process ------------------------------------


def _blocked_in(thread: threading.Thread) -> set[int]:
    """The signals ``thread`` blocks, as the kernel has them (/proc)."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    mask = int(line.split()[1], 16)
    return {n for n in range(1, 65) if mask & (1 << (n - 1))}


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="Linux /proc")
def test_the_librarys_threads_never_take_the_processs_signals(emu: Emulator) -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    with live_activity("Nightly backup", steps=2) as la:
        la.step("create snapshot")
        la.flush()
        ours = [t for t in threading.enumerate() if t.name.startswith("activitysmith-track-")]
        names = {t.name for t in ours}
        assert {"activitysmith-track-sender", "activitysmith-track-signals"} <= names
        for thread in ours:
            try:
                blocked = _blocked_in(thread)
            except FileNotFoundError:  # an idle sender of an earlier test that just ended
                assert thread.name == "activitysmith-track-sender"
                continue
            assert {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD} <= blocked
            assert signal.SIGSEGV not in blocked  # faults stay the kernel's and faulthandler's
        assert signal.SIGTERM not in _blocked_in(threading.main_thread())
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


def test_the_wakeup_fd_is_ours_only_while_an_activity_is_open(emu: Emulator) -> None:
    assert signal.set_wakeup_fd(-1) == -1
    with live_activity("Nightly backup", steps=2) as la:
        la.step("create snapshot")
        ours = signal.set_wakeup_fd(-1)
        assert ours != -1
        signal.set_wakeup_fd(ours)
        watcher = next(t for t in threading.enumerate() if t.name == "activitysmith-track-signals")
    assert signal.set_wakeup_fd(-1) == -1  # put back as it was
    watcher.join(5)
    assert not watcher.is_alive()  # and the watcher is gone


def test_an_event_loops_wakeup_fd_stays_its_own(emu: Emulator) -> None:
    theirs, other = socket.socketpair()
    theirs.setblocking(False)
    try:
        signal.set_wakeup_fd(theirs.fileno())
        with live_activity("Nightly backup", steps=2) as la:
            la.step("create snapshot")
            assert signal.set_wakeup_fd(theirs.fileno()) == theirs.fileno()
        assert signal.set_wakeup_fd(-1) == theirs.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        theirs.close()
        other.close()


def test_nothing_is_watched_when_every_stopping_signal_is_ignored(emu: Emulator) -> None:
    # nohup: both signals ignored on purpose, so none of ours is installed, nor the watcher.
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with live_activity("Nightly backup", steps=2) as la:
            la.step("create snapshot")
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.set_wakeup_fd(-1) == -1
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
