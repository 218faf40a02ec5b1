"""Start-up and footprint: the import, the command's start, CLI markers, and what 10,000
activities leave behind.

Run with ``python benchmarks/bench_startup.py`` (about two minutes) or ``--quick`` (about 40 s).
Every figure comes from fresh processes, run interleaved with their baseline (A, B, A, B...),
so that a change in the machine's load hits both. Prints medians with their spread and
PASS/MISS per target. See ``benchmarks/README.md``.

These are figures, not tests: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _bench
from _bench import MiB, Report, heading, median, spread, spread_label, table

_bench.clean_environment()

IMPORT_TARGET = 0.5  # import activitysmith_track / import requests
COMMAND_TARGET = 1.5  # run -- CMD until CMD's first instruction / python3 -c pass
MARKER_TARGET = 3.0  # a child printing only markers / the same number of plain lines
MEMORY_TARGET = 2 * MiB  # RSS growth over 10,000 sequential activities
JOB_IMPORT = "from activitysmith_track import live_activity"

# Modules that an import of the package should not bring in before they are needed.
HEAVY = ("asyncio", "requests", "urllib3", "tenacity", "http.client", "ssl", "email")


def _command() -> list[str]:
    """How a user runs the command: the installed script next to this interpreter."""
    script = Path(sys.executable).with_name("activitysmith-track")
    if script.exists():
        return [str(script)]
    found = shutil.which("activitysmith-track")
    return [found] if found else [sys.executable, "-m", "activitysmith_track"]


# -- 1. the import --------------------------------------------------------------------------------


def _import_time(module: str, statement: str | None = None) -> float:
    statement = statement or f"import {module}"
    code = f"import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return float(out.split()[-1])


def _process_time(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_import(report: Report, *, runs: int) -> None:
    heading(f"1. Import, in fresh interpreters ({runs} interleaved runs each)")
    cases = {
        "import activitysmith_track": lambda: _import_time("activitysmith_track"),
        # What a job runs: the package's names load their modules on first use.
        JOB_IMPORT: lambda: _import_time("", JOB_IMPORT),
        "import requests": lambda: _import_time("requests"),
        "python -c pass (whole process)": lambda: _process_time([sys.executable, "-c", "pass"]),
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            samples[name].append(fn())
    rows = [
        (name, f"{median(v) * 1000:.1f}", spread([x * 1000 for x in v], "{:.1f}"))
        for name, v in samples.items()
    ]
    table(("what", "median ms", f"{spread_label(runs)} ms"), rows)
    ours = median(samples["import activitysmith_track"])
    theirs = median(samples["import requests"])
    job = median(samples[JOB_IMPORT])
    pairs = [
        a / b
        for a, b in zip(
            samples["import activitysmith_track"], samples["import requests"], strict=True
        )
    ]
    print(f"\nper-run ratio {spread(pairs, '{:.2f}')}x")
    probe = f"import sys\n{JOB_IMPORT}\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split()
    print(f"imported by '{JOB_IMPORT}': {', '.join(loaded) or 'none of'} of {HEAVY}")
    _import_profile()
    report.check(
        "import activitysmith_track vs import requests",
        f"{ours / theirs:.2f}x ({ours * 1000:.0f} vs {theirs * 1000:.0f} ms)",
        f"<= {IMPORT_TARGET:g}x",
        ours / theirs <= IMPORT_TARGET,
    )
    report.check(
        f"{JOB_IMPORT} vs import requests",
        f"{job / theirs:.2f}x ({job * 1000:.0f} vs {theirs * 1000:.0f} ms)",
        f"<= {IMPORT_TARGET:g}x",
        job / theirs <= IMPORT_TARGET,
    )
    report.check(
        "nothing heavy imported with the package",
        ", ".join(loaded) or "none",
        "none of asyncio, requests, tenacity...",
        not loaded,
    )


def _import_profile(top: int = 12) -> None:
    """The modules that cost most under ``JOB_IMPORT`` (-X importtime)."""
    err = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", JOB_IMPORT],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows: list[tuple[int, int, str]] = []
    for line in err.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        try:
            own, cumulative = int(parts[0].split(":")[-1]), int(parts[1])
        except ValueError:
            continue  # the header line
        rows.append((cumulative, own, parts[2].strip()))
    rows.sort(reverse=True)
    print("\nheaviest imports (-X importtime, one run; cumulative includes what each imports):")
    table(
        ("module", "cumulative ms", "self ms"),
        [(name, f"{cum / 1000:.1f}", f"{own / 1000:.1f}") for cum, own, name in rows[:top]],
    )


# -- 2. the command's start ---------------------------------------------------------------------


def _first_instruction(base: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Seconds from invoking ``run -- date`` until ``date`` ran, until its line reached us,
    and until the command returned."""
    command = [*base, "run", "--", "date", "+%s.%N"]
    t0 = time.time()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    seen = time.time()
    proc.stdout.read()
    proc.wait()
    done = time.time()
    return float(line) - t0, seen - t0, done - t0


def bench_command(report: Report, *, runs: int) -> None:
    heading(f"2. The command's start ({runs} interleaved runs each)")
    base = _command()
    print(f"command: {' '.join(base)} run -- date +%s.%N  (date prints when it runs)")
    with _bench.emulator_process() as base_url:
        env = {**os.environ, "ACTIVITYSMITH_BASE_URL": base_url}
        _first_instruction(base, env)  # warm the file cache
        pass_times: list[float] = []
        first: list[float] = []
        seen: list[float] = []
        whole: list[float] = []
        for _ in range(runs):
            pass_times.append(_process_time([sys.executable, "-c", "pass"]))
            a, b, c = _first_instruction(base, env)
            first.append(a)
            seen.append(b)
            whole.append(c)
    rows = [
        ("python -c pass (whole process)", pass_times),
        ("run -- CMD: until CMD's first instruction", first),
        ("run -- CMD: until its first line reached us", seen),
        ("run -- CMD: until the command returned", whole),
    ]
    table(
        ("what", "median ms", f"{spread_label(runs)} ms"),
        [
            (name, f"{median(v) * 1000:.1f}", spread([x * 1000 for x in v], "{:.1f}"))
            for name, v in rows
        ],
    )
    ratio = median(first) / median(pass_times)
    report.check(
        "run -- CMD until CMD's first instruction vs python -c pass",
        f"{ratio:.2f}x ({median(first) * 1000:.0f} vs {median(pass_times) * 1000:.0f} ms)",
        f"<= {COMMAND_TARGET:g}x",
        ratio <= COMMAND_TARGET,
    )


# -- 3. markers through run ----------------------------------------------------------------------


def bench_markers(report: Report, *, lines: int, runs: int) -> None:
    heading(f"3. A child printing {lines:,} lines through run ({runs} interleaved runs each)")
    base = _command()
    with tempfile.TemporaryDirectory() as tmp, _bench.emulator_process() as base_url:
        env = {**os.environ, "ACTIVITYSMITH_BASE_URL": base_url}
        markers = Path(tmp, "markers.py")
        plain = Path(tmp, "plain.py")
        markers.write_text(
            f"N = {lines}\nfor i in range(1, N + 1):\n    print(f'::progress:: {{i}}/{{N}}')\n"
        )
        # Lines of the same length, that are not markers.
        plain.write_text(
            f"N = {lines}\nfor i in range(1, N + 1):\n    print(f'  progress   {{i}}/{{N}}')\n"
        )

        def through_run(script: Path) -> float:
            return _timed([*base, "run", "--", sys.executable, str(script)], env)

        def direct(script: Path) -> float:
            return _timed([sys.executable, str(script)], {**env, "PYTHONUNBUFFERED": "1"})

        cases = {
            "plain lines, through run": lambda: through_run(plain),
            "marker lines, through run": lambda: through_run(markers),
            "plain lines, run directly": lambda: direct(plain),
            "marker lines, run directly": lambda: direct(markers),
        }
        samples: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(runs):
            for name, fn in cases.items():
                samples[name].append(fn())
    table(
        ("child (stdout to /dev/null)", "median s", f"{spread_label(runs)} s", "us per line"),
        [
            (
                name,
                f"{median(v):.3f}",
                spread(v, "{:.3f}"),
                f"{median(v) / lines * 1e6:.1f}",
            )
            for name, v in samples.items()
        ],
    )
    m = median(samples["marker lines, through run"])
    p = median(samples["plain lines, through run"])
    pairs = [
        a / b
        for a, b in zip(
            samples["marker lines, through run"], samples["plain lines, through run"], strict=True
        )
    ]
    print(
        f"\na marker costs {(m - p) / lines * 1e6:.1f} us more than a plain line through run; "
        f"per-run ratio {spread(pairs, '{:.2f}')}x"
    )
    report.check(
        "markers vs plain lines, both through run",
        f"{m / p:.2f}x ({m:.2f} vs {p:.2f} s for {lines:,} lines)",
        f"<= {MARKER_TARGET:g}x",
        m / p <= MARKER_TARGET,
    )


def _timed(command: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


# -- 4. memory and leftovers ----------------------------------------------------------------------


def child_memory(params: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: RSS, threads and sockets around ``count`` sequential activities."""
    from activitysmith_track import live_activity
    from activitysmith_track._dispatch import Dispatcher

    def one(i: int) -> None:
        with live_activity(f"memory {i}", total=3) as la:
            la.advance(3)

    for i in range(params["warmup"]):
        one(-1 - i)
    gc.collect()
    before = _bench.rss_bytes()
    t0 = time.perf_counter()
    for i in range(params["count"]):
        one(i)
    seconds = time.perf_counter() - t0
    gc.collect()
    after = _bench.rss_bytes()
    threads_now, sockets_now = len(_bench.library_threads()), _bench.open_sockets()
    # The senders leave once idle; wait for that (bounded), then look again.
    idle = Dispatcher.idle_timeout
    deadline = time.monotonic() + idle + 10
    while _bench.library_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    waited = time.monotonic() - (deadline - idle - 10)
    gc.collect()
    return {
        "before": before,
        "after": after,
        "seconds": seconds,
        "threads_now": threads_now,
        "sockets_now": sockets_now,
        "threads_later": _bench.library_threads(),
        "sockets_later": _bench.open_sockets(),
        "waited": waited,
        "idle_timeout": idle,
        "final": _bench.rss_bytes(),
    }


def bench_memory(report: Report, *, count: int) -> None:
    from activitysmith_track.emulator import Emulator

    heading(f"4. Memory: {count:,} sequential activities in a fresh process")
    warmup = 200
    with Emulator(fast=True) as emu:
        os.environ["ACTIVITYSMITH_BASE_URL"] = emu.base_url
        try:
            result = _bench.run_child(
                Path(__file__), "memory", {"count": count, "warmup": warmup}, timeout=1200
            )
        finally:
            os.environ.pop("ACTIVITYSMITH_BASE_URL", None)
        activities = list(emu.activities.values())
        ended = sum(1 for a in activities if a.status == "ended")
        titles = [a.state.get("title") for a in activities]
        requests = len(emu.requests)
    growth = result["after"] - result["before"]
    table(
        ("reading", "value"),
        [
            ("RSS after a warm-up of 200 activities", f"{result['before'] / MiB:.1f} MiB"),
            (f"RSS after {count:,} more (gc.collect())", f"{result['after'] / MiB:.1f} MiB"),
            ("growth", f"{growth / MiB:+.2f} MiB"),
            ("caller time per activity", f"{result['seconds'] / count * 1000:.2f} ms"),
            (
                "library threads / sockets right after",
                f"{result['threads_now']} / {result['sockets_now']}",
            ),
            (
                f"after waiting {result['waited']:.1f} s (idle_timeout "
                f"{result['idle_timeout']:g} s)",
                f"{len(result['threads_later'])} threads / {result['sockets_later']} sockets",
            ),
            ("activities on the emulator / ended", f"{len(activities):,} / {ended:,}"),
            ("duplicated titles", f"{len(titles) - len(set(titles))}"),
            ("requests on the emulator", f"{requests:,} ({requests / (count + warmup):.2f} each)"),
        ],
    )
    report.check(
        f"RSS growth over {count:,} sequential activities",
        f"{growth / MiB:+.2f} MiB",
        f"<= +{MEMORY_TARGET / MiB:g} MiB",
        growth <= MEMORY_TARGET,
    )
    report.check(
        "threads and sockets left after the idle timeout",
        f"{len(result['threads_later'])} threads, {result['sockets_later']} sockets",
        "none",
        not result["threads_later"] and result["sockets_later"] == 0,
    )
    report.check(
        f"every one of the {count + warmup:,} activities started and ended once",
        f"{ended:,} ended, {len(titles) - len(set(titles))} duplicated",
        f"{count + warmup:,} ended, 0 duplicated",
        ended == count + warmup and len(titles) == len(set(titles)),
    )


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    child = _bench.parse_args_child(argv)
    if child is not None:
        case, params = child
        if case == "memory":
            print(json.dumps(child_memory(params)))
            return 0
        raise SystemExit(f"unknown child case {case}")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about 40 s)")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    machine = _bench.Machine()
    machine.describe("bench_startup", quick)
    report = Report()
    bench_import(report, runs=5 if quick else 15)
    bench_command(report, runs=5 if quick else 15)
    bench_markers(report, lines=20_000 if quick else 50_000, runs=3 if quick else 5)
    bench_memory(report, count=2_000 if quick else 10_000)
    report.print_summary()
    machine.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
