"""Hypothesis strategies for the model's values, shared by every test module that needs them.

``content_states(kind)`` draws states that are valid for *every* operation of ``kind`` (the
start requirements are the strictest), ``loose_states()`` draws type-less states whose fields
are each valid, and ``payloads(kind)`` wraps a state with buttons, targeting, tags and metadata
that every endpoint accepts. ``invalid_state_kwargs()`` draws keyword arguments that must be
refused, with the field the error has to name.
"""

from __future__ import annotations

import string
from typing import Any

from hypothesis import strategies as st

from activitysmith_track._model import (
    Action,
    ActionType,
    ActivityType,
    Badge,
    Color,
    ContentState,
    Icon,
    Metric,
    Payload,
)

__all__ = [
    "BADGE_TYPES",
    "actions",
    "badges",
    "colors",
    "content_states",
    "icons",
    "invalid_state_kwargs",
    "loose_states",
    "metadata",
    "metrics",
    "payloads",
    "stream_keys",
    "tags",
]

BADGE_TYPES = frozenset(
    {
        ActivityType.ALERT,
        ActivityType.PROGRESS,
        ActivityType.SEGMENTED_PROGRESS,
        ActivityType.VALUE,
    }
)

colors = st.sampled_from(Color)
# Text the service can store: no NUL, no lone surrogates (both refused by the model).
storable = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")


def text(*, min_size: int = 0, max_size: int | None = None) -> st.SearchStrategy[str]:
    return st.text(storable, min_size=min_size, max_size=max_size)


titles = text(min_size=1, max_size=30)
texts = text(max_size=30)
finite_floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
non_negative = st.integers(0, 10**9) | st.floats(
    min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False
)
positive = st.integers(1, 10**6) | st.floats(
    min_value=0, max_value=1e6, exclude_min=True, allow_nan=False, allow_infinity=False
)
percentages = st.integers(0, 100) | st.floats(min_value=0, max_value=100, allow_nan=False)
readouts = text(max_size=20) | st.integers(-(10**9), 10**9) | finite_floats

icons = st.builds(Icon, symbol=titles, color=st.none() | colors)
badges = st.builds(Badge, title=titles, color=st.none() | colors)
metric_values = (
    st.integers(0, 10**9)
    | st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
    | text(min_size=1, max_size=64)
)
metrics = st.builds(
    Metric, label=titles, value=metric_values, unit=st.none() | texts, color=st.none() | colors
)
metric_tuples = st.lists(metrics, min_size=1, max_size=8).map(tuple)
dismiss = st.none() | st.integers(0, 10_000)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


@st.composite
def _typed_state(draw: st.DrawFn, kind: ActivityType) -> ContentState:
    kw: dict[str, Any] = {
        "title": draw(titles),
        "type": kind,
        "subtitle": draw(_maybe(texts)),
        "icon": draw(_maybe(icons)),
        "color": draw(_maybe(colors)),
        "auto_dismiss_minutes": draw(dismiss),
        "auto_dismiss_seconds": draw(dismiss),
    }
    if kind in BADGE_TYPES:
        kw["badge"] = draw(_maybe(badges))
    if kind is ActivityType.SEGMENTED_PROGRESS:
        steps = draw(st.integers(1, 50))
        current = draw(st.integers(0, steps))
        kw.update(
            number_of_steps=steps,
            current_step=current,
            step_color=draw(_maybe(colors)),
            step_colors=draw(_maybe(st.lists(colors, max_size=current).map(tuple))),
        )
    elif kind is ActivityType.PROGRESS:
        if draw(st.booleans()):
            kw["percentage"] = draw(percentages)
        else:
            kw["value"] = draw(non_negative)
            kw["upper_limit"] = draw(positive)
    elif kind in (ActivityType.METRICS, ActivityType.STATS):
        kw["metrics"] = draw(metric_tuples)
    elif kind is ActivityType.ALERT:
        kw["message"] = draw(titles)
    elif kind is ActivityType.TIMER:
        if draw(st.booleans()):
            kw["duration_seconds"] = draw(positive)
            kw["counts_down"] = draw(_maybe(st.booleans()))
        else:
            kw["counts_down"] = False
        kw["is_running"] = draw(_maybe(st.booleans()))
    elif kind is ActivityType.VALUE:
        kw["value"] = draw(readouts)
    return ContentState(**kw)


def content_states(kind: ActivityType | None = None) -> st.SearchStrategy[ContentState]:
    """States of ``kind`` (any type when None) that pass ``check()`` for every operation."""
    if kind is None:
        return st.sampled_from(ActivityType).flatmap(_typed_state)
    return _typed_state(kind)


@st.composite
def loose_states(draw: st.DrawFn) -> ContentState:
    """Type-less states (as sent on update/end) whose fields are each valid on their own."""
    steps = draw(_maybe(st.integers(1, 10**6)))
    current = draw(_maybe(st.integers(0, steps if steps is not None else 10**6)))
    return ContentState(
        title=draw(titles),
        subtitle=draw(_maybe(texts)),
        number_of_steps=steps,
        current_step=current,
        percentage=draw(_maybe(percentages)),
        value=draw(_maybe(readouts)),
        upper_limit=draw(_maybe(positive)),
        duration_seconds=draw(_maybe(positive)),
        counts_down=draw(_maybe(st.booleans())),
        is_running=draw(_maybe(st.booleans())),
        metrics=draw(_maybe(metric_tuples)),
        message=draw(_maybe(titles)),
        icon=draw(_maybe(icons)),
        badge=draw(_maybe(badges)),
        color=draw(_maybe(colors)),
        step_color=draw(_maybe(colors)),
        step_colors=draw(_maybe(st.lists(colors, max_size=10).map(tuple))),
        auto_dismiss_minutes=draw(dismiss),
        auto_dismiss_seconds=draw(dismiss),
    )


_json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | texts
json_objects = st.dictionaries(
    texts,
    st.recursive(
        _json_scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
        max_leaves=8,
    ),
    max_size=4,
)
_urls = st.builds(
    "{}{}".format,
    st.sampled_from(["http://", "https://", "HTTPS://", "shortcuts://"]),
    st.text(string.ascii_letters + string.digits + "./?=&-", min_size=1, max_size=30),
)
_https_urls = st.builds(
    "https://{}".format,
    st.text(string.ascii_letters + string.digits + "./?=&-", min_size=1, max_size=30),
)
actions = st.one_of(
    st.builds(Action.open_url, titles, _urls),
    st.builds(Action.shortcut, titles, titles),
    st.builds(
        Action,
        title=titles,
        type=st.just(ActionType.WEBHOOK),
        url=_https_urls,
        method=st.none() | st.sampled_from(["GET", "POST"]),
        body=st.none() | json_objects,
    ),
)
slugs = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True)
tags = st.lists(text(min_size=1, max_size=64), max_size=20).map(tuple)
metadata = st.dictionaries(
    text(max_size=100),
    text(max_size=200) | st.booleans() | st.integers(-(2**53), 2**53) | finite_floats,
    max_size=10,
)
alerts = st.fixed_dictionaries({}, optional={"title": texts, "body": texts})
stream_keys = st.from_regex(r"[A-Za-z0-9_-]{1,255}", fullmatch=True)


@st.composite
def _payload(draw: st.DrawFn, state: ContentState) -> Payload:
    secondary = draw(_maybe(actions)) if state.type in BADGE_TYPES else None
    return Payload(
        content_state=state,
        action=draw(_maybe(actions)),
        secondary_action=secondary,
        channels=draw(_maybe(st.lists(slugs, min_size=1, max_size=3).map(tuple))),
        tags=draw(_maybe(tags)),
        metadata=draw(_maybe(metadata)),
        alert=draw(_maybe(alerts)),
    )


def payloads(kind: ActivityType | None = None) -> st.SearchStrategy[Payload]:
    """Payloads whose ``body(op)`` succeeds for every operation."""
    return content_states(kind).flatmap(_payload)


_INVALID: list[tuple[str, st.SearchStrategy[Any]]] = [
    ("title", st.just("")),
    ("number_of_steps", st.integers(max_value=0)),
    ("current_step", st.integers(max_value=-1)),
    ("percentage", st.floats(min_value=100, exclude_min=True, allow_nan=False)),
    ("percentage", st.floats(max_value=0, exclude_max=True, allow_nan=False)),
    ("percentage", st.just(float("nan"))),
    ("upper_limit", st.floats(max_value=0, allow_nan=False) | st.integers(max_value=0)),
    ("duration_seconds", st.floats(max_value=0, allow_nan=False) | st.integers(max_value=0)),
    ("value", st.sampled_from([float("nan"), float("inf"), float("-inf")])),
    ("message", st.just("")),
    ("color", st.text().filter(lambda text: text not in {c.value for c in Color})),
    ("type", st.text().filter(lambda text: text not in {t.value for t in ActivityType})),
    ("auto_dismiss_minutes", st.integers(max_value=-1)),
    ("auto_dismiss_seconds", st.integers(max_value=-1)),
    ("metrics", st.just(()) | st.lists(metrics, min_size=9, max_size=12)),
    ("number_of_steps", st.booleans() | st.floats() | st.text()),
    ("counts_down", st.integers() | st.text()),
]


def invalid_state_kwargs() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """``(field, kwargs)``: ContentState(**kwargs) must raise a ValidationError naming field."""
    return st.one_of([_case(field, bad) for field, bad in _INVALID])


def _case(field: str, bad: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    def kwargs(value: Any) -> dict[str, Any]:
        return {"title": "t", field: value}

    return st.tuples(st.just(field), bad.map(kwargs))
