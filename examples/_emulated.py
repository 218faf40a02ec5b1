"""Shared by the examples: run against a local emulator unless an API is configured.

When ``ACTIVITYSMITH_BASE_URL`` is not set, :func:`emulated` starts an
:class:`~activitysmith_track.emulator.Emulator`, points the library at it for the block and
afterwards prints what it received, one line per request. No API key is needed. To send to
your phone instead, set ``ACTIVITYSMITH_API_KEY`` and
``ACTIVITYSMITH_BASE_URL=https://activitysmith.com/api``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from activitysmith_track.emulator import RecordedRequest
from activitysmith_track.testing import running_emulator


@contextmanager
def emulated() -> Iterator[None]:
    """Run the block against a fresh emulator (unless a base URL is set), then show its requests."""
    if os.environ.get("ACTIVITYSMITH_BASE_URL"):
        yield
        return
    with running_emulator() as emu:
        print(f"emulator at {emu.base_url} (its preview page: {emu.url})")
        yield
        print(f"the emulator received {len(emu.requests)} request(s):")
        for request in emu.requests:
            print(describe(request))


def describe(request: RecordedRequest) -> str:
    """One line: method, path, status and the content state's main fields."""
    body: Any = request.body if isinstance(request.body, dict) else {}
    state = body.get("content_state") or {}
    parts = [f"{request.method} {request.path} -> {request.status}"]
    if "title" in state:
        parts.append(repr(state["title"]))
    if "number_of_steps" in state:
        parts.append(f"step {state.get('current_step')}/{state['number_of_steps']}")
    if "percentage" in state:
        parts.append(f"{state['percentage']:g}%")
    elif "upper_limit" in state:
        parts.append(f"{state.get('value')}/{state['upper_limit']}")
    for field in ("type", "subtitle", "color"):
        if field in state:
            parts.append(f"{field}={state[field]!r}")
    return "  ".join(parts)
