"""Run the emulator from a shell: ``python -m activitysmith_track.emulator --port 8787``.

It prints the API base URL and the address of the preview page, which draws every activity
it holds as a lock-screen card and follows them live.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from activitysmith_track.emulator._emulator import Emulator
from activitysmith_track.emulator._state import RecordedRequest

_SUMMARY_LENGTH = 80


def _summary(response: Any) -> str:
    if isinstance(response, dict):
        for key in ("operation", "message", "error"):
            if isinstance(response.get(key), str):
                text = f"{key}={response[key]}"
                break
        else:
            text = json.dumps(response, separators=(",", ":"))
    else:
        text = "" if response is None else str(response)
    return text if len(text) <= _SUMMARY_LENGTH else text[: _SUMMARY_LENGTH - 3] + "..."


def format_request(request: RecordedRequest) -> str:
    """One log line: method, path, status (or the fault that kept the answer), summary."""
    status = "-" if request.status is None else str(request.status)
    fault = f" [fault: {request.fault}]" if request.fault else ""
    return f"{request.method} {request.path} -> {status}{fault} {_summary(request.response)}"


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
        type=int,
        default=None,
        help="answer 429 'Live Activity limit reached' beyond this many live activities",
    )
    parser.add_argument("--quiet", action="store_true", help="do not print a line per request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def show(request: RecordedRequest) -> None:
        print(format_request(request), flush=True)

    emulator = Emulator(
        args.api_key,
        host=args.host,
        port=args.port,
        max_live_activities=args.max_live_activities,
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
