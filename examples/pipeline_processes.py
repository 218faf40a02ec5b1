"""A pipeline whose steps run as separate processes, sharing one Live Activity.

Each step runs in its own process, as cron entries, CI jobs or orchestrator tasks would. They
share the activity through a stream key: every process says which step it runs, hands the
stream on when it succeeds, and the last step ends it. A failing step ends it as failed.

    python examples/pipeline_processes.py            # all three steps, one after the other
    python examples/pipeline_processes.py transform  # what one step's process runs
"""

from __future__ import annotations

import subprocess
import sys
import time

from _emulated import emulated

from activitysmith_track import live_activity

STEPS = ["extract", "transform", "load"]


def run_step(name: str) -> None:
    """The body of one step's process."""
    with live_activity(
        "Nightly ETL", stream_key="nightly-etl", steps=STEPS, step=name, flush_timeout=5
    ):
        time.sleep(0.2)  # the step's real work goes here


def main() -> None:
    with emulated():
        for name in STEPS:
            # A separate interpreter per step, as a scheduler would start them.
            subprocess.run([sys.executable, __file__, name], check=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        run_step(sys.argv[1])
    else:
        main()
