"""Run the emulator from a shell: ``python -m activitysmith_track.emulator --port 8787``.

It prints the API base URL and the address of the preview page, which draws every activity
it holds as a lock-screen card and follows them live.
"""

from __future__ import annotations

import argparse
import io
import signal
import sys
import threading
from collections.abc import Sequence

from activitysmith_track.emulator._console import format_request
from activitysmith_track.emulator._emulator import (
    MAX_LIVE_ACTIVITIES,
    REQUESTS_PER_MINUTE,
    Emulator,
)
from activitysmith_track.emulator._state import RecordedRequest

__all__ = ["format_request", "main"]


def _limit(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 for no limit), not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m activitysmith_track.emulator",
        description="Serve a local ActivitySmith Live Activity API until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8787, help="port to bind; 0 picks one (8787)")
    parser.add_argument(
        "--api-key",
        default=None,
        help="the only Bearer key accepted (default: $ACTIVITYSMITH_API_KEY, else any key)",
    )
    parser.add_argument(
        "--max-live-activities",
        type=_limit,
        default=None,
        metavar="N",
        help="answer 429 'Live Activity limit reached' beyond N live activities; 0 for no "
        f"limit ({MAX_LIVE_ACTIVITIES}, the account's limit)",
    )
    parser.add_argument(
        "--requests-per-minute",
        type=_limit,
        default=None,
        metavar="N",
        help="answer 429 'rate_limited' with Retry-After beyond N requests a minute per API "
        f"key; 0 for no limit ({REQUESTS_PER_MINUTE}, the public Rate Limits page's figure)",
    )
    parser.add_argument(
        "--fast",
        action="store_true",
        help="no capacity limit and no request budget (for test runs, not like production)",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print a line per request")
    return parser


def _limits(emulator: Emulator) -> str:
    capacity = emulator.max_live_activities
    budget = emulator.requests_per_minute
    if capacity is None:
        words = ["no capacity limit"]
    else:
        words = [f"{capacity} live {'activity' if capacity == 1 else 'activities'} at once"]
    words.append("no request budget" if budget is None else f"{budget} requests a minute per key")
    production = (capacity, budget) == (MAX_LIVE_ACTIVITIES, REQUESTS_PER_MINUTE)
    return ", ".join(words) + ("" if production else " (not like production)")


def _limits_wanted(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[int | None, int | None]:
    """(max_live_activities, requests_per_minute) for the Emulator; 0 on the command line
    means no limit."""
    given = [
        flag
        for flag, value in (
            ("--max-live-activities", args.max_live_activities),
            ("--requests-per-minute", args.requests_per_minute),
        )
        if value is not None
    ]
    if args.fast:
        if given:
            parser.error(f"--fast turns both limits off; leave out {' and '.join(given)}")
        return None, None
    capacity = MAX_LIVE_ACTIVITIES if args.max_live_activities is None else args.max_live_activities
    budget = REQUESTS_PER_MINUTE if args.requests_per_minute is None else args.requests_per_minute
    return capacity or None, budget or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    capacity, budget = _limits_wanted(parser, args)

    def show(request: RecordedRequest) -> None:
        print(format_request(request), flush=True)

    # The lines use "·" and "…"; a console that cannot print them gets escapes, not a crash.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")

    emulator = Emulator(
        args.api_key,
        host=args.host,
        port=args.port,
        max_live_activities=capacity,
        requests_per_minute=budget,
        on_request=None if args.quiet else show,
    )
    try:
        emulator.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()
    # SIGTERM ends the process as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"ActivitySmith emulator listening on {emulator.base_url}", flush=True)
    # On stderr, so stdout stays "listening on <base URL>" then one line per request.
    print(f"Preview page: {emulator.url}", file=sys.stderr, flush=True)
    print(f"Limits: {_limits(emulator)}", file=sys.stderr, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
