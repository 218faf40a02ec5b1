"""Hot paths: what each per-item handle call costs the caller, against tqdm's ``update(1)``.

Run with ``python benchmarks/bench_hotpaths.py`` (about 10 s) or ``--quick`` (about 3 s).
Every case runs in this one process, interleaved round by round with the garbage collector
on, inside live activities whose lanes are attached to a fast-mode emulator running in
another process, as a real job's would be (the senders wake and send meanwhile). Prints the
median cost per call with its spread, each case's ratio to tqdm ``update(1)`` measured in the
same rounds, and PASS/MISS per target. See ``benchmarks/README.md``.

These are figures, not tests: the exit status is 0 even when a target is missed.
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator

import _bench
from _bench import Report, heading, median, pct, spread, spread_label, table

_bench.clean_environment()

import tqdm  # noqa: E402

from activitysmith_track import configure, live_activity, tracked_steps  # noqa: E402

# Targets: every per-item call at or below tqdm's update(1); step() at most 2x.
PER_ITEM_TARGET = 1.0
STEP_TARGET = 2.0


class _Floor:
    """An object with a method that does nothing: what any method call costs."""

    def noop(self) -> None:
        pass


def _plain_generator() -> Iterator[None]:
    while True:
        yield None


def bench(report: Report, *, rounds: int, calls: int, warmup: int) -> None:
    heading(
        f"Per call, {rounds} interleaved rounds of {calls:,} calls each, GC on "
        f"(ns per call; spread {spread_label(rounds)})"
    )
    total_calls = (rounds + warmup) * calls
    floor = _Floor()
    values = [float(i % 100) for i in range(calls)]
    counts = list(range(calls))
    sink = io.StringIO()

    @tracked_steps("bench: generator with steps", steps=total_calls + 10)
    def with_steps() -> Iterator[None]:
        while True:
            yield None

    @tracked_steps("bench: generator without steps")
    def without_steps() -> Iterator[None]:
        while True:
            yield None

    with _bench.emulator_process() as base_url:
        os.environ["ACTIVITYSMITH_BASE_URL"] = base_url
        configure(requests_per_minute=_bench.REQUESTS_PER_MINUTE)
        bar = tqdm.tqdm(total=total_calls * 4, file=sink)
        stepped = with_steps()
        counted = without_steps()
        plain = _plain_generator()
        next(stepped)  # starts its activity
        next(counted)
        with (
            live_activity("bench: per-item calls", total=calls) as la,
            live_activity("bench: step()", steps=10) as steps,
            live_activity("bench: step(), timed", steps=10) as early,
        ):
            # Both starts delivered: the lanes are live, as in a job that runs a while.
            attached = la.flush(10) and steps.flush(10)

            def c_floor() -> None:
                noop = floor.noop
                for _ in range(calls):
                    noop()

            def c_tqdm() -> None:
                for _ in range(calls):
                    bar.update(1)

            def c_advance() -> None:
                for _ in range(calls):
                    la.advance()

            def c_track() -> None:
                for _ in la.track(range(calls)):
                    pass

            def c_percentage() -> None:
                for x in values:
                    la.percentage(x)

            def c_progress() -> None:
                for x in counts:
                    la.progress(x)

            def c_step() -> None:
                for _ in range(calls):
                    steps.step()

            def c_step_timed() -> None:
                for _ in range(calls):
                    early.step()

            def fresh_run() -> None:
                # As at the start of a run: the steps are timed for the ETA and the history
                # until the run has KEEP_MARKS of them (the other step() rows are past it).
                early._lane.marks.clear()

            def c_step_named() -> None:
                for _ in range(calls):
                    steps.step("load")

            def c_plain_gen() -> None:
                for _ in itertools.islice(plain, calls):
                    pass

            def c_gen_steps() -> None:
                for _ in itertools.islice(stepped, calls):
                    pass

            def c_gen_counted() -> None:
                for _ in itertools.islice(counted, calls):
                    pass

            # (label, function, target ratio to tqdm update(1) or None for context rows)
            cases: list[tuple[str, Callable[[], None], float | None]] = [
                ("bare method call (the floor)", c_floor, None),
                ("tqdm bar.update(1), file=StringIO", c_tqdm, None),
                ("la.advance()", c_advance, PER_ITEM_TARGET),
                ("la.track(range(N)), per item", c_track, PER_ITEM_TARGET),
                ("la.percentage(x)", c_percentage, PER_ITEM_TARGET),
                ("la.progress(x)", c_progress, PER_ITEM_TARGET),
                ("la.step()", c_step, STEP_TARGET),
                ("la.step(), in a run's first 1,000 steps", c_step_timed, STEP_TARGET),
                ('la.step("load")', c_step_named, STEP_TARGET),
                ("plain generator, per yield (its floor)", c_plain_gen, None),
                ("@tracked_steps generator, steps=, per yield", c_gen_steps, PER_ITEM_TARGET),
                ("@tracked_steps generator, no steps, per yield", c_gen_counted, PER_ITEM_TARGET),
            ]
            samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            ratios: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            for r in range(warmup + rounds):
                # Rotate the order each round, so that no case always follows the same one.
                shift = r % len(cases)
                this_round: dict[str, float] = {}
                for name, fn, _ in cases[shift:] + cases[:shift]:
                    if fn is c_step_timed:
                        fresh_run()
                    t0 = time.perf_counter_ns()
                    fn()
                    this_round[name] = (time.perf_counter_ns() - t0) / calls
                if r < warmup:
                    continue
                reference = this_round[cases[1][0]]
                for name, ns in this_round.items():
                    samples[name].append(ns)
                    ratios[name].append(ns / reference)
            ids = (la.activity_id, steps.activity_id)
        bar.close()
        stepped.close()
        counted.close()
        os.environ.pop("ACTIVITYSMITH_BASE_URL", None)

    tqdm_median = median(samples[cases[1][0]])
    rows = []
    for name, _, target in cases:
        med = median(samples[name])
        rows.append(
            (
                name,
                f"{med:,.0f}",
                spread(samples[name]),
                f"{med / tqdm_median:.2f}x",
                spread(ratios[name], "{:.2f}"),
                "" if target is None else f"<= {target:g}x",
            )
        )
    table(
        (
            "per call",
            "median ns",
            f"{spread_label(rounds)} ns",
            "vs tqdm",
            "per-round ratio",
            "target",
        ),
        rows,
    )
    print(
        f"\nlanes attached to the emulator: {'yes' if attached and all(ids) else 'NO'}; "
        "'vs tqdm' is the ratio of medians, 'per-round ratio' the spread of the ratio taken "
        "within each round."
    )
    for name, _, target in cases:
        if target is None:
            continue
        ratio = median(samples[name]) / tqdm_median
        report.check(
            f"{name} vs tqdm update(1)",
            f"{ratio:.2f}x ({median(samples[name]):,.0f} vs {tqdm_median:,.0f} ns; "
            f"p90 ratio {pct(ratios[name], 0.9):.2f}x)",
            f"<= {target:g}x",
            ratio <= target,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 3 s)")
    args = parser.parse_args(argv)
    machine = _bench.Machine()
    machine.describe("bench_hotpaths", args.quick)
    print(f"tqdm {tqdm.__version__}")
    report = Report()
    if args.quick:
        bench(report, rounds=100, calls=1_000, warmup=5)
    else:
        bench(report, rounds=1_000, calls=1_000, warmup=20)
    report.print_summary()
    machine.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
