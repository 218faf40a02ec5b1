"""Wrap a script in a Live Activity: the nightly backup, in three steps.

    python examples/backup_script.py

``with live_activity(...)`` starts the activity, ``la.step()`` moves to the next named step,
and leaving the block ends it: green when the block finishes, red naming the step and the
error when it raises. Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set.
"""

from __future__ import annotations

import time

from _emulated import emulated

from activitysmith_track import live_activity


def work() -> None:
    # Stands in for the real thing. Longer than the 1 s debounce, so each step is its own
    # update; faster steps are batched and the phone shows the newest one.
    time.sleep(1.2)


def main() -> None:
    steps = ["create snapshot", "upload archive", "verify"]
    with live_activity("Nightly backup", steps=steps) as la:
        la.step()  # 1/3 "create snapshot"
        work()
        la.step()  # 2/3 "upload archive"
        work()
        la.step()  # 3/3 "verify"
        work()


if __name__ == "__main__":
    with emulated():
        main()
