"""``did you mean``: the closest known name to a misspelled one.

Shared by everything that refuses or ignores a name it does not know: ``configure()`` options,
``ACTIVITYSMITH_*`` environment variables, keyword arguments. :mod:`difflib` is imported only
when a name is actually unknown, so the common path costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]

# difflib's ratio: 0.6 is its default. Names here are short and similar to each other
# (ACTIVITYSMITH_TRACK_...), so the common prefix is left out of the comparison (see
# ``closest``) and the cutoff kept at the default.
_CUTOFF = 0.6


def closest(name: str, known: Iterable[str], *, prefix: str = "") -> str | None:
    """The known name most like ``name``, or ``None`` when none is close.

    The comparison ignores case, and ``prefix`` (say ``"ACTIVITYSMITH_"``) shared by all the
    names, so that the part that differs decides. ``ACTIVITYSMITH_APIKEY`` finds
    ``ACTIVITYSMITH_API_KEY``; ``colour`` finds ``color``.
    """
    import difflib

    candidates = {_core(k, prefix): k for k in known}
    if not candidates:
        return None
    core = _core(name, prefix)
    # An exact match apart from case or separators (ACTIVITYSMITH_API-KEY) wins outright.
    squeezed = {c.replace("_", "").replace("-", ""): k for c, k in candidates.items()}
    exact = squeezed.get(core.replace("_", "").replace("-", ""))
    if exact is not None:
        return exact
    match = difflib.get_close_matches(core, list(candidates), n=1, cutoff=_CUTOFF)
    return candidates[match[0]] if match else None


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "") -> str:
    """``"; did you mean 'color'?"`` for a close match, else ``""``: ready to append."""
    match = closest(name, known, prefix=prefix)
    return f"; did you mean {match!r}?" if match is not None else ""


def _core(name: str, prefix: str) -> str:
    lowered = name.lower()
    low_prefix = prefix.lower()
    if low_prefix and lowered.startswith(low_prefix):
        return lowered[len(low_prefix) :]
    return lowered
