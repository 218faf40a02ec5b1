"""Turn any Python job into an ActivitySmith Live Activity on an iPhone lock screen.

Example::

    from activitysmith_track import live_activity

    with live_activity("Nightly backup", steps=3) as la:
        la.step("create snapshot")
        la.step("upload archive")
        la.step("verify")
"""

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
