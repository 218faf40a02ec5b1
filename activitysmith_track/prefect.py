"""Prefect: one Live Activity per flow run, its tasks as steps, retries shown as retries.

::

    from prefect import flow, task
    from activitysmith_track.prefect import track_flow, track_task

    @track_task
    @task(retries=2, retry_delay_seconds=5)
    def extract() -> list[int]: ...

    @track_flow("Nightly ETL", steps=["extract", "transform", "load"])
    @flow
    def nightly_etl() -> None: ...

Built on Prefect's state hooks: ``track_flow`` returns the flow with ``on_running``,
``on_completion``, ``on_failure``, ``on_crashed`` and ``on_cancellation`` hooks added (your
own hooks stay and run too), and ``track_task`` returns the task with ``on_running`` hooks
and a retry check that only watches. A task that starts begins the next step; a retry shows
``Retrying 1/2: ConnectionError`` and the attempt after it ``Extract · retry 1/2``; the flow
run's final state ends the activity. The activity is keyed by the flow run's id (stream
mode), so a flow run retried in another process continues it. Inside the flow and its
tasks, ``current_activity()`` returns the run's activity. Tasks run outside a tracked flow
are left alone.

Prefect is never imported here: the hooks only receive Prefect's objects.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

import attrs

from activitysmith_track._activity import LiveActivity, live_activity
from activitysmith_track._errors import ArgumentTypeError
from activitysmith_track._integrations import (
    check_options,
    error_text,
    humanize,
    quietly,
    retry_text,
    show_errors,
)
from activitysmith_track._model import stream_key_from

__all__ = ["track_flow", "track_task"]

F = TypeVar("F")


@attrs.frozen(kw_only=True)
class _FlowOptions:
    title: str | None
    steps: int | Sequence[str] | None
    options: dict[str, Any]

    @property
    def show_errors(self) -> bool:
        return show_errors(self.options.get("show_error_message"))


class _Run:
    """One tracked flow run in this process."""

    __slots__ = ("activity", "settings")

    def __init__(self, activity: LiveActivity, settings: _FlowOptions) -> None:
        self.activity = activity
        self.settings = settings


_runs: dict[str, _Run] = {}
_lock = threading.Lock()


def _name_of(obj: Any) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else "flow"


def _title_of(name: str) -> str:
    return humanize(name.replace("-", "_"))


def _exception_of(state: Any) -> BaseException | None:
    """The exception a failed state holds, without raising or fetching anything remote."""
    try:
        value = state.result(raise_on_failure=False)
    except Exception:
        return None
    if inspect.isawaitable(value):  # an async client gave a coroutine: not ours to await
        close = getattr(value, "close", None)
        if callable(close):
            close()
        return None
    return value if isinstance(value, BaseException) else None


def _flow_hooks(settings: _FlowOptions) -> dict[str, Callable[..., None]]:
    @quietly
    def running(flow: Any, flow_run: Any, state: Any) -> None:
        run_id = str(flow_run.id)
        with _lock:
            run = _runs.get(run_id)
        run_count = int(getattr(flow_run, "run_count", 1) or 1)
        retries = getattr(flow, "retries", None)
        retry_note = f"Retry {run_count - 1}/{retries}" if retries else f"Retry {run_count - 1}"
        if run is not None:
            # A flow retried in this process: the same activity goes on.
            run.activity.update(subtitle=retry_note)
            return
        options = dict(settings.options)
        options["show_error_message"] = settings.show_errors
        if run_count > 1 and "subtitle" not in options:
            options["subtitle"] = retry_note
        activity = live_activity(
            settings.title or _title_of(_name_of(flow)),
            stream_key=stream_key_from(f"prefect-{run_id}"),
            steps=settings.steps,
            **options,
        )
        # Entered, not only started: Prefect runs the flow and its tasks in the hook's context,
        # so current_activity() returns the run's activity there.
        activity.__enter__()
        with _lock:
            _runs[run_id] = _Run(activity, settings)

    def ending(how: str) -> Callable[..., None]:
        @quietly
        def end(flow: Any, flow_run: Any, state: Any) -> None:
            with _lock:
                run = _runs.pop(str(flow_run.id), None)
            if run is None or run.activity.ended:
                return
            activity = run.activity
            if how == "completed":
                activity.end()
            elif how == "failed":
                exc = _exception_of(state)
                activity.fail(error_text(exc, show_message=run.settings.show_errors))
            elif how == "crashed":
                activity.fail("crashed")
            else:
                activity.cancel()
            # Leave the block: no longer current, and the end delivered (within flush_timeout)
            # before the flow run returns.
            activity.__exit__(None, None, None)

        end.__name__ = f"activitysmith_track_{how}"
        return end

    return {
        "on_running": running,
        "on_completion": ending("completed"),
        "on_failure": ending("failed"),
        "on_crashed": ending("crashed"),
        "on_cancellation": ending("cancelled"),
    }


@overload
def track_flow(flow: F, /) -> F: ...


@overload
def track_flow(
    title: str | None = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Callable[[F], F]: ...


def track_flow(
    title: Any = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Any:
    """Show each run of a Prefect flow as a Live Activity; put it above ``@flow``.

    ``title`` defaults to the flow's name; ``steps`` (a count or names) gives a bar of
    segments, one per task started (more tasks than planned grow it); without it the
    activity is an elapsed timer whose subtitle names the running task. Other options go to
    ``live_activity()``. Only the exception's type is shown unless
    ``show_error_message=True``.
    """
    if _is_flow(title):
        return _attach_flow(title, _FlowOptions(title=None, steps=None, options={}))
    if title is not None and not isinstance(title, str):
        raise ArgumentTypeError("title", "a str (or the flow itself)", title)
    checked = check_options({**options, "steps": steps}, where="track_flow()")
    checked.pop("steps")
    settings = _FlowOptions(title=title, steps=steps, options=checked)

    def decorate(flow: F) -> F:
        if not _is_flow(flow):
            raise ArgumentTypeError("flow", "a Prefect flow (put @track_flow above @flow)", flow)
        attached: F = _attach_flow(flow, settings)
        return attached

    return decorate


def _is_flow(obj: object) -> bool:
    return callable(getattr(obj, "with_options", None)) and hasattr(obj, "on_running_hooks")


def _attach_flow(flow: Any, settings: _FlowOptions) -> Any:
    hooks = _flow_hooks(settings)
    return flow.with_options(
        on_running=[*flow.on_running_hooks, hooks["on_running"]],
        on_completion=[*flow.on_completion_hooks, hooks["on_completion"]],
        on_failure=[*flow.on_failure_hooks, hooks["on_failure"]],
        on_crashed=[*flow.on_crashed_hooks, hooks["on_crashed"]],
        on_cancellation=[*flow.on_cancellation_hooks, hooks["on_cancellation"]],
    )


def _run_of(task_run: Any) -> _Run | None:
    flow_run_id = getattr(task_run, "flow_run_id", None)
    if flow_run_id is None:
        return None
    with _lock:
        return _runs.get(str(flow_run_id))


@overload
def track_task(task: F, /) -> F: ...


@overload
def track_task(name: str | None = None, /) -> Callable[[F], F]: ...


def track_task(name: Any = None, /) -> Any:
    """Make a Prefect task a step of its tracked flow run; put it above ``@task``.

    The step is named after the task (``load_rows`` shows as "Load rows") or ``name``.
    Each retry shows on the flow run's activity; the task's outcome is left to the flow.
    """
    if _is_task(name):
        return _attach_task(name, None)
    if name is not None and not isinstance(name, str):
        raise ArgumentTypeError("name", "a str (or the task itself)", name)

    def decorate(task: F) -> F:
        if not _is_task(task):
            raise ArgumentTypeError("task", "a Prefect task (put @track_task above @task)", task)
        attached: F = _attach_task(task, name)
        return attached

    return decorate


def _is_task(obj: object) -> bool:
    return callable(getattr(obj, "with_options", None)) and hasattr(obj, "retry_condition_fn")


def _attach_task(task: Any, name: str | None) -> Any:
    step = name or humanize(_name_of(task))
    user_condition = task.retry_condition_fn

    @quietly
    def running(task: Any, task_run: Any, state: Any) -> None:
        run = _run_of(task_run)
        if run is None or run.activity.ended:
            return
        run_count = int(getattr(task_run, "run_count", 1) or 1)
        if run_count <= 1:
            run.activity.step(step)
        else:
            retries = getattr(task, "retries", None)
            note = f"retry {run_count - 1}/{retries}" if retries else f"retry {run_count - 1}"
            run.activity.update(subtitle=f"{step} · {note}")

    @quietly
    def show_retry(task: Any, task_run: Any, state: Any) -> None:
        run = _run_of(task_run)
        if run is None or run.activity.ended:
            return
        retry = int(getattr(task_run, "run_count", 1) or 1)
        text = retry_text(
            retry,
            getattr(task, "retries", None),
            _exception_of(state),
            show_message=run.settings.show_errors,
        )
        run.activity.update(subtitle=text)

    def retry_condition(task: Any, task_run: Any, state: Any) -> Any:
        # Prefect asks this only when retries are left. Without a condition of the user's it
        # always retries, so this one answers yes and watches; the user's one decides.
        decision = True if user_condition is None else user_condition(task, task_run, state)
        if inspect.isawaitable(decision):
            return _await_decision(decision, lambda: show_retry(task, task_run, state))
        if decision:
            show_retry(task, task_run, state)
        return decision

    return task.with_options(
        on_running=[*task.on_running_hooks, running],
        retry_condition_fn=retry_condition,
    )


async def _await_decision(decision: Any, show: Callable[[], object]) -> Any:
    result = await decision
    if result:
        show()
    return result
