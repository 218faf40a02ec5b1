"""Scripted failures: what the emulator does instead of (or around) a normal answer.

Besides plain failures (a status, a hang, a reset) there are hostile answers, for testing
that a client stays bounded whatever a server sends: a reset in the middle of the body, an
answer dripped a few bytes at a time, an oversized body, a compressed bomb, and an answer
that echoes the client's API key back in many encodings. Their bodies are produced here as
byte pieces that the server streams, so that a 300 MB answer or a 1 GB bomb never exists in
the emulator's memory.
"""

from __future__ import annotations

import base64
import functools
import json
import random
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal

import attrs

from activitysmith_track.emulator._rules import default_error_body, limit_reached_body

__all__ = [
    "ANSWERING_KINDS",
    "KEY_ENCODINGS",
    "SHAPING_KINDS",
    "Fault",
    "FaultKind",
    "FaultQueue",
    "gzip_bomb_pieces",
    "key_echoes",
    "oversized_pieces",
]

FaultKind = Literal[
    "status",
    "rate_limited",
    "limit_reached",
    "hang",
    "drop",
    "process_then_drop",
    "malformed",
    "delay",
    "reset_mid_body",
    "drip",
    "oversized",
    "gzip_bomb",
    "echo_key",
]

#: Faults that answer on their own, without the request being processed.
ANSWERING_KINDS = frozenset({"status", "rate_limited", "limit_reached", "malformed"})
#: Faults that change how an answer goes out (its bytes, their pace, a reset part-way). The
#: request is processed first unless the fault carries its own ``code``.
SHAPING_KINDS = frozenset({"reset_mid_body", "drip", "oversized", "gzip_bomb", "echo_key"})

#: The encodings :meth:`Fault.echo_key` writes the key in, by name (see :func:`key_echoes`).
KEY_ENCODINGS = (
    "raw",
    "json_unicode",
    "json_slash",
    "json_mixed",
    "percent",
    "html_decimal",
    "html_hex",
    "base64",
    "base64_url",
    "basic",
    "hex",
    "bearer",
)

# Bytes written per send when streaming a large answer.
_PIECE = 1 << 20


def _headers(value: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (value or {}).items())


def _retry_after_text(value: str | float) -> str:
    if isinstance(value, str):
        return value
    # Whole seconds go out as an integer, the form the service documents; fractions are kept
    # so tests can use tiny waits.
    return str(int(value)) if float(value).is_integer() else str(value)


def _check_status(_inst: object, _attr: object, value: int | None) -> None:
    if value is not None and not 100 <= value <= 599:
        raise ValueError(f"status must be between 100 and 599, not {value}")


def _check_seconds(_inst: object, _attr: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"seconds must be >= 0, not {value}")


def _check_bytes(name: str, minimum: int) -> Any:
    def check(_inst: object, _attr: object, value: int | None) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be a whole number of bytes, not {value!r}")
        if value < minimum:
            raise ValueError(f"{name} must be >= {minimum}, not {value}")

    return check


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted failure; build it with the constructors, e.g. ``Fault.status(503)``.

    Answering faults carry the exact status, body text and headers they send, so a test can
    read back what the client was given.
    """

    kind: FaultKind
    code: int | None = attrs.field(default=None, validator=_check_status)
    body: str | None = None
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float | None = attrs.field(default=None, validator=_check_seconds)
    #: Bytes: what a reset leaves sent, a drip's piece, an oversized body, a bomb's inflation.
    size: int | None = attrs.field(default=None, validator=_check_bytes("size", 0))
    chunk: int | None = attrs.field(default=None, validator=_check_bytes("chunk", 1))
    #: Send without Content-Length (``Transfer-Encoding: chunked``): the size is unknown ahead.
    chunked: bool = False

    @classmethod
    def status(
        cls,
        code: int,
        *,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Answer with ``code`` and ``body`` (by default the documented error body for it)."""
        payload = dict(body) if body is not None else default_error_body(code)
        return cls(kind="status", code=code, body=json.dumps(payload), headers=_headers(headers))

    @classmethod
    def rate_limited(cls, retry_after: str | float | None = None) -> Fault:
        """The request-rate 429, with a ``Retry-After`` header when ``retry_after`` is given."""
        headers = () if retry_after is None else (("Retry-After", _retry_after_text(retry_after)),)
        return cls(
            kind="rate_limited",
            code=429,
            body=json.dumps(default_error_body(429)),
            headers=headers,
        )

    @classmethod
    def limit_reached(cls, limit: int = 4, active: int = 4) -> Fault:
        """The capacity 429: the device already shows as many activities as it may."""
        return cls(
            kind="limit_reached", code=429, body=json.dumps(limit_reached_body(limit, active))
        )

    @classmethod
    def hang(cls, seconds: float | None = None) -> Fault:
        """Read the request, never answer (until ``seconds`` pass or the emulator stops), close."""
        return cls(kind="hang", seconds=seconds)

    @classmethod
    def drop(cls) -> Fault:
        """Reset the connection without reading or processing the request."""
        return cls(kind="drop")

    @classmethod
    def process_then_drop(cls) -> Fault:
        """Process the request fully (state changes), then reset the connection unanswered."""
        return cls(kind="process_then_drop")

    @classmethod
    def malformed(
        cls,
        body: str = "<html>oops</html>",
        status: int = 200,
        content_type: str = "text/html",
    ) -> Fault:
        """Answer with a body that is not the JSON the contract promises."""
        return cls(kind="malformed", code=status, body=body, content_type=content_type)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds``."""
        return cls(kind="delay", seconds=seconds)

    # -- hostile answers ------------------------------------------------------------------
    #
    # Each processes the request as usual (the state changes) and shapes the answer that
    # follows, unless ``status`` is given: then nothing is processed and the answer is that
    # status with its documented error body, shaped the same way.

    @classmethod
    def reset_mid_body(cls, after_bytes: int | None = None, *, status: int | None = None) -> Fault:
        """Send the status line, the headers (with the full ``Content-Length``) and the first
        ``after_bytes`` bytes of the body (by default half of it), then reset the connection.

        The client has an answer in hand when the read of its body fails: what a proxy or a
        server dying part-way through an answer looks like.
        """
        return cls(kind="reset_mid_body", size=after_bytes, code=status)

    @classmethod
    def drip(cls, seconds: float, *, chunk: int = 1, status: int | None = None) -> Fault:
        """Send the whole answer (status line, headers, body) ``chunk`` bytes at a time,
        spread evenly over ``seconds``.

        Every read the client makes gets a few bytes well within any read timeout, so only a
        bound on the total time of a request stops it from waiting ``seconds``.
        """
        return cls(kind="drip", seconds=seconds, chunk=chunk, code=status)

    @classmethod
    def oversized(
        cls, size: int = 300 * 1024 * 1024, *, chunked: bool = False, status: int | None = None
    ) -> Fault:
        """Answer with a JSON body of exactly ``size`` bytes (300 MiB by default), streamed.

        The body is the answer the emulator would give, with one long ``"padding"`` string
        in front, so it is valid JSON a client would accept if it read it all. With
        ``chunked`` it goes out without a ``Content-Length``, so the client cannot refuse it
        from the headers and has to count.
        """
        return cls(kind="oversized", size=size, chunked=chunked, code=status)

    @classmethod
    def gzip_bomb(
        cls, size: int = 1024 * 1024 * 1024, *, chunked: bool = False, status: int | None = None
    ) -> Fault:
        """Answer with ``Content-Encoding: gzip`` whether or not the client asked for it: about
        ``size / 1000`` bytes on the wire that inflate to a JSON body of ``size`` bytes of
        padding plus the answer (1 GiB by default, from about 1 MiB).

        The compressed padding is made once per ``size`` and reused; the answer's own fields
        are compressed per request behind it, so the inflated body is valid JSON.
        """
        return cls(kind="gzip_bomb", size=size, chunked=chunked, code=status)

    @classmethod
    def echo_key(cls, status: int | None = None, *, html: bool = False) -> Fault:
        """Echo the API key the client sent (its ``Authorization`` header) back in the answer,
        in every encoding of :data:`KEY_ENCODINGS`: raw, JSON ``\\u00xx`` escapes, JSON
        ``\\/`` escapes, percent-encoded, HTML entities, base64, hex and ``Bearer <key>``.

        Without ``status`` the request is processed and the 2xx answer gains ``message``,
        ``warning`` (a field clients log) and ``echo`` fields holding the copies; with
        ``status`` it is an error answer whose ``error`` and ``message`` hold them. With
        ``html`` the body is an HTML page instead of JSON (what a broken proxy sends). An
        ``X-Echo-Authorization`` header repeats the header as sent. The emulator's own record
        of the answer keeps only the names of the encodings, never the key.
        """
        return cls(
            kind="echo_key",
            code=status,
            content_type="text/html" if html else "application/json",
        )

    @classmethod
    def storm(
        cls,
        count: int = 12,
        *,
        retry_after: str | float = 1,
        capacity: bool = True,
        seed: int | None = None,
    ) -> tuple[Fault, ...]:
        """``count`` faults mixing 5xx answers, rate-limit 429s with ``Retry-After:
        retry_after`` and (with ``capacity``) capacity 429s, for :meth:`Emulator.add_faults`.

        The mix repeats 503, 429 rate_limited, 500, 429 capacity, 502, 429 rate_limited;
        ``seed`` shuffles it (reproducibly). A capacity 429 is what a start gets when the
        device is full; on other paths it tests that a client tells the two 429s apart.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a whole number >= 1, not {count!r}")
        cycle = [
            cls.status(503),
            cls.rate_limited(retry_after),
            cls.status(500),
            *([cls.limit_reached()] if capacity else []),
            cls.status(502),
            cls.rate_limited(retry_after),
        ]
        faults = [cycle[i % len(cycle)] for i in range(count)]
        if seed is not None:
            random.Random(seed).shuffle(faults)
        return tuple(faults)


# -- hostile bodies -----------------------------------------------------------------------------


def _padded_tail(answer: Mapping[str, Any]) -> bytes:
    """The answer's JSON without its opening brace, to follow a ``"padding"`` member."""
    encoded = json.dumps(answer, separators=(",", ":")).encode()
    return b'"}' if encoded == b"{}" else b'",' + encoded[1:]


_PAD_HEAD = b'{"padding":"'


def oversized_pieces(answer: Mapping[str, Any], size: int) -> tuple[int, Iterator[bytes]]:
    """The length and the pieces of a JSON body of ``size`` bytes (more, when ``answer`` alone
    is longer) that holds ``answer`` behind a run of padding."""
    tail = _padded_tail(answer)
    padding = max(0, size - len(_PAD_HEAD) - len(tail))

    def pieces() -> Iterator[bytes]:
        yield _PAD_HEAD
        block = b"x" * min(padding, _PIECE)
        left = padding
        while left > 0:
            piece = block if left >= len(block) else block[:left]
            left -= len(piece)
            yield piece
        yield tail

    return len(_PAD_HEAD) + padding + len(tail), pieces()


@attrs.frozen
class _Bomb:
    """A deflate stream of ``{"padding":"xxx...`` kept as one repeated block: no byte of it
    depends on the answer, so it is made once per size."""

    head: bytes  # the compressed opening, ending on a full flush
    block: bytes  # one compressed block of padding, repeated ``repeat`` times
    repeat: int
    rest: bytes  # the compressed remainder of the padding
    crc: int  # CRC-32 of everything inflated so far
    length: int  # bytes inflated so far


@functools.lru_cache(maxsize=4)
def _bomb(size: int) -> _Bomb:
    # After a full flush the compressor starts afresh, so compressing the same block again
    # gives the same bytes: one compressed block stands for all of them.
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = compressor.compress(_PAD_HEAD) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat, remainder = divmod(size, _PIECE)
    plain = b"x" * _PIECE
    block = compressor.compress(plain) + compressor.flush(zlib.Z_FULL_FLUSH) if repeat else b""
    rest = compressor.compress(plain[:remainder]) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = zlib.crc32(_PAD_HEAD)
    for _ in range(repeat):
        crc = zlib.crc32(plain, crc)
    crc = zlib.crc32(plain[:remainder], crc)
    return _Bomb(head, block, repeat, rest, crc, len(_PAD_HEAD) + size)


def gzip_bomb_pieces(answer: Mapping[str, Any], size: int) -> tuple[int, Iterator[bytes]]:
    """The compressed length and the pieces of a gzip member that inflates to ``size`` bytes
    of padding followed by ``answer`` (a valid JSON object)."""
    bomb = _bomb(size)
    tail = _padded_tail(answer)
    finisher = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    closing = finisher.compress(tail) + finisher.flush()
    crc = zlib.crc32(tail, bomb.crc)
    # RFC 1952: magic, deflate, no flags, no mtime, no extra flags, unknown OS.
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    trailer = struct.pack("<II", crc, (bomb.length + len(tail)) & 0xFFFFFFFF)
    length = (
        len(header)
        + len(bomb.head)
        + len(bomb.block) * bomb.repeat
        + len(bomb.rest)
        + len(closing)
        + len(trailer)
    )

    def pieces() -> Iterator[bytes]:
        yield header + bomb.head
        # About a megabyte of blocks per send.
        per_send = max(1, _PIECE // max(1, len(bomb.block)))
        left = bomb.repeat
        while left > 0:
            n = min(per_send, left)
            left -= n
            yield bomb.block * n
        yield bomb.rest + closing + trailer

    return length, pieces()


def key_echoes(key: str) -> dict[str, str]:
    """``key`` in each encoding of :data:`KEY_ENCODINGS`, as the text that goes inside a JSON
    string (the JSON escapes are written out, not decoded)."""
    raw = key.encode()
    as_json = json.dumps(key)[1:-1]
    return {
        "raw": as_json,
        "json_unicode": "".join(f"\\u{ord(c):04x}" for c in key),
        # The escaped solidus: the key with every "/" written as "\/" (and the prefix of a
        # URL, so there is always one).
        "json_slash": "https:\\/\\/example.com\\/?key=" + as_json.replace("/", "\\/"),
        "json_mixed": "".join(
            f"\\u{ord(c):04X}" if i % 2 else json.dumps(c)[1:-1] for i, c in enumerate(key)
        ),
        "percent": "".join(f"%{b:02X}" for b in raw),
        "html_decimal": "".join(f"&#{ord(c)};" for c in key),
        "html_hex": "".join(f"&#x{ord(c):x};" for c in key),
        "base64": base64.b64encode(raw).decode(),
        "base64_url": base64.urlsafe_b64encode(b"k=" + raw).decode().rstrip("="),
        "basic": "Basic " + base64.b64encode(b"api:" + raw).decode(),
        "hex": raw.hex(),
        "bearer": "Bearer " + as_json,
    }


def echo_body(
    answer: Mapping[str, Any], key: str, *, error: bool, html: bool
) -> tuple[bytes, dict[str, Any]]:
    """The echoing body (bytes as sent) and what the emulator records of it (no key)."""
    echoes = key_echoes(key)
    every = " ".join(echoes.values())
    recorded = {**answer, "echo": list(echoes)}
    if html:
        # Outside JSON the escapes are literal text; percent, entities and base64 still decode.
        rows = "".join(f"<li>{name}: {value}</li>" for name, value in echoes.items())
        page = f"<html><body><h1>Unauthorized: {echoes['bearer']}</h1><ul>{rows}</ul></body></html>"
        return page.encode(), recorded
    members = ",".join(f'"{name}":"{value}"' for name, value in echoes.items())
    extra = (
        f'"message":"invalid key {echoes["bearer"]}","warning":"key {every}","echo":{{{members}}}'
    )
    if error:
        text = f'{{"error":"Unauthorized for {echoes["raw"]}",{extra}}}'
    else:
        encoded = json.dumps(
            {k: v for k, v in answer.items() if k not in ("message", "warning")},
            separators=(",", ":"),
        )
        text = encoded[:-1] + ("," if encoded != "{}" else "") + extra + "}"
    return text.encode(), recorded


def drip_pieces(data: bytes, chunk: int) -> Iterable[bytes]:
    return (data[i : i + chunk] for i in range(0, len(data), chunk))


@attrs.define
class _Entry:
    fault: Fault
    path: str | None
    remaining: int


class FaultQueue:
    """Faults waiting for matching requests; the oldest matching entry is used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def add(self, fault: Fault, *, path: str | None, times: int) -> None:
        if times < 1:
            raise ValueError(f"times must be >= 1, not {times}")
        with self._lock:
            self._entries.append(_Entry(fault, path, times))

    def take(self, path: str) -> Fault | None:
        """The fault for a request to ``path`` (without the /api prefix), consuming one use."""
        with self._lock:
            for entry in self._entries:
                if entry.path is None or path.startswith(entry.path):
                    entry.remaining -= 1
                    if entry.remaining == 0:
                        self._entries.remove(entry)
                    return entry.fault
        return None

    def pending(self) -> list[tuple[Fault, str | None, int]]:
        with self._lock:
            return [(e.fault, e.path, e.remaining) for e in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
