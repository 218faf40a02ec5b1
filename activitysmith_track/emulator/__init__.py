"""A local ActivitySmith API for tests, demos and offline development.

Start one and point a client at :attr:`Emulator.base_url`::

    from activitysmith_track.emulator import Emulator, Fault

    with Emulator() as emu:
        ...  # send requests to emu.base_url
        emu.add_fault(Fault.rate_limited(retry_after=1), path="/live-activity/stream/")

It has the account's production limits (4 live activities, 60 requests a minute per key);
``Emulator(fast=True)`` turns both off. What it accepts comes from the API contract alone
(``_rules``). Or from a shell: ``python -m activitysmith_track.emulator --port 8787``.
"""

from __future__ import annotations

from activitysmith_track.emulator._emulator import Emulator
from activitysmith_track.emulator._faults import Fault
from activitysmith_track.emulator._state import ActivityRecord, HistoryEntry, RecordedRequest

__all__ = ["ActivityRecord", "Emulator", "Fault", "HistoryEntry", "RecordedRequest"]
