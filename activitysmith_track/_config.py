"""Settings: what the library does, from arguments, ``configure()`` and environment variables.

Precedence, highest first: an argument to ``live_activity()``/``tracked_steps()``, a value set
with :func:`configure`, an environment variable, the default. Settings are resolved once, when
an activity is created, into a frozen :class:`Settings` value.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from activitysmith_track._checks import (
    check_count,
    check_flag,
    check_seconds,
    check_url,
    parse_flag,
    parse_number,
)
from activitysmith_track._errors import (
    ActivitySmithTrackError,
    ArgumentTypeError,
    ConfigurationError,
    ValidationError,
)
from activitysmith_track._retry import RetryPolicy

logger = logging.getLogger("activitysmith_track")

__all__ = [
    "DEFAULT_BASE_URL",
    "EMULATOR_API_KEY",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_DISABLED",
    "ENV_PREVIEW",
    "Settings",
    "configure",
    "is_local_url",
    "resolve_settings",
]

DEFAULT_BASE_URL = "https://activitysmith.com/api"

# Sent when no key is configured but the base URL is a loopback emulator, which accepts any
# non-empty key unless it was started with one.
EMULATOR_API_KEY = "ask_local_emulator"

# The environment variables, spelled here only; everything else imports these names.
ENV_API_KEY = "ACTIVITYSMITH_API_KEY"
ENV_BASE_URL = "ACTIVITYSMITH_BASE_URL"
ENV_DISABLED = "ACTIVITYSMITH_TRACK_DISABLED"
ENV_STRICT = "ACTIVITYSMITH_TRACK_STRICT"
ENV_PREVIEW = "ACTIVITYSMITH_TRACK_PREVIEW"
ENV_SHOW_ERROR_MESSAGE = "ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE"
ENV_FLUSH_TIMEOUT = "ACTIVITYSMITH_TRACK_FLUSH_TIMEOUT"
ENV_DEBOUNCE = "ACTIVITYSMITH_TRACK_DEBOUNCE"
ENV_REQUESTS_PER_MINUTE = "ACTIVITYSMITH_TRACK_REQUESTS_PER_MINUTE"
ENV_SIGNALS = "ACTIVITYSMITH_TRACK_SIGNALS"
ENV_LEDGER = "ACTIVITYSMITH_TRACK_LEDGER"
ENV_STATE_DIR = "ACTIVITYSMITH_TRACK_STATE_DIR"
ENV_HISTORY = "ACTIVITYSMITH_TRACK_HISTORY"


def _positive(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        check_seconds(name, value, positive=True)

    return check


def _non_negative(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        check_seconds(name, value)

    return check


def _count(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        check_count(name, value, minimum=1)

    return check


def _flag(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        check_flag(name, value)

    return check


def _optional_text(name: str) -> Any:
    def check(_inst: object, _attr: object, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            raise ArgumentTypeError(name, "a str (a directory path)", value)
        if not value.strip():
            raise ValidationError(name, "must not be empty", value)

    return check


@attrs.frozen(kw_only=True)
class Settings:
    """Everything that shapes delivery, resolved once per activity.

    The defaults follow the service's limits (see the contract, section 6): iOS throttles an
    activity that updates more often than every couple of minutes on average, so each activity
    gets a burst of ``update_burst`` updates refilled at one per ``update_interval`` seconds,
    and the account allows about 60 requests a minute across all activities (a local emulator
    included: it keeps the same budget, so a local run shows what production will do).
    ``connections`` is how many requests of one account may be on the wire at once (starts
    and ends may use a few more, so that hung requests never hold them back);
    ``capacity_retry_interval`` how often an activity refused for capacity (the device shows
    as many activities as it may) tries again. ``signals`` ends open activities as cancelled
    when the process gets SIGTERM or SIGHUP.
    """

    api_key: str | None = attrs.field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    connect_timeout: float = attrs.field(default=5.0, validator=_positive("connect_timeout"))
    read_timeout: float = attrs.field(default=15.0, validator=_positive("read_timeout"))
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    flush_timeout: float = attrs.field(default=10.0, validator=_non_negative("flush_timeout"))
    debounce: float = attrs.field(default=1.0, validator=_non_negative("debounce"))
    update_burst: int = attrs.field(default=12, validator=_count("update_burst"))
    update_interval: float = attrs.field(default=120.0, validator=_positive("update_interval"))
    requests_per_minute: int = attrs.field(default=60, validator=_count("requests_per_minute"))
    connections: int = attrs.field(default=4, validator=_count("connections"))
    capacity_retry_interval: float = attrs.field(
        default=60.0, validator=_positive("capacity_retry_interval")
    )
    strict: bool = attrs.field(default=False, validator=_flag("strict"))
    disabled: bool = attrs.field(default=False, validator=_flag("disabled"))
    preview: bool = attrs.field(default=False, validator=_flag("preview"))
    show_error_message: bool = attrs.field(default=False, validator=_flag("show_error_message"))
    signals: bool = attrs.field(default=True, validator=_flag("signals"))
    # The local ledger of open activities (see _ledger): on unless turned off; its directory
    # defaults to the user's state directory (see _store.state_dir).
    ledger: bool = attrs.field(default=True, validator=_flag("ledger"))
    state_dir: str | None = attrs.field(default=None, validator=_optional_text("state_dir"))
    # The local run history behind ETAs from past runs (see _history): on unless turned off.
    history: bool = attrs.field(default=True, validator=_flag("history"))

    @property
    def is_local(self) -> bool:
        """True when the base URL points at this machine (an emulator)."""
        return is_local_url(self.base_url)

    @property
    def effective_api_key(self) -> str | None:
        """The key to send: the configured one, or a placeholder for a local emulator."""
        if self.api_key:
            return self.api_key
        return EMULATOR_API_KEY if self.is_local else None


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine (loopback): where an emulator would listen."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_FIELDS = {a.name for a in attrs.fields(Settings)}
_overrides: dict[str, Any] = {}
_overrides_lock = threading.Lock()


def configure(**options: Any) -> None:
    """Set process-wide defaults, e.g. ``configure(api_key=..., strict=True, flush_timeout=5)``.

    Any :class:`Settings` field may be given; ``None`` removes an earlier value. Arguments given
    to ``live_activity()`` still win over these.
    """
    _refuse_unknown(options)
    with _overrides_lock:
        candidate = dict(_overrides)
        for name, value in options.items():
            if value is None:
                candidate.pop(name, None)
            else:
                candidate[name] = value
        # Validate now, so a bad value fails at the configure() call that made it and
        # changes nothing.
        Settings(**candidate)
        _overrides.clear()
        _overrides.update(candidate)


def _refuse_unknown(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - _FIELDS)
    if not unknown:
        return
    from activitysmith_track._suggest import did_you_mean

    if len(unknown) == 1:
        hint = did_you_mean(unknown[0], _FIELDS)
        raise ConfigurationError(
            f"unknown setting {unknown[0]!r}{hint or '; known: ' + ', '.join(sorted(_FIELDS))}"
        )
    named = ", ".join(f"{name!r}{did_you_mean(name, _FIELDS)}" for name in unknown)
    raise ConfigurationError(f"unknown settings {named}; known: {', '.join(sorted(_FIELDS))}")


def _env_flag(raw: str) -> bool:
    try:
        return parse_flag(raw)
    except ValueError:
        raise ConfigurationError("not a yes/no value; use 1 or 0") from None


def _env_seconds(raw: str) -> float:
    try:
        return float(parse_number(raw))
    except ValueError:
        raise ConfigurationError("not a number of seconds") from None


def _env_count(raw: str) -> int:
    try:
        value = parse_number(raw)
    except ValueError:
        raise ConfigurationError("not a whole number") from None
    if not isinstance(value, int):
        raise ConfigurationError("not a whole number")
    return value


def _env_text(raw: str) -> str:
    return raw


def _env_url(raw: str) -> str:
    return check_url("base_url", raw)


# Each variable: the setting it feeds and how its text is read.
_ENV: tuple[tuple[str, str, Callable[[str], Any]], ...] = (
    (ENV_API_KEY, "api_key", _env_text),
    (ENV_BASE_URL, "base_url", _env_url),
    (ENV_DISABLED, "disabled", _env_flag),
    (ENV_STRICT, "strict", _env_flag),
    (ENV_PREVIEW, "preview", _env_flag),
    (ENV_SHOW_ERROR_MESSAGE, "show_error_message", _env_flag),
    (ENV_FLUSH_TIMEOUT, "flush_timeout", _env_seconds),
    (ENV_DEBOUNCE, "debounce", _env_seconds),
    (ENV_REQUESTS_PER_MINUTE, "requests_per_minute", _env_count),
    (ENV_SIGNALS, "signals", _env_flag),
    (ENV_LEDGER, "ledger", _env_flag),
    (ENV_STATE_DIR, "state_dir", _env_text),
    (ENV_HISTORY, "history", _env_flag),
)
ENV_NAMES = frozenset(name for name, _field, _read in _ENV)
_ENV_PREFIX = "ACTIVITYSMITH_"
_warned_env: set[tuple[str, str]] = set()


def misspelled_env(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """``(name, meant)`` for each ``ACTIVITYSMITH_*`` variable that is not one of ours but is
    close to one (``ACTIVITYSMITH_APIKEY``, ``ACTIVITYSMITH_TRACK_DISABLE``).

    A variable close to none of ours is left alone: it may belong to another tool or to the
    application itself.
    """
    strays = [name for name in env if name.upper().startswith(_ENV_PREFIX)]
    strays = [name for name in strays if name not in ENV_NAMES]
    if not strays:
        return []
    from activitysmith_track._suggest import closest

    found = []
    for name in sorted(strays):
        meant = closest(name, ENV_NAMES, prefix=_ENV_PREFIX)
        if meant is not None:
            found.append((name, meant))
    return found


def _warn_misspelled(env: Mapping[str, str]) -> None:
    for name, meant in misspelled_env(env):
        if (name, meant) not in _warned_env:
            _warned_env.add((name, meant))
            logger.warning("ignoring %s: not a setting; did you mean %s?", name, meant)


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings from the environment. A value that cannot be used is ignored with one
    warning: a typo in a job's environment must not stop the job (arguments still raise)."""
    _warn_misspelled(env)
    found: dict[str, Any] = {}
    for name, field, read in _ENV:
        raw = env.get(name)
        if raw is None or not raw.strip():
            continue
        try:
            value = read(raw)
            Settings(**{field: value})  # the setting's own rules, alone
        except ActivitySmithTrackError as exc:
            if (name, raw) not in _warned_env:
                _warned_env.add((name, raw))
                shown = "(hidden)" if field == "api_key" else repr(raw)
                logger.warning("ignoring %s=%s: %s", name, shown, exc)
            continue
        found[field] = value
    return found


def _check_base_url(base_url: object) -> str:
    return check_url("base_url", base_url)


def resolve_settings(
    options: Mapping[str, Any] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    base: Settings | None = None,
) -> Settings:
    """Merge arguments, ``configure()`` values and the environment into one :class:`Settings`.

    With ``base`` (a ``settings=`` argument), the options given explicitly win over it and the
    environment and ``configure()`` are not consulted.
    """
    explicit = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(explicit) - _FIELDS
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    if "base_url" in explicit:
        explicit["base_url"] = _check_base_url(explicit["base_url"])
    if base is not None:
        return attrs.evolve(base, **explicit) if explicit else base
    merged = _from_env(os.environ if env is None else env)
    with _overrides_lock:
        merged.update(_overrides)
    if options:
        merged.update({k: v for k, v in options.items() if v is not None})
    _refuse_unknown(merged)
    if "base_url" in merged:
        merged["base_url"] = _check_base_url(merged["base_url"])
    return Settings(**merged)
