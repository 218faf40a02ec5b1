"""The installed version, read once from the package metadata (set in pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("activitysmith-track")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
