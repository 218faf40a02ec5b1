"""RQ: one Live Activity per job across its retries.

::

    from rq import Callback, Queue, Retry
    from activitysmith_track.rq import on_stopped, tracked_job

    @tracked_job("Nightly import", steps=["download", "load"])
    def nightly_import(day: str) -> int: ...

    queue.enqueue(nightly_import, "2026-12-01",
                  retry=Retry(max=3, interval=[10, 60]), on_stopped=Callback(on_stopped))

RQ runs a job in a work horse process that leaves with ``os._exit()`` (no exit hooks) and
has no callback for a job's start, so the activity is opened by the decorated job function
itself, in the horse, and delivered before it returns. The activity is keyed by the job id
(stream mode): a failure with retries left (``retry=Retry(...)`` at enqueue, or the job
returning ``Retry(...)``) hands the stream on showing ``Retrying 1/3: ConnectionError``, the
next attempt continues it on any worker, and the last attempt decides the outcome. A job
stopped with ``send_stop_job_command`` kills the horse before it can say so: pass
:func:`on_stopped` as the job's ``on_stopped`` callback and the worker ends the activity as
cancelled. Called outside an RQ job (tests, scripts), a decorated function simply runs.

RQ is never imported by ``import activitysmith_track``; this module imports it only when a
decorated job runs inside a worker.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar, overload

import attrs

from activitysmith_track._activity import live_activity
from activitysmith_track._errors import ArgumentTypeError
from activitysmith_track._integrations import (
    check_options,
    done_fields,
    humanize,
    quietly,
    retry_text,
    show_errors,
)
from activitysmith_track._model import stream_key_from

__all__ = ["on_stopped", "tracked_job"]

P = ParamSpec("P")
R = TypeVar("R")

# What a job keeps in job.meta: its title and steps (for on_stopped, which runs in the worker,
# not the horse) and its retry budget (RQ counts retries down, this remembers the start).
META = "activitysmith_track"


@attrs.frozen(kw_only=True)
class _JobOptions:
    title: str | None
    steps: int | Sequence[str] | None
    options: dict[str, Any]


def _key(job_id: str) -> str:
    return stream_key_from(f"rq-{job_id}")


def _current_job() -> Any:
    from rq import get_current_job  # only reached inside a worker, where RQ is imported

    return get_current_job()


def _meta(job: Any) -> dict[str, Any]:
    meta = getattr(job, "meta", None)
    value = meta.get(META) if isinstance(meta, dict) else None
    return value if isinstance(value, dict) else {}


@quietly
def _remember(job: Any, title: str, steps: int | Sequence[str] | None) -> dict[str, Any]:
    """Keep what later attempts and on_stopped need in job.meta (first attempt only)."""
    known = _meta(job)
    if not known:
        retries_left = getattr(job, "retries_left", None)
        known = {
            "title": title,
            "steps": steps if isinstance(steps, int) or steps is None else list(steps),
            "max_retries": retries_left if isinstance(retries_left, int) else None,
            "started": time.time(),
        }
        job.meta[META] = known
        job.save_meta()
    return known


def _retry_number(job: Any, known: dict[str, Any]) -> tuple[int, int | None]:
    """(retries done before this attempt, retries allowed) for a job retried on failure."""
    budget = known.get("max_retries")
    left = getattr(job, "retries_left", None)
    if isinstance(budget, int) and isinstance(left, int):
        return budget - left, budget
    done = getattr(job, "number_of_retries", None)  # a job that returned Retry(...)
    return (done if isinstance(done, int) else 0), None


def _run(func: Callable[P, R], settings: _JobOptions, *args: P.args, **kwargs: P.kwargs) -> R:
    job = _current_job()
    if job is None:
        return func(*args, **kwargs)  # not running as an RQ job: nothing to show
    title = settings.title or humanize(func.__name__)
    known = _remember(job, title, settings.steps) or {}
    done, budget = _retry_number(job, known)
    options = dict(settings.options)
    show = show_errors(options.get("show_error_message"))
    options["show_error_message"] = show
    if done and "subtitle" not in options:
        options["subtitle"] = f"Retry {done}/{budget}" if budget else f"Retry {done}"
    activity = live_activity(title, stream_key=_key(str(job.id)), steps=settings.steps, **options)
    with activity:
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            if getattr(job, "should_retry", False) and not activity.ended:
                # RQ will enqueue this job again: the next attempt continues the activity.
                activity.hand_on(subtitle=retry_text(done + 1, budget, exc, show_message=show))
            raise
        _after_result(job, activity, result)
        if not activity.ended:
            started = known.get("started")
            started = float(started) if isinstance(started, int | float) else None
            activity.end(**done_fields(settings.options, started, time.time()))
        return result


def _after_result(job: Any, activity: Any, result: object) -> None:
    if activity.ended or type(result).__name__ != "Retry":
        return
    from rq import Retry  # the job returned something named Retry: RQ is loaded

    if not isinstance(result, Retry):
        return
    retries = getattr(job, "number_of_retries", None) or 0
    if retries >= result.max:
        activity.fail(f"gave up after {retries} retries")
    else:
        activity.hand_on(subtitle=f"Retrying {retries + 1}/{result.max}")


@overload
def tracked_job(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tracked_job(
    title: str | None = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def tracked_job(
    title: Any = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Any:
    """Show each RQ job of the decorated function as one Live Activity, across its retries.

    ``title`` defaults to the function's name; ``steps`` and the other options are those of
    ``live_activity()``, and ``current_activity()`` inside the job returns its activity. Only
    the exception's type is shown unless ``show_error_message=True``. The decorated function
    is a plain function of the same module and name, so RQ enqueues it as usual.
    """
    if callable(title):
        return _decorate(title, _JobOptions(title=None, steps=None, options={}))
    if title is not None and not isinstance(title, str):
        raise ArgumentTypeError("title", "a str (or the job function itself)", title)
    checked = check_options({**options, "steps": steps}, where="tracked_job()")
    checked.pop("steps")
    settings = _JobOptions(title=title, steps=steps, options=checked)
    return lambda func: _decorate(func, settings)


def _decorate(func: Callable[P, R], settings: _JobOptions) -> Callable[P, R]:
    if not callable(func):
        raise ArgumentTypeError("func", "a function", func)

    @functools.wraps(func)
    def job_function(*args: P.args, **kwargs: P.kwargs) -> R:
        return _run(func, settings, *args, **kwargs)

    return job_function


@quietly
def on_stopped(job: Any, connection: Any) -> None:
    """RQ ``on_stopped`` callback: end a stopped job's activity as cancelled.

    Runs in the worker after it killed the job's horse, which could not end the activity
    itself. Use it as ``queue.enqueue(func, on_stopped=Callback(on_stopped))``.
    """
    refresh = getattr(job, "get_meta", None)
    if callable(refresh):
        refresh(refresh=True)  # the horse wrote it; this process holds the job as enqueued
    known = _meta(job)
    if not known:
        return  # the job never started tracking (not a tracked job, or stopped before it ran)
    steps = known.get("steps")
    activity = live_activity(
        str(known.get("title") or "Job"),
        stream_key=_key(str(job.id)),
        steps=steps if isinstance(steps, int | list) else None,
    )
    with activity:
        activity.cancel("stopped")
