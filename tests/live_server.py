"""A real uvicorn server in a thread, for tests that need HTTP or a browser against the app."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.migrations import upgrade


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


def fresh_sqlite_database(directory: Path) -> Database:
    """A database in `directory`, upgraded from empty by the migrations."""
    url = f"sqlite:///{directory / 'tertulia.db'}"
    upgrade(url)
    return Database(url)


@contextmanager
def serve_tertulia(database: Database) -> Iterator[str]:
    """The whole app on `database`, on a free port, its base_url where it listens; yields that URL."""
    port = free_port()
    with serve_app(create_app(Settings(base_url=f"http://127.0.0.1:{port}"), database), port) as url:
        yield url
