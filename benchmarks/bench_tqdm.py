"""The tqdm drop-in's cost per iteration, against plain tqdm, in one run.

Run with ``python benchmarks/bench_tqdm.py`` (about 15 s) or add ``--quick`` (about 2 s).
Each case iterates one bar over ``N`` items writing to ``os.devnull``; the drop-in's bar is
mirrored to a Live Activity on an in-process emulator (the outermost bar, so its card is
live and the background worker is running, as in a real job). The cases run interleaved,
round-robin, with the garbage collector on; each figure is the median over the runs of the
whole loop's time divided by ``N`` (bar creation and close included), with the spread of
the runs. See ``benchmarks/README.md``.

These are figures, not tests: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from activitysmith_track._config import ENV_NAMES

# Settings that would change what is measured (every variable the library reads): the
# defaults are the point.
for _name in ENV_NAMES:
    os.environ.pop(_name, None)

import tqdm as tqdm_package  # noqa: E402

import activitysmith_track  # noqa: E402
from activitysmith_track.tqdm import tqdm as live_tqdm  # noqa: E402

TARGET = 1.2  # the drop-in's cost per iteration, as a multiple of plain tqdm's

# Many short activities against a local emulator: the account budget makes the worker wait,
# which is not what is measured; keep the output to the table.
logging.getLogger("activitysmith_track").setLevel(logging.ERROR)

Case = Callable[[int], None]


@contextmanager
def emulator_process() -> Iterator[str]:
    """An emulator in a process of its own, so that serving requests does not compete with
    the measured loop for this interpreter's GIL (the library's worker thread still does, as
    in a real job). Yields its base URL."""
    server = subprocess.Popen(
        [sys.executable, "-m", "activitysmith_track.emulator", "--port", "0", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the preview page's address
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "ActivitySmith emulator listening on <base URL>"
        if "listening on " not in line:
            raise RuntimeError(f"the emulator did not start: {line!r}")
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        server.terminate()
        server.wait(10)


def make_cases(
    devnull: object, mirrored: list[activitysmith_track.LiveActivity]
) -> dict[str, Case]:
    plain = tqdm_package.tqdm

    def bare(n: int) -> None:
        for _ in range(n):
            pass

    def plain_iteration(n: int) -> None:
        for _ in plain(range(n), file=devnull):
            pass

    def live_iteration(n: int) -> None:
        bar = live_tqdm(range(n), file=devnull, desc="bench")
        assert bar.live_activity is not None  # the case measures a mirrored bar
        mirrored.append(bar.live_activity)
        for _ in bar:
            pass

    def unmirrored_iteration(n: int) -> None:
        for _ in live_tqdm(range(n), file=devnull, live=False):
            pass

    def plain_update(n: int) -> None:
        bar = plain(total=n, file=devnull)
        update = bar.update
        for _ in range(n):
            update()
        bar.close()

    def live_update(n: int) -> None:
        bar = live_tqdm(total=n, file=devnull, desc="bench")
        assert bar.live_activity is not None
        mirrored.append(bar.live_activity)
        update = bar.update
        for _ in range(n):
            update()
        bar.close()

    return {
        "bare loop": bare,
        "tqdm iteration": plain_iteration,
        "drop-in iteration (mirrored)": live_iteration,
        "drop-in iteration (live=False)": unmirrored_iteration,
        "tqdm update()": plain_update,
        "drop-in update() (mirrored)": live_update,
    }


def measure(cases: dict[str, Case], n: int, runs: int) -> dict[str, list[float]]:
    """ns per item of each run of each case, the cases interleaved round-robin."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for name in names:  # warm-up: first bars, first activity, imports
        cases[name](n // 10)
    for run in range(runs):
        # Rotate the order, so no case always runs right after the same neighbour.
        for name in names[run % len(names) :] + names[: run % len(names)]:
            start = time.perf_counter_ns()
            cases[name](n)
            samples[name].append((time.perf_counter_ns() - start) / n)
    return samples


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    print(line.format(*header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line.format(*row))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer and shorter runs")
    args = parser.parse_args(argv)
    n, runs = (50_000, 11) if args.quick else (200_000, 31)

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"tqdm {tqdm_package.__version__}, {os.cpu_count()} CPUs; "
        f"{runs} interleaved runs of {n:,} items per case, GC on"
    )
    # Every mirrored bar is its own activity: more starts and ends than the account's 60
    # requests a minute, so the worker is still sending when the runs end. Exit does not
    # wait for it (flush_timeout only bounds waits at exits, never the caller's cost).
    activitysmith_track.configure(flush_timeout=0)
    mirrored: list[activitysmith_track.LiveActivity] = []
    with open(os.devnull, "w") as devnull, emulator_process() as base_url:
        os.environ["ACTIVITYSMITH_BASE_URL"] = base_url
        cases = make_cases(devnull, mirrored)
        samples = measure(cases, n, runs)
        report(samples)
        started = sum(1 for la in mirrored if la.activity_id is not None)
        print(f"\n{len(mirrored)} mirrored bars; {started} of their activities started by now")
    return 0


def report(samples: dict[str, list[float]]) -> None:
    rows = []
    for name, values in samples.items():
        q1, _, q3 = statistics.quantiles(values, n=4)
        rows.append(
            (
                name,
                f"{statistics.median(values):.1f}",
                f"{q1:.1f}-{q3:.1f}",
                f"{min(values):.1f}-{max(values):.1f}",
            )
        )
    print()
    table(("case (ns per item)", "median", "p25-p75", "min-max"), rows)

    print()
    verdicts = []
    for ours, plain in (
        ("drop-in iteration (mirrored)", "tqdm iteration"),
        ("drop-in update() (mirrored)", "tqdm update()"),
    ):
        ratio = statistics.median(samples[ours]) / statistics.median(samples[plain])
        paired = statistics.median(
            a / b for a, b in zip(samples[ours], samples[plain], strict=True)
        )
        verdicts.append(
            (
                f"{ours} / {plain}",
                f"{ratio:.3f}x",
                f"{paired:.3f}x",
                f"<= {TARGET}x",
                "PASS" if ratio <= TARGET else "MISS",
            )
        )
    table(("target", "ratio of medians", "median of paired ratios", "goal", "result"), verdicts)


if __name__ == "__main__":
    sys.exit(main())
