"""The emulator's hostile answers, over raw HTTP: what a client facing them actually receives.

No library code is involved: requests, or a bare socket where the bytes and their timing are
the subject.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import requests

from activitysmith_track.emulator import Emulator, Fault
from activitysmith_track.emulator._faults import KEY_ENCODINGS, key_echoes

# A key with a "/" so that the JSON "\/" escape has something to escape.
KEY = "ask_te/st+key_0123"
START = "/live-activity/start"
SEGMENTED = {
    "title": "Deploy",
    "type": "segmented_progress",
    "number_of_steps": 3,
    "current_step": 1,
}
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's real key in the environment would make the emulator insist on it.
    monkeypatch.delenv("ACTIVITYSMITH_API_KEY", raising=False)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(fast=True) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {KEY}"
        # What the library asks for; the hostile answers ignore it.
        s.headers["Accept-Encoding"] = "identity"
        yield s


def start(session: requests.Session, emu: Emulator, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", 10)
    return session.post(emu.base_url + START, json={"content_state": SEGMENTED}, **kw)


def raw_exchange(emu: Emulator, *, read_timeout: float = 5.0) -> tuple[bytes, BaseException | None]:
    """Send a start over a bare socket; every byte received until the connection ended, and
    the error that ended it (None for an orderly close)."""
    body = json.dumps({"content_state": SEGMENTED}).encode()
    request = (
        f"POST /api{START} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
    received = bytearray()
    with socket.create_connection(("127.0.0.1", emu.port), timeout=read_timeout) as sock:
        sock.sendall(request)
        while True:
            try:
                data = sock.recv(65536)
            except OSError as exc:
                return bytes(received), exc
            if not data:
                return bytes(received), None
            received += data


def split_answer(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


needs_proc = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads RSS from /proc"
)


# -- a reset in the middle of the body -------------------------------------------------------


def test_reset_mid_body_sends_headers_and_half_the_body_then_resets(emu: Emulator) -> None:
    emu.add_fault(Fault.reset_mid_body(), path=START)
    data, error = raw_exchange(emu)
    assert isinstance(error, ConnectionResetError)
    status, headers, body = split_answer(data)
    assert status == 200
    length = int(headers["content-length"])
    assert len(body) == length // 2
    assert body.startswith(b'{"success":true')
    # The request was processed: the activity exists although its id never fully arrived.
    (record,) = emu.activities.values()
    assert record.status == "live"
    assert emu.requests[-1].fault == "reset_mid_body"
    assert emu.requests[-1].status == 200


def test_reset_mid_body_after_a_given_number_of_bytes(emu: Emulator) -> None:
    emu.add_fault(Fault.reset_mid_body(after_bytes=7))
    data, error = raw_exchange(emu)
    assert isinstance(error, ConnectionResetError)
    _, headers, body = split_answer(data)
    assert body == b'{"succe'
    assert int(headers["content-length"]) > 7


def test_reset_mid_body_with_a_status_processes_nothing(emu: Emulator) -> None:
    emu.add_fault(Fault.reset_mid_body(after_bytes=5, status=503))
    data, error = raw_exchange(emu)
    assert isinstance(error, ConnectionResetError)
    status, _, body = split_answer(data)
    assert (status, body) == (503, b'{"err')
    assert emu.activities == {}


def test_reset_mid_body_fails_the_read_of_a_streaming_client(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.reset_mid_body())
    response = start(session, emu, stream=True)  # the headers arrived...
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018 - ...the body's read fails
    # The next request (on a new connection) is answered normally.
    assert start(session, emu).status_code == 200


# -- a slow drip -------------------------------------------------------------------------------


def test_drip_spreads_the_whole_answer_over_the_time_given(emu: Emulator) -> None:
    emu.add_fault(Fault.drip(0.6, chunk=4))
    began = time.monotonic()
    data, error = raw_exchange(emu)
    elapsed = time.monotonic() - began
    assert error is None
    status, headers, body = split_answer(data)
    assert status == 200
    assert len(body) == int(headers["content-length"])
    assert json.loads(body)["success"] is True
    assert elapsed >= 0.55  # a lower bound only: a busy machine makes it slower, never faster
    assert len(emu.activities) == 1


def test_drip_outlasts_a_read_timeout_that_every_single_read_meets(
    emu: Emulator, session: requests.Session
) -> None:
    """Each read gets bytes well within 0.3 s, so a per-read timeout never fires, whatever
    the total: only a bound on the whole request would stop it."""
    emu.add_fault(Fault.drip(1.0, chunk=8))
    began = time.monotonic()
    response = start(session, emu, timeout=(2, 0.3))
    assert time.monotonic() - began >= 0.9
    assert response.status_code == 200
    assert response.json()["activity_id"] in emu.activities


def test_drip_pieces_arrive_one_by_one(emu: Emulator) -> None:
    """The answer comes over many reads, not as one write."""
    emu.add_fault(Fault.drip(0.5, chunk=1))
    body = json.dumps({"content_state": SEGMENTED}).encode()
    request = (
        f"POST /api{START} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    reads = 0
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as sock:
        sock.sendall(request)
        assert sock.recv(65536).startswith(b"H")
        while sock.recv(65536):
            reads += 1
    assert reads >= 10


# -- an oversized answer -------------------------------------------------------------------------


def test_oversized_answer_is_valid_json_of_exactly_the_size_given(
    emu: Emulator, session: requests.Session
) -> None:
    size = 3 * MiB + 17
    emu.add_fault(Fault.oversized(size), path=START)
    response = start(session, emu)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == size
    assert len(response.content) == size
    answer = response.json()
    assert set(answer["padding"]) == {"x"}
    # The answer the emulator would have given, behind the padding: the activity is real.
    assert answer["activity_id"] in emu.activities
    recorded = emu.requests[-1]
    assert recorded.fault == "oversized"
    assert "padding" not in recorded.response


def test_oversized_answer_chunked_has_no_length_to_refuse_it_by(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.oversized(2 * MiB, chunked=True))
    response = start(session, emu, stream=True)
    assert "Content-Length" not in response.headers
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert len(response.content) == 2 * MiB
    assert response.json()["success"] is True


def test_oversized_smaller_than_the_answer_sends_the_answer(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.oversized(0))
    answer = start(session, emu).json()
    assert answer["padding"] == ""
    assert answer["activity_id"] in emu.activities


def test_oversized_with_a_status_processes_nothing(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.oversized(MiB, status=502))
    response = start(session, emu)
    assert response.status_code == 502
    assert response.json()["error"] == "Bad Gateway"
    assert emu.activities == {}


@needs_proc
def test_a_300_mib_answer_is_streamed_not_built(emu: Emulator) -> None:
    """The default size, read and thrown away as it comes: the process (emulator included)
    stays flat. A body built in memory would add 300 MiB."""
    fault = Fault.oversized()
    assert fault.size == 300 * MiB
    emu.add_fault(fault)
    body = json.dumps({"content_state": SEGMENTED}).encode()
    request = (
        f"POST /api{START} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    before = rss_bytes()
    peak = before
    received = 0
    buffer = bytearray(1 << 20)
    with socket.create_connection(("127.0.0.1", emu.port), timeout=30) as sock:
        sock.sendall(request)
        while n := sock.recv_into(buffer):
            received += n
            if received % (32 * MiB) < n:
                peak = max(peak, rss_bytes())
    peak = max(peak, rss_bytes())
    assert received > 300 * MiB
    assert peak - before < 40 * MiB


def test_the_emulator_stops_promptly_while_a_client_is_not_reading() -> None:
    emu = Emulator(fast=True).start()
    emu.add_fault(Fault.oversized())
    body = json.dumps({"content_state": SEGMENTED}).encode()
    request = (
        f"POST /api{START} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sock = socket.create_connection(("127.0.0.1", emu.port), timeout=5)
    try:
        sock.sendall(request)
        assert sock.recv(16).startswith(b"HTTP/1.1 200")
        emu.wait_for_requests(1)
        began = time.monotonic()
        emu.stop()
        assert time.monotonic() - began < 1.5
    finally:
        sock.close()
        emu.stop()


def test_a_client_hanging_up_mid_answer_is_routine(
    emu: Emulator, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    emu.add_fault(Fault.oversized(64 * MiB))
    with caplog.at_level(logging.DEBUG, logger="activitysmith_track"):
        response = start(session, emu, stream=True)
        assert response.raw.read(1000)
        response.close()  # hang up with most of the body unsent
        assert start(session, emu).status_code == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- a compressed bomb ---------------------------------------------------------------------------


def inflate(response: requests.Response) -> tuple[int, int, bytes, bool]:
    """Compressed bytes, inflated bytes, the inflated tail, and whether the member ended;
    inflated a megabyte at a time, never held whole."""
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    compressed = inflated = 0
    tail = b""
    for piece in response.raw.stream(1 << 16, decode_content=False):
        compressed += len(piece)
        data = piece
        while data:
            out = decoder.decompress(data, MiB)
            inflated += len(out)
            tail = (tail + out[-4096:])[-4096:]
            data = decoder.unconsumed_tail
    return compressed, inflated, tail, decoder.eof


def test_gzip_bomb_inflates_to_a_valid_answer_from_a_small_body(
    emu: Emulator, session: requests.Session
) -> None:
    size = 5 * MiB + 3
    emu.add_fault(Fault.gzip_bomb(size), path=START)
    response = start(session, emu, stream=True)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"  # though identity was asked for
    compressed = int(response.headers["Content-Length"])
    assert compressed < size // 500
    body = zlib.decompress(response.raw.read(decode_content=False), 16 + zlib.MAX_WBITS)
    answer = json.loads(body)
    assert len(answer["padding"]) == size
    assert answer["activity_id"] in emu.activities
    assert emu.requests[-1].fault == "gzip_bomb"


def test_gzip_bomb_chunked(emu: Emulator, session: requests.Session) -> None:
    emu.add_fault(Fault.gzip_bomb(2 * MiB, chunked=True))
    response = start(session, emu, stream=True)
    assert "Content-Length" not in response.headers
    # requests inflates it itself here: proof that the member is a valid gzip stream.
    assert len(response.json()["padding"]) == 2 * MiB


def test_gzip_bomb_with_a_status_processes_nothing(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.gzip_bomb(MiB, status=503))
    response = start(session, emu)
    assert response.status_code == 503
    assert response.json()["error"] == "Service Unavailable"
    assert emu.activities == {}


@needs_proc
def test_a_1_gib_bomb_comes_from_about_a_megabyte_and_is_never_held_inflated(
    emu: Emulator, session: requests.Session
) -> None:
    fault = Fault.gzip_bomb()
    assert fault.size == 1024 * MiB
    emu.add_fault(fault)
    before = rss_bytes()
    response = start(session, emu, stream=True)
    compressed, inflated, tail, ended = inflate(response)
    assert ended
    assert compressed < 2 * MiB
    assert inflated > 1024 * MiB
    assert json.loads(b'{"padding":"' + tail)["success"] is True
    assert rss_bytes() - before < 40 * MiB


# -- the key echoed back -------------------------------------------------------------------------


def decoded_echoes(echo: dict[str, str]) -> dict[str, str]:
    """Each echoed copy (as parsed from JSON) decoded back, to compare with the key."""
    return {
        "raw": echo["raw"],
        "json_unicode": echo["json_unicode"],
        "json_slash": echo["json_slash"].rpartition("?key=")[2],
        "json_mixed": echo["json_mixed"],
        "percent": unquote(echo["percent"]),
        "html_decimal": html.unescape(echo["html_decimal"]),
        "html_hex": html.unescape(echo["html_hex"]),
        "base64": base64.b64decode(echo["base64"]).decode(),
        "base64_url": base64.urlsafe_b64decode(echo["base64_url"] + "==").decode()[2:],
        "basic": base64.b64decode(echo["basic"].removeprefix("Basic ")).decode()[4:],
        "hex": bytes.fromhex(echo["hex"]).decode(),
        "bearer": echo["bearer"].removeprefix("Bearer "),
    }


def test_echo_key_in_a_2xx_answer_carries_the_key_in_every_encoding(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.echo_key(), path=START)
    response = start(session, emu)
    assert response.status_code == 200
    answer = response.json()
    assert answer["activity_id"] in emu.activities  # processed as usual
    assert set(answer["echo"]) == set(KEY_ENCODINGS)
    assert decoded_echoes(answer["echo"]) == dict.fromkeys(KEY_ENCODINGS, KEY)
    # The JSON escapes are in the bytes as sent, not only after parsing.
    text = response.text
    assert "\\u0061\\u0073\\u006b" in text
    assert "ask_te\\/st" in text
    assert "&#97;&#115;" in text
    assert KEY in answer["message"]
    assert KEY in answer["warning"]
    assert response.headers["X-Echo-Authorization"] == f"Bearer {KEY}"


def test_echo_key_in_an_error_answer(emu: Emulator, session: requests.Session) -> None:
    emu.add_fault(Fault.echo_key(401))
    response = start(session, emu)
    assert response.status_code == 401
    answer = response.json()
    assert KEY in answer["error"]
    assert f"Bearer {KEY}" in answer["message"]
    assert decoded_echoes(answer["echo"]) == dict.fromkeys(KEY_ENCODINGS, KEY)
    assert emu.activities == {}


def test_echo_key_as_an_html_page(emu: Emulator, session: requests.Session) -> None:
    emu.add_fault(Fault.echo_key(502, html=True))
    response = start(session, emu)
    assert response.status_code == 502
    assert response.headers["Content-Type"] == "text/html"
    page = response.text
    assert f"Bearer {KEY}" in page
    assert "&#97;&#115;&#107;" in page
    assert base64.b64encode(KEY.encode()).decode() in page


def test_the_emulator_never_records_the_echoed_key(
    emu: Emulator, session: requests.Session
) -> None:
    emu.add_fault(Fault.echo_key())
    emu.add_fault(Fault.echo_key(403))
    start(session, emu)
    start(session, emu)
    recorded = json.dumps([r.response for r in emu.requests])
    for copy in key_echoes(KEY).values():
        assert copy not in recorded
    assert KEY not in recorded
    assert emu.requests[-1].response["echo"] == list(KEY_ENCODINGS)


def test_key_echoes_are_distinct_encodings() -> None:
    echoes = key_echoes(KEY)
    assert list(echoes) == list(KEY_ENCODINGS)
    # Each one but "raw" (and the forms that only add a prefix) hides the key's plain text.
    hidden = {name for name, text in echoes.items() if KEY not in text}
    assert hidden == set(KEY_ENCODINGS) - {"raw", "bearer"}
    assert re.fullmatch(r"(\\u00[0-9a-f]{2})+", echoes["json_unicode"])


# -- storms ----------------------------------------------------------------------------------------


def test_a_storm_mixes_5xx_with_both_kinds_of_429(emu: Emulator, session: requests.Session) -> None:
    emu.add_faults(Fault.storm(12, retry_after=0.5), path=START)
    answers = [start(session, emu) for _ in range(13)]
    codes = [a.status_code for a in answers]
    assert codes[:12] == [503, 429, 500, 429, 502, 429] * 2
    assert codes[12] == 200  # the storm is over
    rate_limited = [a for a in answers if a.status_code == 429 and "Retry-After" in a.headers]
    capacity = [a for a in answers if a.status_code == 429 and "limit" in a.json()]
    assert len(rate_limited) == 4
    assert all(a.headers["Retry-After"] == "0.5" for a in rate_limited)
    assert all(a.json()["code"] == "rate_limited" for a in rate_limited)
    assert len(capacity) == 2
    assert len(emu.activities) == 1
    assert emu.pending_faults == []


def test_a_storm_without_capacity_429s() -> None:
    kinds = {f.kind for f in Fault.storm(20, capacity=False)}
    assert kinds == {"status", "rate_limited"}


def test_a_seeded_storm_is_shuffled_reproducibly() -> None:
    plain = Fault.storm(30)
    shuffled = Fault.storm(30, seed=7)
    assert shuffled == Fault.storm(30, seed=7)
    assert shuffled != plain
    assert sorted(map(repr, shuffled)) == sorted(map(repr, plain))


def test_add_faults_applies_each_once_in_order(emu: Emulator, session: requests.Session) -> None:
    emu.add_faults([Fault.status(500), Fault.rate_limited(1), Fault.status(502)])
    assert [start(session, emu).status_code for _ in range(4)] == [500, 429, 502, 200]
    with pytest.raises(TypeError, match="Fault"):
        emu.add_faults([Fault.status(500), "503"])  # type: ignore[list-item]
    assert emu.pending_faults == []  # nothing added when one is wrong


def test_faults_keep_the_connection_usable_afterwards(
    emu: Emulator, session: requests.Session
) -> None:
    """After each hostile answer the emulator serves the next request normally."""
    for fault in (
        Fault.drip(0.05, chunk=64),
        Fault.oversized(MiB),
        Fault.gzip_bomb(MiB),
        Fault.echo_key(),
    ):
        emu.add_fault(fault)
        assert start(session, emu).status_code == 200
        assert start(session, emu).status_code == 200
    assert len(emu.activities) == 8


# -- arguments ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Fault.reset_mid_body(-1), "size must be >= 0"),
        (lambda: Fault.drip(-1), "seconds must be >= 0"),
        (lambda: Fault.drip(1, chunk=0), "chunk must be >= 1"),
        (lambda: Fault.oversized(-5), "size must be >= 0"),
        (lambda: Fault.oversized(1.5), "whole number"),  # type: ignore[arg-type]
        (lambda: Fault.gzip_bomb(True), "whole number"),
        (lambda: Fault.echo_key(99), "status must be between"),
        (lambda: Fault.storm(0), "count must be"),
    ],
)
def test_hostile_fault_arguments_are_checked(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_concurrent_hostile_answers_do_not_interfere(emu: Emulator) -> None:
    """Several slow and large answers at once, each to its own client."""
    emu.add_fault(Fault.drip(0.3, chunk=16), times=3)
    emu.add_fault(Fault.oversized(4 * MiB), times=3)
    results: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        with requests.Session() as s:
            s.headers["Authorization"] = f"Bearer {KEY}"
            response = start(s, emu)
            with lock:
                results.append(response.status_code)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [200] * 6
    assert len(emu.activities) == 6
