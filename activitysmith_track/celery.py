"""Celery: one Live Activity per task across its retries, one per chain or chord across workers.

::

    from celery import Celery
    from activitysmith_track.celery import track_celery

    app = Celery("etl", broker="redis://localhost:6379/0")
    track_celery(app)                      # every task; or tasks=["etl.load", ...]

Wired through Celery's signals, so task code needs no change, and it runs in the worker
process that runs the task (which must import this setup, as it imports the app):

- **A task** is one activity, keyed by its task id (stream mode): a retry hands the stream
  on showing ``Retrying 1/3: ConnectionError``, the next attempt (on any worker) continues
  it, and the final attempt decides the outcome.
- **A chain or a chord** is one activity whose steps are its tasks, keyed by the canvas's
  root id (a chord started on its own: its group id). The plan is computed where the canvas
  is published and carried in a message header; each task, on whichever worker, begins its
  step and hands the stream on when it publishes the next one; the last step ends it; a
  failure ends it as failed. A group inside a chain or chord is one step, its tasks running
  in parallel. A group on its own, or at the end of a chain, has no task that runs after all
  its members, so each member shows as its own activity.

Celery is imported by Celery itself, never by this package: this module only receives
Celery's objects, so importing ``activitysmith_track`` never imports an engine.
"""

from __future__ import annotations

import collections
import contextvars
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from activitysmith_track._activity import LiveActivity, live_activity
from activitysmith_track._errors import ArgumentTypeError
from activitysmith_track._integrations import (
    check_options,
    done_fields,
    error_text,
    humanize,
    quietly,
    retry_text,
    show_errors,
)
from activitysmith_track._model import stream_key_from

__all__ = ["track_celery"]

logger = logging.getLogger("activitysmith_track")

# The message header that carries a canvas's plan from the publisher to every worker.
HEADER = "activitysmith_track"
# When a retried task's first attempt started (epoch seconds), carried to its next attempts.
STARTED_HEADER = "activitysmith_track_started"
# Celery's own tasks (chord_unlock, backend_cleanup...) are machinery, not the user's work.
_INTERNAL_PREFIX = "celery."
# How long handing the stream to the next task (or attempt) may hold up publishing it: the
# hand-on must arrive before the next worker's first state, or that state would be replaced.
DEFAULT_HANDOFF_TIMEOUT = 2.0


@attrs.frozen(kw_only=True)
class _Plan:
    """A canvas as the phone shows it: its stream, title and steps, and this task's step."""

    key: str
    title: str
    steps: tuple[str, ...]
    # The task name a sequential step runs; None for a parallel step (a group).
    tasks: tuple[str | None, ...]
    index: int
    root: str  # the task name whose options the whole canvas uses
    started: float  # when the canvas was published (epoch seconds), for "Done in 4m 12s"

    def header(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "title": self.title,
            "steps": list(self.steps),
            "tasks": list(self.tasks),
            "index": self.index,
            "root": self.root,
            "started": self.started,
        }

    @classmethod
    def from_header(cls, value: object) -> _Plan | None:
        """The plan a message carries, or None when absent or not ours (never raises)."""
        if not isinstance(value, Mapping):
            return None
        try:
            plan = cls(
                key=str(value["key"]),
                title=str(value["title"]),
                steps=tuple(str(s) for s in value["steps"]),
                tasks=tuple(None if t is None else str(t) for t in value["tasks"]),
                index=int(value["index"]),
                root=str(value["root"]),
                started=float(value.get("started") or time.time()),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if not 0 <= plan.index < len(plan.steps) or len(plan.tasks) != len(plan.steps):
            return None
        return plan

    @property
    def parallel(self) -> bool:
        return self.tasks[self.index] is None

    @property
    def last(self) -> bool:
        return self.index == len(self.steps) - 1


@attrs.frozen(kw_only=True)
class _TaskOptions:
    """How one task is shown: title, steps (a standalone task's own), live_activity options."""

    title: str | Callable[[str], str] | None
    steps: int | Sequence[str] | None
    options: Mapping[str, Any]
    handoff_timeout: float


class _Running:
    """The activity of the task this thread is running, from prerun to postrun."""

    __slots__ = (
        "activity",
        "max_retries",
        "plan",
        "retries",
        "started",
        "task_id",
        "task_name",
        "token",
    )

    def __init__(
        self,
        *,
        activity: LiveActivity,
        plan: _Plan | None,
        task_id: str,
        task_name: str,
        retries: int,
        max_retries: int | None,
        started: float,
    ) -> None:
        self.activity = activity
        self.started = started
        self.plan = plan
        self.task_id = task_id
        self.task_name = task_name
        self.retries = retries
        self.max_retries = max_retries
        self.token: contextvars.Token[_Running | None] | None = None


class _Registry:
    """Which tasks are tracked, and how: from ``track_celery()`` calls and decorators."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.everything: _TaskOptions | None = None  # track_celery(app) without tasks=
        self.named: dict[str, _TaskOptions] = {}
        self.pending: list[tuple[object, _TaskOptions]] = []  # task objects, named lazily
        self.connected = False

    def options_for(self, name: str) -> _TaskOptions | None:
        with self.lock:
            if self.pending:
                self._resolve_pending()
            found = self.named.get(name)
        if found is not None:
            return found
        if name.startswith(_INTERNAL_PREFIX):
            return None
        return self.everything

    def _resolve_pending(self) -> None:
        # Task objects given to tasks= are named at the first signal: reading .name earlier
        # would evaluate a task the app has not finalized yet.
        pending, self.pending = self.pending, []
        for task, options in pending:
            name = getattr(task, "name", None)
            if isinstance(name, str):
                self.named[name] = options


_registry = _Registry()
_current: contextvars.ContextVar[_Running | None] = contextvars.ContextVar(
    "activitysmith_track_celery", default=None
)
# Running tasks by id, for signals that carry only the request (retry, failure).
_running: dict[str, _Running] = {}
_running_lock = threading.Lock()


def track_celery(
    app: Any,
    *,
    tasks: Iterable[str | Any] | None = None,
    title: str | Callable[[str], str] | None = None,
    handoff_timeout: float = DEFAULT_HANDOFF_TIMEOUT,
    **options: Any,
) -> None:
    """Show Celery tasks as Live Activities: one per task across retries, one per canvas.

    ``tasks`` limits tracking to the tasks named (names or task objects); by default every
    task of the app is tracked except Celery's own. ``title`` is a fixed title or a function
    of the task name (a canvas passes its first task's name); by default the task's name is
    used (``etl.load_rows`` shows as "Load rows") and a canvas shows its first and last
    steps. ``handoff_timeout`` bounds how long handing the stream to the next task may delay
    publishing it. Every other option goes to ``live_activity()`` (``color=``, ``tags=``,
    ``channels=``, ``show_error_message=True``...), checked here.

    Call it where the worker imports the app (the app's module), so the worker's processes
    are wired too. Calling it again adds to the earlier setup (``tasks=None`` replaces it).
    """
    # Looked up on the class: reading app.tasks would finalize the app here and now.
    if not (hasattr(type(app), "send_task") and hasattr(type(app), "tasks")):
        raise ArgumentTypeError("app", "a Celery application", app)
    entry = _task_options(title, None, options, handoff_timeout, where="track_celery()")
    with _registry.lock:
        if tasks is None:
            _registry.everything = entry
        else:
            _registry.everything = None
            for task in tasks:
                if isinstance(task, str):
                    _registry.named[task] = entry
                else:
                    _registry.pending.append((task, entry))
    _connect()


def _task_options(
    title: str | Callable[[str], str] | None,
    steps: int | Sequence[str] | None,
    options: Mapping[str, Any],
    handoff_timeout: float,
    *,
    where: str,
) -> _TaskOptions:
    if title is not None and not isinstance(title, str) and not callable(title):
        raise ArgumentTypeError("title", "a str or a function of the task name", title)
    if isinstance(handoff_timeout, bool) or not isinstance(handoff_timeout, int | float):
        raise ArgumentTypeError("handoff_timeout", "a number of seconds", handoff_timeout)
    checked = check_options({**options, "steps": steps}, where=where)
    checked.pop("steps")
    return _TaskOptions(
        title=title, steps=steps, options=checked, handoff_timeout=float(handoff_timeout)
    )


def _track_decorated(
    task: Any,
    *,
    title: str | None,
    steps: int | Sequence[str] | None,
    options: Mapping[str, Any],
) -> Any:
    """``@tracked_steps`` applied over ``@app.task``: track that task with these options.

    Returns the task object unchanged, so ``.delay()`` and the worker's registry keep
    working. An app whose tasks are still lazy (the usual case at import time) is given a
    callback for when the task is created, rather than being made to create it now.
    """
    entry = _task_options(
        title, steps, options, DEFAULT_HANDOFF_TIMEOUT, where="tracked_steps over a Celery task"
    )

    def register() -> None:
        name = getattr(task, "name", None)
        if isinstance(name, str):
            with _registry.lock:
                _registry.named[name] = entry
        _connect()

    then = getattr(type(task), "__then__", None)  # Celery's lazy task (PromiseProxy)
    if then is not None:
        then(task, register)
    elif callable(getattr(type(task), "apply_async", None)):  # an evaluated Task
        register()
    else:
        warnings.warn(
            "tracked_steps cannot see inside this lazy Celery task (a shared_task?): no "
            "activity will be shown. Call activitysmith_track.celery.track_celery(app, "
            "tasks=[...]) instead, or put @tracked_steps below the task decorator.",
            UserWarning,
            stacklevel=3,
        )
    return task


def _connect() -> None:
    """Connect the signal receivers once per process (strong references, fixed uids)."""
    with _registry.lock:
        if _registry.connected:
            return
        _registry.connected = True
    from celery import signals  # Celery is running already: this only looks it up

    receivers: list[tuple[Any, Callable[..., Any]]] = [
        (signals.before_task_publish, _on_publish),
        (signals.task_prerun, _on_prerun),
        (signals.task_retry, _on_retry),
        (signals.task_success, _on_success),
        (signals.task_failure, _on_failure),
        (signals.task_postrun, _on_postrun),
        (signals.task_revoked, _on_revoked),
        (signals.worker_process_init, _on_process_init),
    ]
    for signal, receiver in receivers:
        signal.connect(
            receiver, weak=False, dispatch_uid=f"activitysmith_track.{receiver.__name__}"
        )


# -- plans: what a canvas looks like, computed from the messages Celery publishes ------------


def _sig_name(sig: Mapping[str, Any]) -> str:
    return str(sig.get("task") or "")


def _sig_kind(sig: Mapping[str, Any]) -> str:
    kind = sig.get("subtask_type")
    if isinstance(kind, str):
        return kind
    name = _sig_name(sig)
    return name[len(_INTERNAL_PREFIX) :] if name in ("celery.group", "celery.chord") else ""


def _group_label(tasks: Sequence[Any]) -> str:
    names = [humanize(_sig_name(t)) for t in tasks if isinstance(t, Mapping)]
    if not names:
        return "Parallel tasks"
    if len(set(names)) == 1:
        return f"{names[0]} x{len(names)}"
    shown = ", ".join(names[:3])
    return shown if len(names) <= 3 else f"{shown} +{len(names) - 3}"


def _steps_of(sig: Any) -> list[tuple[str, str | None]]:
    """The steps one signature adds to a plan: ``(step name, task name or None if parallel)``."""
    if not isinstance(sig, Mapping):
        return []
    kind = _sig_kind(sig)
    kwargs = sig.get("kwargs") or {}
    if kind == "chain":
        return [step for task in kwargs.get("tasks") or () for step in _steps_of(task)]
    if kind == "group":
        return [(_group_label(kwargs.get("tasks") or ()), None)]
    if kind == "chord":
        header = kwargs.get("header") or {}
        tasks = (header.get("kwargs") or {}).get("tasks") if isinstance(header, Mapping) else ()
        return [(_group_label(tasks or ()), None), *_steps_of(kwargs.get("body"))]
    name = _sig_name(sig)
    return [(humanize(name), name)]


def _embed(body: Any) -> Mapping[str, Any]:
    # Message protocol 2: body = (args, kwargs, embed).
    if isinstance(body, list | tuple) and len(body) == 3 and isinstance(body[2], Mapping):
        return body[2]
    return {}


def _remaining(embed: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """The steps still to come after this message's task: its chord body, then its chain."""
    steps = _steps_of(embed["chord"]) if embed.get("chord") else []
    chain = embed.get("chain") or ()
    for sig in reversed(list(chain)):  # Celery keeps the chain reversed: next link last
        steps.extend(_steps_of(sig))
    return steps


def _title(entry: _TaskOptions | None, first_task: str, steps: Sequence[str]) -> str:
    title = entry.title if entry is not None else None
    if isinstance(title, str):
        return title
    if callable(title):
        return str(title(first_task))
    if len(steps) <= 3:
        return " → ".join(steps)
    return f"{steps[0]} → … → {steps[-1]}"


def _new_plan(name: str, headers: Mapping[str, Any], embed: Mapping[str, Any]) -> _Plan | None:
    """The plan of a canvas whose first message this is (published outside any plan)."""
    remaining = _remaining(embed)
    header_member = bool(embed.get("chord"))
    first = ("Parallel tasks", None) if header_member else (humanize(name), name)
    steps = [first, *remaining]
    # A trailing group has no task that runs after all its members, so nothing could end
    # the activity at the right moment: its members are shown on their own instead.
    while len(steps) > 1 and steps[-1][1] is None:
        steps.pop()
    if len(steps) < 2:
        return None
    # The canvas is shown with the options (and title) of its first task that runs alone.
    root = next((t for _, t in steps if t is not None), name)
    entry = _registry.options_for(root)
    if entry is None:
        return None
    # Header members of a chord started on its own have distinct root ids; the group id is
    # what they share.
    ident = headers.get("group") if header_member else headers.get("root_id")
    ident = ident or headers.get("id")
    names = [s for s, _ in steps]
    return _Plan(
        key=stream_key_from(f"celery-{ident}"),
        title=_title(entry, root, names),
        steps=tuple(names),
        tasks=tuple(t for _, t in steps),
        index=0,
        root=root,
        started=time.time(),
    )


def _next_in_plan(plan: _Plan, name: str, embed: Mapping[str, Any]) -> _Plan | None:
    """The plan as a message published during a planned task sees it, if it belongs to it.

    Its place is counted from the end: the steps still to come after it are in its own
    message. A task that does not fit (one the task started itself) is not in the plan.
    """
    index = len(plan.steps) - len(_remaining(embed)) - 1
    if not 0 <= index < len(plan.steps):
        return None
    expected = plan.tasks[index]
    if expected is not None and expected != name:
        return None
    return attrs.evolve(plan, index=index)


# -- the signal receivers ------------------------------------------------------------------


@quietly
def _on_publish(
    sender: Any = None,
    headers: dict[str, Any] | None = None,
    body: Any = None,
    **_: Any,
) -> None:
    if headers is None or not isinstance(sender, str):
        return
    embed = _embed(body)
    running = _current.get()
    if running is not None and headers.get("id") == running.task_id:
        # The running task is published again: a retry (or a replacement, which keeps the
        # id). Hand the stream on now, before the next attempt can start anywhere.
        if running.plan is not None:
            headers[HEADER] = running.plan.header()
        headers[STARTED_HEADER] = running.started
        retries = headers.get("retries")
        if isinstance(retries, int) and retries > running.retries:
            show = show_errors(_entry_for(running).options.get("show_error_message"))
            text = retry_text(retries, running.max_retries, sys.exc_info()[1], show_message=show)
            _hand_on(running, subtitle=text)
        else:
            _hand_on(running)
        return
    if running is not None and running.plan is not None:
        plan = _next_in_plan(running.plan, sender, embed)
        if plan is not None:
            headers[HEADER] = plan.header()
            if plan.index != running.plan.index:
                _hand_on(running)  # the next step starts elsewhere: hand over first
            return
    if embed.get("chain") or embed.get("chord"):
        plan = _new_plan(sender, headers, embed)
        if plan is not None:
            headers[HEADER] = plan.header()


def _entry_for(running: _Running) -> _TaskOptions:
    name = running.plan.root if running.plan is not None else running.task_name
    return _registry.options_for(name) or _registry.options_for(running.task_name) or _DEFAULT


_DEFAULT = _TaskOptions(title=None, steps=None, options={}, handoff_timeout=DEFAULT_HANDOFF_TIMEOUT)


def _hand_on(running: _Running, **fields: Any) -> None:
    """Hand the stream on and wait (briefly) until the server has it."""
    activity = running.activity
    if activity.ended:
        return
    activity.hand_on(**fields)
    activity.flush(_entry_for(running).handoff_timeout)


def _open(task: Any, task_id: str, request: Any) -> LiveActivity | None:
    """The activity for this attempt of ``task``, or None when it is not tracked."""
    name = str(getattr(task, "name", "") or "")
    plan = _Plan.from_header(_request_get(request, HEADER))
    entry = _registry.options_for(plan.root if plan is not None else name)
    if entry is None:
        if plan is None:
            return None
        entry = _DEFAULT  # a planned task that is not tracked itself still moves its canvas
    options = dict(entry.options)
    options["show_error_message"] = show_errors(options.get("show_error_message"))
    retries = int(_request_get(request, "retries") or 0)
    max_retries = getattr(task, "max_retries", None)
    if plan is not None:
        activity = live_activity(
            plan.title,
            stream_key=plan.key,
            steps=list(plan.steps),
            step=plan.index + 1,
            **options,
        )
        subtitle = plan.steps[plan.index]
        if plan.parallel:
            subtitle = humanize(name)  # which of the parallel tasks this one is
        if retries:
            subtitle = f"{subtitle} · {_attempt_text(retries, max_retries)}"
        if subtitle != plan.steps[plan.index]:
            activity.update(subtitle=subtitle)
        # The last step ends the activity; every other step hands it on when it is done.
    else:
        title = _title(entry, name, [humanize(name)])
        if retries and "subtitle" not in options:
            options["subtitle"] = _attempt_text(retries, max_retries).capitalize()
        activity = live_activity(
            title,
            stream_key=stream_key_from(f"celery-{task_id}"),
            steps=entry.steps,
            **options,
        )
    started = _request_get(request, STARTED_HEADER)
    running = _Running(
        activity=activity,
        plan=plan,
        task_id=task_id,
        task_name=name,
        retries=retries,
        max_retries=max_retries if isinstance(max_retries, int) else None,
        started=(
            plan.started
            if plan is not None
            else float(started)
            if isinstance(started, int | float)
            else time.time()
        ),
    )
    activity.__enter__()  # started, and current for the task's own code
    if plan is not None and plan.parallel:
        # Parallel members all show the same step; their first state must be in before the
        # step after them can start (it waits for all of them anyway).
        activity.flush(entry.handoff_timeout)
    running.token = _current.set(running)
    with _running_lock:
        _running[task_id] = running
    return activity


def _attempt_text(retries: int, max_retries: object) -> str:
    return f"retry {retries}/{max_retries}" if isinstance(max_retries, int) else f"retry {retries}"


def _request_get(request: Any, name: str) -> Any:
    getter = getattr(request, "get", None)
    if callable(getter):
        return getter(name)
    return getattr(request, name, None)


@quietly
def _on_prerun(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    _open(task, task_id, getattr(task, "request", None))


def _find(task_id: str | None) -> _Running | None:
    if task_id is None:
        return None
    with _running_lock:
        return _running.get(task_id)


@quietly
def _on_retry(request: Any = None, reason: Any = None, **_: Any) -> None:
    running = _find(getattr(request, "id", None))
    if running is None or running.activity.ended:
        return  # handed on already, when the retry was published
    exc = getattr(reason, "exc", None)
    show = show_errors(_entry_for(running).options.get("show_error_message"))
    retries = running.retries + 1
    running.activity.hand_on(
        subtitle=retry_text(retries, running.max_retries, exc, show_message=show)
    )


@quietly
def _on_success(sender: Any = None, **_: Any) -> None:
    request = getattr(sender, "request", None)
    running = _find(getattr(request, "id", None))
    if running is None or running.activity.ended:
        return
    if running.plan is not None and not running.plan.last:
        running.activity.hand_on()
    else:
        _end(running)


def _end(running: _Running) -> None:
    """Success: the whole run's time, not just this attempt's, in the subtitle."""
    options = _entry_for(running).options
    running.activity.end(**done_fields(options, running.started, time.time()))


def _fail(activity: LiveActivity, exc: BaseException | None, entry: _TaskOptions) -> None:
    show = show_errors(entry.options.get("show_error_message"))
    activity.fail(error_text(exc, show_message=show))


@quietly
def _on_failure(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    running = _find(task_id)
    exc = exception if isinstance(exception, BaseException) else None
    if running is not None:
        if not running.activity.ended:
            _fail(running.activity, exc, _entry_for(running))
        return
    # Sent by the worker's main process when the process running the task was lost (killed,
    # out of memory, hard time limit): nothing ended the activity, so end it from here.
    _end_from_outside(sender, task_id, getattr(sender, "request", None), exc=exc, cancel=False)


@quietly
def _on_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    task_id = getattr(request, "id", None) or getattr(request, "task_id", None)
    if _find(task_id) is not None:
        return
    plan = _Plan.from_header(_request_get(request, HEADER))
    if not terminated and plan is None:
        return  # a task revoked before it ran has no activity of its own to end
    _end_from_outside(sender, task_id, request, exc=None, cancel=True)


# Tasks this (main worker) process ended for a lost child: a terminated task is reported
# both as revoked and as failed, and a second end would start a new activity.
_ended_outside: collections.deque[str] = collections.deque(maxlen=1024)


def _end_from_outside(
    task: Any, task_id: str | None, request: Any, *, exc: BaseException | None, cancel: bool
) -> None:
    if task is None or task_id is None or request is None:
        return
    with _running_lock:
        if task_id in _ended_outside:
            return
        _ended_outside.append(task_id)
    activity = _open(task, task_id, request)
    if activity is None:
        return
    running = _find(task_id)
    try:
        if cancel:
            activity.cancel()
        else:
            entry = _entry_for(running) if running is not None else _DEFAULT
            _fail(activity, exc, entry)
    finally:
        _close(task_id, activity)


def _close(task_id: str, activity: LiveActivity) -> None:
    with _running_lock:
        running = _running.pop(task_id, None)
    if running is not None and running.token is not None:
        try:
            _current.reset(running.token)
        except ValueError:  # reset from another context than it was set in
            _current.set(None)
    activity.__exit__(None, None, None)  # ended already: waits (bounded) for delivery


@quietly
def _on_postrun(task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    running = _find(task_id)
    if running is None or task_id is None:
        return
    activity = running.activity
    if not activity.ended:
        # No outcome signal reached us (Ignore, Reject, a signal receiver that failed, or the
        # task was interrupted by SystemExit or a terminating signal: no state then).
        if state in ("RETRY", "IGNORED"):
            activity.hand_on()  # retried, or replaced by another task with the same id
        elif state == "REJECTED":
            activity.cancel("rejected")
        elif state == "FAILURE":
            _fail(activity, None, _entry_for(running))
        elif state == "SUCCESS":
            if running.plan is not None and not running.plan.last:
                activity.hand_on()
            else:
                _end(running)
        elif _in_pool_child:
            # The pool process is going down; the worker's main process reports why (revoked,
            # lost) and ends the activity: ending it here too would split it in two.
            activity.hand_on()
        else:
            activity.cancel()
    _close(task_id, activity)


_in_pool_child = False


def _on_process_init(**_: Any) -> None:
    global _in_pool_child
    _in_pool_child = True
