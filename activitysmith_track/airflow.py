"""Airflow: one Live Activity per DAG run, its tasks as steps, across workers and retries.

As a listener plugin (every DAG, or the ones named), in ``$AIRFLOW_HOME/plugins/``::

    # plugins/activitysmith.py
    from activitysmith_track.airflow import plugin

    ActivitySmithPlugin = plugin()                 # or plugin(dags=["nightly_etl"], color="blue")

or, for one DAG, as callbacks::

    from activitysmith_track.airflow import dag_callbacks, task_callbacks

    @dag(default_args=task_callbacks(), **dag_callbacks())
    def nightly_etl(): ...

The activity is keyed by the DAG id and run id (stream mode), so tasks running on different
workers, in different processes, advance the same activity. Its steps are the DAG's tasks in
dependency order. A task that starts begins its step; a task that fails with retries left
shows ``Retrying 1/2: ConnectionError`` (not a failure) and the next try continues; a task
that fails for good shows where and why, and the DAG run's end decides the outcome: only the
run ends the activity, because other tasks (parallel branches, ``all_done`` clean-ups) may
still run after one failed. Use the plugin or the callbacks, not both.

Airflow is imported only by :func:`plugin` (which builds Airflow's plugin class); the rest
receives Airflow's objects and reads them by attribute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from activitysmith_track._activity import LiveActivity, live_activity
from activitysmith_track._errors import ArgumentTypeError
from activitysmith_track._integrations import (
    check_options,
    error_text,
    format_elapsed,
    humanize,
    quietly,
    retry_text,
    show_errors,
)
from activitysmith_track._model import stream_key_from
from activitysmith_track._state import DEFAULT_SUCCESS, EndLook

__all__ = ["dag_callbacks", "listener", "plugin", "task_callbacks"]

_UP_FOR_RETRY = "up_for_retry"


@attrs.frozen(kw_only=True)
class _Settings:
    dags: frozenset[str] | None
    title: str | Callable[[str], str] | None
    options: Mapping[str, Any]

    @property
    def show_errors(self) -> bool:
        return show_errors(self.options.get("show_error_message"))

    def tracks(self, dag_id: str) -> bool:
        return self.dags is None or dag_id in self.dags


def _settings(
    dags: Iterable[str] | None, title: str | Callable[[str], str] | None, options: Mapping[str, Any]
) -> _Settings:
    if isinstance(dags, str):
        raise ArgumentTypeError("dags", "a list of DAG ids", dags)
    if title is not None and not isinstance(title, str) and not callable(title):
        raise ArgumentTypeError("title", "a str or a function of the DAG id", title)
    checked = check_options(options, where="the Airflow integration")
    for reserved in ("steps",):
        if reserved in checked:
            raise ArgumentTypeError(reserved, "left out: the DAG's tasks are the steps", checked)
    return _Settings(dags=None if dags is None else frozenset(dags), title=title, options=checked)


# -- the run as the phone shows it ---------------------------------------------------------


def _ordered_task_ids(dag: Any) -> list[str]:
    """The DAG's tasks in dependency order, ties by task id.

    Computed from the graph alone (not from Airflow's own sort), so a worker's DAG and the
    scheduler's serialized copy give the same steps.
    """
    tasks = {str(t.task_id): t for t in getattr(dag, "tasks", ())}
    upstream = {
        task_id: {str(u) for u in getattr(task, "upstream_task_ids", ()) if str(u) in tasks}
        for task_id, task in tasks.items()
    }
    order: list[str] = []
    ready = sorted(t for t, ups in upstream.items() if not ups)
    done: set[str] = set()
    while ready:
        current = ready.pop(0)
        order.append(current)
        done.add(current)
        for task_id, ups in upstream.items():
            if task_id not in done and task_id not in ready and ups <= done:
                ready.append(task_id)
        ready.sort()
    order.extend(sorted(set(tasks) - set(order)))  # a cycle cannot parse; be safe anyway
    return order


def _title(settings: _Settings, dag: Any, dag_id: str) -> str:
    if isinstance(settings.title, str):
        return settings.title
    if callable(settings.title):
        return str(settings.title(dag_id))
    display = getattr(dag, "dag_display_name", None)
    if isinstance(display, str) and display and display != dag_id:
        return display
    return humanize(dag_id)


def _key(dag_id: str, run_id: str) -> str:
    return stream_key_from(f"airflow-{dag_id}-{run_id}")


@attrs.frozen(kw_only=True)
class _RunView:
    """What every process derives alike about one DAG run."""

    key: str
    title: str
    task_ids: tuple[str, ...]

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(humanize(t) for t in self.task_ids)

    def step_of(self, task_id: str) -> int | None:
        """The 1-based step of a task, or None for a task the DAG does not list."""
        return self.task_ids.index(task_id) + 1 if task_id in self.task_ids else None

    def handle(self, settings: _Settings, *, step: int | None, **extra: Any) -> LiveActivity:
        options = {**settings.options, **extra}
        options["show_error_message"] = settings.show_errors
        return live_activity(
            self.title,
            stream_key=self.key,
            steps=list(self.steps) if self.steps else None,
            step=step,
            **options,
        )


def _view(settings: _Settings, dag: Any, dag_id: str, run_id: str) -> _RunView:
    return _RunView(
        key=_key(dag_id, run_id),
        title=_title(settings, dag, dag_id),
        task_ids=tuple(_ordered_task_ids(dag)),
    )


class _Tracker:
    """Turns Airflow's task and DAG run events into the activity's states."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        # The handle of each task try running in this process.
        self.open: dict[tuple[str, str, str, int], LiveActivity] = {}

    # -- tasks (the worker's task process) --

    def task_running(self, ti: Any) -> None:
        dag_id, run_id, task_id = str(ti.dag_id), str(ti.run_id), str(ti.task_id)
        if not self.settings.tracks(dag_id):
            return
        dag = getattr(getattr(ti, "task", None), "dag", None)
        view = _view(self.settings, dag, dag_id, run_id)
        step = view.step_of(task_id)
        activity = view.handle(self.settings, step=step)
        try_number = int(getattr(ti, "try_number", 1) or 1)
        if try_number > 1:
            retries = getattr(ti, "max_tries", None)
            count = f"{try_number - 1}/{retries}" if retries else str(try_number - 1)
            name = view.steps[step - 1] if step else humanize(task_id)
            activity.update(subtitle=f"{name} · retry {count}")
        activity.start()
        with self.lock:
            self.open[self._id(ti)] = activity

    def task_success(self, ti: Any) -> None:
        activity = self._pop(ti)
        if activity is not None:
            # Even the last task hands on: the DAG run's end says how the run went.
            activity.hand_on()
            activity.flush()

    def task_failed(self, ti: Any, error: object, *, retrying: bool | None = None) -> None:
        activity = self._pop(ti) or self._from_outside(ti)
        if activity is None:
            return
        exc = error if isinstance(error, BaseException) else None
        show = self.settings.show_errors
        if retrying is None:
            retrying = _state_name(getattr(ti, "state", None)) == _UP_FOR_RETRY
        if retrying:
            try_number = int(getattr(ti, "try_number", 1) or 1)
            retries = getattr(ti, "max_tries", None)
            text = retry_text(
                try_number, retries if isinstance(retries, int) else None, exc, show_message=show
            )
            activity.hand_on(subtitle=text)
        else:
            where = activity.state.subtitle or humanize(str(ti.task_id))
            detail = error_text(exc, show_message=show) if exc is not None else "failed"
            activity.hand_on(subtitle=f"Failed at {where}: {detail}", step_color="red")
        activity.flush()

    def _from_outside(self, ti: Any) -> LiveActivity | None:
        """A handle for a try that did not run here: the scheduler reports a task whose
        process died, or someone marked it failed in the UI."""
        dag_id = str(ti.dag_id)
        dag = getattr(getattr(ti, "task", None), "dag", None)
        if dag is None or not self.settings.tracks(dag_id):
            return None
        view = _view(self.settings, dag, dag_id, str(ti.run_id))
        return view.handle(self.settings, step=view.step_of(str(ti.task_id))).start()

    def _id(self, ti: Any) -> tuple[str, str, str, int]:
        map_index = getattr(ti, "map_index", -1)
        return (
            str(ti.dag_id),
            str(ti.run_id),
            str(ti.task_id),
            map_index if isinstance(map_index, int) else -1,
        )

    def _pop(self, ti: Any) -> LiveActivity | None:
        with self.lock:
            return self.open.pop(self._id(ti), None)

    # -- DAG runs (the scheduler, or `airflow dags test`) --

    def _run(self, dag_run: Any) -> tuple[_RunView, Any] | None:
        dag_id, run_id = str(dag_run.dag_id), str(dag_run.run_id)
        if not self.settings.tracks(dag_id):
            return None
        dag = getattr(dag_run, "dag", None)
        if dag is None:
            get_dag = getattr(dag_run, "get_dag", None)
            try:
                dag = get_dag() if callable(get_dag) else None
            except Exception:  # no DAG attached to this run object
                dag = None
        if dag is None:
            # Still end the run, with steps from its task instances: the same count as the
            # workers show, though in task id order rather than dependency order.
            dag = _TasksOf(dag_run)
        return _view(self.settings, dag, dag_id, run_id), dag

    def dag_running(self, dag_run: Any) -> None:
        found = self._run(dag_run)
        if found is None:
            return
        view, _ = found
        # The activity appears when the run starts, before its first task is picked up.
        activity = view.handle(self.settings, step=None)
        activity.start()
        activity.hand_on()
        activity.flush()

    def dag_finished(self, dag_run: Any, *, success: bool, msg: str | None = None) -> None:
        found = self._run(dag_run)
        if found is None:
            return
        view, _ = found
        duration = _duration(dag_run)
        if success:
            text = f"Done in {duration}" if duration else "Done"
            look = EndLook(subtitle=text, color=DEFAULT_SUCCESS.color, icon=DEFAULT_SUCCESS.icon)
            last = len(view.steps) or None
            activity = view.handle(self.settings, step=last, on_success=look)
            with activity:
                pass
            return
        failed = _failed_task_ids(dag_run)
        at = next((t for t in view.task_ids if t in failed), None)
        step = view.step_of(at) if at is not None else None
        activity = view.handle(self.settings, step=step)
        with activity:
            reason = (msg or "failed").replace("_", " ")
            activity.fail("task failed" if reason == "task failure" else reason)


def _duration(dag_run: Any) -> str | None:
    start, end = getattr(dag_run, "start_date", None), getattr(dag_run, "end_date", None)
    if isinstance(start, datetime) and isinstance(end, datetime):
        return format_elapsed((end - start).total_seconds())
    return None


class _TasksOf:
    """A stand-in DAG with a run's task ids and no dependencies, when no DAG is at hand."""

    def __init__(self, dag_run: Any) -> None:
        get = getattr(dag_run, "get_task_instances", None)
        try:
            ids = {str(ti.task_id) for ti in get()} if callable(get) else set()
        except Exception:
            ids = set()
        self.tasks = [_TaskId(task_id) for task_id in sorted(ids)]


@attrs.frozen
class _TaskId:
    task_id: str
    upstream_task_ids: tuple[str, ...] = ()


def _state_name(state: object) -> str:
    value = getattr(state, "value", state)  # TaskInstanceState is a str enum
    return str(value or "").lower()


def _failed_task_ids(dag_run: Any) -> set[str]:
    """The tasks that failed themselves (not those skipped because an upstream one failed)."""
    get = getattr(dag_run, "get_task_instances", None)
    if not callable(get):
        return set()
    try:
        instances = get()
    except Exception:
        return set()
    return {str(ti.task_id) for ti in instances if _state_name(ti.state) == "failed"}


# -- the listener plugin --------------------------------------------------------------------


def listener(
    *,
    dags: Iterable[str] | None = None,
    title: str | Callable[[str], str] | None = None,
    **options: Any,
) -> Any:
    """An Airflow listener object (``AirflowPlugin.listeners = [listener()]``).

    ``dags`` limits tracking to the DAG ids named; ``title`` is a fixed title or a function
    of the DAG id (default: the DAG's display name, else its id as words). Other options go
    to ``live_activity()``; only the exception's type is shown unless
    ``show_error_message=True``.
    """
    from airflow.listeners import hookimpl

    tracker = _Tracker(_settings(dags, title, options))

    class ActivitySmithListener:
        @hookimpl  # type: ignore[untyped-decorator]
        def on_task_instance_running(self, previous_state: Any, task_instance: Any) -> None:
            quietly(tracker.task_running)(task_instance)

        @hookimpl  # type: ignore[untyped-decorator]
        def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
            quietly(tracker.task_success)(task_instance)

        @hookimpl  # type: ignore[untyped-decorator]
        def on_task_instance_failed(
            self, previous_state: Any, task_instance: Any, error: Any
        ) -> None:
            quietly(tracker.task_failed)(task_instance, error)

        @hookimpl  # type: ignore[untyped-decorator]
        def on_dag_run_running(self, dag_run: Any, msg: Any) -> None:
            quietly(tracker.dag_running)(dag_run)

        @hookimpl  # type: ignore[untyped-decorator]
        def on_dag_run_success(self, dag_run: Any, msg: Any) -> None:
            quietly(tracker.dag_finished)(dag_run, success=True)

        @hookimpl  # type: ignore[untyped-decorator]
        def on_dag_run_failed(self, dag_run: Any, msg: Any) -> None:
            quietly(tracker.dag_finished)(dag_run, success=False, msg=msg)

    return ActivitySmithListener()


def plugin(
    *,
    dags: Iterable[str] | None = None,
    title: str | Callable[[str], str] | None = None,
    **options: Any,
) -> type:
    """An ``AirflowPlugin`` class that registers the listener; assign it in a plugins file.

    Airflow loads the plugin in every component (scheduler, workers' task processes,
    ``airflow dags test``), so each reports what it sees of the run.
    """
    from airflow.plugins_manager import AirflowPlugin

    made = listener(dags=dags, title=title, **options)
    return type(
        "ActivitySmithPlugin",
        (AirflowPlugin,),
        {"name": "activitysmith_track", "listeners": [made]},
    )


# -- callbacks, for those who prefer them ---------------------------------------------------


def task_callbacks(
    *, title: str | Callable[[str], str] | None = None, **options: Any
) -> dict[str, Callable[[Mapping[str, Any]], None]]:
    """Task callbacks for ``default_args`` (or one task): each task is a step of its run.

    ``@dag(default_args={**task_callbacks(), "retries": 2})``. Add :func:`dag_callbacks` to
    the DAG so that the run's end ends the activity.
    """
    tracker = _Tracker(_settings(None, title, options))

    def on_execute(context: Mapping[str, Any]) -> None:
        tracker.task_running(context["ti"])

    def on_success(context: Mapping[str, Any]) -> None:
        tracker.task_success(context["ti"])

    def on_retry(context: Mapping[str, Any]) -> None:
        tracker.task_failed(context["ti"], context.get("exception"), retrying=True)

    def on_failure(context: Mapping[str, Any]) -> None:
        tracker.task_failed(context["ti"], context.get("exception"), retrying=False)

    return {
        "on_execute_callback": quietly(on_execute),
        "on_success_callback": quietly(on_success),
        "on_retry_callback": quietly(on_retry),
        "on_failure_callback": quietly(on_failure),
    }


def dag_callbacks(
    *, title: str | Callable[[str], str] | None = None, **options: Any
) -> dict[str, Callable[[Mapping[str, Any]], None]]:
    """DAG callbacks (``@dag(**dag_callbacks())``): the run's outcome ends the activity."""
    tracker = _Tracker(_settings(None, title, options))

    def on_success(context: Mapping[str, Any]) -> None:
        tracker.dag_finished(context["dag_run"], success=True)

    def on_failure(context: Mapping[str, Any]) -> None:
        reason = context.get("reason")
        tracker.dag_finished(
            context["dag_run"], success=False, msg=reason if isinstance(reason, str) else None
        )

    return {"on_success_callback": quietly(on_success), "on_failure_callback": quietly(on_failure)}
