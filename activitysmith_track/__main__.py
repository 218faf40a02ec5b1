"""``python -m activitysmith_track``: the ``activitysmith-track`` command line.

``python -m activitysmith_track run -- CMD`` is ``activitysmith-track run -- CMD``, and
``python -m activitysmith_track script.py ARGS`` runs a Python script in-process under a
Live Activity.
"""

from __future__ import annotations

import sys

from activitysmith_track._cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m activitysmith_track"))
