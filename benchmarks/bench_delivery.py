"""Delivery under load and faults: concurrent activities, a hung update, many short activities,
hostile answers, a job against a slow server, and the exit.

Run with ``python benchmarks/bench_delivery.py`` (about four minutes) or ``--quick`` (about a
minute and a half); ``--only 1,7`` runs some sections. Sections 1-4 are the delivery targets, and 7
its storms: each run is a fresh process that uses the library while this process hosts the
emulator and counts, on it, what arrived (so the emulator's work never competes with the
library's threads for one GIL, and each figure starts from a clean process). Sections 5-6 run
in this process. Prints medians with their spread and PASS/MISS
per target. See ``benchmarks/README.md``.

These are figures, not tests: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _bench
from _bench import MiB, Report, heading, median, pct, spread, spread_label, table

_bench.clean_environment()

from activitysmith_track import (  # noqa: E402
    ActivityType,
    Client,
    ContentState,
    Payload,
    Settings,
    live_activity,
)
from activitysmith_track.emulator import Emulator, Fault  # noqa: E402

SCRIPT = Path(__file__)
CONCURRENT_TARGET = 0.3  # concurrent wall time / serial wall time
HOSTILE_TARGET = 20 * MiB  # RSS growth while a hostile answer arrives

# Faults and hung servers log warnings by design; keep the tables readable.
logging.getLogger("activitysmith_track").setLevel(logging.ERROR)


@contextmanager
def emulator(latency: float = 0.0) -> Iterator[Emulator]:
    """A fast-mode emulator in this process; the library (here and in children) is pointed at
    it through ACTIVITYSMITH_BASE_URL."""
    emu = Emulator(fast=True).start()
    emu.latency = latency
    os.environ["ACTIVITYSMITH_BASE_URL"] = emu.base_url
    try:
        yield emu
    finally:
        os.environ.pop("ACTIVITYSMITH_BASE_URL", None)
        emu.stop()


@dataclass
class Count:
    """What the emulator received for activities whose titles start with a prefix."""

    activities: int
    started: int
    ended: int
    duplicated: int
    requests: int


def count(emu: Emulator, prefix: str) -> Count:
    records = [
        a for a in emu.activities.values() if str(a.state.get("title", "")).startswith(prefix)
    ]
    titles = [a.state.get("title") for a in records]
    ids = {a.id for a in records}
    return Count(
        activities=len(records),
        started=len(records),
        ended=sum(1 for a in records if a.status == "ended"),
        duplicated=len(titles) - len(set(titles)),
        requests=sum(1 for r in emu.requests if r.activity_id in ids),
    )


# -- children: the library's side, one fresh process per run -------------------------------------


def child_activities(params: dict[str, Any]) -> dict[str, Any]:
    """``count`` short jobs of ``steps`` steps x ``work`` seconds each, at once from as many
    threads (``concurrent``) or one after another."""
    n, steps, work = params["count"], params["steps"], params["work"]
    prefix = params["prefix"]
    flush_timeout = Settings().flush_timeout
    exits: list[float] = [0.0] * n

    def job(i: int) -> None:
        with live_activity(f"{prefix}{i:03d}", steps=steps) as la:
            for _ in range(steps):
                time.sleep(work)
                la.step()
            left = time.perf_counter()
        exits[i] = time.perf_counter() - left

    t0 = time.perf_counter()
    if params["concurrent"]:
        threads = [threading.Thread(target=job, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(n):
            job(i)
    wall = time.perf_counter() - t0
    return {
        "wall": wall,
        "exit_median": statistics.median(exits),
        "exit_max": max(exits),
        "full_flush_waits": sum(1 for e in exits if e >= 0.9 * flush_timeout),
    }


def child_hung(params: dict[str, Any]) -> dict[str, Any]:
    """The start through, an update that hangs on the server, then the end."""
    with live_activity(params["title"], total=10, flush_timeout=params["flush_timeout"]) as la:
        la.advance(2)
        started = la.flush(10)
        la.advance(3)
        # Pushes the update out past the debounce; it hangs, so this waits its 0.5 s.
        update_flushed = la.flush(0.5)
        left_wall, left = time.time(), time.perf_counter()
    returned = time.perf_counter() - left
    return {
        "started": started,
        "update_flushed": update_flushed,
        "left_wall": left_wall,
        "exit": returned,
        "errors": [type(e).__name__ for e in la.errors],
    }


def child_sequential(params: dict[str, Any]) -> dict[str, Any]:
    """``count`` short activities one after another: the caller's time per block and RSS."""
    prefix = params["prefix"]
    for i in range(params["warmup"]):
        with live_activity(f"warmup {i}", total=3) as la:
            la.advance(3)
    gc.collect()
    before = _bench.rss_bytes()
    per_block: list[float] = []
    t_all = time.perf_counter()
    for i in range(params["count"]):
        t0 = time.perf_counter()
        with live_activity(f"{prefix}{i:04d}", total=3) as la:
            la.advance(3)
        per_block.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    gc.collect()
    after = _bench.rss_bytes()
    # The floor: the same two requests, blocking, one after the other, through the Client.
    floor: list[float] = []
    state = ContentState(title=f"{prefix}floor", type="progress", percentage=100)
    with Client(base_url=os.environ["ACTIVITYSMITH_BASE_URL"]) as client:
        for _ in range(params["floor"]):
            t0 = time.perf_counter()
            activity_id = client.start(state).activity_id
            assert activity_id is not None
            client.end(activity_id, state)
            floor.append(time.perf_counter() - t0)
    return {"before": before, "after": after, "per_block": per_block, "wall": wall, "floor": floor}


def child_hostile(params: dict[str, Any]) -> dict[str, Any]:
    """An update answered with something huge (the parent queued the fault), then the end;
    then the same through the public Client. RSS is sampled all along."""
    from activitysmith_track import ActivitySmithTrackError

    with live_activity(params["title"], total=10) as la:
        la.flush(10)
        gc.collect()
        baseline = _bench.rss_bytes()
        with _bench.RssSampler() as sampler:
            t0 = time.perf_counter()
            la.advance(5)
            la.flush(params["wait"])  # the update meets the hostile answer
            seconds = time.perf_counter() - t0
        errors = [type(e).__name__ for e in la.errors]
        # The one fault is used up: the state is sent again with the next change and the end.
    client_error = None
    title = params["title"] + " client"
    with Client(base_url=os.environ["ACTIVITYSMITH_BASE_URL"]) as client:
        activity_id = client.start(
            ContentState(title=title, type="progress", percentage=1)
        ).activity_id
        assert activity_id is not None
        gc.collect()
        client_base = _bench.rss_bytes()
        with _bench.RssSampler() as client_sampler:
            t1 = time.perf_counter()
            try:
                client.update(activity_id, ContentState(title=title, type="progress", percentage=2))
            except ActivitySmithTrackError as exc:
                client_error = f"{type(exc).__name__}: {str(exc)[:90]}"
            client_seconds = time.perf_counter() - t1
        client.end(activity_id, ContentState(title=title, type="progress", percentage=100))
    return {
        "baseline": baseline,
        "peak": sampler.peak,
        "seconds": seconds,
        "errors": errors,
        "client_base": client_base,
        "client_peak": client_sampler.peak,
        "client_seconds": client_seconds,
        "client_error": client_error,
    }


def child_storm(params: dict[str, Any]) -> dict[str, Any]:
    """The start through, then the end meets the faults the parent queued on its path."""
    with live_activity(params["title"], total=10, flush_timeout=params["flush_timeout"]) as la:
        la.advance(10)
        started = la.flush(10)
        left_wall, left = time.time(), time.perf_counter()
    return {
        "started": started,
        "left_wall": left_wall,
        "exit": time.perf_counter() - left,
        "errors": [type(e).__name__ for e in la.errors],
    }


CHILDREN: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "storm": child_storm,
    "activities": child_activities,
    "hung": child_hung,
    "sequential": child_sequential,
    "hostile": child_hostile,
}


# -- 1. 100 concurrent activities ------------------------------------------------------------------


def bench_concurrent(report: Report, *, n: int, runs: int) -> None:
    latency, steps, work = 0.05, 5, 0.01
    heading(
        f"1. {n} activities at 50 ms latency: from {n} threads at once vs one after another "
        f"({runs} interleaved run{'s' if runs > 1 else ''} each; each job {steps} steps x "
        f"{work * 1000:.0f} ms)"
    )
    walls: dict[str, list[float]] = {"serial": [], "concurrent": []}
    rows = []
    complete = True
    with emulator(latency) as emu:
        for r in range(runs):
            for mode in ("serial", "concurrent"):
                emu.reset()
                emu.latency = latency
                prefix = f"{mode} {r} "
                result = _bench.run_child(
                    SCRIPT,
                    "activities",
                    {
                        "count": n,
                        "steps": steps,
                        "work": work,
                        "prefix": prefix,
                        "concurrent": mode == "concurrent",
                    },
                )
                got = count(emu, prefix)
                walls[mode].append(result["wall"])
                ok = got.started == n and got.ended == n and got.duplicated == 0
                complete = complete and ok
                rows.append(
                    (
                        f"{mode}, run {r + 1}",
                        f"{result['wall']:.2f}",
                        f"{result['exit_median'] * 1000:.0f}",
                        f"{result['exit_max'] * 1000:.0f}",
                        f"{result['full_flush_waits']}",
                        f"{got.started}/{got.ended}/{got.duplicated}",
                        f"{got.requests}",
                    )
                )
    table(
        (
            "run",
            "wall s",
            "exit median ms",
            "exit max ms",
            "full flush waits",
            "started/ended/dup",
            "requests",
        ),
        rows,
    )
    serial, concurrent = median(walls["serial"]), median(walls["concurrent"])
    ratio = concurrent / serial
    print(
        f"\nserial {serial:.2f} s ({spread(walls['serial'], '{:.2f}')}), concurrent "
        f"{concurrent:.2f} s ({spread(walls['concurrent'], '{:.2f}')}); the work alone is "
        f"{steps * work:.2f} s per job"
    )
    report.check(
        f"{n} concurrent activities: every one started and ended once (counted on the emulator)",
        "yes" if complete else "NO (see the table)",
        "all, in every run",
        complete,
    )
    report.check(
        f"{n} concurrent activities, wall time vs serial",
        f"{ratio:.3f}x ({concurrent:.2f} vs {serial:.2f} s)",
        f"< {CONCURRENT_TARGET:g}x",
        ratio < CONCURRENT_TARGET,
    )


# -- 2. a hung update, then the end ---------------------------------------------------------------


def bench_hung_update(report: Report, *, runs: int) -> None:
    default = Settings().flush_timeout
    heading(
        f"2. An update hangs (Fault.hang() on /live-activity/update), then the block ends "
        f"({runs} run{'s' if runs > 1 else ''} each)"
    )
    rows = []
    for flush_timeout in (default, 2.0):
        lands: list[float] = []
        exits: list[float] = []
        delivered = 0
        with emulator() as emu:
            for r in range(runs):
                emu.reset()
                emu.add_fault(Fault.hang(), path="/live-activity/update")
                title = f"hung {flush_timeout:g} {r}"
                result = _bench.run_child(
                    SCRIPT, "hung", {"title": title, "flush_timeout": flush_timeout}
                )
                ends = [
                    q for q in emu.requests if q.path == "/live-activity/end" and q.status == 200
                ]
                hung = [q for q in emu.requests if q.fault == "hang"]
                if ends and hung and result["started"]:
                    delivered += 1
                    lands.append(ends[0].time - result["left_wall"])
                else:
                    lands.append(float("inf"))
                exits.append(result["exit"])
                final = emu.activities[ends[0].activity_id].state if ends else {}
        rows.append(
            (
                f"flush_timeout={flush_timeout:g} s",
                f"{median(lands):.3f}",
                spread(lands, "{:.3f}"),
                f"{median(exits):.3f}",
                f"{delivered}/{runs}",
                json.dumps(final.get("percentage")),
            )
        )
        report.check(
            f"hung update then the end (flush_timeout={flush_timeout:g} s): the end lands",
            f"{max(lands):.3f} s (worst of {runs})",
            f"<= {flush_timeout:g} s",
            max(lands) <= flush_timeout,
        )
    table(
        (
            "case",
            "end lands after s",
            f"{spread_label(runs)} s",
            "block exit s",
            "ends delivered",
            "final %",
        ),
        rows,
    )
    print(
        "'end lands after' runs from the block's last statement to the end's arrival at the "
        "emulator; the block exit is until the with statement returned."
    )


# -- 3. 1,000 sequential short activities ----------------------------------------------------------


def bench_sequential(report: Report, *, n: int) -> None:
    heading(f"3. {n:,} sequential short activities in a fresh process (latency 0)")
    warmup = 20
    with emulator() as emu:
        result = _bench.run_child(
            SCRIPT, "sequential", {"count": n, "warmup": warmup, "prefix": "seq ", "floor": 200}
        )
        got = count(emu, "seq ")
        got = Count(
            got.activities - 200,
            got.started - 200,
            got.ended - 200,
            got.duplicated - 199,  # the floor's activities share one title
            got.requests - 400,
        )
    per_block = result["per_block"]
    growth = result["after"] - result["before"]
    table(
        ("reading", "value"),
        [
            (
                "caller time per block, median",
                f"{median(per_block) * 1000:.2f} ms",
            ),
            (
                "caller time per block, p10-p90 / max",
                f"{pct(per_block, 0.1) * 1000:.2f}-{pct(per_block, 0.9) * 1000:.2f} / "
                f"{max(per_block) * 1000:.1f} ms",
            ),
            (
                "the floor: Client.start() + Client.end(), blocking (median of 200)",
                f"{median(result['floor']) * 1000:.2f} ms",
            ),
            ("wall time", f"{result['wall']:.2f} s"),
            ("requests for them", f"{got.requests:,} ({got.requests / n:.2f} per activity)"),
            ("started / ended / duplicated", f"{got.started} / {got.ended} / {got.duplicated}"),
            ("RSS before (after 20 warm-up blocks)", f"{result['before'] / MiB:.1f} MiB"),
            ("RSS after (gc.collect())", f"{result['after'] / MiB:.1f} MiB"),
            ("growth", f"{growth / MiB:+.2f} MiB"),
        ],
    )
    report.check(
        f"{n:,} sequential activities: each started and ended once",
        f"{got.ended:,} ended, {got.duplicated} duplicated, {got.requests / n:.2f} requests each",
        f"{n:,} ended, 0 duplicated",
        got.ended == n and got.started == n and got.duplicated == 0,
    )


# -- 4. hostile answers --------------------------------------------------------------------------


def bench_hostile(report: Report) -> None:
    heading("4. RSS while the server answers an update with a huge body (fresh process each)")
    cases = [
        ("300 MiB JSON body", Fault.oversized(300 * MiB)),
        ("300 MiB JSON body, chunked (no length)", Fault.oversized(300 * MiB, chunked=True)),
        ("1 GiB gzip bomb", Fault.gzip_bomb(1024 * MiB)),
        # About 200 KiB on the wire: under the cap, so only the inflation can be refused.
        ("200 MiB gzip bomb (under the cap compressed)", Fault.gzip_bomb(200 * MiB)),
        ("1 GiB gzip bomb, chunked", Fault.gzip_bomb(1024 * MiB, chunked=True)),
    ]
    from activitysmith_track.emulator._faults import gzip_bomb_pieces

    gzip_bomb_pieces({}, 1024 * MiB)  # make the compressed bomb once, before timing
    rows = []
    for label, fault in cases:
        with emulator() as emu:
            emu.add_fault(fault, path="/live-activity/update", times=2)  # the job's, the client's
            title = f"hostile {label}"
            result = _bench.run_child(SCRIPT, "hostile", {"title": title, "wait": 10})
            got = count(emu, title)
            hostile_sent = sum(1 for q in emu.requests if q.fault == fault.kind)
        growth = result["peak"] - result["baseline"]
        client_growth = result["client_peak"] - result["client_base"]
        rows.append(
            (
                label,
                f"{growth / MiB:+.1f}",
                f"{result['seconds']:.2f}",
                f"{client_growth / MiB:+.1f}",
                f"{result['client_seconds']:.2f}",
                f"{got.ended}/{got.activities}",
                f"{hostile_sent}",
            )
        )
        print(f"  {label}: job errors {result['errors']}; Client: {result['client_error']}")
        report.check(
            f"RSS while answering with a {label}",
            f"{max(growth, client_growth) / MiB:+.1f} MiB (job {growth / MiB:+.1f}, "
            f"Client {client_growth / MiB:+.1f})",
            f"< +{HOSTILE_TARGET / MiB:g} MiB",
            max(growth, client_growth) < HOSTILE_TARGET,
        )
        report.check(
            f"the end lands after a {label}",
            f"{got.ended} of {got.activities} ended",
            "all",
            got.ended == got.activities == 2,
        )
    table(
        (
            "answer to the update",
            "job peak RSS MiB",
            "job flush s",
            "Client peak MiB",
            "Client s",
            "ended",
            "hostile answers",
        ),
        rows,
    )


# -- 7. retries: storms on the end's path ---------------------------------------------------------


def bench_storms(report: Report, *, runs: int) -> None:
    flush_timeout = 30.0
    heading(
        f"7. Storms on the end's path, flush_timeout={flush_timeout:g} s (fresh process each, "
        f"{runs} run{'s' if runs > 1 else ''} each)"
    )
    cases = [
        ("5x 429 rate_limited, Retry-After: 1", [Fault.rate_limited(1)] * 5),
        (
            "Fault.storm(8, retry_after=0.5, capacity=False)",
            Fault.storm(8, retry_after=0.5, capacity=False),
        ),
        ("6x 503", [Fault.status(503)] * 6),
    ]
    rows = []
    for label, faults in cases:
        lands: list[float] = []
        exits: list[float] = []
        for r in range(runs):
            with emulator() as emu:
                emu.add_faults(faults, path="/live-activity/end")
                title = f"storm {r} {label}"
                result = _bench.run_child(
                    SCRIPT, "storm", {"title": title, "flush_timeout": flush_timeout}
                )
                ends = [
                    q for q in emu.requests if q.path == "/live-activity/end" and q.status == 200
                ]
                lands.append(ends[0].time - result["left_wall"] if ends else float("inf"))
                exits.append(result["exit"])
                tried = sum(1 for q in emu.requests if q.path == "/live-activity/end")
        landed = sum(1 for x in lands if x != float("inf"))
        rows.append(
            (
                label,
                f"{landed}/{runs}",
                f"{median(lands):.2f}",
                spread(lands, "{:.2f}"),
                f"{median(exits):.2f}",
                f"{tried}",
            )
        )
        report.check(
            f"the end lands through {label}",
            f"{landed} of {runs} landed, worst {max(lands):.2f} s",
            f"all, within {flush_timeout:g} s",
            landed == runs and max(lands) <= flush_timeout,
        )
    table(
        (
            "faults on /live-activity/end",
            "ends landed",
            "after s",
            "spread s",
            "exit s",
            "ends tried",
        ),
        rows,
    )


# -- 5. a job against a slow server (in this process) ---------------------------------------------


def work_sleep() -> None:
    time.sleep(0.002)


def work_busy() -> None:
    end = time.perf_counter() + 0.002
    while time.perf_counter() < end:
        pass


def job_untracked(steps: int, work: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        work()
    return time.perf_counter() - t0


def job_tracked(emu: Emulator, steps: int, work: Callable[[], None]) -> tuple[float, int]:
    before = len(emu.requests)
    t0 = time.perf_counter()
    with live_activity("bench: job", total=steps) as la:
        for _ in range(steps):
            work()
            la.advance()
    return time.perf_counter() - t0, len(emu.requests) - before


def job_naive(emu: Emulator, steps: int) -> tuple[float, int]:
    """The official SDK's pattern: one blocking request per update, on the job's thread."""
    before = len(emu.requests)

    def state(value: int) -> Payload:
        return Payload(
            content_state=ContentState(
                title="bench: naive job", type=ActivityType.PROGRESS, value=value, upper_limit=steps
            )
        )

    t0 = time.perf_counter()
    with Client(base_url=emu.base_url) as client:
        activity_id = client.start(state(0)).activity_id
        assert activity_id is not None
        for i in range(steps):
            work_sleep()
            client.update(activity_id, state(i + 1))
        client.end(activity_id, state(steps))
    return time.perf_counter() - t0, len(emu.requests) - before


def update_bound(seconds: float, settings: Settings) -> int:
    """Most requests the defaults allow in ``seconds``: start + end + time-bound updates."""
    by_debounce = int(seconds / settings.debounce) + 1
    by_budget = settings.update_burst + int(seconds / settings.update_interval)
    return 2 + min(by_debounce, by_budget)


def bench_job(report: Report, *, steps: int, repeats: int, naive_steps: int, busy: bool) -> None:
    latency = 0.05
    heading(
        f"5. A job of {steps:,} steps x 2 ms of work, emulator latency 50 ms, in this process "
        f"({repeats} interleaved runs each)"
    )
    settings = Settings()
    works: list[tuple[str, str, Callable[[], None]]] = [("sleep", "time.sleep(0.002)", work_sleep)]
    if busy:
        works.append(("busy", "busy loop 2 ms (holds the GIL)", work_busy))
    rows: list[tuple[str, ...]] = []
    with emulator(latency) as emu:
        job_tracked(emu, 10, work_sleep)  # warm: session, sender thread, imports
        tracked_sleep = 0.0
        for key, label, work in works:
            plain: list[float] = []
            tracked: list[tuple[float, int]] = []
            for _ in range(repeats):
                plain.append(job_untracked(steps, work))
                tracked.append(job_tracked(emu, steps, work))
            t_times = [t for t, _ in tracked]
            ratios = [t / p for (t, _), p in zip(tracked, plain, strict=True)]
            worst = max(tracked, key=lambda r: r[1] - update_bound(r[0], settings))
            bound = update_bound(worst[0], settings)
            if key == "sleep":
                tracked_sleep = median(t_times)
            rows.append(
                (f"{label}: no tracking", f"{median(plain):.3f}", spread(plain, "{:.3f}"), "", "")
            )
            rows.append(
                (
                    f"{label}: la.advance() per step",
                    f"{median(t_times):.3f}",
                    spread(t_times, "{:.3f}"),
                    f"{median(ratios):.3f}x ({spread(ratios, '{:.3f}')})",
                    f"{max(r for _, r in tracked)}",
                )
            )
            report.check(
                f"job tracked/untracked ({key})",
                f"{median(ratios):.3f}x",
                "< 1.1x",
                median(ratios) < 1.1,
            )
            report.check(
                f"requests of the tracked job ({key})",
                f"{worst[1]} for {steps:,} updates",
                f"<= {bound} in {worst[0]:.1f} s",
                worst[1] <= bound,
            )
        naive_seconds, _ = job_naive(emu, naive_steps)
        extrapolated = naive_seconds / naive_steps * steps
        rows.append(
            (
                f"naive: Client.update() per step ({naive_steps} steps measured, scaled)",
                f"{extrapolated:.1f}",
                "",
                f"{extrapolated / tracked_sleep:.1f}x the tracked job",
                f"{steps + 2:,} (extrapolated)",
            )
        )
    table(
        ("job", "median s", f"{spread_label(repeats)} s", "tracked/untracked per run", "requests"),
        rows,
    )


# -- 6. exit (in this process) --------------------------------------------------------------------


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
    return time.perf_counter() - t0, len(emu.requests) - before


def bench_exit(report: Report, *, repeats: int) -> None:
    heading("6. Exit: from the block's last statement until the with statement returns")
    flush_bound = 2.0
    cases = [
        ("healthy (latency 0)", 0.0, False, None, repeats),
        ("slow (latency 1 s)", 1.0, False, None, 3),
        (f"hung end (Fault.hang, flush_timeout={flush_bound:g})", 0.0, True, flush_bound, 2),
    ]
    rows = []
    for label, latency, hang, flush_timeout, n in cases:
        times: list[float] = []
        requests = 0
        with emulator(latency) as emu:
            for _ in range(n):
                seconds, requests = exit_once(emu, hang=hang, flush_timeout=flush_timeout)
                times.append(seconds)
        med = median(times)
        rows.append((label, f"{med:.3f}", spread(times, "{:.3f}"), f"{n}", f"{requests}"))
        if hang:
            report.check(
                "exit, hung end",
                f"{max(times):.3f} s",
                f"<= {flush_bound:g} s + 0.1",
                max(times) <= flush_bound + 0.1,
            )
        elif latency:
            report.check(
                "exit, slow server (1 s)",
                f"{max(times):.3f} s",
                "one round trip (< 1.25 s)",
                max(times) < latency + 0.25,
            )
        else:
            report.check(
                "exit, healthy server", f"{med * 1000:.1f} ms", "median < 100 ms", med < 0.1
            )
    table(("server", "median s", "spread s", "runs", "requests per run"), rows)


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    child = _bench.parse_args_child(argv)
    if child is not None:
        case, params = child
        print(json.dumps(CHILDREN[case](params)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs (about a minute)")
    parser.add_argument(
        "--only", metavar="N,N", default="1,2,3,4,5,6,7", help="run only these sections (1-7)"
    )
    args = parser.parse_args(argv)
    quick: bool = args.quick
    only = {int(part) for part in args.only.split(",") if part.strip()}
    machine = _bench.Machine()
    machine.describe("bench_delivery", quick)
    report = Report()
    sections: list[tuple[int, Callable[[], None]]] = [
        (1, lambda: bench_concurrent(report, n=100, runs=1 if quick else 3)),
        (2, lambda: bench_hung_update(report, runs=1 if quick else 3)),
        (3, lambda: bench_sequential(report, n=1_000)),
        (4, lambda: bench_hostile(report)),
        (
            5,
            lambda: bench_job(
                report,
                steps=1_000,
                repeats=2 if quick else 5,
                naive_steps=20 if quick else 100,
                busy=not quick,
            ),
        ),
        (6, lambda: bench_exit(report, repeats=3 if quick else 7)),
        (7, lambda: bench_storms(report, runs=1 if quick else 3)),
    ]
    for number, run in sections:
        if number in only:
            run()
    report.print_summary()
    machine.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
