#!/usr/bin/env python3
"""A minimal lip-sync scoring service: one edge-sync artifact loaded once, clips scored concurrently over HTTP.

    python service.py                                   # bundled student ONNX, http://127.0.0.1:8000
    python service.py --artifact artifacts/student.onnx-int8 --port 8080 --workers 4 --allow-dir /srv/videos

    POST /sync     the clip as the request body (curl --data-binary @talk.mp4), as a multipart form file
                   (curl -F file=@talk.mp4), or JSON {"path": "..."} naming a file under --allow-dir;
                   ?frames=1 adds per-frame results. 200: the SyncResult JSON; 4xx: {"error": "..."}.
    GET  /health   what is loaded, how busy the service is, and its counters.

Standard library around edge-sync: ``http.server.ThreadingHTTPServer`` gives each connection a thread, all
threads share the one Engine (``Engine.run`` is thread-safe), and a semaphore bounds how many clips are scored
at once, because each holds a decoder, a face tracker and model windows in memory (about 200 MB for a long
clip). A client error is answered with a 4xx and a message; an unexpected one with a 500; the server goes on.
SIGTERM or Ctrl-C stops accepting, lets requests in flight finish, and exits 0.
"""
from __future__ import annotations

import argparse
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


class ClientError(Exception):
    """A request the service refuses: HTTP status and a message that says what to send instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class SyncService:
    """What every request thread shares: the engine, the bound on concurrent scoring, and counters."""

    def __init__(self, engine: Any, workers: int, max_upload_mb: float, allow_dir: Path | None,
                 queue_timeout: float) -> None:
        self.engine, self.workers, self.queue_timeout = engine, workers, queue_timeout
        self.max_upload = int(max_upload_mb * (1 << 20))
        self.allow_dir = allow_dir.resolve() if allow_dir else None
        self.slots = threading.BoundedSemaphore(workers)
        self.lock = threading.Lock()
        self.busy = self.peak_busy = self.served = self.failed = 0
        self.started = time.time()

    def score(self, path: Path, name: str, per_frame: bool) -> dict[str, Any]:
        """``engine.sync_file`` under the concurrency bound; waits up to queue_timeout for a free slot."""
        waited = time.perf_counter()
        if not self.slots.acquire(timeout=self.queue_timeout):
            raise ClientError(HTTPStatus.SERVICE_UNAVAILABLE, f"all {self.workers} workers stayed busy for "
                                                              f"{self.queue_timeout:g} s; retry later")
        try:
            with self.lock:
                self.busy += 1
                self.peak_busy = max(self.peak_busy, self.busy)
            queued = time.perf_counter() - waited
            body = self.engine.sync_file(path).to_dict(per_frame=per_frame)
        finally:
            with self.lock:
                self.busy -= 1
            self.slots.release()
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
                    "workers": self.workers, "busy": self.busy, "peak_busy": self.peak_busy, "served": self.served,
                    "failed": self.failed, "uptime_s": round(time.time() - self.started, 1)}

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
    timeout = 60  # seconds a client may stall mid-request before its thread gives up
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
            with self.clip() as (path, name):
                body = self.service.score(path, name, per_frame)
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
        data = self.rfile.read(length)
        if len(data) != length:
            raise ClientError(HTTPStatus.BAD_REQUEST, f"the body ended after {len(data)} of {length} bytes")
        self.body_left = False
        return data

    def copy_body(self, out: Any) -> None:
        """Stream a raw upload to disk in chunks (a video never sits in memory whole)."""
        left = self.content_length(self.service.max_upload)
        while left:
            chunk = self.rfile.read(min(CHUNK, left))
            if not chunk:
                raise ClientError(HTTPStatus.BAD_REQUEST, f"the body ended {left} bytes early")
            out.write(chunk)
            left -= len(chunk)
        self.body_left = False

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
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.info("%s %s", self.address_string(), format % args)


def make_server(service: SyncService, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = False  # server_close() then waits for requests in flight
    return server


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
    p.add_argument("--queue-timeout", type=float, default=120.0,
                   help="seconds a request waits for a worker before 503 (default: %(default)s)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    if args.workers < 1 or args.max_upload_mb <= 0 or args.queue_timeout <= 0 or not 0 <= args.port <= 65535:
        p.error("need --workers >= 1, --max-upload-mb > 0, --queue-timeout > 0 and 0 <= --port <= 65535")
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
    service = SyncService(engine, args.workers, args.max_upload_mb, args.allow_dir, args.queue_timeout)
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
