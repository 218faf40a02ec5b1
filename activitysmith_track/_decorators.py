"""``tracked_steps``: run a function, or a pipeline of step functions, as a Live Activity.

Every call of a decorated function gets its own activity: nothing about a run is kept on the
decorator, so the same function running in several threads at once shows several
activities. Built with wrapt, so names, docstrings, signatures and ``inspect`` answers are
the wrapped function's own.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

import wrapt

from activitysmith_track._activity import LiveActivity, _current, prepare
from activitysmith_track._checks import check_text
from activitysmith_track._errors import ArgumentTypeError, ValidationError
from activitysmith_track._model import ActivityType

__all__ = ["TrackedSteps", "tracked_steps"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class _Run:
    """One run of a pipeline: its activity and the step function that began last."""

    __slots__ = ("activity", "last_step", "pipeline")

    def __init__(self, pipeline: TrackedSteps, activity: LiveActivity) -> None:
        self.pipeline = pipeline
        self.activity = activity
        self.last_step: object = None


# The pipeline runs of this context (thread or asyncio task), innermost last.
_runs: contextvars.ContextVar[tuple[_Run, ...]] = contextvars.ContextVar(
    "activitysmith_track_runs", default=()
)


def _is_celery_task(obj: object) -> bool:
    """A Celery task object or Celery's lazy proxy of one, told apart without importing Celery.

    ``type()`` rather than ``__class__``: Celery's proxies forward ``__class__`` to the task,
    which would create it.
    """
    kind = type(obj)
    if kind.__module__ == "celery.local":
        return True
    return any(c.__module__ == "celery.app.task" and c.__name__ == "Task" for c in kind.__mro__)


def _title_from(func: object) -> str:
    name = getattr(func, "__name__", None) or "job"
    text = name.replace("_", " ").strip() or name
    return text[:1].upper() + text[1:]


def _target(func: object) -> object:
    # classmethod and staticmethod objects hide the function that says async or generator.
    return getattr(func, "__func__", func)


def _check_title(title: object) -> str | None:
    if title is None:
        return None
    check_text("title", title)
    assert isinstance(title, str)
    if not title.strip():
        raise ValidationError("title", "must not be empty", title)
    return title


class _StepDecorator(Protocol):
    """What ``pipeline.step("a name")`` returns: a decorator that keeps the function's type."""

    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...

    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...


class _PipelineRun:
    """The ``with`` block of one run: the activity's block plus the run's registration."""

    def __init__(self, pipeline: TrackedSteps, activity: LiveActivity) -> None:
        self._run = _Run(pipeline, activity)
        self._token: contextvars.Token[tuple[_Run, ...]] | None = None

    def __enter__(self) -> LiveActivity:
        activity = self._run.activity.__enter__()
        self._token = _runs.set((*_runs.get(), self._run))
        return activity

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave()
        self._run.activity.__exit__(exc_type, exc, tb)

    async def __aenter__(self) -> LiveActivity:
        activity = await self._run.activity.__aenter__()
        self._token = _runs.set((*_runs.get(), self._run))
        return activity

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._leave()
        await self._run.activity.__aexit__(exc_type, exc, tb)

    def _leave(self) -> None:
        token, self._token = self._token, None
        if token is not None:
            try:
                _runs.reset(token)
            except ValueError:  # left in another context than it entered: drop it by identity
                _runs.set(tuple(r for r in _runs.get() if r is not self._run))


class TrackedSteps:
    """A decorator that runs each call of a function inside ``live_activity()``, and a pipeline.

    Made by :func:`tracked_steps`. Functions registered with :meth:`step` are the pipeline's
    steps: their number is the activity's ``number_of_steps`` and calling one during a run
    begins its step. Only options live on this object; each run's state lives in the run.
    """

    def __init__(
        self,
        title: str | None = None,
        *,
        steps: int | Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        self._title = _check_title(title)
        self._steps = steps
        self._options = options
        self._step_names: list[str] = []
        # Check steps and options now, at the decorator, exactly as each call will, but without
        # the environment: importing a module never fails because of how the process is set up.
        prepare(self._title or "Check", env={}, steps=steps, **options)

    def __repr__(self) -> str:
        return f"<TrackedSteps {self._title!r} steps={self.step_names or self._steps!r}>"

    @property
    def title(self) -> str | None:
        """The title given, or ``None`` when each function's name is used."""
        return self._title

    @property
    def step_names(self) -> list[str]:
        """The names of the registered step functions, in registration order."""
        return list(self._step_names)

    def activity(self, title: str | None = None) -> _PipelineRun:
        """A block that runs this pipeline once: ``with pipeline.activity() as la: ...``.

        For pipelines driven by a script rather than a decorated function; works with
        ``with`` and ``async with``. ``title`` overrides the pipeline's title for this run.
        """
        title = _check_title(title) or self._title
        if title is None:
            raise ValidationError(
                "title", "is needed: tracked_steps('My pipeline') or activity('My pipeline')"
            )
        return _PipelineRun(self, self._new_activity(title))

    def _new_activity(self, title: str) -> LiveActivity:
        steps: int | Sequence[str] | None = self._steps
        if steps is None and self._step_names:
            # A count, not the names: each step function shows its own name when it begins,
            # so the name stays right even when steps run in another order than registered.
            steps = len(self._step_names)
        return prepare(title, steps=steps, **self._options)

    # -- the step functions of a pipeline ------------------------------------------------

    @overload
    def step(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...

    @overload
    def step(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...

    @overload
    def step(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    @overload
    def step(self, name: str, /) -> _StepDecorator: ...

    def step(self, arg: Any, /) -> Any:
        """Register a step function: ``@pipeline.step`` or ``@pipeline.step("Load rows")``.

        The name defaults to the function's name (``load_rows`` shows as "Load rows").
        Calling the function during a run of this pipeline begins its step, named so on the
        lock screen; calling the step that is already current again (a loop over batches)
        does not advance. Outside a run, the function simply runs.
        """
        if isinstance(arg, str):
            name = arg
            if not name.strip():
                raise ValidationError("step", "name must not be empty", name)
            return cast(_StepDecorator, lambda func: self._register(func, name))
        if not callable(arg) and not isinstance(arg, classmethod | staticmethod):
            raise ArgumentTypeError("step", "a function or a step name", arg)
        return self._register(arg, None)

    def _register(self, func: Any, name: str | None) -> Any:
        if not callable(func) and not isinstance(func, classmethod | staticmethod):
            raise ArgumentTypeError("step", "a function", func)
        step_name = name or _title_from(_target(func))
        self._step_names.append(step_name)
        pipeline = self
        marker = object()  # this step, to tell a repeated call from the next step

        def begin() -> None:
            for run in reversed(_runs.get()):
                if run.pipeline is pipeline:
                    activity = run.activity
                    # Tracking must never break the job: once the activity ended (the
                    # function called end() itself), steps are no longer shown.
                    if run.last_step is not marker and not activity.ended:
                        run.last_step = marker
                        activity.step(step_name)
                    return

        if inspect.iscoroutinefunction(_target(func)):

            @wrapt.decorator
            async def async_step(
                wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> Any:
                begin()
                return await wrapped(*args, **kwargs)

            return async_step(func)

        @wrapt.decorator
        def sync_step(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            begin()
            return wrapped(*args, **kwargs)

        return sync_step(func)

    # -- decorating a function -----------------------------------------------------------

    @overload
    def __call__(self, func: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...

    @overload
    def __call__(self, func: staticmethod[P, R], /) -> staticmethod[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Callable[P, R]: ...

    def __call__(self, func: Any, /) -> Any:
        """Decorate ``func``: each call runs inside its own activity."""
        if _is_celery_task(func):
            # Above @app.task the object is a Celery task, not the function: wrapping it would
            # leave .delay() and the worker's run untracked. The Celery integration tracks it
            # instead, through Celery's signals, and the task object is returned unchanged.
            from activitysmith_track.celery import _track_decorated

            return _track_decorated(
                func, title=self._title, steps=self._steps, options=self._options
            )
        if not callable(func) and not isinstance(func, classmethod | staticmethod):
            raise ArgumentTypeError("func", "a function", func)
        target = _target(func)
        title = self._title or _title_from(target)
        # wrapt's documented way for async code: choose an async wrapper at decoration time.
        if inspect.isasyncgenfunction(target):
            wrapper = self._async_generator_wrapper(title)
        elif inspect.iscoroutinefunction(target):
            wrapper = self._async_wrapper(title)
        elif inspect.isgeneratorfunction(target):
            wrapper = self._generator_wrapper(title)
        else:
            wrapper = self._sync_wrapper(title)
        return wrapt.decorator(wrapper)(func)

    def _sync_wrapper(self, title: str) -> Callable[..., Any]:
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            with _PipelineRun(self, self._new_activity(title)):
                return wrapped(*args, **kwargs)

        return wrapper

    def _async_wrapper(self, title: str) -> Callable[..., Any]:
        async def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            async with _PipelineRun(self, self._new_activity(title)):
                return await wrapped(*args, **kwargs)

        return wrapper

    def _generator_wrapper(self, title: str) -> Callable[..., Any]:
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Generator[Any, Any, Any]:
            activity = self._new_activity(title)
            return _drive_generator(_Run(self, activity), wrapped(*args, **kwargs))

        return wrapper

    def _async_generator_wrapper(self, title: str) -> Callable[..., Any]:
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> AsyncGenerator[Any, Any]:
            activity = self._new_activity(title)
            return _drive_async_generator(_Run(self, activity), wrapped(*args, **kwargs))

        return wrapper


# -- generator functions: each yield completes a step ----------------------------------------
#
# The activity starts when the generator first runs, not when it is created. It is the
# current activity (and its pipeline run is active) only while the generator's own code runs,
# never in the consumer's code between yields. Closing the generator early ends the activity
# as cancelled; an exception thrown in is passed on to the generator.


def _drive_generator(run: _Run, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    activity = run.activity
    activity.start()
    # The generator's own code runs in a context of its own, where this activity (and its
    # pipeline run) is current; one ctx.run per resume is cheaper than setting and resetting
    # two context variables around each one.
    context = contextvars.copy_context()
    context.run(_enter, activity, run)
    resume = context.run
    send, throw = gen.send, gen.throw
    lane = activity._lane
    stepping = lane.state.kind is ActivityType.SEGMENTED_PROGRESS
    planned = lane.state.planned_steps
    # An open-ended generator counts its items (what advance() does) in a count cell of its
    # own: a generator never runs twice at once, whatever thread resumes it, so the cell
    # needs no lock and no lookup of the thread per item.
    cell = None if stepping else lane.tally.private()
    yielded = 0
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            if stepping and not activity._ended and lane.position[0] <= yielded < planned:
                activity.step()  # begin the next planned step
            try:
                item = resume(send, sent) if thrown is None else resume(throw, thrown)
            except StopIteration as stop:
                result = stop.value
                break
            yielded += 1
            if not activity._ended:  # the generator may have ended it itself
                if cell is not None:
                    if lane.base is None:
                        activity._begin_counting()
                    cell.n += 1
                    if not lane.dirty:
                        lane.touch()
                elif lane.position[0] < yielded:
                    activity.step()  # more yields than planned grow the count
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                thrown = exc
    except BaseException as exc:
        activity._finish_from(exc)
        raise
    activity._finish_from(None)
    return result


def _enter(activity: LiveActivity, run: _Run) -> None:
    _current.set(activity)
    _runs.set((*_runs.get(), run))


def _reach_step(activity: LiveActivity, step: int, *, grow: bool) -> None:
    """Advance to ``step`` unless already there; past the planned count only when ``grow``.

    On an activity without steps, each yield (``grow``) counts one item done instead.
    """
    if activity.ended:  # the generator ended it itself; leave it as it is
        return
    lane = activity._lane
    if lane.state.kind is not ActivityType.SEGMENTED_PROGRESS:
        if grow:
            activity.advance()
        return
    current, planned = lane.position[0], lane.state.planned_steps
    if not grow and step > planned:
        return
    for _ in range(step - current):
        activity.step()


async def _drive_async_generator(
    run: _Run, agen: AsyncGenerator[Any, Any]
) -> AsyncGenerator[Any, Any]:
    activity = run.activity
    activity.start()
    yielded = 0
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            _reach_step(activity, yielded + 1, grow=False)
            token = _current.set(activity)
            run_token = _runs.set((*_runs.get(), run))
            try:
                if thrown is None:
                    item = await agen.asend(sent)
                else:
                    item = await agen.athrow(thrown)
            except StopAsyncIteration:
                break
            finally:
                _runs.reset(run_token)
                _current.reset(token)
            yielded += 1
            _reach_step(activity, yielded, grow=True)
            sent, thrown = None, None
            try:
                sent = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as exc:
                thrown = exc
    except BaseException as exc:
        await activity._afinish_from(exc)
        raise
    await activity._afinish_from(None)


# -- the public entry point ----------------------------------------------------------------


@overload
def tracked_steps(title: classmethod[T, P, R], /) -> classmethod[T, P, R]: ...


@overload
def tracked_steps(title: staticmethod[P, R], /) -> staticmethod[P, R]: ...


@overload
def tracked_steps(title: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tracked_steps(
    title: str | None = None, *, steps: int | Sequence[str] | None = None, **options: Any
) -> TrackedSteps: ...


def tracked_steps(
    title: Any = None, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Any:
    """Run each call of the decorated function as its own Live Activity.

    ``title`` defaults to the function's name (``nightly_etl`` shows as "Nightly etl");
    ``steps`` is a count or a list of step names, as for ``live_activity()``, and so are the
    other ``options``. Inside, ``current_activity()`` returns the call's activity::

        @tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])
        def nightly_etl():
            la = current_activity()
            la.step()  # begins "extract"
            ...

    Works on functions, methods, classmethods, staticmethods and async functions; in
    generator functions (sync or async) each ``yield`` completes a step. Without ``steps``,
    the activity is a timer (a generator's step count grows with each yield instead).

    Without a function, the result is also a pipeline whose steps are functions::

        pipeline = tracked_steps("Nightly ETL")

        @pipeline.step
        def extract(): ...

        @pipeline.step("Load rows")
        def load(rows): ...

        @pipeline  # or: with pipeline.activity(): ...
        def nightly_etl():
            load(extract())

    Return values and exceptions pass through unchanged; the activity ends in the success,
    failure (naming the step and the exception type) or cancelled look.
    """
    if callable(title) or isinstance(title, classmethod | staticmethod):
        if steps is not None or options:
            raise ArgumentTypeError(
                "title",
                "a str: pass the function to the decorator tracked_steps(...) returns",
                title,
            )
        return TrackedSteps()(title)
    return TrackedSteps(title, steps=steps, **options)
