"""Shared by the engine suites (each run on its own, in its engine's virtual environment)."""

from __future__ import annotations

import sys
from pathlib import Path

# The suites import _support (and their app modules) as top-level modules, as the engines'
# workers do.
sys.path.insert(0, str(Path(__file__).parent))
