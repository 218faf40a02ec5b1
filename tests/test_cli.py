"""The ``activitysmith-track`` command line, run as a real subprocess against the emulator."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from activitysmith_track._cli import build_parser, build_script_parser, default_title
from activitysmith_track.emulator import Emulator, Fault, RecordedRequest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and pipes")

CLI = [sys.executable, "-m", "activitysmith_track"]
START = "/live-activity/start"
UPDATE = "/live-activity/update"
END = "/live-activity/end"


# -- fixtures and helpers ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(fast=True) as emu:
        yield emu


@pytest.fixture
def emu(server: Emulator) -> Emulator:
    server.reset()
    return server


def env_for(emu: Emulator | None, **extra: str) -> dict[str, str]:
    # Only the private state directory of the test session, and the run history turned off,
    # are kept (see conftest).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIVITYSMITH")}
    env["ACTIVITYSMITH_TRACK_STATE_DIR"] = os.environ["ACTIVITYSMITH_TRACK_STATE_DIR"]
    env["ACTIVITYSMITH_TRACK_HISTORY"] = os.environ["ACTIVITYSMITH_TRACK_HISTORY"]
    env["ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT"] = "5"
    if emu is not None:
        env["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        if emu.api_key:
            env["ACTIVITYSMITH_API_KEY"] = emu.api_key
    env.update(extra)
    return env


def cli(
    emu: Emulator | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*CLI, *args],
        env=env if env is not None else env_for(emu),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )


@contextlib.contextmanager
def spawned(emu: Emulator | None, *args: str, **popen: Any) -> Iterator[subprocess.Popen[bytes]]:
    """The command line running in the background; killed (if need be) and reaped after."""
    options: dict[str, Any] = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE}
    options.update(popen)
    options.setdefault("env", env_for(emu))
    with subprocess.Popen([*CLI, *args], **options) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()


def py(code: str) -> list[str]:
    """A Python child command running ``code``."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def read_until(source: Any, needle: bytes, timeout: float = 10.0) -> bytes:
    """Read from a pipe (or fd) until ``needle`` arrived; whatever came so far is returned."""
    fd = source if isinstance(source, int) else source.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} did not arrive; got {data!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"output ended before {needle!r}; got {data!r}")
            data += chunk
    return data


def paths(emu: Emulator) -> list[str]:
    return [r.path for r in emu.requests]


def only(emu: Emulator, path: str) -> RecordedRequest:
    (request,) = [r for r in emu.requests if r.path == path]
    return request


def end_state(emu: Emulator, path: str = END) -> dict[str, Any]:
    state: dict[str, Any] = only(emu, path).body["content_state"]
    return state


def failed_with(subtitle: str, error: str) -> bool:
    """Whether a timer's failure subtitle reads "Failed after <elapsed>: <error>"."""
    return re.fullmatch(r"Failed after \d+s: " + re.escape(error), subtitle) is not None


def wait_for_state(
    emu: Emulator, check: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """Wait (on the emulator's request event) until the only activity's state passes ``check``."""
    deadline = time.monotonic() + timeout
    while True:
        seen = len(emu.requests)
        activities = list(emu.activities.values())
        if activities and check(activities[-1].state):
            return activities[-1].state
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"state never matched; last: {activities[-1:]}")
        try:
            emu.wait_for_requests(seen + 1, timeout=remaining)
        except TimeoutError:
            continue


# -- exit codes and the activity's ending ----------------------------------------------------


def test_success_passes_exit_code_zero_and_ends_in_success(emu: Emulator) -> None:
    result = cli(emu, "run", "--", *py("print('hello')"))

    assert result.returncode == 0
    assert result.stdout == b"hello\n"
    assert result.stderr == b""
    assert paths(emu) == [START, END]
    start = only(emu, START).body["content_state"]
    assert start["title"] == os.path.basename(sys.executable)
    assert (start["type"], start["counts_down"]) == ("timer", False)
    final = end_state(emu)
    assert final["subtitle"].startswith("Done in")
    assert final["color"] == "green"


def test_failure_passes_the_exit_code_and_names_it_with_the_last_stderr_line(
    emu: Emulator,
) -> None:
    child = py("""
        import sys
        sys.stderr.write("warming up\\nDisk quota exceeded\\n\\n")
        sys.exit(3)
    """)
    result = cli(emu, "run", "--title", "Backup", "--error-text", "--", *child)

    assert result.returncode == 3
    assert result.stderr == b"warming up\nDisk quota exceeded\n\n"
    final = end_state(emu)
    assert final["title"] == "Backup"
    assert failed_with(final["subtitle"], "exit code 3: Disk quota exceeded")
    assert final["color"] == "red"


@pytest.mark.parametrize(
    ("options", "variable"),
    [
        ([], None),
        (["--no-error-text"], "1"),
        ([], "0"),
        (["--error-text", "--no-error-text"], None),
    ],
)
def test_the_commands_stderr_stays_off_the_phone_unless_asked(
    emu: Emulator, options: list[str], variable: str | None
) -> None:
    child = py("""
        import sys
        sys.stderr.write("password=hunter2 rejected\\n")
        sys.exit(3)
    """)
    env = env_for(emu)
    if variable is not None:
        env["ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE"] = variable
    result = cli(emu, "run", *options, "--", *child, env=env)

    assert result.returncode == 3
    assert result.stderr == b"password=hunter2 rejected\n"  # the terminal still sees it
    final = end_state(emu)
    assert final["subtitle"].endswith(": exit code 3")
    assert "hunter2" not in json.dumps([r.body for r in emu.requests])


def test_the_error_text_setting_shows_the_commands_last_stderr_line(emu: Emulator) -> None:
    child = py("""
        import sys
        sys.stderr.write("quota exceeded\\n")
        sys.exit(3)
    """)
    env = env_for(emu)
    env["ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE"] = "1"
    assert cli(emu, "run", "--", *child, env=env).returncode == 3
    assert end_state(emu)["subtitle"].endswith(": exit code 3: quota exceeded")


def test_child_killed_by_sigkill_fails_naming_the_signal_and_exits_137(emu: Emulator) -> None:
    child = py("""
        import os, signal
        print("about to die", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = cli(emu, "run", "--", *child)

    assert result.returncode == 137
    assert result.stdout == b"about to die\n"
    final = end_state(emu)
    assert "killed by SIGKILL" in final["subtitle"]
    assert final["color"] == "red"


def test_command_not_found_exits_127_and_the_phone_learns_it(emu: Emulator) -> None:
    result = cli(emu, "run", "--", "no-such-command-xyz")

    assert result.returncode == 127
    assert result.stderr == (
        b"python -m activitysmith_track run: command not found: no-such-command-xyz\n"
    )
    assert paths(emu) == [START, END]
    final = end_state(emu)
    assert failed_with(final["subtitle"], "command not found: no-such-command-xyz")
    assert final["color"] == "red"


@pytest.mark.parametrize(
    ("make", "code", "reason"),
    [
        (lambda p: p.write_text("echo hi\n"), 126, "cannot execute: Permission denied"),
        (lambda p: p.mkdir(), 126, "cannot execute: Is a directory"),
        (
            lambda p: (p.write_text("#!/no/such/interpreter\n"), p.chmod(0o755)),
            127,
            "its #! interpreter was not found",
        ),
    ],
    ids=["not-executable", "a-directory", "bad-interpreter"],
)
def test_a_command_that_cannot_be_executed_exits_as_a_shell_does(
    emu: Emulator, tmp_path: Path, make: Callable[[Path], object], code: int, reason: str
) -> None:
    job = tmp_path / "job"
    make(job)
    result = cli(emu, "run", "--steps", "3", "--", str(job))

    assert result.returncode == code
    assert result.stderr.count(b"\n") == 1
    assert str(job).encode() in result.stderr
    final = end_state(emu)
    assert final["subtitle"] == f"Failed before the first step: {reason}"


# -- pass-through ------------------------------------------------------------------------------


def test_output_passes_byte_for_byte_including_binary_and_a_partial_last_line(
    emu: Emulator,
) -> None:
    out = bytes(range(256)) + b"\r\nline two\n\xff\xfe not utf-8\nno newline at the end"
    err = b"\x00\x01 warning\r\n" + bytes(range(255, -1, -1)) + b" partial"
    child = py(f"""
        import sys
        sys.stdout.buffer.write({out!r})
        sys.stderr.buffer.write({err!r})
    """)
    result = cli(emu, "run", "--", *child)

    assert result.returncode == 0
    assert result.stdout == out
    assert result.stderr == err


def test_a_partial_line_reaches_the_terminal_before_its_newline(emu: Emulator) -> None:
    child = py("""
        import sys
        sys.stdout.write("Continue? [y/n] ")
        answer = sys.stdin.readline()
        print("got", answer.strip())
    """)
    with spawned(emu, "run", "--", *child) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert read_until(proc.stdout, b"[y/n] ") == b"Continue? [y/n] "
        proc.stdin.write(b"y\n")
        proc.stdin.close()
        assert proc.stdout.read() == b"got y\n"
        assert proc.wait(10) == 0


def test_stdout_and_stderr_keep_their_order(emu: Emulator) -> None:
    # Each write waits for the test to see the previous one, so the order is well defined.
    child = py("""
        import sys
        for n, stream in enumerate([sys.stdout, sys.stderr, sys.stdout, sys.stderr]):
            stream.write(f"<{n}>")
            stream.flush()
            sys.stdin.readline()
    """)
    with spawned(emu, "run", "--", *child, stderr=subprocess.STDOUT) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        seen = b""
        for n in range(4):
            seen += read_until(proc.stdout, f"<{n}>".encode())
            proc.stdin.write(b"\n")
            proc.stdin.flush()
        assert proc.wait(10) == 0
        assert seen + proc.stdout.read() == b"<0><1><2><3>"


def test_a_closed_output_pipe_reaches_the_command(emu: Emulator) -> None:
    # Like `yes | head -1`: when our reader goes away the command sees a broken pipe too.
    child = py("""
        while True:
            print("y" * 100)
    """)
    with spawned(
        emu, "run", "--", *child, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        read_until(proc.stdout, b"y\n")
        proc.stdout.close()
        # 1 from the BrokenPipeError; some Pythons exit 120 when the final flush fails too.
        assert proc.wait(15) in (1, 120)
        assert proc.stderr.read().endswith(b"BrokenPipeError: [Errno 32] Broken pipe\n")
    assert "exit code 1: BrokenPipeError" in end_state(emu)["subtitle"]


@pytest.mark.parametrize("closed", ["1", "2"])
def test_the_command_runs_when_our_output_is_closed(
    emu: Emulator, closed: str, tmp_path: Path
) -> None:
    # Daemons and supervisors may start a job with stdout or stderr closed.
    flag = tmp_path / "ran"
    wrapper = [sys.executable, "-m", "activitysmith_track", "run", "--", "touch", str(flag)]
    line = " ".join(shlex.quote(part) for part in wrapper) + f" {closed}>&-"
    done = subprocess.run(["sh", "-c", line], env=env_for(emu), timeout=30, check=False)
    assert done.returncode == 0
    assert flag.exists()
    assert end_state(emu)["color"] == "green"


def test_tracking_failures_change_neither_output_nor_exit_code(emu: Emulator) -> None:
    emu.add_fault(Fault.status(500), times=100)
    child = py("""
        import sys
        print("::step:: one")
        print("out")
        sys.stderr.write("err\\n")
        sys.exit(4)
    """)
    env = env_for(emu, ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT="0.5")
    result = cli(emu, "run", "--steps", "2", "--", *child, env=env)

    assert result.returncode == 4
    assert result.stdout == b"::step:: one\nout\n"
    # Our own warnings are whole lines, prefixed; the child's stderr is intact between them.
    ours = [x for x in result.stderr.splitlines() if x.startswith(b"activitysmith-track: ")]
    assert ours
    assert [x for x in result.stderr.splitlines() if x not in ours] == [b"err"]


# -- markers -----------------------------------------------------------------------------------


def test_step_markers_advance_and_name_the_steps(emu: Emulator) -> None:
    child = py("""
        import sys
        print("::step::")
        print("  ::step::  ")
        sys.exit(3)
    """)
    result = cli(
        emu, "run", "--step", "snapshot", "--step", "upload", "--step", "verify", "--", *child
    )

    assert result.returncode == 3
    final = end_state(emu)
    assert final["type"] == "segmented_progress"
    assert (final["current_step"], final["number_of_steps"]) == (2, 3)
    assert final["subtitle"] == "Failed at upload: exit code 3"


def test_markers_are_sent_while_the_command_runs(emu: Emulator) -> None:
    child = py("""
        import sys
        for marker in ["::step:: extract", "::progress:: 40/100", "::metric:: rows=1200"]:
            print(marker, flush=True)
            sys.stdin.readline()
    """)
    with spawned(emu, "run", "--steps", "3", "--debounce", "0", "--", *child) as proc:
        assert proc.stdin is not None
        state = wait_for_state(emu, lambda s: s.get("current_step") == 1)
        assert state["subtitle"] == "extract"
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        state = wait_for_state(emu, lambda s: s.get("subtitle") == "extract · 40/100")
        assert state["current_step"] == 1
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        # Steps have no tiles: metrics join the subtitle.
        state = wait_for_state(emu, lambda s: s.get("subtitle") == "extract · 40/100 · rows 1,200")
        assert "metrics" not in state
        proc.stdin.write(b"\n")
        proc.stdin.close()
        assert proc.wait(10) == 0
    assert paths(emu)[0] == START
    assert paths(emu)[-1] == END
    assert UPDATE in paths(emu)


@pytest.mark.parametrize(
    ("options", "marker", "expected"),
    [
        (["--total", "100"], "::progress:: 40", {"value": 40, "upper_limit": 100}),
        (["--total", "100"], "::progress:: 40/250", {"value": 40, "upper_limit": 250}),
        (["--progress"], "::progress:: 40/100", {"value": 40, "upper_limit": 100}),
        (["--progress"], "::progress:: 40%", {"percentage": 40}),
        # With a total the count drives the bar: 12.5 % of 10 is 1.25 of 10.
        (["--total", "10"], "::progress:: 12.5%", {"value": 1.25, "upper_limit": 10}),
    ],
)
def test_progress_markers_drive_the_bar(
    emu: Emulator, options: list[str], marker: str, expected: dict[str, Any]
) -> None:
    result = cli(emu, "run", *options, "--", *py(f"print({marker!r}); raise SystemExit(1)"))

    assert result.returncode == 1
    final = end_state(emu)
    assert final["type"] == "progress"
    for field, value in expected.items():
        assert final[field] == value, field


def test_metric_markers_merge_by_label_and_stay_at_the_end(emu: Emulator) -> None:
    child = py("""
        import time
        print("::metric:: rows=1200")
        print("::metric:: errors=3, rows=1300, rate=12.5/s", flush=True)
        time.sleep(0.5)  # time for the update to go out before the end
    """)
    result = cli(emu, "run", "--debounce", "0.1", "--", *child)

    assert result.returncode == 0
    final = end_state(emu)
    # A timer has no tiles: the merged metrics show in the subtitle while it runs.
    assert "metrics" not in final
    # The markers may go out with the start or in an update after it: the last one counts.
    subtitles = [
        r.body["content_state"].get("subtitle") for r in emu.requests if r.path in (START, UPDATE)
    ]
    assert subtitles[-1] == "rows 1,300, errors 3, rate 12.5/s"


def test_hide_markers_keeps_marker_lines_off_the_terminal(emu: Emulator) -> None:
    child = py("""
        import sys
        print("before")
        print("::step:: load")
        sys.stderr.write("::metric:: rows=5\\nreal error\\n")
        sys.stdout.write("tail without newline")
        sys.exit(2)
    """)
    result = cli(emu, "run", "--steps", "2", "--hide-markers", "--", *child)

    assert result.returncode == 2
    assert result.stdout == b"before\ntail without newline"
    assert result.stderr == b"real error\n"
    final = end_state(emu)
    assert final["current_step"] == 1
    assert "metrics" not in final
    assert final["subtitle"] == "Failed at load: exit code 2"  # the stderr line stays here


def test_marker_regex_sets_the_syntax(emu: Emulator) -> None:
    regex = r"^##\[(?P<kind>\w+)\]\s*(?P<value>.*)$"
    child = py("""
        print("##[step] compile")
        print("::step:: not a marker now")
        raise SystemExit(1)
    """)
    result = cli(emu, "run", "--steps", "3", "--marker-regex", regex, "--", *child)

    final = end_state(emu)
    assert final["current_step"] == 1
    assert "at compile" in final["subtitle"]
    assert result.stdout == b"##[step] compile\n::step:: not a marker now\n"


def test_a_bad_marker_is_ignored_with_one_warning(emu: Emulator) -> None:
    child = py("""
        print("::progress:: lots")
        print("::progress:: more")
        print("::step:: fine")
    """)
    result = cli(emu, "run", "--", *child)

    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("activitysmith-track: ignored ::progress:: lots")
    assert paths(emu) == [START, END]


def test_no_markers_only_times_the_command(emu: Emulator) -> None:
    result = cli(emu, "run", "--steps", "2", "--no-markers", "--", *py("print('::step:: x')"))

    assert result.stdout == b"::step:: x\n"
    assert end_state(emu)["current_step"] == 2  # success fills the bar; no step was taken


# -- signals -----------------------------------------------------------------------------------

TRAPS_TERM = """
    import signal, sys, time
    def stop(signum, frame):
        print("child got", signal.Signals(signum).name, flush=True)
        sys.exit(5)
    signal.signal(signal.SIGTERM, stop)
    print("ready", flush=True)
    time.sleep(30)
"""


def test_sigterm_is_forwarded_and_the_activity_ends_cancelled(emu: Emulator) -> None:
    with spawned(
        emu, "run", "--steps", "3", "--", *py(TRAPS_TERM), stdin=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout, b"ready\n")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 5
        assert proc.stdout.read() == b"child got SIGTERM\n"
    final = end_state(emu)
    assert final["subtitle"].startswith("Cancelled")
    assert final["color"] == "orange"


def test_sigint_from_outside_a_terminal_is_forwarded(emu: Emulator) -> None:
    child = py("""
        import time
        print("ready", flush=True)
        time.sleep(30)
    """)
    # A new session has no controlling terminal, like cron: the wrapper must forward SIGINT.
    with spawned(
        emu,
        "run",
        "--",
        *child,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        assert proc.stdout is not None
        read_until(proc.stdout, b"ready\n")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 128 + signal.SIGINT  # Python re-raises SIGINT on exit
    assert end_state(emu)["subtitle"].startswith("Cancelled")


# A shell script whose own child must die with it: the wrapper signals the whole group.
SHELL_JOB = """
echo "ready $$"
sleep 30
echo "the shell went on"
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped, as in a container without init, is dead)."""
    if sys.platform.startswith("linux"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                state = file.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in (b"Z", b"X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def child_of(parent: int, timeout: float = 10.0) -> int:
    """The pid of ``parent``'s first child, polling the process table until it appears."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        table = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=True
        ).stdout
        for line in table.splitlines():
            pid, ppid = (int(x) for x in line.split())
            if ppid == parent:
                return pid
        time.sleep(0.02)  # polling another process, not waiting for a thread of ours
    raise AssertionError(f"process {parent} started no child")


def gone_within(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_signal_to_the_wrapper_reaches_the_commands_whole_process_tree(
    emu: Emulator, signum: int
) -> None:
    with spawned(
        emu,
        "run",
        "--steps",
        "2",
        "--",
        "sh",
        "-c",
        SHELL_JOB,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # no terminal, as under cron or a supervisor
    ) as proc:
        assert proc.stdout is not None
        shell = int(read_until(proc.stdout, b"\n").split()[1])
        sleeper = child_of(shell)
        proc.send_signal(signum)
        # The shell does not finish its `sleep 30` first, and nothing is left running.
        assert proc.wait(10) == 128 + signum
        assert b"the shell went on" not in proc.stdout.read()
    assert gone_within(sleeper)
    assert not alive(shell)
    final = end_state(emu)
    assert final["subtitle"] == "Cancelled before the first step"
    assert final["color"] == "orange"


# A small job-control shell on the pty slave numbered argv[1]: it runs argv[2:] as a job in
# its own process group in the terminal's foreground, reports a stop, resumes the job when
# "fg" is typed, and says whether the job handed the terminal back before it exited.
SHELL = """
import contextlib, fcntl, os, signal, sys, termios
tty = int(sys.argv[1])
os.setsid()
fcntl.ioctl(tty, termios.TIOCSCTTY, 0)
for fd in (0, 1, 2):
    os.dup2(tty, fd)
os.close(tty)
JOB_SIGNALS = (signal.SIGTTOU, signal.SIGINT, signal.SIGTSTP, signal.SIGQUIT)
for signum in JOB_SIGNALS:
    signal.signal(signum, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpgrp())
    for signum in JOB_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)
    os.execv(sys.argv[2], sys.argv[2:])
with contextlib.suppress(OSError):
    os.setpgid(pid, pid)
while True:
    _, status = os.waitpid(pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        os.tcsetpgrp(0, os.getpgrp())
        print("shell: job stopped", flush=True)
        sys.stdin.readline()
        os.tcsetpgrp(0, pid)
        os.killpg(pid, signal.SIGCONT)
        continue
    back = os.tcgetpgrp(0) == pid
    print("shell: job exited", os.waitstatus_to_exitcode(status), flush=True)
    print("shell: terminal handed back:", back, flush=True)
    break
"""


@contextlib.contextmanager
def terminal_job(emu: Emulator, *args: str) -> Iterator[int]:
    """``activitysmith-track run ARGS`` as a job of a shell in a terminal; yields the
    terminal's master end, to type on and read from."""
    master, slave = os.openpty()
    argv = [sys.executable, "-c", SHELL, str(slave), *CLI, "run", *args]
    try:
        with subprocess.Popen(argv, env=env_for(emu), pass_fds=(slave,)) as proc:
            os.close(slave)
            slave = -1
            try:
                yield master
                assert proc.wait(15) == 0
            finally:
                if proc.poll() is None:
                    proc.kill()
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def rest_of(master: int) -> bytes:
    """Everything still to come from the terminal, until every end of it is closed."""
    rest = b""
    with contextlib.suppress(OSError):  # EIO once every end of the pty is closed
        while chunk := os.read(master, 4096):
            rest += chunk
    return rest


READS_TERMINAL = """
    print("ready", flush=True)
    print("got", input(), flush=True)
"""


def test_the_command_holds_the_terminal_and_hands_it_back(emu: Emulator) -> None:
    with terminal_job(emu, "--", *py(READS_TERMINAL)) as master:
        read_until(master, b"ready")
        # Only the terminal's foreground group may read it: a command left in the background
        # would be stopped here instead.
        os.write(master, b"hello\n")
        read_until(master, b"got hello")
        output = read_until(master, b"handed back: ") + rest_of(master)
    assert b"shell: job exited 0" in output
    assert b"handed back: True" in output
    assert end_state(emu)["subtitle"].startswith("Done")


def test_a_command_that_cannot_start_in_a_terminal_leaves_the_terminal_ours(
    emu: Emulator,
) -> None:
    # The child took the terminal just before its exec failed; the wrapper takes it back.
    with terminal_job(emu, "--", "no-such-command-xyz") as master:
        output = read_until(master, b"handed back: ") + rest_of(master)
    assert b"command not found: no-such-command-xyz" in output
    assert b"shell: job exited 127" in output
    assert b"handed back: True" in output


COUNTS_SIGINT = """
    import os, signal, time
    count = 0
    def on_int(signum, frame):
        global count
        count += 1
    signal.signal(signal.SIGINT, on_int)
    print("ready", flush=True)
    deadline = time.monotonic() + 10
    while not count and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # let a second SIGINT, if any, arrive
    print("count", count, flush=True)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)  # and die of it, as an interrupted job does
"""


def test_ctrl_c_in_a_terminal_reaches_the_command_and_cancels(emu: Emulator) -> None:
    # The terminal signals its foreground group: the command's, not the wrapper's.
    # (Two SIGINTs this close together may merge, so this does not prove a single delivery.)
    with terminal_job(emu, "--", *py(COUNTS_SIGINT)) as master:
        read_until(master, b"ready")
        os.write(master, b"\x03")
        output = read_until(master, b"handed back: ") + rest_of(master)
    assert b"count 1" in output
    assert b"shell: job exited 130" in output
    assert b"handed back: True" in output
    assert end_state(emu)["subtitle"].startswith("Cancelled")


def test_ctrl_z_stops_the_job_and_fg_resumes_it(emu: Emulator) -> None:
    with terminal_job(emu, "--", *py(READS_TERMINAL)) as master:
        read_until(master, b"ready")
        os.write(master, b"\x1a")
        # The wrapper stops with its command, so the shell sees the job stop.
        read_until(master, b"shell: job stopped")
        os.write(master, b"fg\n")
        os.write(master, b"resumed\n")
        read_until(master, b"got resumed")
        output = read_until(master, b"handed back: ") + rest_of(master)
    assert b"shell: job exited 0" in output
    assert end_state(emu)["subtitle"].startswith("Done")


# -- Python scripts ----------------------------------------------------------------------------

FAILING_SCRIPT = """
    import sys
    from activitysmith_track import current_activity

    def load(row):
        raise ValueError(f"bad row {row}")

    print("argv", sys.argv[1:])
    current_activity().step("loading")
    load(7)
"""


def test_script_mode_ends_failed_with_the_exception_type(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text(textwrap.dedent(FAILING_SCRIPT))
    result = cli(emu, str(script), "--full", "x")

    assert result.returncode == 1
    assert result.stdout == b"argv ['--full', 'x']\n"
    err = result.stderr.decode()
    assert err.startswith("Traceback (most recent call last):\n")
    assert f'File "{script}", line 10, in <module>' in err
    assert err.endswith("ValueError: bad row 7\n")
    assert "runpy" not in err
    assert "activitysmith_track" not in err.replace("from activitysmith_track", "")
    final = end_state(emu)
    assert final["title"] == "etl.py"
    # The script named its step with current_activity().step("loading"): the failure says so.
    assert final["subtitle"] == "Failed at loading: ValueError"


def test_script_mode_passes_sys_exit_codes(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nsys.exit(4)\n")
    result = cli(emu, str(script))

    assert result.returncode == 4
    assert result.stderr == b""
    assert failed_with(end_state(emu)["subtitle"], "exit code 4")


def test_run_python_script_fails_with_the_exception_type(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text(
        textwrap.dedent(FAILING_SCRIPT).replace('current_activity().step("loading")', "")
    )
    result = cli(emu, "run", "--", sys.executable, str(script))

    assert result.returncode == 1
    assert result.stderr.endswith(b"ValueError: bad row 7\n")
    final = end_state(emu)
    assert final["title"] == "etl.py"
    # The traceback's exception type, not its message: the message is the job's data.
    assert failed_with(final["subtitle"], "exit code 1: ValueError")


STEPPING_SCRIPT = """
    import sys
    from activitysmith_track import current_activity

    print("argv", sys.argv[1:])
    current_activity().step()
    current_activity().step()
"""


def test_script_mode_takes_the_activity_options_of_run(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text(textwrap.dedent(STEPPING_SCRIPT))
    result = cli(
        emu,
        "--title",
        "Nightly ETL",
        "--step",
        "extract",
        "--step",
        "load",
        "--color",
        "blue",
        "--tag",
        "etl",
        str(script),
        "--title",
        "the script's own",
    )

    assert result.returncode == 0, result.stderr
    # Everything after the script is the script's.
    assert result.stdout == b"argv ['--title', \"the script's own\"]\n"
    start = only(emu, START).body
    assert start["content_state"]["title"] == "Nightly ETL"
    assert start["content_state"]["type"] == "segmented_progress"
    assert start["content_state"]["number_of_steps"] == 2
    assert start["content_state"]["color"] == "blue"
    assert start["tags"] == ["etl"]
    final = end_state(emu)
    assert final["current_step"] == 2
    assert final["subtitle"].startswith("Done")


def test_script_mode_drives_a_stream(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("print('hi')\n")
    result = cli(emu, "--stream-key", "nightly", "--total", "10", str(script))

    assert result.returncode == 0, result.stderr
    put, delete = emu.requests
    assert (put.method, delete.method) == ("PUT", "DELETE")
    assert put.body["content_state"]["type"] == "progress"
    assert put.body["content_state"]["upper_limit"] == 10
    record = emu.stream_activity("nightly")
    assert record is not None
    assert record.status == "ended"


def test_script_mode_without_a_key_runs_the_script_with_one_warning(tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('ran')\nsys.exit(5)\n")
    result = cli(None, "--steps", "2", str(script))

    assert result.returncode == 5
    assert result.stdout == b"ran\n"
    (line,) = result.stderr.decode().splitlines()
    assert "ACTIVITYSMITH_API_KEY is not set" in line


def test_script_mode_and_run_share_their_activity_options() -> None:
    def options(parser: argparse.ArgumentParser) -> dict[str, str | None]:
        return {
            option: action.help
            for action in parser._actions
            for option in action.option_strings
            if option not in ("-h", "--help")
        }

    run_parser = next(
        a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["run"]
    script_options = options(build_script_parser())
    run_options = options(run_parser)
    assert set(script_options) <= set(run_options)
    # Only what cannot apply in-process is run's alone: markers read a child's output.
    assert set(run_options) - set(script_options) == {
        "--hide-markers",
        "--marker-regex",
        "--no-markers",
    }
    for option in ("--title", "--flush-timeout"):
        assert script_options[option] != run_options[option]  # each names its own job
        assert script_options[option] is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0", "SCRIPT"], "must be at least 1"),
        (["--bogus", "SCRIPT"], "unrecognized arguments"),
        (["--steps", "2", "--total", "4", "SCRIPT"], "not allowed with"),
        (["--title", "T"], "required: script"),
        (["--base-url", "http://127.0.0.1:9/api", "list"], "options go after the command"),
    ],
)
def test_bad_script_mode_options_exit_2_with_one_line(
    emu: Emulator, tmp_path: Path, args: list[str], message: str
) -> None:
    sentinel = tmp_path / "ran"
    script = tmp_path / "job.py"
    script.write_text(f"open({str(sentinel)!r}, 'w').close()\n")
    result = cli(emu, *[str(script) if a == "SCRIPT" else a for a in args])

    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert message in line
    assert not sentinel.exists()
    assert emu.requests == []


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--bogus", "--", "CHILD"],
        ["run", "--steps", "0", "--", "CHILD"],
        ["run", "--steps", "2", "--total", "5", "--", "CHILD"],
        ["run", "--title", "no command"],
        ["run", "--"],
        ["run", "--marker-regex", "(", "--", "CHILD"],
        ["run", "--marker-regex", "no kind group", "--", "CHILD"],
        ["run", "--stream-key", "not a key!", "--", "CHILD"],
        ["no-such-subcommand"],
        ["start"],
        ["start", "--title", "T", "--percentage", "140"],
        ["start", "--title", "T", "--metric", "rows"],
        ["update", "--title", "T"],
        ["end", "some-id"],
        ["missing-script.py"],
    ],
)
def test_bad_input_exits_2_with_one_line_and_starts_nothing(
    emu: Emulator, tmp_path: Path, args: list[str]
) -> None:
    sentinel = tmp_path / "ran"
    child = py(f"open({str(sentinel)!r}, 'w').close()")
    argv = [part for arg in args for part in (child if arg == "CHILD" else [arg])]
    result = cli(emu, *argv)

    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert "error:" in lines[0]
    assert not sentinel.exists()
    assert emu.requests == []


@pytest.mark.parametrize("exit_code", [0, 3])
def test_no_api_key_runs_the_command_anyway_with_one_warning(
    tmp_path: Path, exit_code: int
) -> None:
    # A cron line whose environment lost the key must still run the backup.
    sentinel = tmp_path / "ran"
    child = py(f"open({str(sentinel)!r}, 'w').close(); print('out'); raise SystemExit({exit_code})")
    started = time.monotonic()
    result = cli(None, "run", "--steps", "2", "--", *child)

    assert result.returncode == exit_code
    assert sentinel.exists()
    assert result.stdout == b"out\n"
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("activitysmith-track: ACTIVITYSMITH_API_KEY is not set")
    assert time.monotonic() - started < 5  # no wait for an end that was never sent


def test_no_api_key_in_a_one_shot_command_is_a_configuration_error() -> None:
    result = cli(None, "start", "--title", "Deploy")

    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert "no API key" in line
    assert "ACTIVITYSMITH_API_KEY" in line


def test_every_option_has_help_text() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        if name == "emulator":
            continue  # its options are the emulator's own
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest}"
    result = cli(None, "run", "--help")
    assert result.returncode == 0
    assert b"--hide-markers" in result.stdout


@pytest.mark.parametrize(
    ("command", "title"),
    [
        (["./backup.sh"], "backup.sh"),
        (["/usr/bin/python3", "etl.py", "--full"], "etl.py"),
        (["python3.12", "-m", "jobs.nightly"], "jobs.nightly"),
        (["bash", "-c", "echo hi"], "bash"),
        (["pg_dump", "db"], "pg_dump"),
        (["python3", "-u", "etl.py"], "etl.py"),
        (["python3", "-W", "ignore", "etl.py"], "etl.py"),
        (["/usr/bin/env", "python3", "etl.py"], "etl.py"),
        (["env", "TZ=UTC", "./report.sh"], "report.sh"),
        (["bash", "-e", "job.sh"], "job.sh"),
        (["nice", "-n", "10", "./b.sh"], "b.sh"),
        (["timeout", "1h", "./b.sh"], "b.sh"),
        (["nohup", "python", "-m", "jobs.sync"], "jobs.sync"),
    ],
)
def test_title_defaults_to_the_command_or_script_name(command: list[str], title: str) -> None:
    assert default_title(command) == title


# -- one-shot commands -------------------------------------------------------------------------


def test_preview_stands_in_for_a_missing_key() -> None:
    env = env_for(None, ACTIVITYSMITH_TRACK_PREVIEW="1")
    result = subprocess.run(
        [*CLI, "run", "--steps", "1", "--", "true"],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(rb"ActivitySmith preview: http://127\.0\.0\.1:\d+/", result.stderr)


def test_a_shell_script_is_not_run_as_python(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    result = cli(emu, str(script))
    assert result.returncode == 2
    assert b"is not a Python script" in result.stderr
    assert b"run -- " in result.stderr
    assert emu.requests == []


def test_start_update_end_drive_one_activity(emu: Emulator) -> None:
    started = cli(emu, "start", "--title", "Deploy", "--steps", "3", "--color", "blue")
    assert started.returncode == 0, started.stderr
    activity_id = started.stdout.decode().strip()
    assert started.stdout == f"{activity_id}\n".encode()

    updated = cli(
        emu,
        "update",
        activity_id,
        "--title",
        "Deploy",
        "--current-step",
        "2",
        "--subtitle",
        "build",
    )
    assert (updated.returncode, updated.stdout, updated.stderr) == (0, b"", b"")
    ended = cli(
        emu,
        "end",
        activity_id,
        "--title",
        "Deploy",
        "--current-step",
        "3",
        "--subtitle",
        "shipped",
        "--metric",
        "duration=42",
        "--auto-dismiss-minutes",
        "0",
    )
    assert (ended.returncode, ended.stderr) == (0, b"")

    assert only(emu, START).body["content_state"] == {
        "title": "Deploy",
        "type": "segmented_progress",
        "number_of_steps": 3,
        "current_step": 0,
        "color": "blue",
    }
    assert only(emu, UPDATE).body == {
        "activity_id": activity_id,
        "content_state": {"title": "Deploy", "subtitle": "build", "current_step": 2},
    }
    assert only(emu, END).body == {
        "activity_id": activity_id,
        "content_state": {
            "title": "Deploy",
            "subtitle": "shipped",
            "current_step": 3,
            "metrics": [{"label": "duration", "value": 42}],
            "auto_dismiss_minutes": 0,
        },
    }
    assert emu.activity(activity_id).status == "ended"


def test_start_infers_the_type_and_sends_tags_and_channels(emu: Emulator) -> None:
    result = cli(
        emu, "start", "--title", "Import", "--percentage", "5", "--tag", "etl", "--channel", "ops"
    )
    assert result.returncode == 0, result.stderr
    body = only(emu, START).body
    assert body["content_state"] == {"title": "Import", "type": "progress", "percentage": 5}
    assert body["tags"] == ["etl"]
    assert body["target"] == {"channels": ["ops"]}


def test_stream_key_uses_put_and_delete(emu: Emulator) -> None:
    started = cli(emu, "start", "--stream-key", "nightly", "--title", "Nightly", "--steps", "2")
    assert started.returncode == 0, started.stderr
    updated = cli(
        emu,
        "update",
        "--stream-key",
        "nightly",
        "--title",
        "Nightly",
        "--steps",
        "2",
        "--current-step",
        "1",
    )
    assert updated.returncode == 0, updated.stderr
    ended = cli(emu, "end", "--stream-key", "nightly", "--json")
    assert ended.returncode == 0, ended.stderr
    assert b'"operation": "ended"' in ended.stdout

    requests = emu.requests
    assert [(r.method, r.path) for r in requests] == [
        ("PUT", "/live-activity/stream/nightly"),
        ("PUT", "/live-activity/stream/nightly"),
        ("DELETE", "/live-activity/stream/nightly"),
    ]
    assert requests[1].body["content_state"]["current_step"] == 1
    assert requests[2].body is None
    assert started.stdout.decode().strip() == emu.streams["nightly"]
    record = emu.stream_activity("nightly")
    assert record is not None
    assert record.status == "ended"


def test_run_with_stream_key_drives_the_stream(emu: Emulator) -> None:
    result = cli(
        emu, "run", "--stream-key", "backup", "--steps", "2", "--", *py("print('::step::')")
    )

    assert result.returncode == 0
    assert [r.method for r in emu.requests] == ["PUT", "DELETE"]
    record = emu.stream_activity("backup")
    assert record is not None
    assert record.status == "ended"
    assert record.state["current_step"] == 2


def test_api_error_exits_1_with_one_line(emu: Emulator) -> None:
    result = cli(emu, "end", "--stream-key", "never-started")

    assert result.returncode == 1
    assert result.stdout == b""
    assert result.stderr.count(b"\n") == 1
    assert b"404" in result.stderr


# -- the emulator subcommand, through the installed console script -----------------------------


def test_emulator_subcommand_serves_and_prints_its_url() -> None:
    script = Path(sys.executable).parent / "activitysmith-track"
    if not script.exists():
        pytest.skip("the activitysmith-track console script is not installed next to python")
    with subprocess.Popen(
        [str(script), "emulator", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env_for(None),
    ) as proc:
        assert proc.stdout is not None
        try:
            line = read_until(proc.stdout, b"\n").decode()
            assert line.startswith("ActivitySmith emulator listening on http://127.0.0.1:")
            url = line.split()[-1]
            env = env_for(None, ACTIVITYSMITH_BASE_URL=url)
            result = cli(None, "start", "--title", "Hi", env=env)
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
