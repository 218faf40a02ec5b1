"""``activitysmith-track list`` and ``activitysmith-track cleanup``: the ledger on the command
line. What they read and do is :mod:`activitysmith_track._ledger`'s; this module only prints."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from activitysmith_track import _ledger
from activitysmith_track._config import Settings, resolve_settings
from activitysmith_track._errors import ConfigurationError

__all__ = ["cleanup", "list_open"]

EXIT_TROUBLE = 1
EXIT_USAGE = 2

_STATUS_WORDS = {
    _ledger.OwnerStatus.RUNNING: "running",
    _ledger.OwnerStatus.GONE: "orphaned",
    _ledger.OwnerStatus.OTHER_HOST: "elsewhere",
}


def _settings(args: argparse.Namespace, prog: str) -> Settings | None:
    try:
        return resolve_settings({"base_url": args.base_url} if args.base_url else None)
    except ConfigurationError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr, flush=True)
        return None


def _ledger_off(settings: Settings, prog: str) -> bool:
    if settings.ledger:
        return False
    print(
        f"{prog}: the ledger is off (ACTIVITYSMITH_TRACK_LEDGER=0): nothing is recorded",
        file=sys.stderr,
        flush=True,
    )
    return True


def ago(seconds: float) -> str:
    """``42s``, ``5m``, ``3h12m``, ``2d4h``: how long ago, for a column."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def _account(entry: _ledger.Entry, settings: Settings) -> str:
    if entry.base_url != settings.base_url:
        return entry.base_url
    if entry.key_fingerprint != _ledger.key_fingerprint(settings.effective_api_key):
        return "another API key"
    return ""


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)


def list_open(args: argparse.Namespace, prog: str) -> int:
    """Print the ledger's entries: one line each, or JSON with ``--json``."""
    settings = _settings(args, prog)
    if settings is None:
        return EXIT_USAGE
    if _ledger_off(settings, prog):
        if args.json:
            print("[]")
        return 0
    problem = _ledger.problem(settings)
    if problem is not None:
        print(f"{prog}: cannot read the ledger: {problem}", file=sys.stderr, flush=True)
        return EXIT_TROUBLE
    entries = _ledger.open_entries(settings)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2, sort_keys=True))
        return 0
    if not entries:
        print(f"No open Live Activities recorded ({_ledger.database_path(settings)}).")
        return 0
    now = time.time()
    rows = [["STATUS", "PID", "STARTED", "ACTIVITY", "TITLE", "ACCOUNT"]]
    for entry in entries:
        rows.append(
            [
                _STATUS_WORDS[entry.status],
                str(entry.pid),
                f"{ago(now - entry.started_at)} ago",
                entry.target,
                entry.title,
                _account(entry, settings),
            ]
        )
    print(_table(rows))
    orphaned = sum(1 for e in entries if e.status is _ledger.OwnerStatus.GONE)
    if orphaned:
        print(
            f"\n{orphaned} orphaned (their process died): `activitysmith-track cleanup` ends them."
        )
    sys.stdout.flush()
    return 0


def _describe(cleanup: _ledger.Cleanup) -> str:
    entry = cleanup.entry
    return (
        f"{cleanup.action:<8} {entry.title!r} ({entry.target}, pid {entry.pid}): {cleanup.detail}"
    )


def cleanup(args: argparse.Namespace, prog: str) -> int:
    """End this account's orphans now and print what was done with each."""
    settings = _settings(args, prog)
    if settings is None:
        return EXIT_USAGE
    if _ledger_off(settings, prog):
        return 0
    problem = _ledger.problem(settings)
    if problem is not None:
        print(f"{prog}: cannot read the ledger: {problem}", file=sys.stderr, flush=True)
        return EXIT_TROUBLE
    found = _ledger.orphans(settings)
    if not found:
        print("Nothing to clean up: no recorded activity's process has died.")
        return 0
    if settings.effective_api_key is None:
        print(
            f"{prog}: error: no API key: set ACTIVITYSMITH_API_KEY to the key the orphans "
            "were started with",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_TROUBLE
    results = _ledger.end_orphans(settings, timeout=args.timeout)
    for result in results:
        print(_describe(result))
    counts: dict[str, Any] = {}
    for result in results:
        counts[result.action] = counts.get(result.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
    print(f"{len(results)} orphan(s): {summary}.")
    sys.stdout.flush()
    return EXIT_TROUBLE if counts.get("failed") else 0
