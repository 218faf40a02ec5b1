"""The public surface is exactly what __all__ names, and every name there is importable."""

from __future__ import annotations

import activitysmith_track

PUBLIC = {
    "APIError",
    "Action",
    "ActionType",
    "ActivityEndedError",
    "ActivityLogHandler",
    "ActivitySmithTrackError",
    "ActivityType",
    "ArgumentTypeError",
    "AuthenticationError",
    "BadRequestError",
    "Badge",
    "BillingBlockedError",
    "Client",
    "Color",
    "ConfigurationError",
    "ContentState",
    "Dispatcher",
    "EndLook",
    "ForbiddenError",
    "Icon",
    "LiveActivity",
    "LiveActivityLimitError",
    "MalformedResponseError",
    "Metric",
    "NoRecipientsError",
    "NotFoundError",
    "Operation",
    "Outcome",
    "Payload",
    "RateLimitedError",
    "Result",
    "RetryPolicy",
    "ServerError",
    "Settings",
    "StartOutcomeUnknownError",
    "TrackedSteps",
    "TransportError",
    "UsageError",
    "ValidationError",
    "__version__",
    "configure",
    "current_activity",
    "flush",
    "live_activity",
    "stream_key_from",
    "tracked_steps",
    "validate_stream_key",
}


def test_all_is_exactly_the_public_surface() -> None:
    assert set(activitysmith_track.__all__) == PUBLIC
    assert activitysmith_track.__all__ == sorted(activitysmith_track.__all__)


def test_every_public_name_is_importable() -> None:
    for name in activitysmith_track.__all__:
        assert getattr(activitysmith_track, name) is not None


def test_public_modules_import_on_purpose() -> None:
    import activitysmith_track.emulator
    import activitysmith_track.testing

    assert "Emulator" in activitysmith_track.emulator.__all__
    assert activitysmith_track.testing.__doc__


def test_every_error_derives_from_the_root() -> None:
    for name in activitysmith_track.__all__:
        value = getattr(activitysmith_track, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, activitysmith_track.ActivitySmithTrackError), name


def test_version_is_the_installed_one() -> None:
    from importlib.metadata import version

    assert activitysmith_track.__version__ == version("activitysmith-track")
