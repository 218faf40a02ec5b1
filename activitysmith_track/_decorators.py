"""``tracked_steps``: run a function, or a pipeline of step functions, as a Live Activity.

Every call of a decorated function gets its own activity (no per-run state lives on the
decorator), so the same function running in several threads at once shows several
activities. Built with wrapt, so names, docstrings, signatures and ``inspect`` answers are
the wrapped function's own.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from typing import Any, TypeVar, cast, overload

import wrapt

from activitysmith_track._activity import LiveActivity, _current, live_activity
from activitysmith_track._errors import ArgumentTypeError, ValidationError

__all__ = ["TrackedSteps", "tracked_steps"]

F = TypeVar("F", bound=Callable[..., Any])

# The pipelines running in this context, innermost last, with their activities.
_runs: contextvars.ContextVar[tuple[tuple[TrackedSteps, LiveActivity], ...]] = (
    contextvars.ContextVar("activitysmith_track_runs", default=())
)


def _title_from(func: Callable[..., Any]) -> str:
    name = getattr(func, "__name__", None) or "job"
    text = name.replace("_", " ").strip() or name
    return text[:1].upper() + text[1:]


def _target(func: Any) -> Any:
    # classmethod and staticmethod objects hide the function that says async or generator.
    return getattr(func, "__func__", func)


class TrackedSteps:
    """A decorator that runs each call of a function inside ``live_activity()``.

    Also a pipeline: functions registered with :meth:`step` are the steps, and calling one
    while a run of this pipeline is active begins that step. See :func:`tracked_steps`.
    """

    def __init__(
        self,
        title: str | None,
        *,
        steps: int | Sequence[str] | None,
        options: dict[str, Any],
    ) -> None:
        if title is not None and not isinstance(title, str):
            raise ArgumentTypeError("title", "a str", title)
        self._title = title
        self._steps = steps
        self._options = options
        self._step_names: list[str] = []
        # Validate the options now, at the decorator, not at the first call.
        live_activity(title or "check", steps=steps, **options)

    @property
    def step_names(self) -> list[str]:
        """The names of the registered step functions, in registration order."""
        return list(self._step_names)

    def activity(self, title: str | None = None) -> LiveActivity:
        """A fresh activity for one run of this pipeline: ``with pipeline.activity():``."""
        return self._activity(title or self._title or "Pipeline")

    def _activity(self, title: str) -> LiveActivity:
        steps: int | Sequence[str] | None = self._steps
        if steps is None and self._step_names:
            steps = list(self._step_names)
        la = live_activity(title, steps=steps, **self._options)
        la._owner = self
        return la

    # -- the step functions of a pipeline ------------------------------------------------

    @overload
    def step(self, func: F, /) -> F: ...

    @overload
    def step(self, name: str, /) -> Callable[[F], F]: ...

    def step(self, arg: Any, /) -> Any:
        """Register a step function (``@pipeline.step`` or ``@pipeline.step("Load rows")``).

        Each call of the function inside a run of the pipeline begins its step; outside a
        run, the function simply runs.
        """
        if isinstance(arg, str):
            return functools.partial(self._register, name=arg)
        if not callable(arg):
            raise ArgumentTypeError("step", "a function or a step name", arg)
        return self._register(arg, name=None)

    def _register(self, func: F, *, name: str | None) -> F:
        step_name = name or _title_from(_target(func))
        self._step_names.append(step_name)
        pipeline = self

        def begin() -> None:
            for owner, la in reversed(_runs.get()):
                if owner is pipeline:
                    la.step(step_name)
                    return

        target = _target(func)
        if inspect.iscoroutinefunction(target):

            @wrapt.decorator
            async def async_step(
                wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
            ) -> Any:
                begin()
                return await wrapped(*args, **kwargs)

            return cast(F, async_step(func))

        @wrapt.decorator
        def sync_step(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            begin()
            return wrapped(*args, **kwargs)

        return cast(F, sync_step(func))

    # -- decorating a function -----------------------------------------------------------

    def __call__(self, func: F) -> F:
        if not callable(func) and not isinstance(func, classmethod | staticmethod):
            raise ArgumentTypeError("func", "a function", func)
        title = self._title or _title_from(_target(func))
        target = _target(func)
        if inspect.isasyncgenfunction(target):
            wrapper = self._async_generator_wrapper(title)
        elif inspect.iscoroutinefunction(target):
            wrapper = self._async_wrapper(title)
        elif inspect.isgeneratorfunction(target):
            wrapper = self._generator_wrapper(title)
        else:
            wrapper = self._sync_wrapper(title)
        return cast(F, wrapt.decorator(wrapper)(func))

    def _enter_run(self, la: LiveActivity) -> contextvars.Token[Any]:
        return _runs.set((*_runs.get(), (self, la)))

    def _sync_wrapper(self, title: str) -> Callable[..., Any]:
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            la = self._activity(title)
            with la:
                token = self._enter_run(la)
                try:
                    return wrapped(*args, **kwargs)
                finally:
                    _runs.reset(token)

        return wrapper

    def _async_wrapper(self, title: str) -> Callable[..., Any]:
        async def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Any:
            la = self._activity(title)
            async with la:
                token = self._enter_run(la)
                try:
                    return await wrapped(*args, **kwargs)
                finally:
                    _runs.reset(token)

        return wrapper

    def _generator_wrapper(self, title: str) -> Callable[..., Any]:
        # Each yield completes a step: a step begins whenever the generator resumes work,
        # and the activity and current_activity() are only set while the generator runs.
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> Generator[Any, Any, Any]:
            la = self._activity(title)
            gen = wrapped(*args, **kwargs)
            return _drive_generator(la, gen, self)

        return wrapper

    def _async_generator_wrapper(self, title: str) -> Callable[..., Any]:
        def wrapper(
            wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> AsyncGenerator[Any, Any]:
            la = self._activity(title)
            agen = wrapped(*args, **kwargs)
            return _drive_async_generator(la, agen, self)

        return wrapper


def _planned_steps(la: LiveActivity) -> int:
    return int(la._state.fields.get("number_of_steps") or 0)


def _drive_generator(
    la: LiveActivity, gen: Generator[Any, Any, Any], owner: TrackedSteps
) -> Generator[Any, Any, Any]:
    la.start()
    yielded = 0
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            if yielded < max(_planned_steps(la), 1):
                la.step()
            token = _current.set(la)
            run_token = owner._enter_run(la)
            try:
                item = gen.send(value) if error is None else gen.throw(error)
            except StopIteration as stop:
                la._finish_from(None)
                return stop.value
            finally:
                _runs.reset(run_token)
                _current.reset(token)
            yielded += 1
            if yielded > _planned_steps(la):
                la.set_steps(yielded)
            error = None
            try:
                value = yield item
            except GeneratorExit:
                gen.close()
                raise
            except BaseException as exc:  # thrown in by the consumer: pass it on
                error = exc
    except BaseException as exc:
        la._finish_from(exc)
        raise


async def _drive_async_generator(
    la: LiveActivity, agen: AsyncGenerator[Any, Any], owner: TrackedSteps
) -> AsyncGenerator[Any, Any]:
    la.start()
    yielded = 0
    value: Any = None
    error: BaseException | None = None
    try:
        while True:
            if yielded < max(_planned_steps(la), 1):
                la.step()
            token = _current.set(la)
            run_token = owner._enter_run(la)
            try:
                item = await (agen.asend(value) if error is None else agen.athrow(error))
            except StopAsyncIteration:
                await la._afinish_from(None)
                return
            finally:
                _runs.reset(run_token)
                _current.reset(token)
            yielded += 1
            if yielded > _planned_steps(la):
                la.set_steps(yielded)
            error = None
            try:
                value = yield item
            except GeneratorExit:
                await agen.aclose()
                raise
            except BaseException as exc:
                error = exc
    except BaseException as exc:
        await la._afinish_from(exc)
        raise


@overload
def tracked_steps(title: F, /) -> F: ...


@overload
def tracked_steps(
    title: str | None = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> TrackedSteps: ...


def tracked_steps(
    title: Any = None, /, *, steps: int | Sequence[str] | None = None, **options: Any
) -> Any:
    """Run each call of the decorated function as a Live Activity.

    ``@tracked_steps("Nightly ETL", steps=["extract", "transform", "load"])``; without a
    title the function's name is used. ``options`` are those of ``live_activity()``. Inside,
    ``current_activity()`` returns the call's activity. Generator functions complete a step
    at each ``yield``. As a pipeline::

        pipeline = tracked_steps("Nightly ETL")

        @pipeline.step
        def extract(): ...

        @pipeline              # one activity per call; each step function begins its step
        def main(): ...
    """
    if callable(title) and not isinstance(title, str):
        return TrackedSteps(None, steps=steps, options=options)(title)
    if "title" in options:
        raise ValidationError("title", "is given positionally: tracked_steps('My job', ...)")
    return TrackedSteps(title, steps=steps, options=options)
