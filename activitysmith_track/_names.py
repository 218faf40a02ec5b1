"""The API's own words that options are checked against: colours, activity types, stream keys.

Nothing is imported here (re only to check a stream key), so the command line can check its
options before the rest of the library loads: a command it wraps starts at once. ``_model``
keeps enums of the same names; a test holds the two together.
"""

from __future__ import annotations

__all__ = ["ACTIVITY_TYPES", "COLORS", "MAX_STREAM_KEY", "STREAM_KEY", "stream_key_problem"]

COLORS = ("lime", "green", "cyan", "blue", "purple", "magenta", "red", "orange", "yellow", "gray")
ACTIVITY_TYPES = (
    "segmented_progress",
    "progress",
    "metrics",
    "stats",
    "alert",
    "timer",
    "value",
)
MAX_STREAM_KEY = 255
STREAM_KEY = r"[A-Za-z0-9_-]+"  # compiled (and cached) by re on first use


def stream_key_problem(key: str) -> str | None:
    """What is wrong with ``key`` as a stream key, or None: the rule the API gives."""
    if not key:
        return "must not be empty"
    if len(key) > MAX_STREAM_KEY:
        return f"must be at most {MAX_STREAM_KEY} characters long"
    import re

    if re.fullmatch(STREAM_KEY, key) is None:
        return "may contain only letters, digits, '_' and '-'"
    return None
