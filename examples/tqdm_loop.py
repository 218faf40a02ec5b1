"""Move a tqdm loop to the lock screen by changing one import.

    python examples/tqdm_loop.py

``from activitysmith_track.tqdm import tqdm`` instead of ``from tqdm import tqdm``: the
terminal shows the same bar, and the phone a card titled by ``desc`` with a progress bar,
green when the loop runs out (orange after a ``break``, red when a ``with`` block raises).
Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set.
"""

from __future__ import annotations

import time

from _emulated import emulated

from activitysmith_track.tqdm import tqdm  # was: from tqdm import tqdm


def resize(photo: str) -> None:
    time.sleep(0.12)  # stands in for the real work


def main() -> None:
    photos = [f"IMG_{n:04d}.jpg" for n in range(15)]
    bar = tqdm(photos, desc="Resize photos")
    for photo in bar:
        resize(photo)
    # The end goes out in the background, and a process waits for it at exit. This example
    # waits here only so that the emulator's log printed below includes it.
    if bar.live_activity is not None:
        bar.live_activity.flush()


if __name__ == "__main__":
    with emulated():
        main()
