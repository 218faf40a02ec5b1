"""One set of checks for the values a user hands the library, with one message style.

Every check names the field and the rule, in the form
``percentage (120) must be between 0 and 100`` (:class:`ValidationError`, a ``ValueError``) or
``steps must be an int or a list of step names, not str`` (:class:`ArgumentTypeError`, also a
``TypeError``). The model, the settings, the handle and the command line all use these, so the
same mistake reads the same wherever it is made.

The ``parse_*`` functions read text (environment variables, command-line options, marker lines)
and raise ``ValueError`` with a message that does not need the field name.
"""

from __future__ import annotations

import math
import numbers

from activitysmith_track._errors import ArgumentTypeError, ConfigurationError, ValidationError

# Used by the command line before the command it wraps starts: typing is not imported at run
# time (type checkers treat this name as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = [
    "MAX_INT",
    "MAX_TEXT",
    "check_count",
    "check_flag",
    "check_number",
    "check_seconds",
    "check_text",
    "check_url",
    "parse_flag",
    "parse_metrics",
    "parse_number",
    "parse_readout",
    "refuse",
    "show",
]

# The largest integer any count or step number may reach. The contract gives no bound; the
# service decodes JSON numbers into 32-bit integers in at least one place (the badge endpoint
# documents 0..2147483647), so this is the most plausible limit everywhere.
MAX_INT = 2**31 - 1
# Texts longer than this are refused (title, subtitle, step names). The contract sets no
# length; a lock screen shows about 64 characters, and APNs caps a Live Activity payload at
# 4 KB, so a longer text could only be cut or refused further along.
MAX_TEXT = 256


def show(value: object) -> str:
    """How a refused value is shown in a message: its repr, enums by value, cut at 40."""
    import enum

    text = repr(value.value if isinstance(value, enum.Enum) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def refuse(field: str, value: object, rule: str) -> ValidationError:
    """A ValidationError reading ``field (value) rule``."""
    return ValidationError(field, f"({show(value)}) {rule}", value)


def _plain_number(value: object) -> int | float | None:
    """``value`` as a plain int or float (numpy scalars, Fraction, IntEnum...), else None."""
    if isinstance(value, bool):
        return None
    if type(value) is int or type(value) is float:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return None


def check_number(
    field: str,
    value: object,
    *,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> int | float:
    """A finite real number within the bounds given; returns it as a plain int or float."""
    number = _plain_number(value)
    if number is None:
        raise ArgumentTypeError(field, "an int or float", value)
    if not math.isfinite(number):
        raise refuse(field, value, "must be a finite number")
    if isinstance(number, int) and abs(number) > 2**53:
        # Beyond 2**53 a JSON number loses its value on the way (JavaScript, Swift Double).
        raise refuse(field, value, f"must be at most {2**53:,} in size")
    if minimum is not None and maximum is not None and not minimum <= number <= maximum:
        raise refuse(field, value, f"must be between {minimum:g} and {maximum:g}")
    if minimum is not None and number < minimum:
        raise refuse(field, value, f"must be at least {minimum:g}")
    if above is not None and number <= above:
        raise refuse(field, value, f"must be greater than {above:g}")
    if maximum is not None and number > maximum:
        raise refuse(field, value, f"must be at most {maximum:g}")
    return number


def check_count(field: str, value: object, *, minimum: int = 0) -> int:
    """A whole number (not bool, not float) from ``minimum`` to :data:`MAX_INT`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(field, "an int", value)
    number = int(value)
    if number < minimum:
        raise refuse(field, value, f"must be at least {minimum}")
    if number > MAX_INT:
        raise refuse(field, value, f"must be at most {MAX_INT:,}")
    return number


def check_seconds(field: str, value: object, *, positive: bool = False) -> float:
    """A finite duration in seconds: ``>= 0``, or ``> 0`` when ``positive``."""
    number = _plain_number(value)
    if number is None:
        raise ArgumentTypeError(field, "a number of seconds", value)
    if not math.isfinite(number):
        raise refuse(field, value, "must be a finite number of seconds")
    if positive and number <= 0:
        raise refuse(field, value, "must be greater than 0 seconds")
    if number < 0:
        raise refuse(field, value, "must be at least 0 seconds")
    return float(number)


def check_flag(field: str, value: object) -> bool:
    """A bool (not 0/1, not "yes")."""
    if not isinstance(value, bool):
        raise ArgumentTypeError(field, "a bool", value)
    return value


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check_text(
    field: str, value: object, *, empty: bool = False, max_len: int | None = MAX_TEXT
) -> str:
    """A str that the service can store: not empty (unless ``empty``), at most ``max_len``
    characters, without NUL characters or lone surrogates.

    The contract is silent on the last two; the service stores states as JSON in a database,
    and both are the classic characters such a store refuses (PostgreSQL's jsonb does), so a
    text carrying them is refused here rather than failing later in the background.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(field, "a str", value)
    if not empty and not value:
        raise refuse(field, value, "must not be empty")
    if max_len is not None and len(value) > max_len:
        raise refuse(field, value, f"must be at most {max_len} characters long")
    if "\x00" in value:
        raise refuse(field, value, "must not contain NUL characters")
    if not value.isascii() and _has_lone_surrogate(value):
        raise refuse(field, value, "must be valid Unicode text (it has a lone surrogate)")
    return value


def clean_text(text: str) -> str:
    """``text`` made storable: NUL removed, lone surrogates replaced (for texts the library
    writes itself from what a job produced, such as an exception's message)."""
    text = text.replace("\x00", "")
    if not text.isascii() and _has_lone_surrogate(text):
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def check_url(field: str, value: object) -> str:
    """An ``http://`` or ``https://`` URL with a host and no query or fragment, without its
    trailing slash (a base URL)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        raise ConfigurationError(f"{field} must be an http:// or https:// URL, not {show(value)}")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"{field} must be an http:// or https:// URL like "
            f"'https://activitysmith.com/api', not {show(value)}"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{field} must not have a query or fragment: {show(value)}")
    return url.rstrip("/")


def validator(check: Callable[..., Any], name: str | None = None, **rules: Any) -> Any:
    """An attrs validator from one of the checks above, naming the attribute (or ``name``).

    ``None`` is let through: optional fields are optional.
    """

    def run(_inst: object, attribute: Any, value: object) -> None:
        if value is not None:
            check(name or attribute.name, value, **rules)

    return run


# --- reading text: environment variables, options, marker lines ---------------------------------

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
# Patterns as text: re compiles (and caches) them on first use, not at import.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_WHOLE = r"[+-]?\d+"


def parse_flag(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a yes/no value; use 1 or 0")


def parse_number(text: str, what: str = "value") -> int | float:
    """A finite decimal number; whole numbers stay ints (``"5"`` is 5, not 5.0)."""
    stripped = text.strip()
    if stripped.isascii() and stripped.isdigit():  # the usual case (a count), without re
        return int(stripped)
    import re

    if re.fullmatch(_NUMBER, stripped) is None:
        raise ValueError(f"{what} {text!r} is not a number")
    value = float(stripped)
    if not math.isfinite(value):
        raise ValueError(f"{what} {text!r} must be a finite number")
    return int(stripped) if re.fullmatch(_WHOLE, stripped) else value


def parse_readout(text: str) -> int | float | str:
    """A number when the text reads as one (``42``, ``3.5``), else the text (``"$1,240"``)."""
    try:
        return parse_number(text)
    except ValueError:
        return text.strip()


def parse_metrics(text: str) -> list[tuple[str, int | float | str]]:
    """``rows=1200, errors=3`` as (label, value) pairs; numbers become numbers."""
    pairs: list[tuple[str, int | float | str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        label, sep, value = item.partition("=")
        if not sep or not label.strip() or not value.strip():
            raise ValueError(f"metric {item.strip()!r} must look like label=value")
        pairs.append((label.strip(), parse_readout(value)))
    if not pairs:
        raise ValueError("a metric must look like label=value")
    return pairs
