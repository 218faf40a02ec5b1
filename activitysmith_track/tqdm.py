"""A tqdm progress bar that is also a Live Activity: move a loop to the lock screen with one import.

::

    from activitysmith_track.tqdm import tqdm, trange   # instead of: from tqdm import tqdm, trange

    for photo in tqdm(photos, desc="Resize photos"):
        resize(photo)

The terminal shows exactly what tqdm shows (the class is a subclass of ``tqdm.tqdm`` and
draws through tqdm's own code). The phone shows a card titled by ``desc``: a progress bar
from ``n`` of ``total``, or the count so far when there is no total. The end of the
iteration or ``close()`` ends it as done, a ``with`` block that raises ends it as failed,
and a loop left early (``break``, then the bar closed or collected) ends it as stopped.

The bar talks to the Live Activity only where tqdm itself redraws (``refresh()``, at most
every ``mininterval`` seconds) and when it closes, through the public handle
(``la.progress()``, ``la.update()``, ``la.end()``...): the loop pays nothing per item beyond
tqdm's own cost, and the requests go out in the background with the handle's guarantees.

Options of its own, next to tqdm's:

- ``live``: ``None`` (the default) mirrors the bar only when it is the outermost one (tqdm's
  position 0, so nested inner bars stay on the terminal) and no Live Activity is current
  (inside ``with live_activity(...)`` or ``@tracked_steps`` the bar is a detail of that
  job); ``True`` mirrors it in any case, ``False`` never.
- ``activity``: keyword arguments for :func:`~activitysmith_track.live_activity`, such as
  ``{"stream_key": "nightly-photos", "tags": ["nightly"], "title": "Photos"}``. The bar
  decides the type and the progress, so ``steps``, ``total``, ``type`` and the progress
  fields are refused.

tqdm is an optional dependency (``pip install 'activitysmith-track[tqdm]'``); only this
module imports it.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any

import attrs
from tqdm.asyncio import tqdm_asyncio as _tqdm_asyncio
from tqdm.std import tqdm as _std_tqdm

from activitysmith_track._activity import LiveActivity, current_activity, live_activity
from activitysmith_track._config import resolve_settings
from activitysmith_track._errors import ArgumentTypeError, ValidationError
from activitysmith_track._render import SUBTITLE_LIMIT
from activitysmith_track._render import describe_error as _describe_error
from activitysmith_track._render import trim as _trim

__all__ = ["tqdm", "trange"]

logger = logging.getLogger("activitysmith_track")

# What ``activity={...}`` may hold: everything of live_activity() except what the bar itself
# decides (the type, and the progress the phone shows).
ACTIVITY_OPTIONS = frozenset(
    {
        "title",
        "subtitle",
        "color",
        "icon",
        "badge",
        "action",
        "secondary_action",
        "channels",
        "tags",
        "metadata",
        "auto_dismiss_minutes",
        "auto_dismiss_seconds",
        "stream_key",
        "on_success",
        "on_failure",
        "on_cancel",
        "show_error_message",
        "strict",
        "flush_timeout",
        "api_key",
        "base_url",
        "preview",
        "settings",
    }
)

_DEFAULT_UNIT = "it"  # tqdm's default unit: shown on the phone as "done" or "items"


# -- what the bar shows, as plain values (pure functions, tested without a bar) ---------------


@attrs.frozen(kw_only=True)
class Reading:
    """What a bar shows at one moment, as the phone should show it.

    Read from the bar's public attributes where it redraws. A rate-based ETA would be
    computed from successive readings (or from tqdm's smoothed ``format_dict["rate"]``); it
    plugs in where :meth:`_Mirror.show` hands a reading to the Live Activity.
    """

    n: float
    total: float | None
    desc: str
    unit: str = _DEFAULT_UNIT
    unit_scale: bool | float = False
    unit_divisor: float = 1000

    @classmethod
    def of(cls, bar: Any) -> Reading:
        total = bar.total
        if not isinstance(total, int | float) or isinstance(total, bool) or not total > 0:
            total = None  # unknown, infinite (tqdm stores None), zero or not a number
        n = bar.n if isinstance(bar.n, int | float) else 0
        return cls(
            n=n,
            total=total,
            desc=bar.desc if isinstance(bar.desc, str) else "",
            unit=bar.unit if isinstance(bar.unit, str) else _DEFAULT_UNIT,
            unit_scale=bar.unit_scale,
            unit_divisor=bar.unit_divisor,
        )

    @property
    def value(self) -> float:
        """``n`` kept within the bar: tqdm lets it run past the total or below zero."""
        n = self.n if self.n > 0 else 0
        return n if self.total is None else min(n, self.total)

    @property
    def percent(self) -> float | None:
        if self.total is None:
            return None
        return round(100.0 * self.value / self.total, 1)

    def amount(self, n: float) -> str:
        """``n`` in the bar's unit: ``1,200``, ``1.23M`` (``unit_scale``), ``12.5``."""
        if self.unit_scale:
            scale = 1 if self.unit_scale is True else self.unit_scale
            return str(_std_tqdm.format_sizeof(n * scale, divisor=self.unit_divisor))
        if isinstance(n, int) or float(n).is_integer():
            return f"{int(n):,}"
        return f"{n:,.2f}"

    def _with_unit(self, amount: str, *, noun: str) -> str:
        if self.unit == _DEFAULT_UNIT:
            return f"{amount} {noun}"
        # tqdm writes a scaled unit right after the number ("1.23MB"), a plain one apart.
        return f"{amount}{self.unit}" if self.unit_scale else f"{amount} {self.unit}"

    def count(self) -> str:
        """The running count for a bar without a total: ``1,200 done``, ``40/120 files``."""
        shown = self.amount(self.value)
        if self.total is not None:  # a total that appeared after the start
            shown = f"{shown}/{self.amount(self.total)}"
        return self._with_unit(shown, noun="done")

    def amount_text(self) -> str:
        """How far the bar got, for end texts: ``1,200 items``, ``1.23MB``, ``40 files``."""
        return self._with_unit(self.amount(self.value), noun="items")

    def where(self) -> str:
        """``at 40%`` with a total, ``after 1,200 items`` without."""
        percent = self.percent
        if percent is not None:
            return f"at {percent:g}%"
        return f"after {self.amount_text()}"


def counting_subtitle(reading: Reading, base: str | None) -> str:
    """A counting card's subtitle: the count, after the caller's own subtitle if any."""
    return f"{base} · {reading.count()}" if base else reading.count()


def title_from(desc: str) -> str | None:
    """The card's title from a bar's ``desc`` (``set_description()`` adds ``": "``)."""
    text = _trim(desc).rstrip(": ").strip()
    return text or None


def default_title(argv: list[str] | None = None) -> str:
    """A title for a bar without ``desc``: the script's name, as the command line's default."""
    args = sys.argv if argv is None else argv
    name = os.path.basename(args[0]) if args and args[0] not in ("", "-c", "-") else ""
    if name == "__main__.py":  # python -m package: the package's name
        name = os.path.basename(os.path.dirname(args[0]))
    return name or "Progress"


def error_text(exc: BaseException, *, show_message: bool) -> str:
    """An exception as a failure shows it: ``OSError: disk full``, or ``OSError`` alone
    (the library's own wording, as when a ``with live_activity()`` block raises)."""
    return _describe_error(exc, None, show_message)


class Ending(enum.Enum):
    """How a bar's run ended, as the bar saw it."""

    DONE = "done"  # the iteration ran out, or close() was called
    STOPPED = "stopped"  # a loop left early: break, then the bar closed or collected
    RAISED = "raised"  # an exception: in the iterable, or leaving the with block


class CardEnd(enum.Enum):
    """How the card ends."""

    DONE = "done"
    STOPPED = "stopped"
    CANCELLED = "cancelled"
    FAILED = "failed"


def outcome_of(ending: Ending, exc: BaseException | None) -> CardEnd:
    """The card's end for a run's ending, judging exceptions as a ``with`` block does."""
    if ending is Ending.DONE:
        return CardEnd.DONE
    if ending is Ending.STOPPED or exc is None or isinstance(exc, GeneratorExit):
        return CardEnd.STOPPED
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return CardEnd.DONE
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return CardEnd.CANCELLED
    return CardEnd.FAILED


def check_activity_options(activity: object) -> dict[str, Any]:
    """``activity={...}`` as keyword arguments for live_activity(), or raise naming the key."""
    if activity is None:
        return {}
    if not isinstance(activity, Mapping):
        raise ArgumentTypeError("activity", "a mapping of live_activity() options", activity)
    options = dict(activity)
    for key in options:
        if not isinstance(key, str):
            raise ArgumentTypeError("activity", "a mapping with str keys", activity)
    unknown = sorted(set(options) - ACTIVITY_OPTIONS)
    if unknown:
        allowed = ", ".join(sorted(ACTIVITY_OPTIONS))
        raise ValidationError(
            f"activity[{unknown[0]!r}]",
            "is not an option a bar passes on (the bar decides the type and the progress); "
            f"the options are {allowed}",
        )
    return options


# -- the mirror: one bar's Live Activity ------------------------------------------------------


class _Mirror:
    """The Live Activity of one bar: started at its first drawing, ended once."""

    def __init__(self, handle: LiveActivity, options: Mapping[str, Any], counting: bool) -> None:
        self.handle = handle
        self.counting = counting  # no total at the start: a timer with the count as subtitle
        self.fixed_title = "title" in options
        self.base_subtitle: str | None = options.get("subtitle")
        self.own_looks = {
            name for name in ("on_success", "on_failure", "on_cancel") if name in options
        }
        self.show_error_option: bool | None = options.get("show_error_message")
        self.started = False
        self.ended = False
        self.broken = False
        self.left_early = False
        self.title: str = handle.title
        self.shown: object = None
        # Iterations begun (iter() called) and not ended: closing the bar while one is paused
        # mid-way leaves the loop early.
        self.iterating = 0
        self.async_iterating = False

    # -- while it runs ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the Live Activity. Raises only what ``la.start()`` raises: in strict mode,
        a missing API key, as ``with live_activity(...)`` would."""
        if not self.started:
            self.handle.start()
            self.started = True

    def show(self, reading: Reading) -> None:
        """Hand the bar's state to the Live Activity (starts it on the first call)."""
        if self.ended or self.broken:
            return
        la = self.handle
        try:
            self.start()
            if la.ended:  # ended through bar.live_activity by the caller
                self.ended = True
                return
            if not self.fixed_title:
                title = title_from(reading.desc)
                if title is not None and title != self.title:
                    la.update(title=title)
                    self.title = title
            if self.counting:
                text = counting_subtitle(reading, self.base_subtitle)
                if text != self.shown:
                    la.update(subtitle=text)
                    self.shown = text
            elif reading.total is not None:
                # ETA from the rate plugs in here: the handle gets each reading's progress.
                shown = (reading.value, reading.total)
                if shown != self.shown:
                    la.progress(reading.value, reading.total)
                    self.shown = shown
        except Exception:
            if la.ended:  # ended meanwhile on another thread (tqdm's monitor redraws, say)
                return
            # Tracking never breaks the loop: say it once, stop mirroring, still try the end.
            self.broken = True
            logger.warning(
                "Live Activity %r: the bar is no longer mirrored", self.title, exc_info=True
            )

    # -- the end ------------------------------------------------------------------------------

    def finish(self, reading: Reading, ending: Ending, exc: BaseException | None = None) -> None:
        """End the Live Activity once, in the look the ending calls for."""
        if self.ended:
            return
        if not self.started:
            # Never drawn (tqdm's delay= not reached): no card either, as on the terminal.
            self.ended = True
            return
        self.show(reading)  # the final count, title and progress go with the end
        if self.ended:
            return
        self.ended = True
        la = self.handle
        outcome = outcome_of(ending, exc)
        try:
            if outcome is CardEnd.DONE:
                la.end(**self._done_fields(reading))
            elif outcome is CardEnd.STOPPED:
                la.cancel(**self._subtitle("on_cancel", f"Stopped {reading.where()}"))
            elif outcome is CardEnd.CANCELLED:
                fields = self._subtitle("on_cancel", f"Cancelled {reading.where()}")
                la.cancel(**(fields if self.counting else {}))
            else:
                assert exc is not None
                message = error_text(exc, show_message=self._show_error_message())
                fields = {}
                if self.counting:  # the library would say "after 12s"; the bar knows more
                    fields = self._subtitle("on_failure", f"Failed {reading.where()}: {message}")
                la.fail(message, **fields)
        except Exception:
            logger.warning("Live Activity %r: could not end it", self.title, exc_info=True)

    def _done_fields(self, reading: Reading) -> dict[str, Any]:
        if self.counting:
            return self._subtitle("on_success", f"Done: {reading.amount_text()}")
        percent = reading.percent
        if percent is not None and percent < 100:
            # A bar closed short of its total (an estimate that was too high, a download that
            # stopped): the card tells the truth rather than the success look's full bar.
            return {"percentage": percent}
        return {}

    def _subtitle(self, look: str, text: str) -> dict[str, Any]:
        # The caller's own look wins: its template, not ours.
        return {} if look in self.own_looks else {"subtitle": _trim(text, SUBTITLE_LIMIT)}

    def _show_error_message(self) -> bool:
        try:
            return resolve_settings(
                {"show_error_message": self.show_error_option}
            ).show_error_message
        except Exception:
            return False  # in doubt, the exception's type only: private by default


def _open_handle(reading: Reading, options: Mapping[str, Any]) -> tuple[LiveActivity, bool]:
    """Build (not start) the Live Activity for a bar; raises on bad ``activity=`` options."""
    # A title given in the options is used as given (live_activity() checks it).
    title = options["title"] if "title" in options else title_from(reading.desc) or default_title()
    rest = {k: v for k, v in options.items() if k != "title"}
    counting = reading.total is None
    if not counting:
        return live_activity(title, total=reading.total, **rest), False
    return live_activity(
        title, subtitle=counting_subtitle(reading, rest.pop("subtitle", None)), **rest
    ), True


def _planned_reading(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Reading:
    """The reading a bar about to be made will start with (desc and total as tqdm finds them)."""
    iterable = kwargs["iterable"] if "iterable" in kwargs else (args[0] if args else None)
    desc = kwargs.get("desc", args[1] if len(args) > 1 else None) or ""
    total = kwargs.get("total", args[2] if len(args) > 2 else None)
    if total is None and iterable is not None:
        try:
            total = len(iterable)
        except (TypeError, AttributeError):
            total = None
    planned = Reading(n=0, total=None, desc=desc if isinstance(desc, str) else "")
    if isinstance(total, int | float) and not isinstance(total, bool) and 0 < total < float("inf"):
        planned = attrs.evolve(planned, total=total)
    return planned


class _Discard:
    """A file that takes and forgets: the terminal bar of ``disable=None`` off a terminal."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False


# -- the bar ----------------------------------------------------------------------------------


# tqdm ships no type information: its class is Any to mypy, which refuses to subclass it.
class tqdm(_std_tqdm):  # type: ignore[misc]
    """``tqdm.tqdm``, mirrored to a Live Activity.

    Takes every argument tqdm takes, plus ``live`` (``None``: only the outermost bar, outside
    any current activity; ``True``; ``False``) and ``activity`` (a mapping of
    :func:`~activitysmith_track.live_activity` options: ``title``, ``stream_key``, ``tags``,
    ``color``, ``on_failure``...). ``disable=True`` turns off both the bar and the card;
    ``disable=None`` turns off the terminal bar when its file is not a terminal (as tqdm
    does) but keeps the card, so a cron job still shows on the phone. ``bar.live_activity``
    is the :class:`~activitysmith_track.LiveActivity` it mirrors to, or ``None``.
    """

    # Class-level defaults: tqdm may call close() or refresh() on a bar whose __init__ did
    # not run or did not get this far (an argument tqdm refused, __del__ after a failure).
    _mirror: _Mirror | None = None
    _in_with: bool = False
    _exit_exc: BaseException | None = None

    def __init__(
        self,
        *args: Any,
        live: bool | None = None,
        activity: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if live is not None and not isinstance(live, bool):
            raise ArgumentTypeError("live", "True, False or None", live)
        options = check_activity_options(activity)
        handle: tuple[LiveActivity, bool] | None = None
        if options:
            # Bad options fail here, naming the field, before the bar draws anything.
            handle = _open_handle(_planned_reading(args, kwargs), options)
        if live is not False and "disable" in kwargs and kwargs["disable"] is None:
            self._keep_card_off_terminal(args, kwargs, live)
        super().__init__(*args, **kwargs)
        if self.disable or live is False:
            return
        if live is None and (abs(self.pos) != 0 or current_activity()):
            return
        try:
            reading = Reading.of(self)
            if handle is None or handle[1] != (reading.total is None):
                handle = _open_handle(reading, options)
            mirror = _Mirror(handle[0], options, counting=handle[1])
        except Exception:
            logger.warning(
                "could not mirror the bar %r to a Live Activity", self.desc, exc_info=True
            )
            return
        self._mirror = mirror
        if self.delay <= 0:  # with delay=, the card waits for the bar's first drawing too
            mirror.start()
            mirror.show(reading)

    def _keep_card_off_terminal(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], live: bool | None
    ) -> None:
        """``disable=None`` off a terminal: tqdm would disable the bar; keep it for the card,
        drawing into nothing, if this bar will be mirrored."""
        if len(args) > 4:  # file given by position: leave tqdm's behaviour alone
            return
        file = kwargs.get("file") or sys.stderr
        try:
            if file.isatty():
                return
        except Exception:
            pass  # tqdm asks hasattr(file, "isatty") only; a broken one is not a terminal
        if live is None:
            position = kwargs.get("position")
            if position is not None:
                first = abs(position) == 0
            else:
                with self.get_lock():
                    first = self._get_free_pos(self) == 0
            if not first or current_activity():
                return
        kwargs["disable"] = False
        kwargs["file"] = _Discard()

    @property
    def live_activity(self) -> LiveActivity | None:
        """The Live Activity this bar mirrors to (``None`` when it is not mirrored)."""
        mirror = self._mirror
        return None if mirror is None else mirror.handle

    # -- where tqdm draws ---------------------------------------------------------------------

    def refresh(self, nolock: bool = False, lock_args: Any = None) -> Any:
        shown = super().refresh(nolock=nolock, lock_args=lock_args)
        mirror = self._mirror
        if mirror is not None and not mirror.ended:
            mirror.show(Reading.of(self))
        return shown

    # -- iteration ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        # tqdm's own generator, unchanged: it keeps the count in a local variable and calls
        # update() only where it redraws, and a wrapper around it would cost a generator
        # resume per item. How the loop ended is read once, when it closes the bar (close()).
        mirror = self._mirror
        if mirror is not None and not mirror.ended:
            mirror.iterating += 1
        return super().__iter__()  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncIterator[Any]:
        # tqdm.asyncio's protocol, set up when an ``async for`` begins (not at construction,
        # so a sync loop never calls iter() on its iterable twice).
        iterable = self.iterable
        if hasattr(iterable, "__anext__"):
            self._next, self._awaitable = iterable.__anext__, True
        elif hasattr(iterable, "__aiter__"):
            self._next, self._awaitable = iterable.__aiter__().__anext__, True
        else:
            self._next, self._awaitable = iter(iterable).__next__, False
        mirror = self._mirror
        if mirror is not None:
            mirror.async_iterating = True
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self._next() if self._awaitable else self._next()
        except (StopIteration, StopAsyncIteration):
            self._async_ended(Ending.DONE, None)
            raise StopAsyncIteration from None
        except BaseException as exc:
            self._async_ended(Ending.RAISED, exc)
            raise
        self.update()
        return item

    def _async_ended(self, ending: Ending, error: BaseException | None) -> None:
        mirror = self._mirror
        if mirror is not None:
            mirror.async_iterating = False
        self._mirror = None  # close() must not end it: the ending below knows better
        try:
            self.close()
        finally:
            self._mirror = mirror
        if mirror is not None:
            self._iteration_ended(mirror, ending, error)

    def _iteration_ended(
        self, mirror: _Mirror, ending: Ending, error: BaseException | None
    ) -> None:
        if self._in_with:
            # The with block decides: its exception if it raises, else done or stopped.
            if ending is not Ending.DONE:
                mirror.left_early = True
            return
        mirror.finish(Reading.of(self), ending, error)

    # tqdm.asyncio's helpers, on this class: ``for f in tqdm.as_completed(coros)`` and
    # ``await tqdm.gather(*coros)`` build their bar with ``cls(...)``, so they are mirrored.
    as_completed: Any = classmethod(_tqdm_asyncio.as_completed.__func__)
    gather: Any = classmethod(_tqdm_asyncio.gather.__func__)

    # -- the end ------------------------------------------------------------------------------

    def __enter__(self) -> tqdm:
        self._in_with = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        self._in_with = False
        self._exit_exc = exc_value
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        finally:
            self._exit_exc = None
            mirror = self._mirror
            if mirror is not None and not mirror.ended:  # tqdm's close() raised, say
                self._end_mirror(mirror, exc_value)

    def close(self) -> None:
        super().close()
        mirror = self._mirror
        if mirror is None or mirror.ended:
            return
        caller = sys._getframe(1)
        if caller.f_code is _TQDM_LOOP:
            # tqdm's loop closes the bar from its ``finally`` however it ends. An exception
            # that ends the loop (GeneratorExit after a break or a collection, one raised by
            # the iterable or thrown in) is the one being handled there, and its traceback
            # starts at the loop's own frame; when the iterable simply ran out, nothing is
            # handled, or only some exception of the caller's that never passed through the
            # loop (CPython 3.10 to 3.13 alike; the tests cover each way).
            mirror.iterating = max(0, mirror.iterating - 1)
            exc = sys.exc_info()[1]
            traceback = None if exc is None else exc.__traceback__
            if traceback is not None and traceback.tb_frame is caller:
                self._iteration_ended(mirror, Ending.RAISED, exc)
            else:
                self._iteration_ended(mirror, Ending.DONE, None)
            return
        self._end_mirror(mirror, self._exit_exc)

    def _end_mirror(self, mirror: _Mirror, exc: BaseException | None) -> None:
        reading = Reading.of(self)
        if exc is not None:
            mirror.finish(reading, Ending.RAISED, exc)
        elif mirror.left_early or mirror.iterating or mirror.async_iterating:
            mirror.finish(reading, Ending.STOPPED)
        else:
            mirror.finish(reading, Ending.DONE)


# The code of tqdm's iteration, whose end close() recognises.
_TQDM_LOOP = _std_tqdm.__iter__.__code__


def trange(*args: Any, **kwargs: Any) -> tqdm:
    """``tqdm(range(*args), **kwargs)``, as ``tqdm.trange``."""
    return tqdm(range(*args), **kwargs)
