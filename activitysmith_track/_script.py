"""Run a Python script in this process under a Live Activity: ``python -m activitysmith_track
script.py args...``.

The script runs as ``__main__`` with ``sys.argv`` and ``sys.path[0]`` set as ``python
script.py`` would set them, inside a ``with live_activity(...)`` block, so the script can reach
the handle with :func:`~activitysmith_track.current_activity` (``current_activity().step("load")``).
An uncaught exception ends the activity as failed with the exception's type; its traceback is
printed as Python prints it (without this module's frames) and the exit code is 1.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from types import TracebackType

from activitysmith_track._activity import LiveActivity

__all__ = ["run_script"]


def _script_frames(tb: TracebackType | None, path: str) -> TracebackType | None:
    """The traceback from the script's first frame on, as ``python script.py`` shows it."""
    while tb is not None:
        if os.path.abspath(tb.tb_frame.f_code.co_filename) == path:
            return tb
        tb = tb.tb_next
    return None  # e.g. a SyntaxError: only the error itself, as Python shows it


def _print_exception(exc: BaseException, path: str) -> None:
    tb = _script_frames(exc.__traceback__, path)
    sys.stderr.flush()
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    sys.stderr.flush()


def _exit_code(exc: SystemExit) -> int:
    # What the interpreter does with SystemExit: None is 0, an int is itself, anything else
    # is printed to stderr and means 1.
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_script(path: str, args: list[str], activity: LiveActivity) -> int:
    """Run the script at ``path`` with ``args`` under ``activity``; return the exit code."""
    full = os.path.abspath(path)
    sys.argv = [path, *args]
    sys.path[0] = os.path.dirname(full)
    try:
        with activity:
            runpy.run_path(path, run_name="__main__")
    except SystemExit as exc:
        return _exit_code(exc)
    except KeyboardInterrupt as exc:
        _print_exception(exc, full)
        return 130
    except BaseException as exc:
        _print_exception(exc, full)
        return 1
    return 0
