"""What the orchestrator integrations (Celery, Airflow, Prefect, RQ) share.

Nothing here imports an engine. The integrations agree on how a run looks on the lock
screen: task names become step names, a retry shows as ``Retrying 2/3: ConnectionError``
(not as a failure), and only the exception's *type* is shown unless the user opts in with
``show_error_message=True``: an orchestrator's exception text often carries arguments, SQL or
URLs, which must not reach a phone by default.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from activitysmith_track._activity import live_activity
from activitysmith_track._config import resolve_settings
from activitysmith_track._errors import ValidationError
from activitysmith_track._render import describe_error, format_elapsed, trim

__all__ = [
    "check_options",
    "done_fields",
    "error_text",
    "format_elapsed",
    "humanize",
    "quietly",
    "retry_text",
    "show_errors",
]

logger = logging.getLogger("activitysmith_track")

P = ParamSpec("P")
R = TypeVar("R")

# Options an integration decides itself: the stream and the step come from the run.
_RESERVED = frozenset({"stream_key", "step"})


def humanize(name: str) -> str:
    """A task name as a step name: ``etl.tasks.load_rows`` shows as ``Load rows``."""
    short = name.rsplit(".", 1)[-1]
    text = short.replace("_", " ").strip() or short or name
    return text[:1].upper() + text[1:]


def show_errors(option: bool | None) -> bool:
    """Whether exception text may be shown: the option, else the settings (off unless
    ``ACTIVITYSMITH_TRACK_SHOW_ERROR_MESSAGE=1``): a task's exception is often built from
    its arguments."""
    if option is not None:
        return bool(option)
    return resolve_settings().show_error_message


def error_text(exc: BaseException | None, *, show_message: bool) -> str:
    """``ConnectionError`` (or ``ConnectionError: refused`` when messages may be shown)."""
    return trim(describe_error(exc, None, show_message))


def retry_text(
    retry: int, max_retries: int | None, exc: BaseException | None, *, show_message: bool
) -> str:
    """``Retrying 2/3: ConnectionError``: the retry about to run, of how many are allowed."""
    count = f"{retry}/{max_retries}" if max_retries is not None else str(retry)
    if exc is None:
        return f"Retrying {count}"
    return trim(f"Retrying {count}: {error_text(exc, show_message=show_message)}")


def done_fields(options: Mapping[str, Any], started: float | None, now: float) -> dict[str, Any]:
    """The subtitle of a success that took ``now - started`` wall-clock seconds in all.

    A run spread over processes or attempts ends in a process that saw only its own part:
    the core's ``{elapsed}`` would say "Done in 0s". Left alone when the user chose a look.
    """
    if started is None or options.get("on_success") is not None:
        return {}
    return {"subtitle": f"Done in {format_elapsed(now - started)}"}


def check_options(options: Mapping[str, Any], *, where: str) -> dict[str, Any]:
    """Check ``live_activity()`` options once, when the integration is set up.

    A typo fails at setup, naming the option, instead of in every task on a worker. Options
    the integration sets itself (the stream key and the step) are refused.
    """
    reserved = sorted(set(options) & _RESERVED)
    if reserved:
        raise ValidationError(
            ", ".join(reserved), f"is set by {where} from the run; leave it out", options
        )
    probe = dict(options)
    # Settings are checked without the environment: a worker's configuration must not make
    # importing the user's module fail.
    settings_keys = ("strict", "flush_timeout", "api_key", "base_url", "show_error_message")
    if probe.get("settings") is None:
        probe["settings"] = resolve_settings({k: probe.get(k) for k in settings_keys}, env={})
    live_activity("Check", **probe)
    return dict(options)


def quietly(func: Callable[P, R]) -> Callable[P, R | None]:
    """Run an engine hook so that tracking can never break the job: log, never raise."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        try:
            return func(*args, **kwargs)
        except Exception:
            logger.warning("Live Activity tracking failed in %s", func.__name__, exc_info=True)
            return None

    return wrapper
