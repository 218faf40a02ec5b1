"""The ``activitysmith-track`` command: put any command or shell script under a Live Activity.

::

    activitysmith-track run [--title T] [--steps N | --step NAME ...] [options] -- CMD ARGS...
    activitysmith-track start --title T [state options]          # prints the activity id
    activitysmith-track update (ACTIVITY_ID | --stream-key KEY) --title T [state options]
    activitysmith-track end (ACTIVITY_ID | --stream-key KEY) [--title T] [state options]
    activitysmith-track list [--json]                             # open activities (the ledger)
    activitysmith-track cleanup                                   # end those whose process died
    activitysmith-track doctor                                    # check key, URL, account, clock
    activitysmith-track emulator [--port P]
    python -m activitysmith_track [options] script.py ARGS...     # a Python script, in-process

Exit codes: ``run`` exits with the command's own code (128 + N when signal N killed it; 127
and 126 when it cannot be found or executed, as shells do), whatever happens to tracking;
bad command-line syntax exits 2 before anything starts; an API or configuration error in a
one-shot command exits 1.
The API key is read from ``ACTIVITYSMITH_API_KEY`` only: a key on the command line would be
visible to every user of the machine in ``ps``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from activitysmith_track._activity import LiveActivity, live_activity
from activitysmith_track._checks import parse_metrics, parse_readout
from activitysmith_track._client import Client
from activitysmith_track._config import Settings, resolve_settings
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    ConfigurationError,
    ValidationError,
)
from activitysmith_track._markers import DEFAULT_PATTERN, MarkerHandler, MarkerParser
from activitysmith_track._markers import compile_pattern as _compile_pattern
from activitysmith_track._model import (
    ActivityType,
    Badge,
    Color,
    ContentState,
    Icon,
    Metric,
    Operation,
    Payload,
    validate_stream_key,
)
from activitysmith_track._render import render
from activitysmith_track._runner import CannotStart, RunOutcome, run_child, signal_name
from activitysmith_track._state import Job, Target, operation, plan
from activitysmith_track._version import __version__

__all__ = ["main"]

logger = logging.getLogger("activitysmith_track")

PROG = "activitysmith-track"
EXIT_USAGE = 2
EXIT_API_ERROR = 1
# What shells answer for a command that cannot be run: not found, or found but not executable.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

_SUBCOMMANDS = ("run", "start", "update", "end", "list", "cleanup", "doctor", "emulator")
# Commands that run another command: the title names the one they run.
_WRAPPERS = frozenset({"env", "nice", "nohup", "timeout", "ionice", "stdbuf", "time", "chrt"})
_WRAPPER_ARGUMENT = re.compile(r"-.*|\w+=.*|\d+(\.\d+)?[smhd]?")
# Interpreter options that take the next word as their value (python -W ignore, -X dev).
_OPTIONS_WITH_ARGUMENT = frozenset({"-W", "-X", "-o", "--rcfile", "--init-file"})
_INTERPRETER = re.compile(
    r"(python|pypy|bash|sh|zsh|dash|ksh|fish|node|deno|bun|ruby|perl|php|Rscript)"
    r"[0-9.]*(\.exe)?",
)
_KEY_HELP = (
    "The API key is read from $ACTIVITYSMITH_API_KEY only: options are visible to every user in ps."
)
_RUN_DESCRIPTION = """\
Run CMD under a Live Activity. Its output passes through unchanged and its exit
code is ours (128+N when signal N killed it). SIGINT, SIGTERM and SIGHUP are
forwarded to its whole process group and end the activity as cancelled; a
non-zero exit ends it as failed, naming the exit code (or signal) and the last
line of stderr. PYTHONUNBUFFERED=1 is set for CMD so that Python output is not
held back in the pipe. Without an API key CMD still runs, with one warning.

The API key is read from $ACTIVITYSMITH_API_KEY only: options are visible to
every user in ps."""
_RUN_EPILOG = """\
markers (lines CMD prints; they still show unless --hide-markers):
  ::step::                  begin the next step (named by --step, if given)
  ::step:: upload archive   begin the next step, named "upload archive"
  ::progress:: 40/100       40 of 100 done
  ::progress:: 40           40 of --total done
  ::progress:: 40%          40 percent done
  ::metric:: rows=1200      set metrics, e.g. rows=1200, errors=3 (kept by label)
progress fills the bar with --total or --progress; otherwise the subtitle shows
it after the current step's name. --marker-regex changes the syntax.

examples:
  activitysmith-track run --steps 3 -- ./backup.sh
  activitysmith-track run --total 100 --hide-markers -- python etl.py"""


class UsageFailure(Exception):
    """Bad input found after parsing; reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (and exit 2), not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- argument types ----------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    # Keep whole numbers whole, so "--percentage 5" is sent as 5, not 5.0.
    return int(value) if re.fullmatch(r"\+?\d+", text.strip()) else value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def _readout(text: str) -> float | str:
    """A number when it reads as one (``42``, ``3.5``), else the text (``"$1,240"``)."""
    return parse_readout(text)


def _metric(text: str) -> tuple[str, float | str]:
    try:
        pairs = parse_metrics(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if len(pairs) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be one label=value (repeat --metric)")
    return pairs[0]


def _regex(text: str) -> re.Pattern[str]:
    try:
        return _compile_pattern(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stream_key(text: str) -> str:
    try:
        return validate_stream_key(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


_COLORS = [c.value for c in Color]
_TYPES = [t.value for t in ActivityType]


# -- the parser --------------------------------------------------------------------------------


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="API root (default: $ACTIVITYSMITH_BASE_URL, else https://activitysmith.com/api); "
        "a local emulator's URL needs no key",
    )


def _add_activity_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """The options that shape the activity: shared by ``run`` and script mode."""
    parser.add_argument("--title", help=f"the activity's title (default: the {what}'s name)")
    parser.add_argument("--subtitle", help="text under the title until the first step")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument(
        "--steps",
        type=_int_at_least(1),
        metavar="N",
        help="show N steps; each ::step:: marker (or step() call) begins the next one",
    )
    kind.add_argument(
        "--step",
        action="append",
        metavar="NAME",
        help="name the next step (repeat for each step, in order); implies --steps",
    )
    kind.add_argument(
        "--total",
        type=_positive,
        metavar="N",
        help="show a progress bar out of N; '::progress:: 40' means 40 of N",
    )
    kind.add_argument(
        "--progress",
        action="store_true",
        help="show a progress bar driven by '::progress:: 40%%' or '::progress:: 40/100'",
    )
    parser.add_argument("--color", choices=_COLORS, help="accent colour while running")
    parser.add_argument("--icon", metavar="SYMBOL", help="SF Symbol name shown with the title")
    parser.add_argument(
        "--stream-key",
        type=_stream_key,
        metavar="KEY",
        help="drive the stream KEY (PUT/DELETE) instead of a new activity per run",
    )
    parser.add_argument(
        "--channel",
        action="append",
        metavar="SLUG",
        help="send to this channel only (repeatable)",
    )
    parser.add_argument(
        "--tag", action="append", metavar="TAG", help="tag the activity (repeatable)"
    )
    parser.add_argument(
        "--no-error-text",
        action="store_true",
        help="on failure show only the exit code, signal or exception type, not its text "
        "(also: ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE=0)",
    )
    parser.add_argument(
        "--debounce",
        type=_number,
        metavar="SECONDS",
        help="wait this long after a change before sending it, so bursts of changes "
        "go out as one update (default 1)",
    )
    parser.add_argument(
        "--flush-timeout",
        type=_number,
        metavar="SECONDS",
        help=f"after the {what} ends, wait at most this long for the final state to be "
        "delivered (default: $ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT, else 10)",
    )
    _add_connection(parser)


def _add_run(sub: Any) -> None:
    run = sub.add_parser(
        "run",
        help="run a command under a Live Activity",
        description=_RUN_DESCRIPTION,
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_activity_options(run, what="command")
    markers = run.add_argument_group("markers")
    markers.add_argument(
        "--hide-markers",
        action="store_true",
        help="do not show marker lines (output then passes line by line, not byte by byte)",
    )
    markers.add_argument(
        "--marker-regex",
        type=_regex,
        default=None,
        metavar="REGEX",
        help="marker syntax: a regex searched in each line, with a group 'kind' "
        "(step|progress|metric) and an optional group 'value' "
        f"(default: {DEFAULT_PATTERN.replace('%', '%%')})",
    )
    markers.add_argument(
        "--no-markers", action="store_true", help="ignore markers; only time the command"
    )
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the command to run, after --",
    )


def build_script_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of script mode: ``[options] script.py ARGS`` (the options of ``run``
    that make sense in-process)."""
    parser = _Parser(
        prog=prog,
        usage=f"{prog} [options] script.py [ARGS ...]",
        description="Run a Python script in this process, inside a Live Activity; the script "
        "reaches it with activitysmith_track.current_activity(). Options go before the "
        f"script; everything after it is the script's. {_KEY_HELP}",
    )
    _add_activity_options(parser, what="script")
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument(
        "args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's own arguments"
    )
    return parser


def _add_state(parser: argparse.ArgumentParser, *, op: str) -> None:
    group = parser.add_argument_group("content state")
    group.add_argument("--title", help="the activity's title (the API wants it on every call)")
    group.add_argument("--subtitle", help="text under the title")
    group.add_argument(
        "--type",
        choices=_TYPES,
        help="activity type (start: inferred from the fields given, else a count-up timer)",
    )
    group.add_argument(
        "--steps", type=_int_at_least(1), metavar="N", help="number_of_steps (segmented)"
    )
    group.add_argument(
        "--current-step", type=_int_at_least(0), metavar="N", help="current_step (segmented)"
    )
    group.add_argument("--percentage", type=_number, metavar="P", help="percentage, 0 to 100")
    group.add_argument(
        "--value", type=_readout, metavar="V", help="value: a number, or text for --type value"
    )
    group.add_argument(
        "--upper-limit", type=_positive, metavar="N", help="upper_limit (progress with --value)"
    )
    group.add_argument(
        "--duration-seconds",
        type=_positive,
        metavar="S",
        help="timer: count down S seconds (without it a timer counts up)",
    )
    group.add_argument("--message", help="message (alert activities)")
    group.add_argument("--color", choices=_COLORS, help="accent colour")
    group.add_argument("--step-color", choices=_COLORS, help="colour of the steps (segmented)")
    group.add_argument("--icon", metavar="SYMBOL", help="SF Symbol name shown with the title")
    group.add_argument("--badge", metavar="TEXT", help="badge text")
    group.add_argument(
        "--metric",
        type=_metric,
        action="append",
        metavar="LABEL=VALUE",
        help="a metric tile (repeatable, up to 8)",
    )
    if op == "end":
        group.add_argument(
            "--auto-dismiss-minutes",
            type=_int_at_least(0),
            metavar="N",
            help="remove the ended activity after N minutes (0: at once)",
        )
    group.add_argument("--tag", action="append", metavar="TAG", help="a tag (repeatable)")
    if op == "start":
        group.add_argument(
            "--channel",
            action="append",
            metavar="SLUG",
            help="send to this channel only (repeatable)",
        )


def _add_one_shot(sub: Any, op: str, summary: str, description: str) -> None:
    parser = sub.add_parser(op, help=summary, description=f"{description} {_KEY_HELP}")
    if op != "start":
        parser.add_argument(
            "activity_id",
            nargs="?",
            metavar="ACTIVITY_ID",
            help="the id 'start' printed (or use --stream-key)",
        )
    parser.add_argument(
        "--stream-key",
        type=_stream_key,
        metavar="KEY",
        help={
            "start": "start (or update) the stream KEY with a PUT instead",
            "update": "update the stream KEY (PUT) instead of an activity id",
            "end": "end the stream KEY (DELETE); without state options the server keeps "
            "the last state",
        }[op],
    )
    _add_state(parser, op=op)
    parser.add_argument(
        "--json", action="store_true", help="print the server's whole answer as JSON"
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long, retries included (default 30)",
    )
    _add_connection(parser)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog=prog,
        description="Show a command, script or cron job as an ActivitySmith Live Activity. "
        f"'python -m activitysmith_track script.py ARGS' runs a Python script in-process. "
        f"{_KEY_HELP}",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    _add_run(sub)
    _add_one_shot(
        sub,
        "start",
        "start an activity and print its id",
        "Start a Live Activity and print its id on stdout (for update and end).",
    )
    _add_one_shot(
        sub,
        "update",
        "update a started activity",
        "Update a Live Activity started with 'start' (or a stream).",
    )
    _add_one_shot(
        sub,
        "end",
        "end a started activity",
        "End a Live Activity started with 'start' (or a stream) with its final state.",
    )
    listing = sub.add_parser(
        "list",
        help="show the activities this machine started and did not end",
        description="Show the Live Activities this machine started and has not ended, from "
        "the local ledger: running (its process is alive), orphaned (its process died; "
        "'cleanup' ends it) or from another host sharing the state directory.",
    )
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    _add_connection(listing)
    cleanup = sub.add_parser(
        "cleanup",
        help="end the activities whose process died",
        description="End, now, the Live Activities this machine started whose process died "
        "(killed, crashed, out of memory) and that nothing ended: each shows where it stopped "
        "and 'Stopped: the process died'. Only those started with the current API key and "
        f"base URL are ended. {_KEY_HELP}",
    )
    cleanup.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long, retries included (default 30)",
    )
    _add_connection(cleanup)
    doctor = sub.add_parser(
        "doctor",
        help="check the API key, base URL, account and clock",
        description="Check the setup: the API key (set, well formed, accepted), the base URL "
        "(reachable, GET /health, the /api path), the account (one harmless request) and "
        "the clock; print each finding with its fix. Exits 1 when something is wrong. "
        f"{_KEY_HELP}",
    )
    doctor.add_argument(
        "--timeout",
        type=_positive,
        default=5.0,
        metavar="SECONDS",
        help="wait at most this long for each answer (default 5)",
    )
    _add_connection(doctor)
    sub.add_parser(
        "emulator",
        help="serve a local ActivitySmith API for trying things out (see 'emulator --help')",
        add_help=False,
    )
    return parser


# -- helpers -----------------------------------------------------------------------------------


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our warnings on stderr, one line each, prefixed with the program's name."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        self.setLevel(logging.WARNING)


def _cli_logging() -> None:
    """Show the library's warnings on stderr for the rest of the process.

    Left in place on purpose: the library may still warn at exit, after ``main`` returned
    (an end that could not be delivered in time).
    """
    if not any(isinstance(h, _CliHandler) for h in logger.handlers):
        logger.addHandler(_CliHandler())
    if logger.level == logging.NOTSET or logger.level > logging.WARNING:
        logger.setLevel(logging.WARNING)


def _fail(prog: str, message: str) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    return EXIT_USAGE


class NoKey(Exception):
    """A one-shot command has no API key to send: a configuration error, exit 1."""


NO_KEY = (
    "no API key: set ACTIVITYSMITH_API_KEY (or ACTIVITYSMITH_BASE_URL to a local emulator, "
    "or ACTIVITYSMITH_TRACK_DISABLED=1 to turn tracking off)"
)


def _settings(options: dict[str, Any], *, need_key: bool = True) -> Settings:
    """Settings from the environment and options.

    Without a key, a command that only talks to the API raises :class:`NoKey`; ``run`` and
    script mode (``need_key=False``) run the job anyway, and the library warns once that
    nothing is sent, as it does for any job.
    """
    settings = resolve_settings({k: v for k, v in options.items() if v is not None})
    if settings.preview:
        # ACTIVITYSMITH_TRACK_PREVIEW=1 with no key: a background emulator stands in.
        from activitysmith_track._preview import with_preview

        settings = with_preview(settings)
    if need_key and settings.effective_api_key is None and not settings.disabled:
        raise NoKey(NO_KEY)
    return settings


def _job_settings(args: argparse.Namespace) -> Settings:
    """The settings of ``run`` and script mode: never strict, no key needed."""
    return _settings(
        {
            "base_url": args.base_url,
            "debounce": args.debounce,
            "flush_timeout": args.flush_timeout,
            "show_error_message": False if args.no_error_text else None,
            "strict": False,  # tracking problems never change the job's outcome
        },
        need_key=False,
    )


def _job_activity(args: argparse.Namespace, title: str, settings: Settings) -> LiveActivity:
    """The activity ``run`` and script mode open, from the options they share."""
    return live_activity(
        args.title or title,
        steps=args.steps if args.steps is not None else args.step,
        total=args.total,
        type=ActivityType.PROGRESS if args.progress else None,
        subtitle=args.subtitle,
        color=args.color,
        icon=args.icon,
        channels=args.channel,
        tags=args.tag,
        stream_key=args.stream_key,
        settings=settings,
    )


def default_title(command: Sequence[str]) -> str:
    """The command's name; for ``python etl.py``, ``bash job.sh`` and the like, the script's,
    looking through wrappers such as ``env``, ``nice -n 10`` or ``timeout 1h``."""
    words = list(command)
    while len(words) > 1 and os.path.basename(words[0]) in _WRAPPERS:
        words.pop(0)
        # The wrapper's own options, NAME=value settings and numbers (niceness, durations).
        while len(words) > 1 and _WRAPPER_ARGUMENT.fullmatch(words[0]):
            words.pop(0)
    name = os.path.basename(words[0]) or words[0]
    if _INTERPRETER.fullmatch(name):
        rest = words[1:]
        while rest and rest[0].startswith("-") and rest[0] not in ("-m", "-c"):
            option = rest.pop(0)
            if option in _OPTIONS_WITH_ARGUMENT and rest:
                rest.pop(0)
        if len(rest) >= 2 and rest[0] == "-m":
            return rest[1]
        if rest and not rest[0].startswith("-"):
            return os.path.basename(rest[0]) or rest[0]
    return name


# -- run ---------------------------------------------------------------------------------------


def _split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """Split ``run ... -- CMD`` at the first ``--`` (argparse's handling of it varies)."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    return argv, None


def _run(args: argparse.Namespace, command: list[str], prog: str) -> int:
    if not command:
        return _fail(prog, "no command given: put it after --, e.g. run -- ./backup.sh")
    try:
        settings = _job_settings(args)
        activity = _job_activity(args, default_title(command), settings)
    except (UsageFailure, ConfigurationError, ValidationError) as exc:
        return _fail(prog, str(exc))

    handler = MarkerHandler(activity, step_names=args.step, subtitle=args.subtitle)
    parser = None if args.no_markers else MarkerParser(args.marker_regex or DEFAULT_PATTERN)
    started: list[bool] = []

    def start() -> None:
        activity.start()
        started.append(True)

    try:
        outcome = run_child(
            command,
            parser=parser,
            on_marker=handler.handle,
            on_started=start,
            hide_markers=args.hide_markers,
        )
    except CannotStart as exc:
        # As a shell: 127 when there is no such command, 126 when it cannot be executed. The
        # phone learns it too: the job did not start.
        code, reason, shown = _cannot_run(command[0], exc.error)
        print(f"{prog}: {reason}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt), _terminate_interrupts():
            try:
                activity.start()
            except ActivitySmithTrackError as error:
                logger.warning("could not start the Live Activity: %s", error)
            else:
                _finish(activity, RunOutcome(exit_code=code), settings, reason=shown)
        return code
    if started:
        # Ctrl-C or SIGTERM while the end is being delivered stops waiting for it; the exit
        # code stays the command's.
        with contextlib.suppress(KeyboardInterrupt), _terminate_interrupts():
            _finish(activity, outcome, settings)
    return outcome.exit_code


def _cannot_run(name: str, exc: OSError) -> tuple[int, str, str]:
    """What a shell would answer for a command that did not start: the exit code, the
    reason for stderr, and a shorter one for the phone (the title already names the
    command, and a subtitle has little room)."""
    if isinstance(exc, FileNotFoundError):
        if os.sep in name and os.path.isfile(name):
            # The file is there: what is missing is the interpreter its #! line names.
            return (
                EXIT_NOT_FOUND,
                f"cannot execute {name}: the interpreter on its #! line was not found",
                "its #! interpreter was not found",
            )
        short = os.path.basename(name) or name
        return EXIT_NOT_FOUND, f"command not found: {name}", f"command not found: {short}"
    why = exc.strerror or type(exc).__name__
    if os.sep in name and os.path.isdir(name):
        why = "Is a directory"  # exec says "Permission denied"; shells say what it is
    return EXIT_NOT_EXECUTABLE, f"cannot execute {name}: {why}", f"cannot execute: {why}"


@contextlib.contextmanager
def _terminate_interrupts() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signals = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {signum: signal.signal(signum, interrupt) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _finish(
    activity: LiveActivity, outcome: RunOutcome, settings: Settings, *, reason: str | None = None
) -> None:
    """End the activity as the command ended and wait (bounded) for delivery. ``reason``
    replaces the failure's description (a command that could not be started)."""
    try:
        if reason is not None:
            activity.fail(reason)
        elif outcome.cancelled_by is not None:
            activity.cancel(f"{signal_name(outcome.cancelled_by)} received")
        elif outcome.exit_code == 0:
            activity.end()
        else:
            reason = outcome.description
            # The command's own words reach the phone only while error text is shown.
            if outcome.last_stderr_line and settings.show_error_message:
                reason = f"{reason}: {outcome.last_stderr_line}"
            activity.fail(reason)
    except ActivitySmithTrackError as exc:
        logger.warning("could not end the Live Activity: %s", exc)
        return
    if settings.disabled or settings.effective_api_key is None:
        return  # nothing was sent (the library said so once, at the start)
    if not activity.flush(settings.flush_timeout):
        logger.warning(
            "the end of Live Activity %r was not confirmed within %gs",
            activity.title,
            settings.flush_timeout,
        )


# -- start / update / end ----------------------------------------------------------------------


def _state_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "subtitle": args.subtitle,
        "number_of_steps": args.steps,
        "current_step": args.current_step,
        "percentage": args.percentage,
        "value": args.value,
        "upper_limit": args.upper_limit,
        "duration_seconds": args.duration_seconds,
        "message": args.message,
        "color": args.color,
        "step_color": args.step_color,
        "icon": None if args.icon is None else Icon(symbol=args.icon),
        "badge": None if args.badge is None else Badge(title=args.badge),
        "metrics": None
        if args.metric is None
        else tuple(Metric(label=label, value=value) for label, value in args.metric),
        "auto_dismiss_minutes": getattr(args, "auto_dismiss_minutes", None),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _job(op: str) -> Job:
    return {"start": Job.START, "update": Job.CHANGE, "end": Job.END}[op]


def _payload(args: argparse.Namespace, target: Target, job: Job) -> Payload | None:
    """The request's payload. What starts an activity (start, or a stream PUT, which may) gets
    the type and defaults ``live_activity()`` would infer from the same fields."""
    fields = _state_fields(args)
    tags = args.tag
    if job is Job.END and target.stream_key and not fields and not tags and not args.title:
        return None  # DELETE without a body: the server ends the stream as it last was
    if not args.title:
        raise UsageFailure("--title is required (the API wants the title on every call)")
    if operation(target, job) in (Operation.START, Operation.STREAM_PUT):
        state, position = plan(
            args.title,
            type=args.type,
            fields=fields,
            extras={"tags": tags, "channels": getattr(args, "channel", None)},
        )
        return render(state, position, 0.0)
    return Payload(
        content_state=ContentState(title=args.title, type=args.type, **fields),
        tags=tags,
        channels=getattr(args, "channel", None),
    )


def _one_shot(args: argparse.Namespace, prog: str) -> int:
    op: str = args.subcommand
    activity_id: str | None = getattr(args, "activity_id", None)
    stream_key: str | None = args.stream_key
    if op != "start" and (activity_id is None) == (stream_key is None):
        return _fail(prog, "give either ACTIVITY_ID or --stream-key (one of them)")
    target = Target(stream_key=stream_key)
    job = _job(op)
    try:
        settings = _settings({"base_url": args.base_url})
        if settings.disabled:
            return 0
        payload = _payload(args, target, job)
        # Build the request body now, so input the API would refuse is bad input (exit 2).
        if payload is not None:
            payload.body(operation(target, job))
    except NoKey as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_API_ERROR
    except (UsageFailure, ConfigurationError, ValidationError) as exc:
        return _fail(prog, str(exc))
    deadline = time.monotonic() + args.timeout
    try:
        with Client(
            settings.effective_api_key,
            base_url=settings.base_url,
            timeout=(settings.connect_timeout, settings.read_timeout),
            retry=settings.retry,
        ) as client:
            result = client.send(
                operation(target, job),
                payload,
                activity_id=activity_id,
                stream_key=stream_key,
                deadline=deadline,
            )
    except ValidationError as exc:
        return _fail(prog, str(exc))
    except ActivitySmithTrackError as exc:
        print(f"{prog}: {exc}", file=sys.stderr, flush=True)
        return EXIT_API_ERROR
    if args.json:
        print(json.dumps(result.raw, sort_keys=True))
    elif op == "start" and result.activity_id:
        print(result.activity_id)
    sys.stdout.flush()
    return 0


# -- python -m activitysmith_track script.py ---------------------------------------------------


def _is_script(first: str) -> bool:
    if first in _SUBCOMMANDS or first.startswith("-"):
        return False
    return first.endswith((".py", ".pyw")) or os.path.isfile(first)


def _is_python(path: str) -> bool:
    if path.endswith((".py", ".pyw")):
        return True
    try:
        with open(path, "rb") as file:
            first_line = file.readline(200)
    except OSError:
        return False
    return first_line.startswith(b"#!") and b"python" in first_line


def _is_script_mode(argv: list[str]) -> bool:
    """``[options] script.py ARGS``: options before a script, or a script first."""
    first = argv[0]
    if first in ("-h", "--help", "--version"):
        return False
    return first.startswith("-") or _is_script(first)


def _script_main(argv: list[str], prog: str) -> int:
    try:
        args = build_script_parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help, or a parse error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    path: str = args.script
    if path in _SUBCOMMANDS:
        return _fail(prog, f"options go after the command: {prog} {path} [options]")
    if not os.path.isfile(path):
        return _fail(prog, f"cannot open script {path!r}: no such file")
    if not _is_python(path):
        return _fail(
            prog,
            f"{path!r} is not a Python script; run any other command with: {prog} run -- {path}",
        )
    from activitysmith_track._script import run_script

    try:
        settings = _job_settings(args)
        activity = _job_activity(args, os.path.basename(path), settings)
    except (UsageFailure, ConfigurationError, ValidationError) as exc:
        return _fail(prog, str(exc))
    return run_script(path, list(args.args), activity)


# -- entry point -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    _cli_logging()
    try:
        return _main(args_list, prog)
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str], prog: str) -> int:
    if argv and argv[0] == "emulator":
        from activitysmith_track.emulator.__main__ import main as emulator_main

        return emulator_main(argv[1:])
    if argv and _is_script_mode(argv):
        return _script_main(argv, prog)
    before, command = _split_command(argv) if argv[:1] == ["run"] else (argv, None)
    try:
        args = build_parser(prog).parse_args(before)
    except SystemExit as exc:  # --help, --version, or a parse error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.subcommand == "run":
        if command is not None and args.command:
            return _fail(f"{prog} run", "put the whole command after --")
        return _run(args, command if command is not None else list(args.command), f"{prog} run")
    if args.subcommand == "doctor":
        from activitysmith_track._doctor import doctor

        return doctor(args, f"{prog} doctor")
    if args.subcommand in ("list", "cleanup"):
        from activitysmith_track import _maintenance

        if args.subcommand == "list":
            return _maintenance.list_open(args, f"{prog} list")
        return _maintenance.cleanup(args, f"{prog} cleanup")
    return _one_shot(args, f"{prog} {args.subcommand}")
