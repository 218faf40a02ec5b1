"""Show a job's log lines on the lock screen: the latest one is the card's subtitle.

    python examples/logging_bridge.py

``ActivityLogHandler`` is a ``logging.Handler``: add it once, and inside any activity
(``with live_activity(...)``, ``@tracked_steps``) each record at or above its level becomes the
subtitle, trimmed to one line. Exception text and tracebacks stay off the phone. Outside an
activity it does nothing. Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set.
"""

from __future__ import annotations

import logging
import time

from _emulated import emulated

from activitysmith_track import ActivityLogHandler, live_activity

log = logging.getLogger("nightly_etl")


def nightly_etl() -> None:
    with live_activity("Nightly ETL"):
        log.info("extracting orders")
        time.sleep(1.2)  # longer than the 1 s debounce, so each line is its own update
        log.debug("connection pool warm")  # below INFO: not shown
        log.info("transforming 1,200 orders")
        time.sleep(1.2)
        log.info("loading orders into the warehouse")
        time.sleep(1.2)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger().addHandler(ActivityLogHandler(logging.INFO))
    with emulated():
        nightly_etl()
