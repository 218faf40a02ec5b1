"""The HTTP side of the emulator: sockets, threads, faults and auth around :mod:`._state`."""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from activitysmith_track.emulator._faults import (
    ANSWERING_KINDS,
    SHAPING_KINDS,
    Fault,
    FaultQueue,
    drip_pieces,
    echo_body,
    gzip_bomb_pieces,
    oversized_pieces,
)
from activitysmith_track.emulator._health import Health
from activitysmith_track.emulator._preview import preview_state
from activitysmith_track.emulator._rules import default_error_body, unauthorized_body
from activitysmith_track.emulator._state import (
    Answer,
    EmulatorState,
    RecordedRequest,
    iso_timestamp,
)

__all__ = ["EmulatorHTTPServer"]

logger = logging.getLogger("activitysmith_track")

_MAX_BODY = 1024 * 1024
_API_PREFIX = "/api"

# The page long-polls /_emulator/state; a held request wakes on a change or on stop().
_DEFAULT_WAIT = 0.0
_MAX_WAIT = 30.0
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-]+\.[a-z]+")
_STATIC_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}
_NO_STORE = (("Cache-Control", "no-store"),)


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that can close every open connection when it stops.

    Keep-alive connections park a handler thread in ``recv``; the stock server would wait on
    them forever at close, so connections are tracked and shut down explicitly.
    """

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        *,
        state: EmulatorState,
        faults: FaultQueue,
        health: Health,
        expected_key: str | None,
        stale_after: float,
        stopping: threading.Event,
        on_request: Callable[[RecordedRequest], None] | None,
    ) -> None:
        self.state = state
        self.faults = faults
        self.health = health
        self.expected_key = expected_key
        self.stale_after = stale_after
        self.stopping = stopping
        self.on_request = on_request
        self._connections_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="activitysmith-emulator-connection",
            daemon=True,
        )
        with self._connections_lock:
            self._connections[request] = thread
        thread.start()

    def _serve_connection(self, request: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.pop(request, None)
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        # A client that hangs up mid-answer (or a stop that closes its socket) is routine.
        if isinstance(error, OSError):
            return
        logger.exception("emulator: unexpected error while serving %s", client_address)

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection down and wait (bounded) for their threads."""
        with self._connections_lock:
            open_now = list(self._connections.items())
        for sock, _ in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in open_now:
            thread.join(max(0.0, deadline - time.monotonic()))

    def accepted_key(self, header: str | None) -> str | None:
        """The Bearer key of an ``Authorization`` header when it is accepted, else ``None``."""
        if header is None or not header.startswith("Bearer "):
            return None
        key = header[len("Bearer ") :].strip()
        if not key or (self.expected_key is not None and key != self.expected_key):
            return None
        return key


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer would wait for
    # the client's delayed ACK (about 40 ms on Linux).
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def version_string(self) -> str:
        return "activitysmith-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are reported through on_request; the stdlib's stderr lines would be noise.
        return

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- helpers -------------------------------------------------------------------------

    def _send(
        self,
        status: int,
        payload: bytes,
        *,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _reset(self) -> None:
        """Close with a TCP reset, so the client sees a dropped connection, not an answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _read_body(self) -> tuple[Any, str | None]:
        """The parsed JSON body (or raw text, or None) and a reason to refuse it, if any."""
        length_text = self.headers.get("Content-Length")
        try:
            length = int(length_text) if length_text else 0
        except ValueError:
            self.close_connection = True
            return None, "Content-Length is not a number"
        if length > _MAX_BODY:
            self.close_connection = True
            return None, f"the body is larger than {_MAX_BODY} bytes"
        raw = self.rfile.read(length) if length > 0 else b""
        if not raw.strip():
            return None, None
        text = raw.decode("utf-8", errors="replace")
        try:
            return json.loads(text), None
        except ValueError:
            return text, "the body is not valid JSON"

    def _wait(self, seconds: float | None) -> bool:
        """Sleep unless the emulator stops meanwhile; ``True`` when it is stopping."""
        if seconds is None:
            self.server.stopping.wait()
            return True
        return self.server.stopping.wait(seconds) if seconds > 0 else self.server.stopping.is_set()

    def _record(
        self,
        path: str,
        body: Any,
        status: int | None,
        response: Any,
        *,
        fault: Fault | None,
        authorized: bool,
        answer: Answer | None = None,
    ) -> None:
        activity = None if answer is None else answer.activity
        request = RecordedRequest(
            method=self.command,
            path=path,
            body=body,
            status=status,
            response=response,
            time=time.time(),
            fault=None if fault is None else fault.kind,
            authorized=authorized,
            activity_id=None if activity is None else activity.id,
            activity_type=None if activity is None else activity.type,
            notes=() if answer is None else answer.notes,
        )
        self.server.state.record(request)
        callback = self.server.on_request
        if callback is not None:
            try:
                callback(request)
            except Exception:
                logger.exception("emulator: the on_request callback failed")

    # -- the request ---------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        if path != _API_PREFIX and not path.startswith(_API_PREFIX + "/"):
            self._serve_site(method, path)
            return
        api_path = unquote(path[len(_API_PREFIX) :]) or "/"
        server = self.server
        fault = server.faults.take(api_path)
        if fault is not None and fault.kind == "drop":
            self._record(api_path, None, None, None, fault=fault, authorized=False)
            self._reset()
            return
        body, body_error = self._read_body()
        key = server.accepted_key(self.headers.get("Authorization"))
        # /health needs no key (contract section 9); faults still apply to it.
        health = api_path == "/health"
        authorized = key is not None or health
        if fault is not None and fault.kind == "hang":
            self._record(api_path, body, None, None, fault=fault, authorized=authorized)
            self._wait(fault.seconds)
            self.close_connection = True
            return
        if self._wait(server.state.latency):
            self.close_connection = True
            return
        if fault is not None and fault.kind == "delay" and self._wait(fault.seconds):
            self.close_connection = True
            return
        if fault is not None and fault.kind in ANSWERING_KINDS:
            self._answer_fault(api_path, body, fault, authorized)
            return
        if fault is not None and fault.kind in SHAPING_KINDS and fault.code is not None:
            # A hostile answer with its own status: nothing is processed.
            error = Answer(fault.code, default_error_body(fault.code))
            self._answer_shaped(api_path, body, fault, authorized, error)
            return
        if health:
            answer = self._health(method)
        elif key is None:
            answer = Answer(401, unauthorized_body())
        else:
            try:
                answer = server.state.handle(
                    method,
                    api_path,
                    body,
                    key=key,
                    body_error=body_error,
                    fault=None if fault is None else fault.kind,
                )
            except Exception as exc:
                logger.exception("emulator: failed to handle %s %s", method, api_path)
                answer = Answer(
                    500,
                    {"error": "Internal Server Error", "message": f"emulator failure: {exc!r}"},
                )
        if fault is not None and fault.kind == "process_then_drop":
            self._record(
                api_path, body, None, None, fault=fault, authorized=authorized, answer=answer
            )
            self._reset()
            return
        if fault is not None and fault.kind in SHAPING_KINDS:
            self._answer_shaped(api_path, body, fault, authorized, answer)
            return
        self._record(
            api_path,
            body,
            answer.status,
            answer.body,
            fault=fault,
            authorized=authorized,
            answer=answer,
        )
        self._send(answer.status, _json_bytes(answer.body), headers=answer.headers)

    def _answer_fault(self, path: str, body: Any, fault: Fault, authorized: bool) -> None:
        text = fault.body or ""
        response: Any
        try:
            response = json.loads(text) if fault.content_type == "application/json" else text
        except ValueError:
            response = text
        status = fault.code or 500
        self._record(path, body, status, response, fault=fault, authorized=authorized)
        self._send(
            status,
            text.encode(),
            content_type=fault.content_type,
            headers=fault.headers,
        )

    # -- hostile answers ---------------------------------------------------------------------

    def _head_bytes(
        self,
        status: int,
        *,
        content_type: str,
        length: int | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        """The status line and headers of an answer, as bytes (no length: chunked)."""
        phrase = self.responses.get(status, ("",))[0]
        lines = [
            f"{self.protocol_version} {status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked",
            *(f"{name}: {value}" for name, value in headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write_all(self, pieces: Any, *, chunked: bool) -> None:
        """Stream ``pieces`` (bytes), framed as chunks when ``chunked``; stops with the emulator.

        A client that hangs up part-way makes a write fail with an OSError, which ends the
        connection quietly (see ``handle_error``).
        """
        for piece in pieces:
            if self.server.stopping.is_set():
                self.close_connection = True
                return
            if not piece:
                continue
            if chunked:
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            else:
                self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _answer_shaped(
        self, path: str, body: Any, fault: Fault, authorized: bool, answer: Answer
    ) -> None:
        status, headers = answer.status, answer.headers
        recorded: Any = answer.body
        if fault.kind == "echo_key":
            sent = self.headers.get("Authorization") or ""
            key = sent[len("Bearer ") :].strip() if sent.startswith("Bearer ") else sent
            html = fault.content_type != "application/json"
            payload, recorded = echo_body(
                answer.body, key, error=not 200 <= status < 300, html=html
            )
            headers = (*headers, ("X-Echo-Authorization", sent))
        else:
            payload = _json_bytes(answer.body)
        self._record(
            path, body, status, recorded, fault=fault, authorized=authorized, answer=answer
        )
        content_type = fault.content_type
        if fault.kind == "echo_key":
            self._send(status, payload, content_type=content_type, headers=headers)
        elif fault.kind == "reset_mid_body":
            keep = len(payload) // 2 if fault.size is None else min(fault.size, len(payload))
            self.wfile.write(
                self._head_bytes(
                    status, content_type=content_type, length=len(payload), headers=headers
                )
                + payload[:keep]
            )
            self._reset()
        elif fault.kind == "drip":
            data = (
                self._head_bytes(
                    status, content_type=content_type, length=len(payload), headers=headers
                )
                + payload
            )
            chunk = fault.chunk or 1
            pause = (fault.seconds or 0.0) / max(1, -(-len(data) // chunk))
            for piece in drip_pieces(data, chunk):
                self.wfile.write(piece)
                if self._wait(pause):
                    self.close_connection = True
                    return
        else:  # oversized or gzip_bomb
            size = fault.size if fault.size is not None else 0
            if fault.kind == "oversized":
                length, pieces = oversized_pieces(answer.body, size)
            else:
                length, pieces = gzip_bomb_pieces(answer.body, size)
                headers = (*headers, ("Content-Encoding", "gzip"))
            self.wfile.write(
                self._head_bytes(
                    status,
                    content_type=content_type,
                    length=None if fault.chunked else length,
                    headers=headers,
                )
            )
            self._write_all(pieces, chunked=fault.chunked)

    def _health(self, method: str) -> Answer:
        if method != "GET":
            return Answer(405, {"error": "Method Not Allowed", "message": "use GET"})
        state = self.server.state

        def probe() -> None:
            with state.lock:
                state.live_count()

        status, body = self.server.health.answer(probe, iso_timestamp(time.time()))
        return Answer(status, body)

    def _serve_site(self, method: str, path: str) -> None:
        """The preview page, its static files and the state it polls; no key needed."""
        if method != "GET":
            self._send(405, _json_bytes({"error": "Method Not Allowed", "message": "use GET"}))
            return
        if path in ("/", "/index.html"):
            self._send_static("index.html")
        elif path == "/favicon.ico":
            self._send_static("favicon.ico")
        elif path.startswith("/static/"):
            self._send_static(path[len("/static/") :])
        elif path == "/_emulator/state":
            self._send_preview_state()
        else:
            self._send(404, _json_bytes({"error": "Not Found", "message": f"no page {path}"}))

    def _send_static(self, name: str) -> None:
        content_type = _STATIC_TYPES.get(name.rpartition(".")[2])
        data = _static_file(name) if content_type and _STATIC_NAME.fullmatch(name) else None
        if data is None:
            self._send(404, _json_bytes({"error": "Not Found", "message": f"no file {name}"}))
            return
        self._send(200, data, content_type=content_type or "", headers=_NO_STORE)

    def _send_preview_state(self) -> None:
        """``?after=<version>&wait=<seconds>`` holds the answer until the state changes."""
        query = parse_qs(urlsplit(self.path).query)
        try:
            after = int(query["after"][0]) if "after" in query else None
            wait = float(query["wait"][0]) if "wait" in query else _DEFAULT_WAIT
        except ValueError:
            message = "after must be an int and wait a number of seconds"
            self._send(400, _json_bytes({"error": "Bad Request", "message": message}))
            return
        state = self.server.state
        if after is not None and wait > 0:
            state.wait_for_change(after, min(wait, _MAX_WAIT), self.server.stopping)
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        with state.lock:
            body = preview_state(
                state.snapshot_activities().values(),
                state.requests,
                version=state.version,
                now=state.clock(),
                stale_after=self.server.stale_after,
            )
        self._send(200, _json_bytes(body), headers=_NO_STORE)


def _static_file(name: str) -> bytes | None:
    try:
        return (resources.files("activitysmith_track.emulator") / "static" / name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
