"""The logging bridge: the latest log line of a job as its Live Activity's subtitle.

For jobs that already log their steps::

    logging.getLogger().addHandler(ActivityLogHandler(logging.INFO))

    with live_activity("Nightly ETL"):
        log.info("extracting orders")      # the phone shows "extracting orders"
        log.debug("row 17 ok")             # below the handler's level: not shown

Records go to the current activity (:func:`~activitysmith_track.current_activity`); outside
one the handler does nothing.
"""

from __future__ import annotations

import logging
import weakref

from activitysmith_track._activity import LiveActivity, current_activity
from activitysmith_track._errors import ActivityEndedError, ArgumentTypeError
from activitysmith_track._render import SUBTITLE_LIMIT
from activitysmith_track._render import trim as _trim

__all__ = ["ActivityLogHandler"]

# The library's own logger: its records never become a subtitle (a warning about delivery
# shown through the delivery it is about would loop).
_LIBRARY_LOGGER = "activitysmith_track"


class ActivityLogHandler(logging.Handler):
    """A :class:`logging.Handler` that shows the latest record at or above ``level`` as the
    current Live Activity's subtitle.

    Only the message is shown (``record.getMessage()``, or the handler's formatter without
    its exception and stack text): never a traceback or an exception's text, unless
    ``show_exceptions=True`` adds the exception's type and message. The text is squeezed to
    one line and cut at 64 characters, as failure texts are. Records from the library's own
    ``activitysmith_track`` logger are ignored, the activity is updated only when the text
    changes, and the handler never raises into logging: outside an activity, or after it
    ended, a record is simply not shown.
    """

    def __init__(self, level: int | str = logging.INFO, *, show_exceptions: bool = False) -> None:
        if not isinstance(show_exceptions, bool):
            raise ArgumentTypeError("show_exceptions", "a bool", show_exceptions)
        super().__init__(level)
        self.show_exceptions = show_exceptions
        # The text last shown on each activity; weak, so a finished activity is forgotten.
        self._shown: weakref.WeakKeyDictionary[LiveActivity, str] = weakref.WeakKeyDictionary()

    def emit(self, record: logging.LogRecord) -> None:
        name = record.name
        if name == _LIBRARY_LOGGER or name.startswith(_LIBRARY_LOGGER + "."):
            return
        try:
            la = current_activity()
            if not la or la.ended:
                return
            text = self.text(record)
            if not text or self._shown.get(la) == text:
                return
            la.update(subtitle=text)
            self._shown[la] = text
        except ActivityEndedError:
            return  # ended on another thread between the check and the update
        except RecursionError:  # as logging's own handlers do
            raise
        except Exception:
            self.handleError(record)

    def text(self, record: logging.LogRecord) -> str:
        """The subtitle a record becomes (one line, at most 64 characters)."""
        message = record.getMessage()
        formatter = self.formatter
        if formatter is not None:
            # The caller's format (level, logger name...), without what format() appends:
            # exception text and stack traces stay off the lock screen.
            record.message = message
            if formatter.usesTime():
                record.asctime = formatter.formatTime(record, formatter.datefmt)
            message = formatter.formatMessage(record)
        if self.show_exceptions and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            try:
                detail = str(exc)
            except Exception:  # an exception whose __str__ fails still has a type
                detail = ""
            shown = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
            message = f"{message}: {shown}" if message else shown
        return _trim(message, SUBTITLE_LIMIT)
