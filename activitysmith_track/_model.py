"""The values a Live Activity is made of, checked against the API's rules as they are built.

A :class:`ContentState` is what the lock screen shows; a :class:`Payload` adds what one request
of the lifecycle carries besides ids (buttons, targeting, tags, metadata). Both are frozen attrs
values, validated at construction, so a bad argument fails on the line that wrote it rather than
later on the delivery thread or as an HTTP 400. ``to_json()`` and ``Payload.body(op)`` produce the
exact request JSON for each endpoint, leaving out what that endpoint does not accept.

Errors are :class:`~activitysmith_track.ValidationError` (a ``ValueError``) naming the API field,
dotted for nested values (``metrics[2].value``, ``action.url``), or
:class:`~activitysmith_track.ArgumentTypeError` (also a ``TypeError``) for a wrong Python type::

    >>> ContentState(title="Deploy", number_of_steps=3, current_step=4)
    Traceback (most recent call last):
    ...
    ValidationError: current_step (4) must not exceed number_of_steps (3)
"""

from __future__ import annotations

import copy
import enum
import json
import numbers
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

import attrs

from activitysmith_track._checks import (
    MAX_TEXT,
    check_count,
    check_flag,
    check_number,
    check_text,
    refuse,
    show,
)
from activitysmith_track._errors import ArgumentTypeError, ValidationError
from activitysmith_track._names import MAX_STREAM_KEY, stream_key_problem

if TYPE_CHECKING:
    from typing import TypeAlias

__all__ = [
    "Action",
    "ActionType",
    "ActivityType",
    "Badge",
    "Color",
    "ContentState",
    "Icon",
    "Metric",
    "Operation",
    "Payload",
    "stream_key_from",
    "validate_stream_key",
]


class ActivityType(str, enum.Enum):
    """The kinds of Live Activity the API can show; the values are the API's strings."""

    SEGMENTED_PROGRESS = "segmented_progress"
    PROGRESS = "progress"
    METRICS = "metrics"
    STATS = "stats"
    ALERT = "alert"
    TIMER = "timer"
    VALUE = "value"


class Color(str, enum.Enum):
    """The accent colours the API accepts."""

    LIME = "lime"
    GREEN = "green"
    CYAN = "cyan"
    BLUE = "blue"
    PURPLE = "purple"
    MAGENTA = "magenta"
    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"
    GRAY = "gray"


class ActionType(str, enum.Enum):
    """What a button does: open a URL on the phone, or have ActivitySmith call a webhook."""

    OPEN_URL = "open_url"
    WEBHOOK = "webhook"


class Operation(str, enum.Enum):
    """The request a content state is sent with; requirements and accepted fields differ per op."""

    START = "start"
    UPDATE = "update"
    END = "end"
    STREAM_PUT = "stream_put"
    STREAM_DELETE = "stream_delete"


_START_LIKE = frozenset({Operation.START, Operation.STREAM_PUT})
_END_LIKE = frozenset({Operation.END, Operation.STREAM_DELETE})
_BADGE_TYPES = frozenset(
    {
        ActivityType.ALERT,
        ActivityType.PROGRESS,
        ActivityType.SEGMENTED_PROGRESS,
        ActivityType.VALUE,
    }
)
_MAX_METRICS = 8
_MAX_UPDATE_TAGS = 20
_MAX_TAG_LENGTH = 64
_MAX_METRIC_TEXT = 64
_MAX_METADATA_ENTRIES = 50
_MAX_METADATA_KEY = 100
_MAX_METADATA_TEXT = 4000
# "16 KB" in the API docs; read as 16 * 1024 bytes of compact UTF-8 JSON (the contract does not
# say which serialization the server measures, compact is the most lenient reading).
_MAX_METADATA_BYTES = 16 * 1024
_MAX_STREAM_KEY = MAX_STREAM_KEY
# Not in the contract (see MAX_TEXT for titles and subtitles): an alert's message may be longer
# than a title, and a button's URL as long as browsers take.
_MAX_MESSAGE = 1024
_MAX_URL = 2048
_NOT_KEY_CHARS = re.compile(r"[^a-z0-9_]+")
_HASH_CHARS = 10

if TYPE_CHECKING:
    _Validator: TypeAlias = Callable[[Any, "attrs.Attribute[Any]", Any], None]

_T = TypeVar("_T")
_A = TypeVar("_A", bound=attrs.AttrsInstance)


# --- small helpers -------------------------------------------------------------------------


_show = show
_refuse = refuse


def _name(inst: object, attribute: attrs.Attribute[Any]) -> str:
    # Nested values (Icon, Metric, Action...) name their fields after where they usually live,
    # so a standalone Icon(symbol="") still reports "icon.symbol".
    where: str = getattr(type(inst), "_WHERE", "")
    return f"{where}.{attribute.name}" if where else attribute.name


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _FrozenDict(Mapping[str, _T]):
    """A read-only copy of a mapping that compares equal to any mapping with the same items."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, _T]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> _T:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    def __getstate__(self) -> dict[str, _T]:
        return self._data

    def __setstate__(self, state: dict[str, _T]) -> None:
        self._data = state


# --- converters: make the common spellings the canonical value; never raise -----------------
# Converters do not know the field's name, so anything they cannot convert is passed through
# unchanged and the field's validator reports it with the right name.


def _enum_or_same(cls: type[enum.Enum], value: object) -> Any:
    if isinstance(value, str) and not isinstance(value, cls):
        try:
            return cls(value)
        except ValueError:
            return value
    return value


def _to_activity_type(value: ActivityType | str | None) -> Any:
    return _enum_or_same(ActivityType, value)


def _to_action_type(value: ActionType | str) -> Any:
    return _enum_or_same(ActionType, value)


def _to_color(value: Color | str | None) -> Any:
    return _enum_or_same(Color, value)


def _to_colors(value: Iterable[Color | str] | None) -> Any:
    if value is None or isinstance(value, (str, Mapping)) or not isinstance(value, Iterable):
        return value
    return tuple(_to_color(item) for item in value)


def _to_int(value: int | None) -> Any:
    # Integral types such as numpy.int64 become plain ints so to_json() stays JSON-ready;
    # floats (even 3.0) and bools are left for the validator to refuse.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _to_number(value: float | None) -> Any:
    # Other reals (Fraction, numpy scalars, IntEnum) become plain int or float for the JSON encoder.
    if value is None or type(value) in (int, float) or isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _to_readout(value: float | str | None) -> Any:
    return value if isinstance(value, str) else _to_number(value)


def _to_metric_value(value: float | str) -> Any:
    return _to_readout(value)


def _to_str_tuple(value: Iterable[str] | None) -> Any:
    # A bare str is left alone (the validator refuses it) rather than split into characters.
    if value is None or isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        return value
    return tuple(value)


def _to_method(value: str | None) -> Any:
    return value.upper() if isinstance(value, str) else value


def _to_json_object(value: Mapping[str, Any] | None) -> Any:
    if not isinstance(value, Mapping):
        return value
    try:
        # A JSON round trip is both the deep copy and the check that the body can be sent.
        return _FrozenDict(json.loads(json.dumps(value, allow_nan=False)))
    except (TypeError, ValueError):
        return _FrozenDict(value)  # the validator reports what is wrong


def _to_metadata(value: Mapping[str, str | int | float | bool] | None) -> Any:
    if not isinstance(value, Mapping):
        return value
    return _FrozenDict({key: _to_readout(item) for key, item in value.items()})


def _to_alert(value: Mapping[str, str] | None) -> Any:
    return _FrozenDict(value) if isinstance(value, Mapping) else value


# --- validators: plain functions or closures made once at class definition ---------------------


def _text(
    *, min_len: int = 0, max_len: int | None = MAX_TEXT, optional: bool = False
) -> _Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        check_text(_name(inst, attribute), value, empty=min_len == 0, max_len=max_len)

    return check


def _int(*, minimum: int) -> _Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check_count(_name(inst, attribute), value, minimum=minimum)

    return check


def _number(*, low: float, high: float | None = None, low_open: bool = False) -> _Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        name = _name(inst, attribute)
        if low_open:
            check_number(name, value, above=low, maximum=high)
        else:
            check_number(name, value, minimum=low, maximum=high)

    return check


def _flag(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None:
        check_flag(_name(inst, attribute), value)


def _member(cls: type[enum.Enum], *, optional: bool = True) -> _Validator:
    allowed = ", ".join(member.value for member in cls)
    article = "an" if cls.__name__[0] in "AEIOU" else "a"

    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (value is None and optional) or isinstance(value, cls):
            return
        name = _name(inst, attribute)
        if isinstance(value, str):
            raise _refuse(name, value, f"must be one of: {allowed}")
        raise ArgumentTypeError(name, f"{article} {cls.__name__} or one of: {allowed}", value)

    return check


def _instance(cls: type[Any], expected: str, *, optional: bool = True) -> _Validator:
    def check(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (value is not None or not optional) and not isinstance(value, cls):
            raise ArgumentTypeError(_name(inst, attribute), expected, value)

    return check


def _readout(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    # The big readout of the value type: any str (formatting kept) or a finite number; the API
    # sets no length or sign rule here, unlike metric values.
    if value is None:
        return
    name = _name(inst, attribute)
    if isinstance(value, str):
        check_text(name, value, empty=True)
    elif _is_number(value):
        check_number(name, value)
    else:
        raise ArgumentTypeError(name, "a str, int or float", value)


def _metric_value(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    name = _name(inst, attribute)
    if isinstance(value, str):
        if not 1 <= len(value) <= _MAX_METRIC_TEXT:
            raise _refuse(name, value, f"must be 1 to {_MAX_METRIC_TEXT} characters long")
        check_text(name, value)
        return
    if not _is_number(value):
        raise ArgumentTypeError(name, "a str, int or float", value)
    check_number(name, value)
    assert isinstance(value, (int, float))
    if value < 0:
        raise _refuse(
            name, value, f"must be >= 0; pass a negative number as a string, e.g. {str(value)!r}"
        )


_color_member = _member(Color, optional=False)


def _colors(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    name = _name(inst, attribute)
    if not isinstance(value, tuple):
        raise ArgumentTypeError(name, "a list or tuple of Color", value)
    for index, item in enumerate(value):
        try:
            _color_member(inst, attribute, item)
        except ArgumentTypeError as exc:
            raise ArgumentTypeError(f"{name}[{index}]", exc.expected, item) from None
        except ValidationError as exc:
            raise ValidationError(f"{name}[{index}]", exc.rule, item) from None


def _moved(exc: ValidationError, old: str, new: str) -> ValidationError:
    """The same error, re-addressed from ``old.x`` to ``new.x`` (e.g. metric -> metrics[2])."""
    field = exc.field
    if old and (field == old or field.startswith(old + ".")):
        field = new + field[len(old) :]
    if isinstance(exc, ArgumentTypeError):
        return ArgumentTypeError(field, exc.expected, exc.value)
    return ValidationError(field, exc.rule, exc.value)


def _build(cls: type[_A], data: Mapping[str, Any], where: str) -> _A:
    """Build a value from its API JSON, naming unknown or missing keys by their full path."""
    fields = attrs.fields(cls)
    prefix = f"{where}." if where else ""
    names = {field.name for field in fields}
    for key in data:
        if key not in names:
            raise ValidationError(f"{prefix}{key}", "is not a known field", data[key])
    for field in fields:
        if field.default is attrs.NOTHING and field.name not in data:
            raise ValidationError(f"{prefix}{field.name}", "is required")
    try:
        return cls(**data)
    except ValidationError as exc:
        raise _moved(exc, getattr(cls, "_WHERE", ""), where) from None


# --- nested values ----------------------------------------------------------------------------


def _to_icon(value: Icon | Mapping[str, Any] | None) -> Any:
    return _build(Icon, value, "icon") if isinstance(value, Mapping) else value


def _to_badge(value: Badge | Mapping[str, Any] | None) -> Any:
    return _build(Badge, value, "badge") if isinstance(value, Mapping) else value


def _to_action(value: Action | Mapping[str, Any] | None) -> Any:
    return _build(Action, value, "action") if isinstance(value, Mapping) else value


def _to_secondary_action(value: Action | Mapping[str, Any] | None) -> Any:
    return _build(Action, value, "secondary_action") if isinstance(value, Mapping) else value


def _to_metrics(
    value: Iterable[Metric | Mapping[str, Any]] | Mapping[str, float | str] | None,
) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        # {label: value}: the short spelling for the common case.
        return tuple(
            _build(Metric, {"label": label, "value": item}, f"metrics[{index}]")
            for index, (label, item) in enumerate(value.items())
        )
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArgumentTypeError("metrics", "a list of Metric or a {label: value} mapping", value)
    metrics: list[Metric] = []
    for index, item in enumerate(value):
        if isinstance(item, Metric):
            metrics.append(item)
        elif isinstance(item, Mapping):
            metrics.append(_build(Metric, item, f"metrics[{index}]"))
        else:
            raise ArgumentTypeError(f"metrics[{index}]", "a Metric or a mapping", item)
    return tuple(metrics)


def _metric_count(inst: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 1 <= len(value) <= _MAX_METRICS:
        raise ValidationError(
            "metrics", f"({len(value)} items) must have 1 to {_MAX_METRICS} items", value
        )


def _json_value(value: object) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, (Icon, Badge, Metric, Action)):
        return value.to_json()
    if isinstance(value, Mapping):
        return copy.deepcopy(dict(value))
    return value


def _fields_json(value: Any) -> dict[str, Any]:
    """The API JSON of an attrs value whose field names are the API names; None is left out."""
    out: dict[str, Any] = {}
    for field in attrs.fields(type(value)):
        item = getattr(value, field.name)
        if item is not None:
            out[field.name] = _json_value(item)
    return out


@attrs.frozen(kw_only=True)
class Icon:
    """An SF Symbol shown on the activity, e.g. ``Icon(symbol="server.rack", color="blue")``."""

    _WHERE: ClassVar[str] = "icon"

    symbol: str = attrs.field(validator=_text(min_len=1))
    color: Color | None = attrs.field(default=None, converter=_to_color, validator=_member(Color))

    def to_json(self) -> dict[str, Any]:
        """The API JSON of this icon."""
        return _fields_json(self)


@attrs.frozen(kw_only=True)
class Badge:
    """A short label shown on alert, progress, segmented_progress and value activities."""

    _WHERE: ClassVar[str] = "badge"

    title: str = attrs.field(validator=_text(min_len=1))
    color: Color | None = attrs.field(default=None, converter=_to_color, validator=_member(Color))

    def to_json(self) -> dict[str, Any]:
        """The API JSON of this badge."""
        return _fields_json(self)


@attrs.frozen(kw_only=True)
class Metric:
    """One labelled value of a metrics or stats activity.

    ``value`` is a number >= 0 or a string of 1-64 characters; send negative numbers as strings
    (``value="-3"``), the API refuses negative numbers.
    """

    _WHERE: ClassVar[str] = "metric"

    label: str = attrs.field(validator=_text(min_len=1))
    value: float | str = attrs.field(converter=_to_metric_value, validator=_metric_value)
    unit: str | None = attrs.field(default=None, validator=_text(optional=True))
    color: Color | None = attrs.field(default=None, converter=_to_color, validator=_member(Color))

    def to_json(self) -> dict[str, Any]:
        """The API JSON of this metric."""
        return _fields_json(self)


_OPEN_URL_SCHEMES = ("http://", "https://", "shortcuts://")
_WEBHOOK_SCHEMES = ("https://",)


def _has_scheme(url: str, schemes: tuple[str, ...]) -> bool:
    lowered = url.lower()
    return any(lowered.startswith(scheme) and len(url) > len(scheme) for scheme in schemes)


# Unhashable (unsafe_hash=False): a webhook body is a free-form mapping.
@attrs.frozen(kw_only=True, unsafe_hash=False)
class Action:
    """A button on the activity: open a URL (or run a Shortcut), or call a webhook.

    Prefer the constructors: ``Action.open_url("Logs", "https://ci.example/42")``,
    ``Action.shortcut("Run", "Deploy again")``, ``Action.webhook("Retry", "https://hooks.example/r")``.
    """

    _WHERE: ClassVar[str] = "action"

    title: str = attrs.field(validator=_text(min_len=1))
    type: ActionType = attrs.field(
        converter=_to_action_type, validator=_member(ActionType, optional=False)
    )
    url: str = attrs.field(validator=_text(min_len=1, max_len=_MAX_URL))
    method: Literal["GET", "POST"] | None = attrs.field(default=None, converter=_to_method)
    body: Mapping[str, Any] | None = attrs.field(default=None, converter=_to_json_object)

    def __attrs_post_init__(self) -> None:
        where = self._WHERE
        if self.type is ActionType.WEBHOOK:
            if not _has_scheme(self.url, _WEBHOOK_SCHEMES):
                raise _refuse(f"{where}.url", self.url, "must be an https:// URL for a webhook")
        elif not _has_scheme(self.url, _OPEN_URL_SCHEMES):
            raise _refuse(
                f"{where}.url", self.url, "must be an http(s):// or shortcuts:// URL for open_url"
            )
        if self.method is not None:
            if not isinstance(self.method, str):
                raise ArgumentTypeError(f"{where}.method", '"GET" or "POST"', self.method)
            if self.method not in ("GET", "POST"):
                raise _refuse(f"{where}.method", self.method, 'must be "GET" or "POST"')
            if self.type is not ActionType.WEBHOOK:
                raise _refuse(f"{where}.method", self.method, "is only allowed on webhook actions")
        if self.body is not None:
            if not isinstance(self.body, _FrozenDict):
                raise ArgumentTypeError(f"{where}.body", "a mapping", self.body)
            try:
                json.dumps(dict(self.body), allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValidationError(
                    f"{where}.body", f"must be JSON-serializable ({exc})", self.body
                ) from None
            if self.type is not ActionType.WEBHOOK:
                raise ValidationError(
                    f"{where}.body", "is only allowed on webhook actions", self.body
                )

    @classmethod
    def open_url(cls, title: str, url: str) -> Action:
        """A button that opens ``url`` (http, https or shortcuts) on the phone."""
        return cls(title=title, type=ActionType.OPEN_URL, url=url)

    @classmethod
    def shortcut(cls, title: str, name: str) -> Action:
        """A button that runs the iPhone Shortcut called ``name``."""
        if not isinstance(name, str):
            raise ArgumentTypeError("name", "a str", name)
        if not name:
            raise _refuse("name", name, "must not be empty")
        url = "shortcuts://run-shortcut?name=" + urllib.parse.quote(name, safe="")
        return cls(title=title, type=ActionType.OPEN_URL, url=url)

    @classmethod
    def webhook(
        cls,
        title: str,
        url: str,
        *,
        method: Literal["GET", "POST"] = "POST",
        body: Mapping[str, Any] | None = None,
    ) -> Action:
        """A button that makes ActivitySmith's backend call ``url`` (https only)."""
        return cls(title=title, type=ActionType.WEBHOOK, url=url, method=method, body=body)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Action:
        """Build an action from its API JSON; unknown or missing keys raise ValidationError."""
        return _build(cls, data, "action")

    def to_json(self) -> dict[str, Any]:
        """The API JSON of this action."""
        return _fields_json(self)


# --- content state ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class ContentState:
    """What the activity shows: a title plus the fields of its type.

    Every field has the API's name. Per-field rules are checked here; the per-type requirements
    of each request are checked by :meth:`check` (``Payload.body`` calls it)::

        ContentState(title="Nightly ETL", type="segmented_progress", number_of_steps=4,
                     current_step=1, color="blue")
    """

    title: str = attrs.field(validator=_text(min_len=1))
    subtitle: str | None = attrs.field(default=None, validator=_text(optional=True))
    type: ActivityType | None = attrs.field(
        default=None, converter=_to_activity_type, validator=_member(ActivityType)
    )
    number_of_steps: int | None = attrs.field(
        default=None, converter=_to_int, validator=_int(minimum=1)
    )
    current_step: int | None = attrs.field(
        default=None, converter=_to_int, validator=_int(minimum=0)
    )
    percentage: float | None = attrs.field(
        default=None, converter=_to_number, validator=_number(low=0, high=100)
    )
    value: float | str | None = attrs.field(default=None, converter=_to_readout, validator=_readout)
    upper_limit: float | None = attrs.field(
        default=None, converter=_to_number, validator=_number(low=0, low_open=True)
    )
    duration_seconds: float | None = attrs.field(
        default=None, converter=_to_number, validator=_number(low=0, low_open=True)
    )
    counts_down: bool | None = attrs.field(default=None, validator=_flag)
    is_running: bool | None = attrs.field(default=None, validator=_flag)
    metrics: tuple[Metric, ...] | None = attrs.field(
        default=None, converter=_to_metrics, validator=_metric_count
    )
    message: str | None = attrs.field(
        default=None, validator=_text(min_len=1, max_len=_MAX_MESSAGE, optional=True)
    )
    icon: Icon | None = attrs.field(
        default=None, converter=_to_icon, validator=_instance(Icon, "an Icon or a mapping")
    )
    badge: Badge | None = attrs.field(
        default=None, converter=_to_badge, validator=_instance(Badge, "a Badge or a mapping")
    )
    color: Color | None = attrs.field(default=None, converter=_to_color, validator=_member(Color))
    step_color: Color | None = attrs.field(
        default=None, converter=_to_color, validator=_member(Color)
    )
    step_colors: tuple[Color, ...] | None = attrs.field(
        default=None, converter=_to_colors, validator=_colors
    )
    auto_dismiss_minutes: int | None = attrs.field(
        default=None, converter=_to_int, validator=_int(minimum=0)
    )
    auto_dismiss_seconds: int | None = attrs.field(
        default=None, converter=_to_int, validator=_int(minimum=0)
    )

    def __attrs_post_init__(self) -> None:
        steps, current = self.number_of_steps, self.current_step
        if steps is not None and current is not None and current > steps:
            raise ValidationError(
                "current_step",
                f"({current}) must not exceed number_of_steps ({steps})",
                current,
            )
        kind = self.type
        if kind is None:
            return
        if self.badge is not None and kind not in _BADGE_TYPES:
            raise ValidationError(
                "badge",
                f"is not shown on {kind.value} activities "
                "(only alert, progress, segmented_progress and value)",
                self.badge,
            )
        # The contract is silent here; a text readout only makes sense for the value type, and
        # progress computes value / upper_limit, so a str there is refused early.
        if kind is ActivityType.PROGRESS and isinstance(self.value, str):
            raise _refuse("value", self.value, "must be a number for progress")

    def check(self, op: Operation | str) -> None:
        """Raise ValidationError unless this state has what ``op`` needs for its type.

        On update and end ``type`` may be left out (the server keeps the activity's type); then
        the type-specific checks are skipped because the type is unknown here.
        """
        op = _to_operation(op)
        kind = self.type
        if kind is None:
            if op in _START_LIKE:
                raise ValidationError("type", f"is required on {op.value}")
            return

        def need(field: str, why: str = "") -> None:
            if getattr(self, field) is None:
                raise ValidationError(field, f"is required for {kind.value} on {op.value}{why}")

        if kind is ActivityType.SEGMENTED_PROGRESS:
            if op in _START_LIKE:
                need("number_of_steps")
            need("current_step")
        elif kind is ActivityType.PROGRESS:
            if self.percentage is None:
                if self.value is None and self.upper_limit is None:
                    raise ValidationError(
                        "percentage",
                        f"(or value and upper_limit) is required for progress on {op.value}",
                    )
                need("value", " (with upper_limit, when percentage is not set)")
                need("upper_limit", " (with value, when percentage is not set)")
        elif kind in (ActivityType.METRICS, ActivityType.STATS):
            if op not in _END_LIKE:
                need("metrics")
        elif kind is ActivityType.ALERT:
            need("message")
        elif kind is ActivityType.TIMER:
            if (
                op in _START_LIKE
                and self.duration_seconds is None
                and self.counts_down is not False
            ):
                raise ValidationError(
                    "duration_seconds",
                    f"is required for timer on {op.value}, unless counts_down is False "
                    "(a count-up timer)",
                )
        elif kind is ActivityType.VALUE:
            need("value")

    def to_json(self) -> dict[str, Any]:
        """The exact API JSON: unset fields left out, enums as strings, ints kept as ints."""
        return _fields_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ContentState:
        """Build a state from its API JSON (the inverse of :meth:`to_json`).

        Unknown or missing keys raise ValidationError, as the API would refuse them.
        """
        if not isinstance(data, Mapping):
            raise ArgumentTypeError("content_state", "a mapping", data)
        return _build(cls, data, "")


def _to_operation(op: Operation | str) -> Operation:
    if isinstance(op, Operation):
        return op
    try:
        return Operation(op)
    except ValueError:
        allowed = ", ".join(member.value for member in Operation)
        if isinstance(op, str):
            raise _refuse("op", op, f"must be one of: {allowed}") from None
        raise ArgumentTypeError("op", f"an Operation or one of: {allowed}", op) from None


# --- payload ----------------------------------------------------------------------------------


def _channels(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, tuple):
        raise ArgumentTypeError("channels", "a list or tuple of str", value)
    if not value:
        raise _refuse("channels", list(value), "must name at least one channel")
    for index, slug in enumerate(value):
        name = f"channels[{index}]"
        if not isinstance(slug, str):
            raise ArgumentTypeError(name, "a str", slug)
        # The API says "slugs" without a grammar; refuse only what cannot be one.
        if not slug or any(char.isspace() or char == "," for char in slug):
            raise _refuse(name, slug, "must be a channel slug (non-empty, no spaces or commas)")
        check_text(name, slug)


def _tags(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, tuple):
        raise ArgumentTypeError("tags", "a list or tuple of str", value)
    for index, tag in enumerate(value):
        name = f"tags[{index}]"
        if not isinstance(tag, str):
            raise ArgumentTypeError(name, "a str", tag)
        if not 1 <= len(tag) <= _MAX_TAG_LENGTH:
            raise _refuse(name, tag, f"must be 1 to {_MAX_TAG_LENGTH} characters long")
        check_text(name, tag)


def _metadata(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, _FrozenDict):
        raise ArgumentTypeError("metadata", "a mapping", value)
    if len(value) > _MAX_METADATA_ENTRIES:
        raise ValidationError(
            "metadata",
            f"({len(value)} entries) must have at most {_MAX_METADATA_ENTRIES} entries",
            value,
        )
    for key, item in value.items():
        if not isinstance(key, str):
            raise ArgumentTypeError("metadata key", "a str", key)
        name = f"metadata.{key}"
        if len(key) > _MAX_METADATA_KEY:
            raise _refuse(name, key, f"key must be at most {_MAX_METADATA_KEY} characters long")
        check_text("metadata key", key, empty=True)
        if isinstance(item, str):
            check_text(name, item, empty=True, max_len=_MAX_METADATA_TEXT)
        elif isinstance(item, bool):
            pass
        elif _is_number(item):
            check_number(name, item)
        else:
            raise ArgumentTypeError(name, "a str, a finite number or a bool", item)
    size = len(json.dumps(dict(value), separators=(",", ":"), ensure_ascii=False).encode())
    if size > _MAX_METADATA_BYTES:
        raise ValidationError(
            "metadata",
            f"({size} bytes of JSON) must be at most {_MAX_METADATA_BYTES} bytes",
            value,
        )


def _alert(inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, _FrozenDict):
        raise ArgumentTypeError("alert", "a mapping", value)
    for key, item in value.items():
        if key not in ("title", "body"):
            raise ValidationError(f"alert.{key}", "is not a known field (title, body)", item)
        check_text(f"alert.{key}", item, empty=True, max_len=_MAX_MESSAGE)


# Unhashable (unsafe_hash=False): metadata and alert are mappings; equality is by value.
@attrs.frozen(kw_only=True, unsafe_hash=False)
class Payload:
    """Everything one lifecycle request carries besides ids: state, buttons, targeting, tags.

    The same payload can be sent with any operation; :meth:`body` leaves out what that endpoint
    does not accept (``channels`` only go out on start and stream PUT, for example).
    """

    content_state: ContentState = attrs.field(
        validator=_instance(ContentState, "a ContentState", optional=False)
    )
    action: Action | None = attrs.field(
        default=None, converter=_to_action, validator=_instance(Action, "an Action or a mapping")
    )
    secondary_action: Action | None = attrs.field(
        default=None,
        converter=_to_secondary_action,
        validator=_instance(Action, "an Action or a mapping"),
    )
    channels: tuple[str, ...] | None = attrs.field(
        default=None, converter=_to_str_tuple, validator=_channels
    )
    tags: tuple[str, ...] | None = attrs.field(
        default=None, converter=_to_str_tuple, validator=_tags
    )
    metadata: Mapping[str, str | int | float | bool] | None = attrs.field(
        default=None, converter=_to_metadata, validator=_metadata
    )
    alert: Mapping[str, str] | None = attrs.field(
        default=None, converter=_to_alert, validator=_alert
    )

    def __attrs_post_init__(self) -> None:
        kind = self.content_state.type
        if self.secondary_action is not None and kind is not None and kind not in _BADGE_TYPES:
            raise ValidationError(
                "secondary_action",
                f"is not shown on {kind.value} activities "
                "(only alert, progress, segmented_progress and value)",
                self.secondary_action,
            )

    @classmethod
    def of(cls, state: ContentState | Payload) -> Payload:
        """``state`` itself when it is a Payload, else a Payload carrying only ``state``."""
        if isinstance(state, Payload):
            return state
        return cls(content_state=state)

    def body(self, op: Operation | str) -> dict[str, Any]:
        """The JSON body of ``op``'s request (without ``activity_id``, which the client adds).

        Runs ``content_state.check(op)`` first, so a state missing what ``op`` needs raises
        ValidationError here instead of earning a 400.
        """
        op = _to_operation(op)
        self.content_state.check(op)
        state = self.content_state.to_json()
        if op is Operation.END:
            seconds = state.pop("auto_dismiss_seconds", None)
            if seconds is not None and "auto_dismiss_minutes" not in state:
                # The legacy end endpoint has only auto_dismiss_minutes (the official SDK drops
                # seconds silently). Round up so the card never leaves earlier than asked; 0
                # stays 0, which means "remove at once".
                state["auto_dismiss_minutes"] = -(-seconds // 60)
        elif op is not Operation.STREAM_DELETE:
            # Dismissal only means something when an activity ends. The contract names start
            # and update; stream PUT is treated the same (it never ends the activity).
            state.pop("auto_dismiss_minutes", None)
            state.pop("auto_dismiss_seconds", None)

        body: dict[str, Any] = {"content_state": state}
        if self.action is not None:
            body["action"] = self.action.to_json()
        if self.secondary_action is not None:
            body["secondary_action"] = self.secondary_action.to_json()
        if self.alert is not None and op not in (Operation.UPDATE, Operation.END):
            body["alert"] = dict(self.alert)
        if self.channels is not None:
            if op is Operation.START:
                body["target"] = {"channels": list(self.channels)}
            elif op is Operation.STREAM_PUT:
                body["channels"] = list(self.channels)
        if self.tags is not None:
            if op in (Operation.UPDATE, Operation.END) and len(self.tags) > _MAX_UPDATE_TAGS:
                raise ValidationError(
                    "tags",
                    f"({len(self.tags)} items) must have at most {_MAX_UPDATE_TAGS} items "
                    f"on {op.value}",
                    self.tags,
                )
            body["tags"] = list(self.tags)
        if self.metadata is not None:
            body["metadata"] = dict(self.metadata)
        return body


# --- stream keys --------------------------------------------------------------------------------


def validate_stream_key(key: str) -> str:
    """Return ``key`` if the API accepts it as a stream key (1-255 of ``A-Z a-z 0-9 _ -``)."""
    if not isinstance(key, str):
        raise ArgumentTypeError("stream_key", "a str", key)
    problem = stream_key_problem(key)
    if problem is not None:
        raise _refuse("stream_key", key, problem)
    return key


def stream_key_from(text: str) -> str:
    """Derive a valid, deterministic stream key from any text, e.g. a job name.

    ``"Nightly ETL: orders"`` becomes ``"nightly-etl-orders"``. Keys that would be too long are
    cut and given a short hash of the whole text, so distinct long names stay distinct.
    """
    if not isinstance(text, str):
        raise ArgumentTypeError("text", "a str", text)
    import hashlib  # here: only a derived stream key needs it

    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
    # Not in the contract: accents are folded first ("Café" -> "cafe") so names in other
    # languages keep their letters rather than turning into dashes.
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(char for char in folded if not unicodedata.combining(char))
    # "-" counts as a separator too, so runs like " - " collapse into a single "-".
    key = _NOT_KEY_CHARS.sub("-", folded.lower()).strip("-")
    if not key:
        return f"stream-{digest}"
    if len(key) > _MAX_STREAM_KEY:
        key = key[: _MAX_STREAM_KEY - _HASH_CHARS - 1].rstrip("-") + "-" + digest
    return key
