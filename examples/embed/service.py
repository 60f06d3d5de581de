#!/usr/bin/env python3
"""A minimal lip-sync scoring service: one edge-sync artifact loaded once, clips scored concurrently over HTTP.

    python service.py                                   # bundled student ONNX, http://127.0.0.1:8000
    python service.py --artifact artifacts/student.onnx-int8 --port 8080 --workers 4 --allow-dir /srv/videos \
                      --queue 8 --clip-timeout 120 --body-timeout 10

    POST /sync     the clip as the request body (curl --data-binary @talk.mp4), as a multipart form file
                   (curl -F file=@talk.mp4), or JSON {"path": "..."} naming a file under --allow-dir;
                   ?frames=1 adds per-frame results. 200: the SyncResult JSON; 4xx: {"error": "..."}.
    GET  /health   what is loaded, how busy the service is, and its counters.

Standard library around edge-sync: ``http.server.ThreadingHTTPServer`` gives each connection a thread, all
threads share the one Engine (``Engine.run`` is thread-safe). What a request may cost is bounded:

* ``--workers`` requests hold a worker slot at once (receiving the upload, then scoring it: each holds a decoder, a
  face tracker and model windows in memory, about 200 MB for a long clip); up to ``--queue`` more wait for a slot
  (at most ``--queue-timeout``) before their body is read, and any further one gets a 503 at once, before any byte
  of its upload is stored. Connections beyond all of that wait in the listen backlog, not in threads.
* A body that stalls for ``--body-timeout`` seconds gets a 408; a clip that scores for longer than
  ``--clip-timeout`` is stopped and gets a 504, and its worker slot is free again.

A client error is answered with a 4xx (5xx for overload and time limits) and a one-line message; an unexpected
one with a 500; the server goes on. SIGTERM or Ctrl-C stops accepting, lets requests in flight finish, and exits 0.
"""
from __future__ import annotations

import argparse
import ctypes
import email.parser
import email.policy
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("edge_sync.service")
CHUNK = 1 << 20
SPARE_CONNECTIONS = 8  # connections beyond workers + queue with a thread of their own (/health, quick refusals)


class ClientError(Exception):
    """A request the service refuses: HTTP status and a message that says what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ClipTimeout(BaseException):
    """Raised inside a scoring thread when its clip runs past --clip-timeout. A BaseException, so that no
    ``except Exception`` on the way (a library's fallback) swallows it."""


def _raise_in_thread(thread_id: int, exc: type[BaseException] | None) -> None:
    """Have ``exc`` raised in another thread at its next Python instruction (None: drop one not raised yet)."""
    raised = None if exc is None else ctypes.py_object(exc)  # None is NULL here: clear
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), raised)


def call_with_time_limit(seconds: float | None, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` in this thread, stopped with :class:`ClipTimeout` once it has run ``seconds``. A thread cannot
    be killed, so the stop is raised in it: decoding, face tracking and the model return to Python every frame or
    window, where it lands within milliseconds (one native call that never returns, e.g. a read from a dead
    network mount, is stopped only when it does). The timer fires once and a stop not yet raised when ``fn``
    returns is dropped, so it never lands after this call."""
    if not seconds:
        return fn(*args)
    target, lock, state = threading.get_ident(), threading.Lock(), {"done": False, "fired": False}

    def stop() -> None:
        with lock:
            if not state["done"]:
                state["fired"] = True
                _raise_in_thread(target, ClipTimeout)

    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        return fn(*args)
    finally:
        timer.cancel()
        with lock:
            state["done"] = True
            if state["fired"]:
                _raise_in_thread(target, None)


class SyncService:
    """What every request thread shares: the engine, the bounds on concurrent work, and counters."""

    def __init__(self, engine: Any, workers: int, max_upload_mb: float, allow_dir: Path | None,
                 queue_timeout: float, queue: int = 0, clip_timeout: float | None = None,
                 body_timeout: float = 10.0) -> None:
        self.engine, self.workers, self.queue, self.queue_timeout = engine, workers, queue, queue_timeout
        self.clip_timeout, self.body_timeout = clip_timeout or None, body_timeout
        self.max_upload = int(max_upload_mb * (1 << 20))
        self.allow_dir = allow_dir.resolve() if allow_dir else None
        self.lock = threading.Lock()
        self.slot_free = threading.Condition(self.lock)
        self.line: list[object] = []  # the requests waiting for a slot, in order of arrival
        self.busy = self.peak_busy = self.served = self.failed = self.timed_out = 0
        self.started = time.time()

    @contextmanager
    def slot(self) -> Iterator[float]:
        """A worker slot for one request, taken before its body is read (so at most --workers uploads are on disk
        at once), held until its answer is ready; yields the seconds spent waiting. Up to --queue requests wait
        (each at most queue_timeout); one more is refused at once."""
        waited, me = time.perf_counter(), object()
        with self.lock:
            if self.busy >= self.workers or self.line:  # first come, first served: never ahead of those waiting
                if len(self.line) >= self.queue:
                    raise ClientError(HTTPStatus.SERVICE_UNAVAILABLE, f"all {self.workers} workers are busy and "
                                      f"{len(self.line)} request(s) already wait (--queue {self.queue}); retry later")
                self.line.append(me)
                try:
                    free = self.slot_free.wait_for(lambda: self.busy < self.workers and self.line[0] is me,
                                                   timeout=self.queue_timeout)
                finally:
                    self.line.remove(me)
                    self.slot_free.notify_all()  # the next in line may be first now
                if not free:
                    raise ClientError(HTTPStatus.SERVICE_UNAVAILABLE, f"all {self.workers} workers stayed busy for "
                                                                      f"{self.queue_timeout:g} s; retry later")
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)
        try:
            yield time.perf_counter() - waited
        finally:
            with self.lock:
                self.busy -= 1
                self.slot_free.notify_all()

    def score(self, path: Path, name: str, per_frame: bool, queued: float) -> dict[str, Any]:
        """``engine.sync_file`` in this request's slot, stopped after --clip-timeout."""
        try:
            body = call_with_time_limit(self.clip_timeout, self.engine.sync_file, path).to_dict(per_frame=per_frame)
        except ClipTimeout:
            with self.lock:
                self.timed_out += 1
            raise ClientError(HTTPStatus.GATEWAY_TIMEOUT, f"{name} took longer than --clip-timeout "
                              f"{self.clip_timeout:g} s to score, so it was stopped") from None
        return {**body, "path": name, "queue_seconds": round(queued, 3)}

    def count(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.served += 1
            else:
                self.failed += 1

    def health(self) -> dict[str, Any]:
        m = self.engine.manifest
        with self.lock:
            return {"status": "ok", "artifact": str(self.engine.artifact.path), "name": m.get("name"),
                    "target": m.get("target"), "precision": m.get("precision"), "backend": self.engine.backend,
                    "workers": self.workers, "busy": self.busy, "peak_busy": self.peak_busy, "queue": self.queue,
                    "waiting": len(self.line), "served": self.served, "failed": self.failed,
                    "timed_out": self.timed_out, "uptime_s": round(time.time() - self.started, 1)}

    def allowed_path(self, raw: Any) -> Path:
        """A JSON-named file, only inside --allow-dir: the service must not read arbitrary server files."""
        if self.allow_dir is None:
            raise ClientError(HTTPStatus.FORBIDDEN, "path requests are off: upload the file, or start the service "
                                                    "with --allow-dir DIR")
        if not isinstance(raw, str) or not raw:
            raise ClientError(HTTPStatus.BAD_REQUEST, 'send JSON {"path": "<file under the allowed folder>"}')
        path = (self.allow_dir / raw).resolve()  # an absolute raw path replaces allow_dir here
        if path != self.allow_dir and self.allow_dir not in path.parents:
            raise ClientError(HTTPStatus.FORBIDDEN, f"{raw} is outside the folder this service may read")
        if not path.is_file():
            raise ClientError(HTTPStatus.NOT_FOUND, f"no such file: {raw}")
        return path


class Handler(BaseHTTPRequestHandler):
    """Routes: GET /health, POST /sync. One request per connection (``Connection: close``), so a refused body
    left unread never reaches a next request; HTTP/1.1 so that curl's ``Expect: 100-continue`` is answered."""

    server_version = "edge-sync-service/0.1"
    protocol_version = "HTTP/1.1"
    timeout = 10.0  # seconds a client may stall mid-request (set from --body-timeout in make_server)
    service: SyncService  # set on the subclass made in make_server
    body_left = False  # a POST body not (fully) read yet
    upload: tuple[str, str] | None = None  # (temp file, the client's name for it): errors name the latter

    def do_GET(self) -> None:
        route = urlsplit(self.path).path
        if route == "/health":
            self.send_json(HTTPStatus.OK, self.service.health())
        elif route == "/sync":
            self.fail(HTTPStatus.METHOD_NOT_ALLOWED, "POST the clip to /sync")
        else:
            self.fail(HTTPStatus.NOT_FOUND, f"no route GET {route}; routes: GET /health, POST /sync")

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/sync":
            self.fail(HTTPStatus.NOT_FOUND, f"no route POST {url.path}; routes: GET /health, POST /sync")
            return
        self.body_left = True
        per_frame = parse_qs(url.query).get("frames", ["0"])[-1] in ("1", "true", "yes")
        from edge_sync.errors import EdgeSyncError

        try:
            with self.service.slot() as queued, self.clip() as (path, name):
                body = self.service.score(path, name, per_frame, queued)
        except ClientError as exc:
            self.fail(exc.status, exc.message)
        except (EdgeSyncError, ValueError) as exc:  # undecodable, no face, no audio: the clip, not the service
            self.fail(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug must cost one request, never the service
            log.exception("POST /sync failed")
            self.fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        else:
            self.service.count(ok=True)
            self.send_json(HTTPStatus.OK, body)

    def handle_expect_100(self) -> bool:
        """Refuse a too-large upload before the client sends it (curl asks first for bodies over 1 MB)."""
        try:
            self.content_length(self.service.max_upload)
        except ClientError as exc:
            self.fail(exc.status, exc.message)
            return False
        return super().handle_expect_100()

    def do_PUT(self) -> None:
        self.fail(HTTPStatus.METHOD_NOT_ALLOWED, f"no route {self.command}; routes: GET /health, POST /sync")

    do_DELETE = do_PATCH = do_PUT

    # --- the clip -----------------------------------------------------------------------------------------
    @contextmanager
    def clip(self) -> Iterator[tuple[Path, str]]:
        """The request's clip as a file path: a JSON-named file as is, an upload in a temp file deleted after."""
        ctype = self.headers.get_content_type()
        if ctype == "application/json":
            try:
                doc = json.loads(self.read_body(1 << 16) or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ClientError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON ({exc})") from exc
            except RecursionError:  # the parser recurses per level: [[[[...]]]] exhausts the stack
                raise ClientError(HTTPStatus.BAD_REQUEST, "the JSON is nested too deeply; send "
                                                          '{"path": "<file under the allowed folder>"}') from None
            raw = doc.get("path") if isinstance(doc, dict) else None
            yield self.service.allowed_path(raw), str(raw)
            return
        name = self.headers.get("X-Filename", "upload")
        fd, tmp = tempfile.mkstemp(prefix="edge-sync-", suffix=".upload")
        self.upload = (tmp, name)
        try:
            with os.fdopen(fd, "wb") as out:
                if ctype == "multipart/form-data":
                    name, data = self.form_file(self.read_body(self.service.max_upload))
                    self.upload = (tmp, name)
                    out.write(data)
                else:
                    self.copy_body(out)
            yield Path(tmp), name
        finally:
            os.unlink(tmp)

    def content_length(self, limit: int) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise ClientError(HTTPStatus.LENGTH_REQUIRED, "send the body with a Content-Length (curl --data-binary "
                                                          "and curl -F do), not chunked")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise ClientError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required") from None
        if length <= 0:
            raise ClientError(HTTPStatus.BAD_REQUEST, "the body is empty: send the video file")
        if length > limit:
            raise ClientError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body is {length} bytes, more than this "
                                                                   f"service takes ({limit}); see --max-upload-mb")
        return length

    def read_body(self, limit: int) -> bytes:
        length = self.content_length(limit)
        data = bytearray()
        while len(data) < length and (chunk := self.receive(length - len(data))):
            data += chunk
        if len(data) != length:
            raise ClientError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(data)} of {length} bytes")
        self.body_left = False
        return bytes(data)

    def copy_body(self, out: Any) -> None:
        """Stream a raw upload to disk in chunks (a video never sits in memory whole)."""
        left = self.content_length(self.service.max_upload)
        while left:
            chunk = self.receive(min(CHUNK, left))
            if not chunk:
                raise ClientError(HTTPStatus.BAD_REQUEST, f"the body ended {left} bytes early")
            out.write(chunk)
            left -= len(chunk)
        self.body_left = False

    def receive(self, size: int) -> bytes:
        """Up to ``size`` bytes of the body, what has come (b"": the client closed it); a client silent for
        --body-timeout gets a 408, not a traceback."""
        try:
            return self.rfile.read1(size)
        except TimeoutError:
            self.body_left = False  # nothing more is coming: no draining
            raise ClientError(HTTPStatus.REQUEST_TIMEOUT, f"the request body stalled: nothing arrived for "
                                                          f"{self.timeout:g} s (--body-timeout)") from None

    def form_file(self, body: bytes) -> tuple[str, bytes]:
        """The first file field of a multipart/form-data body (the email parser reads MIME multipart)."""
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode("latin-1")
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in msg.iter_parts() if msg.is_multipart() else ():
            if part.get_filename() is not None:
                return part.get_filename() or "upload", part.get_payload(decode=True) or b""
        raise ClientError(HTTPStatus.BAD_REQUEST, "the form has no file field: curl -F file=@clip.mp4")

    # --- responses ----------------------------------------------------------------------------------------
    def fail(self, status: int, message: str) -> None:
        self.service.count(ok=False)
        if self.upload is not None:
            message = message.replace(*self.upload)
        self.send_json(status, {"error": " ".join(message.split()), "status": int(status)})
        if self.body_left:
            self.drain()

    def drain(self, limit: int = 1 << 26, seconds: float = 2.0) -> None:
        """Read what is left of a refused body for a moment: closing a socket with unread input resets the
        connection, and the reset can destroy the answer before the client reads it."""
        self.body_left = False
        self.wfile.flush()
        self.connection.settimeout(seconds)
        try:
            while limit > 0 and (chunk := self.rfile.read1(min(CHUNK, limit))):
                limit -= len(chunk)
        except OSError:
            pass

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: nobody to answer
            log.info("%s closed the connection before its %d answer", self.address_string(), status)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.info("%s %s", self.address_string(), format % args)


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, but at most ``max_connections`` of them: the next connection waits in the
    kernel's listen backlog until one ends (every thread ends within the body, queue and clip time limits)."""

    daemon_threads = False  # server_close() then waits for requests in flight

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int) -> None:
        self.connections = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.acquire()
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()


def make_server(service: SyncService, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"service": service, "timeout": service.body_timeout})
    return BoundedServer((host, port), handler, service.workers + service.queue + SPARE_CONNECTIONS)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Score lip sync of video clips over HTTP with one loaded artifact.")
    p.add_argument("--artifact", type=Path, help="artifact folder (edge-sync export); default: the bundled student")
    p.add_argument("--backend", default="auto", help="runtime backend (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0 = any free port)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                   help="clips scored at once; more wait (default: CPU count, %(default)s)")
    p.add_argument("--threads", type=int, help="backend threads per model call (default: the backend's)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload (default: %(default)s)")
    p.add_argument("--allow-dir", type=Path, help="folder whose files JSON {\"path\": ...} requests may name "
                                                  "(default: none, uploads only)")
    p.add_argument("--queue", type=int, help="requests that may wait for a worker; one more gets 503 at once, "
                                             "before its upload is read (default: 4 x --workers)")
    p.add_argument("--queue-timeout", type=float, default=120.0,
                   help="seconds a request waits for a worker before 503 (default: %(default)s)")
    p.add_argument("--clip-timeout", type=float, default=300.0,
                   help="seconds one clip may score before it is stopped with a 504; 0: no limit "
                        "(default: %(default)s)")
    p.add_argument("--body-timeout", type=float, default=10.0,
                   help="seconds a client may send nothing mid-request before a 408 (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if args.queue is None:
        args.queue = 4 * args.workers
    if (args.workers < 1 or args.queue < 0 or args.max_upload_mb <= 0 or args.queue_timeout <= 0
            or args.clip_timeout < 0 or args.body_timeout <= 0 or not 0 <= args.port <= 65535):
        p.error("need --workers >= 1, --queue >= 0, --max-upload-mb > 0, --queue-timeout > 0, --clip-timeout >= 0, "
                "--body-timeout > 0 and 0 <= --port <= 65535")
    if args.allow_dir is not None and not args.allow_dir.is_dir():
        p.error(f"--allow-dir {args.allow_dir} is not a folder")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import edge_sync
    from edge_sync.errors import EdgeSyncError

    try:
        engine = edge_sync.load(args.artifact, backend=args.backend, threads=args.threads)  # once, for all requests
    except EdgeSyncError as exc:
        print(f"service.py: error: {exc}", file=sys.stderr)
        return 1
    service = SyncService(engine, args.workers, args.max_upload_mb, args.allow_dir, args.queue_timeout, args.queue,
                          args.clip_timeout, args.body_timeout)
    try:
        server = make_server(service, args.host, args.port)
    except OSError as exc:
        print(f"service.py: error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    host, port = server.server_address[:2]
    # shutdown() waits for serve_forever to return, so it must run on another thread than the one serving
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"listening on http://{host}:{port} ({Path(engine.artifact.path).name} on {engine.backend}, "
          f"{args.workers} workers)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    health = service.health()
    print(f"stopped: {health['served']} served, {health['failed']} failed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
