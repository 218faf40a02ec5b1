"""What the benchmark scripts share: a clean environment, tables, spreads, verdicts, emulators
in another process, and readings of this process (RSS, threads, sockets).

Not a benchmark itself; the ``bench_*.py`` scripts import it from their own directory.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activitysmith_track._config import ENV_NAMES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MiB = 1024 * 1024

# Where the budget is not the subject, the account's 60 requests a minute would only make
# every figure a figure of the budget (the library applies it to local emulators too).
REQUESTS_PER_MINUTE = 100_000

# Settings that would change what is measured (every variable the library reads): the
# defaults are the point.
_CLEARED = sorted(ENV_NAMES)


def clean_environment() -> None:
    """Drop every setting a developer's shell may carry, then lift the request budget.

    A child run (``--child``) keeps the environment its parent prepared for it."""
    if sys.argv[1:2] == ["--child"]:
        return
    for name in _CLEARED:
        os.environ.pop(name, None)
    os.environ["ACTIVITYSMITH_TRACK_REQUESTS_PER_MINUTE"] = str(REQUESTS_PER_MINUTE)


# -- the machine ---------------------------------------------------------------------------------


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat (zeros elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)
    return sum(values) - idle, sum(values)


class Machine:
    """Names the machine and says how busy it was: load averages and the share of CPU time
    that every process (this one included) used over the run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.load_start = _load()
        self.cpu_start = _cpu_times()
        self.own_start = time.process_time()

    def describe(self, what: str, quick: bool) -> None:
        import activitysmith_track

        print(
            f"{what}: activitysmith-track {activitysmith_track.__version__}, Python "
            f"{platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
            f"{platform.release()}" + (", --quick" if quick else "")
        )
        print(f"load average at start: {self.load_start:.2f}" + _busy_note(self.load_start))
        sys.stdout.flush()

    def finish(self) -> None:
        busy0, total0 = self.cpu_start
        busy1, total1 = _cpu_times()
        elapsed = time.perf_counter() - self.started
        own = time.process_time() - self.own_start
        load = _load()
        print()
        line = f"run time {elapsed:.1f} s; load average at end {load:.2f}{_busy_note(load)}"
        if total1 > total0:
            share = (busy1 - busy0) / (total1 - total0)
            cpus = os.cpu_count() or 1
            line += (
                f"; all CPUs {share:.0%} busy over the run (this process alone: "
                f"{own / elapsed / cpus:.0%}, its children not counted)"
            )
        print(line)


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _busy_note(load: float) -> str:
    cpus = os.cpu_count() or 1
    return f" (busy machine, {cpus} CPUs: expect noise)" if load > cpus / 2 else ""


# -- figures ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1), nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], fmt: str = "{:,.0f}") -> str:
    """p10-p90 over ten samples or more, else min-max: how far the runs were apart."""
    if len(values) >= 10:
        low, high = pct(values, 0.1), pct(values, 0.9)
    else:
        low, high = min(values), max(values)
    return f"{fmt.format(low)}-{fmt.format(high)}"


def spread_label(count: int) -> str:
    return "p10-p90" if count >= 10 else "min-max"


@dataclass
class Verdict:
    name: str
    figure: str
    target: str
    passed: bool


@dataclass
class Report:
    verdicts: list[Verdict] = field(default_factory=list)

    def check(self, name: str, figure: str, target: str, passed: bool) -> None:
        self.verdicts.append(Verdict(name, figure, target, passed))
        print(f"{'PASS' if passed else 'MISS'}: {name}: {figure} (target {target})")
        sys.stdout.flush()

    def print_summary(self) -> None:
        heading("Targets")
        rows = [(v.name, v.figure, v.target, "PASS" if v.passed else "MISS") for v in self.verdicts]
        table(("target", "measured", "goal", "result"), rows)


def heading(text: str) -> None:
    print()
    print(text)
    print("=" * len(text))


def table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        out = []
        for i, cell in enumerate(cells):
            # Text columns left, figures right.
            text = str(cell)
            out.append(text.ljust(widths[i]) if i == 0 else text.rjust(widths[i]))
        return "  ".join(out).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
    sys.stdout.flush()


# -- emulators in another process -----------------------------------------------------------------


@contextmanager
def emulator_process(latency: float = 0.0) -> Iterator[str]:
    """A fast-mode emulator in a process of its own (so that its work is not this process's
    CPU, GIL or memory); yields its API base URL."""
    code = (
        "import sys, threading\n"
        "from activitysmith_track.emulator import Emulator\n"
        "emu = Emulator(fast=True).start()\n"
        f"emu.latency = {latency!r}\n"
        "print(emu.base_url, flush=True)\n"
        "sys.stdin.read()\n"  # until the parent closes our stdin
        "emu.stop()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        base_url = proc.stdout.readline().strip()
        if not base_url.startswith("http"):
            raise RuntimeError(f"the emulator process did not start: {base_url!r}")
        yield base_url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_child(script: Path, case: str, params: dict[str, Any], *, timeout: float = 600) -> Any:
    """Run ``script --child case`` with ``params`` as JSON; its last stdout line is JSON."""
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, str(script), "--child", case, json.dumps(params)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"child {case} failed ({proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


# -- this process ---------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident memory now (Linux /proc; the peak from getrusage elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class RssSampler:
    """Samples RSS every ``interval`` seconds on a thread; ``peak`` is the highest seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def open_sockets() -> int:
    """Sockets this process has open (Linux: file descriptors that are sockets; -1 elsewhere)."""
    fds = Path("/proc/self/fd")
    if not fds.exists():
        return -1
    count = 0
    for fd in fds.iterdir():
        try:
            if os.readlink(fd).startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def library_threads() -> list[str]:
    """Names of live threads the library started."""
    return [t.name for t in threading.enumerate() if t.name.startswith("activitysmith-track")]


def parse_args_child(argv: Sequence[str]) -> tuple[str, dict[str, Any]] | None:
    """``--child CASE PARAMS`` as (case, params), or None when not a child run."""
    if len(argv) >= 3 and argv[0] == "--child":
        return argv[1], json.loads(argv[2])
    return None
