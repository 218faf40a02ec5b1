"""Delivery benchmarks: caller cost, job overhead against a slow server, and exit time.

Run with ``python benchmarks/bench_delivery.py`` (about a minute and a half) or add ``--quick``
(under half a minute, fewer samples). Everything runs against in-process emulators on the
loopback interface; no API key and no network are needed. The script prints figures, ratios
and PASS/MISS for each target; see ``benchmarks/README.md`` for what each figure means.

These are figures, not tests: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

# Settings that would change what is measured: the defaults are the point.
for _name in (
    "ACTIVITYSMITH_BASE_URL",
    "ACTIVITYSMITH_TRACK_DEBOUNCE",
    "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT",
    "ACTIVITYSMITH_TRACK_DISABLED",
    "ACTIVITYSMITH_TRACK_STRICT",
    "ACTIVITYSMITH_TRACK_PREVIEW",
):
    os.environ.pop(_name, None)

import tqdm  # noqa: E402

import activitysmith_track  # noqa: E402
from activitysmith_track import (  # noqa: E402
    ActivityType,
    Client,
    ContentState,
    Payload,
    Settings,
    live_activity,
)
from activitysmith_track.emulator import Emulator, Fault  # noqa: E402

US = 1_000.0  # ns per microsecond

# The hung-server case logs "end not confirmed within flush_timeout" by design; keep the
# table readable.
logging.getLogger("activitysmith_track").setLevel(logging.ERROR)


# -- output ---------------------------------------------------------------------------------


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


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# -- emulators and settings -----------------------------------------------------------------


@contextmanager
def emulator(latency: float = 0.0) -> Iterator[Emulator]:
    """An emulator the library is pointed at through ACTIVITYSMITH_BASE_URL."""
    emu = Emulator(fast=True).start()
    emu.latency = latency
    os.environ["ACTIVITYSMITH_BASE_URL"] = emu.base_url
    try:
        yield emu
    finally:
        os.environ.pop("ACTIVITYSMITH_BASE_URL", None)
        emu.stop()


def requests_since(emu: Emulator, before: int) -> int:
    return len(emu.requests) - before


# -- 1. caller cost -------------------------------------------------------------------------


def bench_caller_cost(report: Report, *, batches: int, calls: int) -> None:
    heading(f"1. Cost on the caller's thread ({batches} batches of {calls:,} calls, ns per call)")
    null = open(os.devnull, "w")  # noqa: SIM115 - closed below, after the bars
    with emulator() as emu, live_activity("bench: caller cost", total=batches * calls) as la:
        bar = tqdm.tqdm(total=batches * calls, file=null)

        def bare() -> None:
            for _ in range(calls):
                pass

        def advance() -> None:
            for _ in range(calls):
                la.advance()

        def track() -> None:
            for _ in la.track(range(calls)):
                pass

        def tqdm_update() -> None:
            for _ in range(calls):
                bar.update()

        def tqdm_iter() -> None:
            for _ in tqdm.tqdm(range(calls), file=null):
                pass

        cases: list[tuple[str, Callable[[], None]]] = [
            ("bare loop: for i in range(N): pass", bare),
            ("la.advance() in a loop", advance),
            ("for _ in la.track(range(N))", track),
            ("tqdm: bar.update() in a loop", tqdm_update),
            ("tqdm: for _ in tqdm(range(N))", tqdm_iter),
        ]
        samples: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _, fn in cases:  # warm up
            fn()
        gc.collect()
        gc.disable()
        try:
            # Round-robin, so that drift (frequency scaling, the worker waking) hits every
            # case alike.
            for _ in range(batches):
                for name, fn in cases:
                    t0 = time.perf_counter_ns()
                    fn()
                    samples[name].append((time.perf_counter_ns() - t0) / calls)
        finally:
            gc.enable()
        bar.close()
        sent_during = len(emu.requests)
    null.close()

    base = statistics.median(samples[cases[0][0]])
    rows = []
    for name, _ in cases:
        med = statistics.median(samples[name])
        rows.append((name, f"{med:,.0f}", f"{pct(samples[name], 0.95):,.0f}", f"{med - base:,.0f}"))
    table(("per call", "median ns", "p95 ns", "minus bare loop"), rows)

    adv = statistics.median(samples[cases[1][0]])
    trk = statistics.median(samples[cases[2][0]])
    upd = statistics.median(samples[cases[3][0]])
    itr = statistics.median(samples[cases[4][0]])
    print()
    print(f"la.advance() / tqdm iteration : {adv / itr:5.2f}x  (the target's reference)")
    print(f"la.advance() / tqdm update()  : {adv / upd:5.2f}x")
    print(f"la.track() / tqdm iteration   : {trk / itr:5.2f}x")
    print(f"requests the worker sent meanwhile (default debounce and budget): {sent_during}")
    report.check(
        "1a la.advance() vs tqdm per-iteration",
        f"{adv / itr:.2f}x ({adv:,.0f} vs {itr:,.0f} ns)",
        "<= 2x",
        adv <= 2 * itr,
    )
    report.check("1b la.advance() median", f"{adv / US:.2f} us", "< 2 us", adv < 2 * US)
    lock_costs(calls)


def lock_costs(calls: int) -> None:
    """What the state lock taken by advance() and track() costs on this interpreter."""
    lock = threading.Lock()

    def with_lock() -> None:
        for _ in range(calls):
            with lock:
                pass

    def acquire_release() -> None:
        for _ in range(calls):
            lock.acquire()
            lock.release()

    def bare() -> None:
        for _ in range(calls):
            pass

    def best(fn: Callable[[], None]) -> float:
        runs = []
        for _ in range(30):
            t0 = time.perf_counter_ns()
            fn()
            runs.append((time.perf_counter_ns() - t0) / calls)
        return min(runs)

    loop = best(bare)
    print(
        f"context: an uncontended threading.Lock costs {best(with_lock) - loop:,.0f} ns as "
        f"'with lock:' and {best(acquire_release) - loop:,.0f} ns as acquire()/release() here"
    )


# -- 2. a job against a slow server ---------------------------------------------------------


def work_sleep() -> None:
    time.sleep(0.002)


def work_busy() -> None:
    end = time.perf_counter() + 0.002
    while time.perf_counter() < end:
        pass


@dataclass
class JobRun:
    seconds: float
    requests: int
    exit_seconds: float = 0.0  # leaving the block: the end's round trip
    main_cpu: float = 0.0  # CPU time of the job's own thread
    background_cpu: float = 0.0  # CPU time of every other thread (worker, emulator)


def job_untracked(steps: int, work: Callable[[], None]) -> JobRun:
    p0, m0 = time.process_time(), time.thread_time()
    t0 = time.perf_counter()
    for _ in range(steps):
        work()
    seconds = time.perf_counter() - t0
    main, total = time.thread_time() - m0, time.process_time() - p0
    return JobRun(seconds, 0, 0.0, main, total - main)


def job_tracked(emu: Emulator, steps: int, work: Callable[[], None]) -> JobRun:
    before = len(emu.requests)
    p0, m0 = time.process_time(), time.thread_time()
    t0 = time.perf_counter()
    with live_activity("bench: job", total=steps) as la:
        for _ in range(steps):
            work()
            la.advance()
        t_exit = time.perf_counter()
    t1 = time.perf_counter()
    main, total = time.thread_time() - m0, time.process_time() - p0
    return JobRun(t1 - t0, requests_since(emu, before), t1 - t_exit, main, total - main)


def job_naive(emu: Emulator, steps: int, work: Callable[[], None]) -> JobRun:
    """The official SDK's pattern: one blocking request per update, on the job's thread."""
    before = len(emu.requests)

    def state(value: int) -> Payload:
        return Payload(
            content_state=ContentState(
                title="bench: naive job",
                type=ActivityType.PROGRESS,
                value=value,
                upper_limit=steps,
            )
        )

    t0 = time.perf_counter()
    with Client(base_url=emu.base_url, api_key="ask_bench") as client:
        activity_id = client.start(state(0)).activity_id
        assert activity_id is not None
        for i in range(steps):
            work()
            client.update(activity_id, state(i + 1))
        client.end(activity_id, state(steps))
    seconds = time.perf_counter() - t0
    return JobRun(seconds, requests_since(emu, before))


def update_bound(seconds: float, settings: Settings) -> int:
    """Most requests the defaults allow in ``seconds``: start + end + time-bound updates."""
    by_debounce = int(seconds / settings.debounce) + 1
    by_budget = settings.update_burst + int(seconds / settings.update_interval)
    return 2 + min(by_debounce, by_budget)


def bench_job(report: Report, *, steps: int, repeats: int, naive_steps: int, busy: bool) -> None:
    latency = 0.05
    heading(
        f"2. A job of {steps:,} steps x 2 ms of work, emulator latency {latency * 1000:.0f} ms "
        f"({repeats} interleaved runs each)"
    )
    settings = Settings()
    works: list[tuple[str, str, Callable[[], None]]] = [("sleep", "time.sleep(0.002)", work_sleep)]
    if busy:
        works.append(("busy", "busy loop 2 ms (holds the GIL)", work_busy))
    rows: list[tuple[str, ...]] = []
    cpu_rows: list[tuple[str, ...]] = []
    tracked_best: dict[str, float] = {}
    with emulator(latency) as emu:
        job_tracked(emu, 10, work_sleep)  # warm: session, worker thread, imports
        for key, label, work in works:
            plain: list[JobRun] = []
            tracked: list[JobRun] = []
            for _ in range(repeats):  # interleaved, so both see the same machine state
                plain.append(job_untracked(steps, work))
                tracked.append(job_tracked(emu, steps, work))
            p_best = min(r.seconds for r in plain)
            t_best = min(r.seconds for r in tracked)
            p_med = statistics.median(r.seconds for r in plain)
            t_med = statistics.median(r.seconds for r in tracked)
            reqs = max(r.requests for r in tracked)
            ratio = t_best / p_best
            tracked_best[key] = t_best
            rows.append((f"{label}: no tracking", f"{p_best:.3f}", f"{p_med:.3f}", "1.000x", "0"))
            rows.append(
                (
                    f"{label}: la.advance() per step",
                    f"{t_best:.3f}",
                    f"{t_med:.3f}",
                    f"{ratio:.3f}x (median {t_med / p_med:.3f}x)",
                    f"{reqs}",
                )
            )
            exit_med = statistics.median(r.exit_seconds for r in tracked)
            extra_main = statistics.median(r.main_cpu for r in tracked) - statistics.median(
                r.main_cpu for r in plain
            )
            extra_bg = statistics.median(r.background_cpu for r in tracked) - statistics.median(
                r.background_cpu for r in plain
            )
            cpu_rows.append(
                (
                    label,
                    f"{exit_med * 1000:.0f}",
                    f"{extra_main * 1000:.0f}",
                    f"{extra_bg * 1000:.0f}",
                    f"{(exit_med + max(0.0, extra_main) + max(0.0, extra_bg)) / p_best:.1%}",
                )
            )
            # Each run against the bound for its own duration.
            worst = max(tracked, key=lambda r: r.requests - update_bound(r.seconds, settings))
            bound = update_bound(worst.seconds, settings)
            report.check(
                f"2a tracked/untracked ({key}, best of {repeats})",
                f"{ratio:.3f}x",
                "< 1.1x",
                ratio < 1.1,
            )
            report.check(
                f"2b requests, tracked ({key})",
                f"{worst.requests} for {steps:,} updates",
                f"<= {bound} in {worst.seconds:.1f} s",
                worst.requests <= bound,
            )

        naive = job_naive(emu, naive_steps, work_sleep)
        per_step = naive.seconds / naive_steps
        extrapolated = per_step * steps
        p_sleep = min(job_untracked(steps, work_sleep).seconds, tracked_best["sleep"])
        rows.append(
            (
                f"naive: Client.update() per step, {naive_steps} steps measured",
                f"{naive.seconds:.3f}",
                "",
                "",
                f"{naive.requests}",
            )
        )
        rows.append(
            (
                f"naive: extrapolated to {steps:,} steps",
                f"{extrapolated:.1f}",
                "",
                f"{extrapolated / p_sleep:.1f}x",
                f"{steps + 2:,} (extrapolated)",
            )
        )
    table(
        ("job (time.sleep unless said)", "best s", "median s", "vs untracked", "HTTP requests"),
        rows,
    )
    print()
    print(
        f"naive per step: {per_step * 1000:.1f} ms (2 ms work + one blocking round trip); "
        f"naive/tracked: {extrapolated / tracked_best['sleep']:.1f}x"
    )
    print(
        "request bound: start + end + min(one update per debounce "
        f"({settings.debounce:g} s), burst {settings.update_burst} + 1 per "
        f"{settings.update_interval:g} s)"
    )
    print()
    print(
        "What tracking adds to the job (medians; the CPU figures are far less sensitive "
        "to machine load than wall time):"
    )
    table(
        ("job", "exit wait ms", "job thread +CPU ms", "other threads +CPU ms", "sum / job"),
        cpu_rows,
    )
    print(
        "other threads = the worker and the in-process emulator; with a busy loop their CPU "
        "time is taken from the job through the GIL."
    )


def bench_memory(report: Report, *, steps: int) -> None:
    heading(f"Peak memory of a tracked job ({steps:,} steps, sleep 2 ms, tracemalloc)")
    with emulator(0.05) as emu:
        job_tracked(emu, 10, work_sleep)  # warm: session, worker thread, imports
        gc.collect()
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        job_tracked(emu, steps, work_sleep)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    kib = (peak - base) / 1024
    print(f"peak above baseline: {kib:,.0f} KiB (includes the in-process emulator's handling)")


# -- 3. exit ----------------------------------------------------------------------------------


def exit_once(emu: Emulator, *, hang: bool, flush_timeout: float | None) -> tuple[float, int]:
    before = len(emu.requests)
    with live_activity("bench: exit", total=100, flush_timeout=flush_timeout) as la:
        la.advance(50)
        # The start is through, as in a job that ran a while; the last change is still
        # pending when the block ends (the end carries it: no update is sent first).
        la.flush()
        if hang:
            emu.add_fault(Fault.hang(), path="/live-activity/end")
        la.advance(50)
        t0 = time.perf_counter()
    return time.perf_counter() - t0, requests_since(emu, before)


def bench_exit(report: Report, *, repeats: int) -> None:
    heading(f"3. Exit: leaving the block until it returns (median of {repeats})")
    flush_bound = 2.0
    default_flush = Settings().flush_timeout
    cases = [
        ("healthy (latency 0)", 0.0, False, None),
        ("slow (latency 1 s)", 1.0, False, None),
        (f"hung end (Fault.hang, flush_timeout={flush_bound:g})", 0.0, True, flush_bound),
    ]
    rows = []
    for label, latency, hang, flush_timeout in cases:
        times: list[float] = []
        reqs = 0
        n = 1 if hang or latency >= 1 else repeats
        with emulator(latency) as emu:
            for _ in range(n):
                seconds, reqs = exit_once(emu, hang=hang, flush_timeout=flush_timeout)
                times.append(seconds)
        med = statistics.median(times)
        rows.append((label, f"{med:.3f}", f"{max(times):.3f}", f"{n}", f"{reqs}"))
        if hang:
            report.check(
                "3c exit, hung server",
                f"{med:.3f} s",
                f"<= flush_timeout {flush_bound:g} s + 0.1",
                max(times) <= flush_bound + 0.1,
            )
        elif latency:
            report.check(
                "3b exit, slow server (1 s)",
                f"{med:.3f} s",
                "one round trip (< 1.25 s)",
                max(times) < latency + 0.25,
            )
        else:
            report.check(
                "3a exit, healthy server",
                f"{med * 1000:.1f} ms",
                "median < 100 ms",
                med < 0.1,
            )
    table(("server", "median s", "max s", "runs", "requests per run"), rows)
    print(f"default flush_timeout is {default_flush:g} s; the hung case sets {flush_bound:g} s")


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (< 30 s)")
    args = parser.parse_args(argv)
    quick: bool = args.quick

    started = time.perf_counter()
    print(
        f"activitysmith-track {activitysmith_track.__version__}, tqdm {tqdm.__version__}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}, {os.cpu_count()} CPUs" + (", --quick" if quick else "")
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(
        f"load average at start: {load:.2f}"
        + (" (busy machine: expect noise)" if load > 0.5 else "")
    )
    report = Report()
    bench_caller_cost(report, batches=50 if quick else 200, calls=1_000)
    bench_job(
        report,
        steps=1_000,
        repeats=2 if quick else 5,
        naive_steps=20 if quick else 100,
        busy=not quick,
    )
    if not quick:
        bench_memory(report, steps=1_000)
    bench_exit(report, repeats=3 if quick else 5)
    report.print_summary()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"\ntotal run time {time.perf_counter() - started:.1f} s, load average at end {load:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
