"""``preview=True``: a local emulator whose page shows this run's activities, with no phone.

With no API key, ``live_activity(..., preview=True)`` (or ``ACTIVITYSMITH_TRACK_PREVIEW=1``)
sends to an emulator started in the background the first time it is needed, and the address
of its preview page is printed once, so a newcomer sees their activity move within seconds.
"""

from __future__ import annotations

import os
import sys
import threading

import attrs

from activitysmith_track._config import DEFAULT_BASE_URL, Settings
from activitysmith_track.emulator import Emulator

__all__ = ["ensure_preview", "with_preview"]

_lock = threading.Lock()
_emulator: Emulator | None = None
_owner_pid: int | None = None


def ensure_preview(*, port: int = 0) -> str:
    """Start the process's preview emulator unless it runs already; returns its API base URL.

    It listens on 127.0.0.1 (``port``, or a free one when that is 0 or taken) until the
    interpreter exits. Its server threads are daemons, and it is deliberately not stopped by
    an ``atexit`` hook: the library's own exit handler still has to deliver the final states
    of open activities to it.
    """
    global _emulator, _owner_pid
    with _lock:
        # A forked child inherits the object but not the serving thread: start its own.
        if _emulator is not None and _owner_pid == os.getpid():
            return _emulator.base_url
        try:
            emulator = Emulator(host="127.0.0.1", port=port).start()
        except OSError:
            if port == 0:
                raise
            emulator = Emulator(host="127.0.0.1", port=0).start()
        _emulator, _owner_pid = emulator, os.getpid()
        # The reader asked to see the page: write the address where they will look, even
        # when logging is not configured (a log record would then be dropped).
        sys.stderr.write(f"ActivitySmith preview: {emulator.url}\n")
        sys.stderr.flush()
        return emulator.base_url


def with_preview(settings: Settings) -> Settings:
    """``settings`` pointed at the preview emulator when they ask for a preview and could
    not reach the service anyway; otherwise ``settings`` unchanged.

    A preview needs ``preview`` on, no API key, tracking enabled, and the default base URL
    (a base URL the user chose, such as their own emulator, wins).
    """
    if (
        not settings.preview
        or settings.api_key
        or settings.disabled
        or settings.base_url != DEFAULT_BASE_URL
    ):
        return settings
    return attrs.evolve(settings, base_url=ensure_preview())
