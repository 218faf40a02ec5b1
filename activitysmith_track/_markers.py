"""Progress markers: lines a command prints to move its Live Activity along.

The default syntax is one marker per line (leading and trailing blanks are ignored)::

    ::step::                    begin the next step (named from --step NAME, if given)
    ::step:: upload archive     begin the next step, shown as "upload archive"
    ::progress:: 40/100         40 of 100 done
    ::progress:: 40             40 of --total
    ::progress:: 40%            40 percent done
    ::metric:: rows=1200        set a metric; several: rows=1200, errors=3

A custom syntax is a regular expression searched in each line, with a named group ``kind``
that captures ``step``, ``progress`` or ``metric`` and, optionally, a group ``value``. A line
whose ``kind`` is none of those is ordinary output.
"""

from __future__ import annotations

import enum
import re
import threading

from activitysmith_track._checks import parse_metrics, parse_number
from activitysmith_track._errors import ActivitySmithTrackError

# This module is on the path of `activitysmith-track run` before the command starts, so it
# imports nothing heavy (no attrs, no library core): the handler loads what it needs when the
# first activity is handed to it, after the command is running.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging

    from activitysmith_track._activity import LiveActivity

__all__ = [
    "DEFAULT_PATTERN",
    "Marker",
    "MarkerHandler",
    "MarkerKind",
    "MarkerParser",
    "ProgressValue",
    "compile_pattern",
    "parse_metrics",
    "parse_progress",
]


def _logger() -> logging.Logger:
    # logging is imported when there is something to say, not before the command starts.
    import logging

    return logging.getLogger("activitysmith_track")


# The value runs to the end of the line (greedy, so no backtracking per character); its
# surrounding blanks are stripped after the match.
DEFAULT_PATTERN = r"^\s*::(?P<kind>step|progress|metric)::(?:\s+(?P<value>.*))?$"

# The API shows at most this many metrics; a marker adding a ninth is ignored.
_MAX_METRICS = 8


class MarkerKind(enum.Enum):
    """What a marker asks for."""

    STEP = "step"
    PROGRESS = "progress"
    METRIC = "metric"


_KINDS = {kind.value: kind for kind in MarkerKind}


class Marker:
    """One recognised marker line: its kind and the text after it (may be empty)."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: MarkerKind, value: str = "") -> None:
        self.kind = kind
        self.value = value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marker):
            return NotImplemented
        return (self.kind, self.value) == (other.kind, other.value)

    def __hash__(self) -> int:
        return hash((self.kind, self.value))

    def __repr__(self) -> str:
        return f"Marker({self.kind}, {self.value!r})"


def compile_pattern(text: str) -> re.Pattern[str]:
    """Compile a marker regex, refusing one without a ``kind`` group (``ValueError``)."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ValueError(
            f"marker regex {text!r} is not a valid regular expression: {exc}"
        ) from None
    if "kind" not in pattern.groupindex:
        raise ValueError(
            f"marker regex {text!r} needs a named group 'kind', e.g. (?P<kind>step|progress|metric)"
        )
    return pattern


class MarkerParser:
    """Recognises marker lines with one regular expression."""

    def __init__(self, pattern: re.Pattern[str] | str = DEFAULT_PATTERN) -> None:
        self._pattern = compile_pattern(pattern) if isinstance(pattern, str) else pattern
        self._has_value = "value" in self._pattern.groupindex

    def parse(self, line: str) -> Marker | None:
        """The marker on ``line`` (without its line ending), or ``None`` for ordinary output."""
        match = self._pattern.search(line)
        if match is None:
            return None
        kind = match.group("kind")
        marker_kind = _KINDS.get(kind)  # the default pattern's words, as they are
        if marker_kind is None:
            try:
                marker_kind = MarkerKind((kind or "").strip().lower())
            except ValueError:
                return None
        value = (match.group("value") or "") if self._has_value else ""
        return Marker(marker_kind, value.strip())


class ProgressValue:
    """A parsed ``::progress::`` value: ``done`` of ``total``, or ``done`` percent."""

    __slots__ = ("_text", "done", "percent", "total")

    def __init__(
        self,
        done: float,
        total: float | None = None,
        *,
        percent: bool = False,
        text: str | None = None,
    ) -> None:
        self.done = done
        self.total = total
        self.percent = percent
        self._text = text  # how the command wrote it, when that is how it reads

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProgressValue):
            return NotImplemented
        return (self.done, self.total, self.percent) == (other.done, other.total, other.percent)

    def __hash__(self) -> int:
        return hash((self.done, self.total, self.percent))

    def __repr__(self) -> str:
        return f"ProgressValue({self.done!r}, {self.total!r}, percent={self.percent!r})"

    def shown(self) -> str:
        """How it reads in a subtitle: ``40%``, ``40/100``, ``1500000/2000000`` or ``40``."""
        if self._text is not None:
            return self._text
        done = _count_text(self.done)
        if self.percent:
            return f"{done}%"
        if self.total is not None:
            return f"{done}/{_count_text(self.total)}"
        return done


def _count_text(value: float) -> str:
    # Whole numbers in full (never 1.5e+06), others in short.
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def _number(text: str, what: str) -> float:
    value = parse_number(text, what)
    if value < 0:
        raise ValueError(f"{what} {text.strip()!r} must be a finite number >= 0")
    return float(value)


def parse_progress(text: str) -> ProgressValue:
    """Parse ``40/100``, ``40%`` or ``40``; ``ValueError`` says what is wrong."""
    text = text.strip()
    done, slash, total = text.partition("/")
    # The usual marker, whole counts (``::progress:: 120/5000``), read without the general
    # number parser: a command may print one per item.
    if slash and done.isdigit() and total.isdigit() and done.isascii() and total.isascii():
        upper = float(total)
        if upper > 0:
            return ProgressValue(float(done), upper, text=text)  # digits only: as written
    if not text:
        raise ValueError("::progress:: needs a value like 40/100, 40% or 40")
    if text.endswith("%"):
        percent = _number(text[:-1], "percentage")
        if percent > 100:
            raise ValueError(f"percentage {text!r} must be between 0 and 100")
        return ProgressValue(percent, percent=True)
    if "/" in text:
        done, _, total = text.partition("/")
        upper = _number(total, "total")
        if upper <= 0:
            raise ValueError(f"total {total.strip()!r} must be greater than 0")
        return ProgressValue(_number(done, "progress"), upper)
    return ProgressValue(_number(text, "progress"))


class MarkerHandler:
    """Applies markers to a running activity; safe to call from several reader threads.

    Steps advance the activity (``la.step``). Progress drives the bar of a progress activity;
    on any other type it is shown in the subtitle after the current step's name (``upload ·
    40%``). Metrics are merged by label, so ``rows=`` and later ``errors=`` both stay shown:
    as tiles on a metrics activity, in the subtitle on any other (``rows 1,200, errors 3``).
    A marker the activity cannot take is ignored with one warning per kind of problem, so a
    chatty command never floods its own stderr.
    """

    def __init__(
        self,
        activity: LiveActivity,
        *,
        step_names: list[str] | None = None,
        subtitle: str | None = None,
    ) -> None:
        from activitysmith_track._model import ActivityType

        self._la = activity
        # The type never changes: read once, not by rendering a state per marker.
        kind = activity._lane.state.kind
        self._progress = kind is ActivityType.PROGRESS
        self._tiles = kind in (ActivityType.METRICS, ActivityType.STATS)
        self._lock = threading.Lock()
        self._step_names = step_names or []
        self._step = 0
        self._label = subtitle
        self._progress_text: str | None = None
        self._metrics: dict[str, float | str] = {}
        self._metrics_text: str | None = None
        self._warned: set[MarkerKind] = set()

    def handle(self, marker: Marker) -> None:
        """Apply one marker; problems are logged, never raised."""
        with self._lock:
            try:
                if marker.kind is MarkerKind.STEP:
                    self._on_step(marker.value)
                elif marker.kind is MarkerKind.PROGRESS:
                    self._on_progress(marker.value)
                else:
                    self._on_metric(marker.value)
            except (ActivitySmithTrackError, ValueError) as exc:
                self._warn(marker, str(exc))

    def _warn(self, marker: Marker, reason: str) -> None:
        if marker.kind in self._warned:
            return
        self._warned.add(marker.kind)
        _logger().warning(
            "ignored ::%s:: %s (%s); further problems with ::%s:: markers are not reported",
            marker.kind.value,
            marker.value,
            reason,
            marker.kind.value,
        )

    def _note(self) -> str | None:
        parts = [p for p in (self._progress_text, self._metrics_text) if p]
        return " · ".join(parts) if parts else None

    def _on_step(self, name: str) -> None:
        self._step += 1
        if not name and self._step <= len(self._step_names):
            name = self._step_names[self._step - 1]
        self._la.step(name or None)
        self._label = name or None
        self._progress_text = None
        if self._metrics_text:
            self._la._note(self._note())

    def _on_progress(self, text: str) -> None:
        value = parse_progress(text)
        if self._progress:
            if value.percent:
                self._la.percentage(value.done)
            else:
                self._la.progress(value.done, value.total)
            return
        self._progress_text = value.shown()
        self._la._note(self._note())

    def _on_metric(self, text: str) -> None:
        merged = dict(self._metrics)
        merged.update(parse_metrics(text))
        if len(merged) > _MAX_METRICS:
            raise ValueError(f"at most {_MAX_METRICS} metrics can be shown")
        if self._tiles:
            from activitysmith_track._model import Metric

            metrics = (Metric(label=label, value=value) for label, value in merged.items())
            self._la.metrics(*metrics)
        else:
            # Other widgets have no tiles: the values go in the subtitle, where they show.
            self._metrics_text = ", ".join(
                f"{label} {value:,}" if isinstance(value, int | float) else f"{label} {value}"
                for label, value in merged.items()
            )
            self._la._note(self._note())
        self._metrics = merged
