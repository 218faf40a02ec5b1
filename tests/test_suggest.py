"""``did you mean``: the closest known name, or none."""

from __future__ import annotations

import pytest

from activitysmith_track._suggest import closest, did_you_mean

KWARGS = ["color", "step_color", "steps", "total", "subtitle", "stream_key", "flush_timeout"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("colour", "color"),
        ("Color", "color"),
        ("stream-key", "stream_key"),
        ("streamkey", "stream_key"),
        ("flush_timout", "flush_timeout"),
        ("step", "steps"),
        ("sub_title", "subtitle"),
        ("banana", None),
        ("x", None),
    ],
)
def test_closest(name: str, expected: str | None) -> None:
    assert closest(name, KWARGS) == expected


def test_a_shared_prefix_does_not_make_everything_close() -> None:
    known = ["ACTIVITYSMITH_API_KEY", "ACTIVITYSMITH_BASE_URL", "ACTIVITYSMITH_TRACK_STRICT"]
    assert closest("ACTIVITYSMITH_CHANNEL", known, prefix="ACTIVITYSMITH_") is None
    assert closest("ACTIVITYSMITH_KEY", known, prefix="ACTIVITYSMITH_") == "ACTIVITYSMITH_API_KEY"


def test_did_you_mean_is_ready_to_append() -> None:
    assert did_you_mean("colour", KWARGS) == "; did you mean 'color'?"
    assert did_you_mean("banana", KWARGS) == ""
    assert did_you_mean("anything", []) == ""
