"""``activitysmith-track doctor``: check the setup and say how to fix what is wrong.

Each check prints one finding: ``ok``, ``note`` (worth knowing, nothing broken) or
``PROBLEM`` (tracking will not work as configured), the last two with their fix. The command
exits 1 when a problem was found, else 0. It sends at most three small requests: ``GET
/health`` (unauthenticated; contract section 9), one harmless authenticated request (the
DELETE of a stream key that cannot exist, which a valid key gets a 404 for), and, when the base
URL lacks the ``/api`` path, the same two under ``<url>/api`` to confirm the fix.

The key is never printed, not even in part: only its length and whether it has the ``ask_``
shape.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import requests

from activitysmith_track import _config, _ledger
from activitysmith_track._config import Settings, is_local_url, misspelled_env, resolve_settings
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    APIError,
    AuthenticationError,
    BillingBlockedError,
    ConfigurationError,
    ForbiddenError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from activitysmith_track._version import __version__

__all__ = ["Finding", "doctor", "findings"]

logger = logging.getLogger("activitysmith_track")

OK = "ok"
NOTE = "note"
PROBLEM = "PROBLEM"
KEY_PREFIX = "ask_"
# The server's Date has a resolution of one second; beyond these the clock is worth a word.
CLOCK_NOTE = 30.0
CLOCK_PROBLEM = 300.0
_PROBE_PREFIX = "activitysmith-track-doctor-"


@attrs.frozen(kw_only=True)
class Finding:
    """One line of the report: ``level`` is ``ok``, ``note`` or ``PROBLEM``."""

    level: str
    subject: str
    text: str
    fix: str | None = None


@attrs.define
class _Context:
    settings: Settings
    env: Mapping[str, str]
    timeout: float
    findings: list[Finding] = attrs.field(factory=list)
    api_hint_given: bool = False

    def add(self, level: str, subject: str, text: str, fix: str | None = None) -> None:
        self.findings.append(Finding(level=level, subject=subject, text=text, fix=fix))


@contextlib.contextmanager
def _quiet_library() -> Iterator[None]:
    """The library's own warnings about the environment would repeat our findings."""
    was = logger.disabled
    logger.disabled = True
    try:
        yield
    finally:
        logger.disabled = was


def findings(
    env: Mapping[str, str], *, base_url: str | None = None, timeout: float = 5.0
) -> list[Finding]:
    """Run every check with ``env`` (and ``base_url``, as ``--base-url`` gives it)."""
    early: list[Finding] = []
    _check_environment(env, early)
    try:
        with _quiet_library():
            settings = resolve_settings({"base_url": base_url} if base_url else None, env=env)
    except ConfigurationError as exc:
        early.append(
            Finding(
                level=PROBLEM,
                subject="base URL",
                text=str(exc),
                fix=f"set ACTIVITYSMITH_BASE_URL to the API root, e.g. {_config.DEFAULT_BASE_URL}",
            )
        )
        return early
    ctx = _Context(settings=settings, env=env, timeout=timeout, findings=early)
    key_usable = _check_key(ctx)
    reachable, date = _check_base_url(ctx)
    if reachable:
        if key_usable:
            _check_account(ctx)
        else:
            ctx.add(NOTE, "account", "not checked: fix the API key first")
        _check_clock(ctx, date)
    _check_ledger(ctx)
    return ctx.findings


# -- the environment ---------------------------------------------------------------------------


def _check_environment(env: Mapping[str, str], out: list[Finding]) -> None:
    for name, meant in misspelled_env(env):
        out.append(
            Finding(
                level=PROBLEM,
                subject="environment",
                text=f"{name} is not a setting, so it is ignored; did you mean {meant}?",
                fix=f"rename it to {meant}",
            )
        )
    for name, field, read in _config._ENV:
        raw = env.get(name)
        if raw is None or not raw.strip() or field == "api_key":
            continue  # the key has its own check
        try:
            _config.Settings(**{field: read(raw)})
        except ActivitySmithTrackError as exc:
            out.append(
                Finding(
                    level=PROBLEM,
                    subject="environment",
                    text=f"{name}={raw!r} is ignored: {exc}",
                    fix=f"give {name} a valid value, or unset it",
                )
            )


# -- the key -----------------------------------------------------------------------------------


def _check_key(ctx: _Context) -> bool:
    """Report on the key; whether a request with it can be tried."""
    raw = ctx.env.get("ACTIVITYSMITH_API_KEY", "")
    local = ctx.settings.is_local
    if not raw.strip():
        if local:
            ctx.add(OK, "API key", "not set, and not needed: a local emulator takes any key")
            return True
        ctx.add(
            PROBLEM,
            "API key",
            "ACTIVITYSMITH_API_KEY is not set: nothing can be sent",
            "export ACTIVITYSMITH_API_KEY=ask_... (the key from the ActivitySmith app)",
        )
        return False
    key = raw.strip()
    if key[:1] in ("'", '"') or key[-1:] in ("'", '"'):
        ctx.add(
            PROBLEM,
            "API key",
            "is wrapped in quotes, which became part of the key",
            "set it without the quotes",
        )
        return False
    if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
        ctx.add(
            PROBLEM,
            "API key",
            "contains spaces, line breaks, control or non-ASCII characters",
            "copy the key again from the ActivitySmith app, as one word",
        )
        return False
    if raw != key:
        ctx.add(NOTE, "API key", "has spaces around it; they are ignored")
    if not key.startswith(KEY_PREFIX):
        ctx.add(
            NOTE,
            "API key",
            f"is set ({len(key)} characters) but does not start with {KEY_PREFIX!r} as "
            "ActivitySmith keys do",
            "check that ACTIVITYSMITH_API_KEY holds an ActivitySmith API key",
        )
        return True
    ctx.add(OK, "API key", f"set ({len(key)} characters, {KEY_PREFIX}...)")
    return True


# -- the base URL and /health ----------------------------------------------------------------


def _lacks_api(url: str) -> bool:
    return not urlsplit(url).path.rstrip("/").endswith("/api")


def _headers() -> dict[str, str]:
    return {"Accept": "application/json", "User-Agent": f"activitysmith-track/{__version__}"}


def _get(url: str, timeout: float) -> requests.Response:
    with requests.Session() as session:
        session.trust_env = False  # no ~/.netrc credentials; proxies come from the env below
        session.proxies.update(requests.utils.get_environ_proxies(url))
        return session.get(
            url, headers=_headers(), timeout=(timeout, timeout), allow_redirects=False
        )


def _why_unreachable(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed ({type(exc).__name__}); the certificate or the clock may be wrong"
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g}s"
    text = str(exc)
    if (
        "Name or service not known" in text
        or "nodename nor servname" in text
        or ("NameResolutionError" in text or "getaddrinfo failed" in text)
    ):
        return "the host name does not resolve"
    if "refused" in text.lower():
        return "connection refused: nothing listens there"
    return f"{type(exc).__name__}"


def _check_base_url(ctx: _Context) -> tuple[bool, str | None]:
    """Report on the URL and ``GET /health``; whether the server answered, and its Date."""
    url = ctx.settings.base_url
    parts = urlsplit(url)
    if not parts.hostname or parts.query or parts.fragment:
        ctx.add(
            PROBLEM,
            "base URL",
            f"{url} is not an API root (a host is needed; no query or fragment)",
            f"set ACTIVITYSMITH_BASE_URL like {_config.DEFAULT_BASE_URL}",
        )
        return False, None
    local = is_local_url(url)
    try:
        response = _get(url + "/health", ctx.timeout)
    except requests.RequestException as exc:
        where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
        fix = (
            "start the emulator (activitysmith-track emulator --port N) or fix the port"
            if local
            else "check the URL, the network, and any proxy (HTTPS_PROXY)"
        )
        ctx.add(
            PROBLEM,
            "base URL",
            f"{url}: cannot reach {where}: {_why_unreachable(exc, ctx.timeout)}",
            fix,
        )
        return False, None
    with response:
        status = response.status_code
        date = response.headers.get("Date")
        body = _json(response)
    if parts.scheme == "http" and not local:
        ctx.add(
            NOTE,
            "base URL",
            f"{url} is plain http: the API key travels unencrypted",
            "use https://",
        )
    else:
        ctx.add(OK, "base URL", f"{url} answers")
    if 300 <= status < 400:
        target = response.headers.get("Location", "elsewhere")
        ctx.add(
            PROBLEM,
            "base URL",
            f"GET /health redirects (HTTP {status}) to {target}; requests are not redirected",
            "set ACTIVITYSMITH_BASE_URL to the URL it redirects to (without /health)",
        )
        return True, date
    if status == 200 and isinstance(body, dict) and body.get("ok") is True:
        service = body.get("service")
        named = f" ({service})" if isinstance(service, str) else ""
        ctx.add(OK, "health", f"GET /health: healthy{named}")
        return True, date
    if status in (200, 503) and isinstance(body, dict) and "ok" in body:
        failing = [
            str(check.get("name"))
            for check in body.get("checks") or []
            if isinstance(check, dict)
            and str(check.get("status", "")).lower() not in ("ok", "pass", "healthy", "up")
        ]
        detail = f": {', '.join(failing)}" if failing else ""
        ctx.add(
            PROBLEM,
            "health",
            f"GET /health: the service reports trouble (HTTP {status}){detail}",
            "wait and try again; updates are retried, but may arrive late meanwhile",
        )
        return True, date
    if status in (404, 405) and _lacks_api(url) and _answers_health(url + "/api", ctx.timeout):
        ctx.api_hint_given = True
        ctx.add(
            PROBLEM,
            "base URL",
            f"{url} has no /api path: it reaches the web site, not the API",
            f"export ACTIVITYSMITH_BASE_URL={url}/api",
        )
        return True, date
    # The endpoint is newer than the released SDKs (contract section 9): its absence is
    # worth a note, not a failure.
    if status in (404, 405):
        ctx.add(NOTE, "health", f"GET /health is not served here (HTTP {status}); skipped")
    else:
        ctx.add(NOTE, "health", f"GET /health answered HTTP {status}; skipped")
    return True, date


def _answers_health(url: str, timeout: float) -> bool:
    try:
        response = _get(url + "/health", timeout)
    except requests.RequestException:
        return False
    with response:
        body = _json(response)
        return response.status_code in (200, 503) and isinstance(body, dict) and "ok" in body


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# -- the account -----------------------------------------------------------------------------


def _probe(settings: Settings, base_url: str, timeout: float) -> ActivitySmithTrackError | None:
    """DELETE a stream that cannot exist: ``None`` when it answered as for a good key."""
    from activitysmith_track._client import Client
    from activitysmith_track._retry import RetryPolicy

    key = _PROBE_PREFIX + secrets.token_hex(8)
    try:
        with Client(
            settings.effective_api_key,
            base_url=base_url,
            timeout=(timeout, timeout),
            retry=RetryPolicy.none(),
        ) as client:
            client.delete_stream(key)
    except NotFoundError as exc:
        if exc.body is not None:
            return None  # the API's own "no such stream": the key was accepted
        return exc
    except ActivitySmithTrackError as exc:
        return exc
    return None  # 200: an emulator or server that ends unknown streams quietly


def _check_account(ctx: _Context) -> None:
    settings = ctx.settings
    error = _probe(settings, settings.base_url, ctx.timeout)
    if error is None:
        ctx.add(OK, "account", "the key is accepted (a harmless test request was answered)")
        return
    if (
        isinstance(error, APIError | MalformedResponseError)
        and getattr(error, "status", None) in (404, 405, 200)
        and _lacks_api(settings.base_url)
    ) and _probe(settings, settings.base_url + "/api", ctx.timeout) is None:
        if not ctx.api_hint_given:
            ctx.api_hint_given = True
            ctx.add(
                PROBLEM,
                "base URL",
                f"{settings.base_url} has no /api path: requests reach the web site, not the API",
                f"export ACTIVITYSMITH_BASE_URL={settings.base_url}/api",
            )
        ctx.add(NOTE, "account", f"the key is accepted at {settings.base_url}/api")
        return
    if isinstance(error, AuthenticationError):
        if not ctx.env.get("ACTIVITYSMITH_API_KEY", "").strip() and settings.is_local:
            text, fix = (
                "this emulator wants a key (HTTP 401)",
                "export ACTIVITYSMITH_API_KEY=<the key the emulator was started with>",
            )
        else:
            text, fix = (
                "the key was refused (HTTP 401)",
                "copy the key again from the ActivitySmith app; check that it was not revoked",
            )
        ctx.add(PROBLEM, "account", text, fix)
    elif isinstance(error, ForbiddenError):
        ctx.add(
            PROBLEM,
            "account",
            f"the key may not end streams (HTTP 403): {error.message or error.error or ''}".rstrip(
                ": "
            ),
            "use a key scoped to all recipients, or to the channels the jobs send to",
        )
    elif isinstance(error, BillingBlockedError):
        upgrade = (error.body or {}).get("upgrade_url")
        ctx.add(
            PROBLEM,
            "account",
            f"sending is blocked by billing (HTTP 402: {error.error or 'blocked'})",
            f"see {upgrade}" if isinstance(upgrade, str) else "check the account's plan",
        )
    elif isinstance(error, RateLimitedError):
        wait = f" for {error.retry_after:g}s" if error.retry_after is not None else ""
        ctx.add(NOTE, "account", f"rate limited right now (HTTP 429){wait}; not checked")
    elif isinstance(error, ServerError):
        ctx.add(PROBLEM, "account", f"the server failed (HTTP {error.status})", "try again later")
    elif isinstance(error, TransportError):
        ctx.add(PROBLEM, "account", f"no usable answer: {error}", "check the network")
    else:
        ctx.add(
            PROBLEM,
            "account",
            f"unexpected answer: {error}",
            "check ACTIVITYSMITH_BASE_URL: it should be the API root, e.g. "
            f"{_config.DEFAULT_BASE_URL}",
        )


# -- the clock ----------------------------------------------------------------------------------


def _check_clock(ctx: _Context, date: str | None, *, now: float | None = None) -> None:
    if not date:
        ctx.add(NOTE, "clock", "the server sent no Date header; not checked")
        return
    try:
        server = email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        ctx.add(NOTE, "clock", f"the server's Date header is unreadable ({date!r}); not checked")
        return
    local = time.time() if now is None else now
    # The header was written during the request, which took under ctx.timeout; its one-second
    # resolution is the rest of the tolerance.
    skew = local - server
    if abs(skew) <= CLOCK_NOTE:
        ctx.add(OK, "clock", "in step with the server's (within 30 s)")
        return
    direction = "ahead of" if skew > 0 else "behind"
    text = f"this machine's clock is {abs(skew):.0f}s {direction} the server's"
    fix = "turn on time synchronisation (NTP), e.g. timedatectl set-ntp true"
    ctx.add(PROBLEM if abs(skew) > CLOCK_PROBLEM else NOTE, "clock", text, fix)


# -- the ledger ---------------------------------------------------------------------------------


def _check_ledger(ctx: _Context) -> None:
    settings = ctx.settings
    if not settings.ledger:
        ctx.add(
            NOTE,
            "ledger",
            "off (ACTIVITYSMITH_TRACK_LEDGER=0): activities of killed jobs are not cleaned up",
        )
        return
    problem = _ledger.problem(settings)
    if problem is not None:
        ctx.add(PROBLEM, "ledger", problem)
        return
    entries = _ledger.open_entries(settings)
    orphaned = [e for e in entries if e.status is _ledger.OwnerStatus.GONE]
    ctx.add(
        OK,
        "ledger",
        f"{_ledger.database_path(settings)}: {len(entries)} open, {len(orphaned)} orphaned",
    )
    if orphaned:
        ctx.add(
            NOTE,
            "ledger",
            f"{len(orphaned)} activit{'y' if len(orphaned) == 1 else 'ies'} left open by a "
            "process that died",
            "activitysmith-track cleanup",
        )


# -- the command --------------------------------------------------------------------------------


def doctor(args: argparse.Namespace, prog: str) -> int:
    """Print the findings; exit 1 when one is a problem."""
    report = findings(os.environ, base_url=args.base_url, timeout=args.timeout)
    width = max(len(f.subject) for f in report)
    for finding in report:
        print(f"{finding.level:<8} {finding.subject:<{width}}  {finding.text}")
        if finding.fix and finding.level != OK:
            print(f"{'':<8} {'':<{width}}  fix: {finding.fix}")
    problems = sum(1 for f in report if f.level == PROBLEM)
    if problems:
        print(f"\n{problems} problem{'s' if problems > 1 else ''} found.")
    else:
        print("\nNo problems found.")
    sys.stdout.flush()
    return 1 if problems else 0
