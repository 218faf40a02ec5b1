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

import contextlib
import math
import os
import sys
import threading

from activitysmith_track._names import ACTIVITY_TYPES, COLORS, stream_key_problem

# `run` starts its command before anything else of the library is loaded: this module imports
# only what parsing the options needs (no attrs, no requests, no logging, no typing), and the
# activity is built while the command already runs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import logging
    import re
    from collections.abc import Callable, Iterator, Sequence
    from typing import Any, NoReturn

    from activitysmith_track._activity import LiveActivity
    from activitysmith_track._config import Settings
    from activitysmith_track._markers import Marker
    from activitysmith_track._model import Payload
    from activitysmith_track._runner import RunOutcome
    from activitysmith_track._state import Job, Target

__all__ = ["main"]


def _logger() -> logging.Logger:
    import logging

    return logging.getLogger("activitysmith_track")


PROG = "activitysmith-track"
EXIT_USAGE = 2
EXIT_API_ERROR = 1
# What shells answer for a command that cannot be run: not found, or found but not executable.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126

_SUBCOMMANDS = ("run", "start", "update", "end", "list", "cleanup", "doctor", "emulator")
# Commands that run another command: the title names the one they run.
_WRAPPERS = frozenset({"env", "nice", "nohup", "timeout", "ionice", "stdbuf", "time", "chrt"})
# Patterns as text: re compiles (and caches) them on first use, not at import.
_WRAPPER_ARGUMENT = r"-.*|\w+=.*|\d+(\.\d+)?[smhd]?"
# Interpreter options that take the next word as their value (python -W ignore, -X dev).
_OPTIONS_WITH_ARGUMENT = frozenset({"-W", "-X", "-o", "--rcfile", "--init-file"})
_INTERPRETER = (
    r"(python|pypy|bash|sh|zsh|dash|ksh|fish|node|deno|bun|ruby|perl|php|Rscript)"
    r"[0-9.]*(\.exe)?"
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


def _parser(**options: Any) -> argparse.ArgumentParser:
    """An ArgumentParser whose errors are one line on stderr (and exit 2), not a usage dump."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    return Parser(**options)


def _type_error(message: str) -> Exception:
    """The error an option's type check raises (argparse shows its message as it is)."""
    import argparse

    return argparse.ArgumentTypeError(message)


# -- argument types ----------------------------------------------------------------------------


def _int_at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise _type_error(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise _type_error(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _type_error(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise _type_error(f"must be a finite number >= 0, got {text!r}")
    # Keep whole numbers whole, so "--percentage 5" is sent as 5, not 5.0.
    whole = text.strip().lstrip("+")
    return int(value) if whole.isdigit() and whole.isascii() else value


def _positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise _type_error(f"must be greater than 0, got {text!r}")
    return value


def _readout(text: str) -> float | str:
    """A number when it reads as one (``42``, ``3.5``), else the text (``"$1,240"``)."""
    from activitysmith_track._checks import parse_readout

    return parse_readout(text)


def _metric(text: str) -> tuple[str, float | str]:
    try:
        from activitysmith_track._checks import parse_metrics

        pairs = parse_metrics(text)
    except ValueError as exc:
        raise _type_error(str(exc)) from None
    if len(pairs) != 1:
        raise _type_error(f"{text!r} must be one label=value (repeat --metric)")
    return pairs[0]


def _regex(text: str) -> re.Pattern[str]:
    from activitysmith_track._markers import compile_pattern

    try:
        return compile_pattern(text)
    except ValueError as exc:
        raise _type_error(str(exc)) from None


def _stream_key(text: str) -> str:
    problem = stream_key_problem(text)
    if problem is not None:
        raise _type_error(f"stream_key ({text!r}) {problem}")
    return text


_COLORS = list(COLORS)
_TYPES = list(ACTIVITY_TYPES)


# -- the parser --------------------------------------------------------------------------------


def _add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="API root (default: $ACTIVITYSMITH_BASE_URL, else https://activitysmith.com/api); "
        "a local emulator's URL needs no key",
    )


class _Option:
    """One option of ``run`` and script mode, described once: argparse builds the parser
    from it, and :func:`_quick_parse` reads a plain command line with it."""

    __slots__ = ("action", "choices", "convert", "dest", "exclusive", "flag", "help", "metavar")

    def __init__(
        self,
        flag: str,
        help: str,
        *,
        action: str = "store",
        convert: Callable[[str], Any] | None = None,
        choices: Sequence[str] | None = None,
        metavar: str | None = None,
        exclusive: bool = False,
    ) -> None:
        self.flag = flag
        self.dest = flag[2:].replace("-", "_")
        self.help = help
        self.action = action
        self.convert = convert
        self.choices = choices
        self.metavar = metavar
        self.exclusive = exclusive  # one of the type-choosing options (at most one is given)

    def add_to(self, parser: Any, **words: str) -> None:
        options: dict[str, Any] = {"help": self.help.format(**words)}
        if self.action != "store":
            options["action"] = self.action
        if self.convert is not None:
            options["type"] = self.convert
        if self.choices is not None:
            options["choices"] = list(self.choices)
        if self.metavar is not None:
            options["metavar"] = self.metavar
        parser.add_argument(self.flag, **options)


_ACTIVITY_OPTIONS = (
    _Option("--title", "the activity's title (default: the {what}'s name)"),
    _Option("--subtitle", "text under the title until the first step"),
    _Option(
        "--steps",
        "show N steps; each ::step:: marker (or step() call) begins the next one",
        convert=_int_at_least(1),
        metavar="N",
        exclusive=True,
    ),
    _Option(
        "--step",
        "name the next step (repeat for each step, in order); implies --steps",
        action="append",
        metavar="NAME",
        exclusive=True,
    ),
    _Option(
        "--total",
        "show a progress bar out of N; '::progress:: 40' means 40 of N",
        convert=_positive,
        metavar="N",
        exclusive=True,
    ),
    _Option(
        "--progress",
        "show a progress bar driven by '::progress:: 40%%' or '::progress:: 40/100'",
        action="store_true",
        exclusive=True,
    ),
    _Option("--color", "accent colour while running", choices=COLORS),
    _Option("--icon", "SF Symbol name shown with the title", metavar="SYMBOL"),
    _Option(
        "--stream-key",
        "drive the stream KEY (PUT/DELETE) instead of a new activity per run",
        convert=_stream_key,
        metavar="KEY",
    ),
    _Option("--channel", "send to this channel only (repeatable)", action="append", metavar="SLUG"),
    _Option("--tag", "tag the activity (repeatable)", action="append", metavar="TAG"),
    _Option(
        "--error-text",
        "on failure also show the command's last line of stderr (by default only the exit "
        "code or signal reaches the phone; also: ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE=1)",
        action="store_true",
    ),
    _Option(
        "--no-error-text",
        "show only the exit code or signal, whatever ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE says",
        action="store_true",
    ),
    _Option(
        "--debounce",
        "wait this long after a change before sending it, so bursts of changes go out as one "
        "update (default 1)",
        convert=_number,
        metavar="SECONDS",
    ),
    _Option(
        "--flush-timeout",
        "after the {what} ends, wait at most this long for the final state to be delivered "
        "(default: $ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT, else 10)",
        convert=_number,
        metavar="SECONDS",
    ),
    _Option(
        "--base-url",
        "API root (default: $ACTIVITYSMITH_BASE_URL, else https://activitysmith.com/api); "
        "a local emulator's URL needs no key",
        metavar="URL",
    ),
)
_MARKER_OPTIONS = (
    _Option(
        "--hide-markers",
        "do not show marker lines (output then passes line by line, not byte by byte)",
        action="store_true",
    ),
    _Option(
        "--marker-regex",
        "marker syntax: a regex searched in each line, with a group 'kind' "
        "(step|progress|metric) and an optional group 'value' (default: {default_pattern})",
        convert=_regex,
        metavar="REGEX",
    ),
    _Option("--no-markers", "ignore markers; only time the command", action="store_true"),
)


def _add_activity_options(parser: argparse.ArgumentParser, *, what: str) -> None:
    """The options that shape the activity: shared by ``run`` and script mode."""
    kind = parser.add_mutually_exclusive_group()
    for option in _ACTIVITY_OPTIONS:
        option.add_to(kind if option.exclusive else parser, what=what)


def _quick_parse(argv: Sequence[str], options: Sequence[_Option]) -> Any:
    """``argv`` read with ``options`` without argparse, or None to let argparse read it.

    The usual command line (long options, each known, each value valid) is read here, so that
    a command under ``run`` starts without waiting for argparse (and the regular expression
    machinery it loads). Anything else, --help and every mistake included, goes to argparse,
    which says what it says about it.
    """
    from types import SimpleNamespace

    by_flag = {option.flag: option for option in options}
    values: dict[str, Any] = {
        option.dest: False if option.action == "store_true" else None for option in options
    }
    exclusive: set[str] = set()
    at = 0
    while at < len(argv):
        word = argv[at]
        at += 1
        flag, has_value, inline = word.partition("=")
        option = by_flag.get(flag)
        if option is None:
            return None
        if option.action == "store_true":
            if has_value:
                return None
            values[option.dest] = True
        else:
            if has_value:
                text = inline
            elif at < len(argv) and not argv[at].startswith("-"):
                text = argv[at]
                at += 1
            else:
                return None
            try:
                value = option.convert(text) if option.convert is not None else text
            except Exception:
                return None
            if option.choices is not None and value not in option.choices:
                return None
            if option.action == "append":
                values[option.dest] = [*(values[option.dest] or []), value]
            else:
                values[option.dest] = value
        if option.exclusive:
            exclusive.add(option.dest)
    if len(exclusive) > 1:
        return None
    values["command"] = []
    return SimpleNamespace(**values)


def _add_run(sub: Any) -> None:
    import argparse

    run = sub.add_parser(
        "run",
        help="run a command under a Live Activity",
        description=_RUN_DESCRIPTION,
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run)


def build_run_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of ``run`` alone: what ``run`` needs is built before its command starts,
    not the whole command line."""
    import argparse

    run = _parser(
        prog=f"{prog} run",
        description=_RUN_DESCRIPTION,
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run)
    return run


def _default_pattern() -> str:
    from activitysmith_track._markers import DEFAULT_PATTERN

    return DEFAULT_PATTERN


def _add_run_options(run: argparse.ArgumentParser) -> None:
    import argparse

    _add_activity_options(run, what="command")
    markers = run.add_argument_group("markers")
    pattern = _default_pattern().replace("%", "%%")
    for option in _MARKER_OPTIONS:
        option.add_to(markers, default_pattern=pattern)
    run.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the command to run, after --",
    )


def build_script_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The parser of script mode: ``[options] script.py ARGS`` (the options of ``run``
    that make sense in-process)."""
    import argparse

    parser = _parser(
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
    parser = _parser(
        prog=prog,
        description="Show a command, script or cron job as an ActivitySmith Live Activity. "
        f"'python -m activitysmith_track script.py ARGS' runs a Python script in-process. "
        f"{_KEY_HELP}",
    )
    from activitysmith_track._version import __version__

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


def _cli_logging() -> None:
    """Show the library's warnings on stderr, one line each, prefixed with the program's name,
    for the rest of the process.

    Left in place on purpose: the library may still warn at exit, after ``main`` returned
    (an end that could not be delivered in time).
    """
    import logging

    logger = logging.getLogger("activitysmith_track")
    if not any(getattr(h, "_activitysmith_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._activitysmith_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
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
    from activitysmith_track._config import resolve_settings

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
            "show_error_message": (
                False if args.no_error_text else True if args.error_text else None
            ),
            "strict": False,  # tracking problems never change the job's outcome
        },
        need_key=False,
    )


def _job_activity(args: argparse.Namespace, title: str, settings: Settings) -> LiveActivity:
    """The activity ``run`` and script mode open, from the options they share."""
    from activitysmith_track._activity import live_activity

    return live_activity(
        args.title or title,
        steps=args.steps if args.steps is not None else args.step,
        total=args.total,
        type="progress" if args.progress else None,
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
    import re

    words = list(command)
    while len(words) > 1 and os.path.basename(words[0]) in _WRAPPERS:
        words.pop(0)
        # The wrapper's own options, NAME=value settings and numbers (niceness, durations).
        while len(words) > 1 and re.fullmatch(_WRAPPER_ARGUMENT, words[0]):
            words.pop(0)
    name = os.path.basename(words[0]) or words[0]
    if re.fullmatch(_INTERPRETER, name):
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


class _Tracking:
    """The activity of ``run``, built once the command runs (it loads the library, which the
    command need not wait for). Markers that arrive before it exists are kept and applied in
    order once it does; a problem building it is a warning, never a reason not to run."""

    def __init__(self, args: argparse.Namespace, command: list[str]) -> None:
        self._args = args
        self._command = command
        self._held: list[Marker] = []
        self._handle: Any = None
        self._lock = threading.Lock()
        self.activity: LiveActivity | None = None
        self.settings: Settings | None = None

    def begin(self) -> None:
        """Build the activity and start it (right after the command started)."""
        from activitysmith_track._errors import ActivitySmithTrackError

        _cli_logging()
        args = self._args
        try:
            self.settings = _job_settings(args)
            activity = _job_activity(args, default_title(self._command), self.settings)
            activity.start()
        except ActivitySmithTrackError as exc:
            _logger().warning("not tracking this run: %s", exc)
            return
        from activitysmith_track._markers import MarkerHandler

        handler = MarkerHandler(activity, step_names=args.step, subtitle=args.subtitle)
        with self._lock:
            self.activity = activity
            self._handle = handler.handle
            held, self._held = self._held, []
        for marker in held:
            handler.handle(marker)

    def marker(self, marker: Marker) -> None:
        with self._lock:
            handle = self._handle
            if handle is None:
                self._held.append(marker)
                return
        handle(marker)


class _LateMarkers:
    """The marker parser, compiled when the command prints its first line: the command does
    not wait for the regular expression machinery to load."""

    def __init__(self, pattern: re.Pattern[str] | None) -> None:
        self._pattern = pattern
        self._parser: Any = None
        self._lock = threading.Lock()

    def parse(self, line: str) -> Marker | None:
        parser = self._parser
        if parser is None:
            with self._lock:
                if self._parser is None:
                    from activitysmith_track._markers import DEFAULT_PATTERN, MarkerParser

                    self._parser = MarkerParser(self._pattern or DEFAULT_PATTERN)
                parser = self._parser
        marker: Marker | None = parser.parse(line)
        return marker


def _run(args: argparse.Namespace, command: list[str], prog: str) -> int:
    if not command:
        return _fail(prog, "no command given: put it after --, e.g. run -- ./backup.sh")
    from activitysmith_track._runner import CannotStart, RunOutcome, run_child

    tracking = _Tracking(args, command)
    parser = None if args.no_markers else _LateMarkers(args.marker_regex)
    try:
        # The command starts first; the activity is built and started while it runs.
        outcome = run_child(
            command,
            parser=parser,
            on_marker=tracking.marker,
            on_started=tracking.begin,
            hide_markers=args.hide_markers,
        )
    except CannotStart as exc:
        # As a shell: 127 when there is no such command, 126 when it cannot be executed. The
        # phone learns it too: the job did not start.
        code, reason, shown = _cannot_run(command[0], exc.error)
        print(f"{prog}: {reason}", file=sys.stderr, flush=True)
        with contextlib.suppress(KeyboardInterrupt), _terminate_interrupts():
            tracking.begin()
            if tracking.activity is not None and tracking.settings is not None:
                _finish(
                    tracking.activity, RunOutcome(exit_code=code), tracking.settings, reason=shown
                )
        return code
    if tracking.activity is not None and tracking.settings is not None:
        # Ctrl-C or SIGTERM while the end is being delivered stops waiting for it; the exit
        # code stays the command's.
        with contextlib.suppress(KeyboardInterrupt), _terminate_interrupts():
            _finish(tracking.activity, outcome, tracking.settings)
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
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signals = [getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {signum: signal.signal(signum, interrupt) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _exception_type(line: str) -> str | None:
    """``ValueError`` from a traceback's last line ``ValueError: bad row 7`` (or a dotted
    ``pkg.errors.LoadError: ...``), else None: the type without the message."""
    name = line.split(":", 1)[0].strip()
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    last = parts[-1]
    if last.endswith(("Error", "Exception", "Exit", "Interrupt", "Warning")) or last in (
        "StopIteration",
        "GeneratorExit",
    ):
        return last
    return None


def _finish(
    activity: LiveActivity, outcome: RunOutcome, settings: Settings, *, reason: str | None = None
) -> None:
    """End the activity as the command ended and wait (bounded) for delivery. ``reason``
    replaces the failure's description (a command that could not be started)."""
    from activitysmith_track._errors import ActivitySmithTrackError
    from activitysmith_track._runner import signal_name

    logger = _logger()
    try:
        if reason is not None:
            activity.fail(reason)
        elif outcome.cancelled_by is not None:
            activity.cancel(f"{signal_name(outcome.cancelled_by)} received")
        elif outcome.exit_code == 0:
            activity.end()
        else:
            reason = outcome.description
            # The command's own words reach the phone only while error text is shown; a
            # Python traceback's exception type is code, not data, and is shown either way.
            line = outcome.last_stderr_line
            if line and settings.show_error_message:
                reason = f"{reason}: {line}"
            elif line and (kind := _exception_type(line)) is not None:
                reason = f"{reason}: {kind}"
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
    from activitysmith_track._model import Badge, Icon, Metric

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
    from activitysmith_track._state import Job

    return {"start": Job.START, "update": Job.CHANGE, "end": Job.END}[op]


def _payload(args: argparse.Namespace, target: Target, job: Job) -> Payload | None:
    """The request's payload. What starts an activity (start, or a stream PUT, which may) gets
    the type and defaults ``live_activity()`` would infer from the same fields."""
    from activitysmith_track._model import ContentState, Operation, Payload
    from activitysmith_track._render import render
    from activitysmith_track._state import Job, operation, plan

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
    import json
    import time

    from activitysmith_track._client import Client
    from activitysmith_track._errors import (
        ActivitySmithTrackError,
        ConfigurationError,
        ValidationError,
    )
    from activitysmith_track._state import Target, operation

    _cli_logging()
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
    from activitysmith_track._errors import ConfigurationError, ValidationError

    _cli_logging()
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
    if argv[:1] == ["run"]:
        # Only run's own parser: the command it wraps is waiting to start.
        before, command = _split_command(argv[1:])
        args = None
        if command is not None:
            args = _quick_parse(before, _ACTIVITY_OPTIONS + _MARKER_OPTIONS)
        if args is None:
            try:
                args = build_run_parser(prog).parse_args(before)
            except SystemExit as exc:  # --help, or a parse error already reported
                return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if command is not None and args.command:
            return _fail(f"{prog} run", "put the whole command after --")
        return _run(args, command if command is not None else list(args.command), f"{prog} run")
    _cli_logging()
    try:
        args = build_parser(prog).parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a parse error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.subcommand == "doctor":
        from activitysmith_track._doctor import doctor

        return doctor(args, f"{prog} doctor")
    if args.subcommand in ("list", "cleanup"):
        from activitysmith_track import _maintenance

        if args.subcommand == "list":
            return _maintenance.list_open(args, f"{prog} list")
        return _maintenance.cleanup(args, f"{prog} cleanup")
    return _one_shot(args, f"{prog} {args.subcommand}")
