"""Decorate a batch function: each call is its own Live Activity.

    python examples/batch_function.py

``@tracked_steps`` runs every call inside ``live_activity()``; inside, ``current_activity()``
is that call's activity, and ``la.track(rows)`` counts the rows of a step as they go by.
Runs against a local emulator unless ``ACTIVITYSMITH_BASE_URL`` is set.
"""

from __future__ import annotations

from _emulated import emulated

from activitysmith_track import current_activity, tracked_steps


@tracked_steps("Resize images", steps=["resize", "publish"])
def resize_images(names: list[str]) -> int:
    la = current_activity()
    assert la is not None  # always set inside a decorated call
    la.step()  # "resize"
    resized = [name.replace(".png", "@2x.png") for name in la.track(names)]
    la.step()  # "publish"
    return len(resized)


if __name__ == "__main__":
    with emulated():
        count = resize_images([f"photo-{n}.png" for n in range(250)])
        print(f"resized {count} images")
