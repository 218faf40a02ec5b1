"""Turn any Python job into an ActivitySmith Live Activity on an iPhone lock screen.

Example::

    from activitysmith_track import live_activity

    with live_activity("Nightly backup", steps=3) as la:
        la.step("create snapshot")
        la.step("upload archive")
        la.step("verify")
"""

from __future__ import annotations

import importlib

# typing itself is not imported at run time either (type checkers treat this name as True).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from activitysmith_track._activity import (
        EndLook,
        LiveActivity,
        Outcome,
        current_activity,
        live_activity,
    )
    from activitysmith_track._client import Client, Result
    from activitysmith_track._config import Settings, configure
    from activitysmith_track._decorators import TrackedSteps, tracked_steps
    from activitysmith_track._dispatch import Dispatcher
    from activitysmith_track._errors import (
        ActivityEndedError,
        ActivitySmithTrackError,
        APIError,
        ArgumentTypeError,
        AuthenticationError,
        BadRequestError,
        BillingBlockedError,
        ConfigurationError,
        ForbiddenError,
        LiveActivityLimitError,
        MalformedResponseError,
        NoRecipientsError,
        NotFoundError,
        RateLimitedError,
        ServerError,
        StartOutcomeUnknownError,
        TransportError,
        UsageError,
        ValidationError,
    )
    from activitysmith_track._lifecycle import flush
    from activitysmith_track._logbridge import ActivityLogHandler
    from activitysmith_track._model import (
        Action,
        ActionType,
        ActivityType,
        Badge,
        Color,
        ContentState,
        Icon,
        Metric,
        Operation,
        Payload,
        stream_key_from,
        validate_stream_key,
    )
    from activitysmith_track._retry import RetryPolicy
    from activitysmith_track._version import __version__

# Every public name, and the module that defines it. Nothing is imported until a name is
# used: ``import activitysmith_track`` costs a few milliseconds, and a job (or the command
# line) pays for requests, tenacity and wrapt only once it needs them.
_LAZY = {
    "EndLook": "activitysmith_track._activity",
    "LiveActivity": "activitysmith_track._activity",
    "Outcome": "activitysmith_track._activity",
    "current_activity": "activitysmith_track._activity",
    "live_activity": "activitysmith_track._activity",
    "Client": "activitysmith_track._client",
    "Result": "activitysmith_track._client",
    "Settings": "activitysmith_track._config",
    "configure": "activitysmith_track._config",
    "TrackedSteps": "activitysmith_track._decorators",
    "tracked_steps": "activitysmith_track._decorators",
    "Dispatcher": "activitysmith_track._dispatch",
    "APIError": "activitysmith_track._errors",
    "ActivityEndedError": "activitysmith_track._errors",
    "ActivitySmithTrackError": "activitysmith_track._errors",
    "ArgumentTypeError": "activitysmith_track._errors",
    "AuthenticationError": "activitysmith_track._errors",
    "BadRequestError": "activitysmith_track._errors",
    "BillingBlockedError": "activitysmith_track._errors",
    "ConfigurationError": "activitysmith_track._errors",
    "ForbiddenError": "activitysmith_track._errors",
    "LiveActivityLimitError": "activitysmith_track._errors",
    "MalformedResponseError": "activitysmith_track._errors",
    "NoRecipientsError": "activitysmith_track._errors",
    "NotFoundError": "activitysmith_track._errors",
    "RateLimitedError": "activitysmith_track._errors",
    "ServerError": "activitysmith_track._errors",
    "StartOutcomeUnknownError": "activitysmith_track._errors",
    "TransportError": "activitysmith_track._errors",
    "UsageError": "activitysmith_track._errors",
    "ValidationError": "activitysmith_track._errors",
    "flush": "activitysmith_track._lifecycle",
    "ActivityLogHandler": "activitysmith_track._logbridge",
    "Action": "activitysmith_track._model",
    "ActionType": "activitysmith_track._model",
    "ActivityType": "activitysmith_track._model",
    "Badge": "activitysmith_track._model",
    "Color": "activitysmith_track._model",
    "ContentState": "activitysmith_track._model",
    "Icon": "activitysmith_track._model",
    "Metric": "activitysmith_track._model",
    "Operation": "activitysmith_track._model",
    "Payload": "activitysmith_track._model",
    "stream_key_from": "activitysmith_track._model",
    "validate_stream_key": "activitysmith_track._model",
    "RetryPolicy": "activitysmith_track._retry",
    "__version__": "activitysmith_track._version",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'activitysmith_track' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
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
]
