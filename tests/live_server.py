"""A real uvicorn server in a thread, for tests that need HTTP or a browser against the app, and what
browser tests share around it: a third-party site on another origin, deliveries run at once."""

import functools
import json
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from tertulia.app import create_app
from tertulia.conversations import outbox as _outbox  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.migrations import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(base: str, process: "subprocess.Popen[bytes]", deadline: float, what: str) -> None:
    """Until the server `process` started answers /healthz at `base`; if it exits first or the
    `deadline` (of time.monotonic) passes, fails with what it wrote on its stderr."""
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            # Killed first: reading the stderr of a live server would wait for ever.
            process.kill()
            _, errors = process.communicate()
            raise AssertionError(errors.decode() if errors else f"{what} did not start")
        time.sleep(0.1)


@contextmanager
def serve_app(app: FastAPI, port: int) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:`port` until the block ends; yields the base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@functools.cache
def _migrated_sqlite_file() -> Path:
    """A SQLite file this process upgraded from empty by the migrations, once."""
    path = Path(tempfile.mkdtemp(prefix="tertulia-migrated-")) / "tertulia.db"
    upgrade(f"sqlite:///{path}")
    return path


def fresh_sqlite_database(directory: Path) -> Database:
    """A database in `directory` at the head of the migrations: a copy of one this process upgraded
    from empty. Upgrading again for each browser module cost 1.5 s or more apiece; the history
    itself is run from empty by the suite's own databases and tests/kit/test_migrations.py."""
    path = directory / "tertulia.db"
    # SQLite's backup API, not a file copy: the template is in WAL mode and its last pages may
    # still be in the -wal file.
    with closing(sqlite3.connect(_migrated_sqlite_file())) as source, closing(sqlite3.connect(path)) as target:
        source.backup(target)
    return Database(f"sqlite:///{path}")


@contextmanager
def serve_tertulia(database: Database) -> Iterator[str]:
    """The whole app on `database`, on a free port, its base_url where it listens; yields that URL."""
    port = free_port()
    with serve_app(create_app(Settings(base_url=f"http://127.0.0.1:{port}"), database), port) as url:
        yield url


@dataclass
class Site:
    """A third-party website on another origin (a shop embedding the widget)."""

    origin: str
    # CSP violation reports the browser posted to /csp-report (a page's `report-uri /csp-report`).
    csp_reports: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "/") -> str:
        return f"{self.origin}{path}"


@contextmanager
def serve_site(
    port: int, pages: Mapping[str, str | tuple[str, str]], headers: Mapping[str, str] | None = None
) -> Iterator[Site]:
    """Serve `pages` (path -> HTML, or (content type, body)) on 127.0.0.1:`port` with
    `headers` on every answer, until the block ends; any other path is a 404. CSP reports posted to
    /csp-report are kept in `Site.csp_reports`."""
    site = Site(f"http://127.0.0.1:{port}")
    extra = dict(headers or {})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            page = pages.get(path)
            if page is None:
                self.send_error(404)
                return
            content_type, text = page if isinstance(page, tuple) else ("text/html; charset=utf-8", page)
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/csp-report":
                self.send_error(404)
                return
            site.csp_reports.append(json.loads(raw or b"{}"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextmanager
def immediate_deliveries(database: Database) -> Iterator[None]:
    """Queued tasks (the outbox's deliveries) run right after each commit, against `database`."""
    queue.huey.immediate = True
    queue.use_database(database)
    try:
        yield
    finally:
        queue.huey.immediate = False
        queue.use_database(None)
