"""A job that ran before tells when it will finish; a loop with a total says how long it has left.

    python examples/eta.py

The nightly job runs twice: the first run is recorded in the local history, and the second
shows "usually 10 s · ~10 s left" after each step name (a real job's would say minutes).
Then a loop with a total shows the time left from its rate. About half a minute in all.
Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set; its history goes to
a temporary directory, so every run of this example starts without one.
"""

from __future__ import annotations

import os
import tempfile
import time

from _emulated import emulated

from activitysmith_track import flush, live_activity


def nightly_job() -> None:
    with live_activity("Nightly ETL", steps=["extract", "transform", "load"]) as la:
        for seconds in (3.0, 4.0, 3.0):
            la.step()
            time.sleep(seconds)  # stands in for the real work


def resize_photos() -> None:
    photos = [f"IMG_{n:04d}.jpg" for n in range(40)]
    with live_activity("Resize photos", total=len(photos)) as la:
        for _photo in la.track(photos):
            time.sleep(0.2)  # stands in for the real work


def main() -> None:
    nightly_job()  # a first run: nothing to go by, so no ETA
    nightly_job()  # "extract · usually 10 s · ~10 s left", then "transform · ..."
    resize_photos()  # "~5 s left" once the rate can tell
    flush()  # wait for the ends here, so the emulator's log printed below includes them


if __name__ == "__main__":
    # A fresh history for this demonstration, whatever the environment says.
    os.environ["ACTIVITYSMITH_TRACK_STATE_DIR"] = tempfile.mkdtemp()
    os.environ["ACTIVITYSMITH_TRACK_HISTORY"] = "1"
    with emulated():
        main()
