"""The shared client for provider calls: connections are kept alive between calls, and a forked
process (uvicorn and huey workers) never shares its parent's sockets."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tertulia.kit.outgoing_http import provider_http


@contextmanager
def keep_alive_server() -> Iterator[tuple[str, list[int]]]:
    """An HTTP/1.1 server that records the client port of every request it answers."""
    ports: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            ports.append(self.client_address[1])
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", ports
    finally:
        server.shutdown()
        server.server_close()


def test_calls_to_one_provider_share_a_kept_alive_connection() -> None:
    with keep_alive_server() as (base, ports):
        for _ in range(5):
            assert provider_http().get(f"{base}/ping").text == "ok"
    assert len(ports) == 5
    assert len(set(ports)) == 1


def test_concurrent_calls_each_get_an_answer() -> None:
    with keep_alive_server() as (base, ports):
        answers: list[str] = []

        def call() -> None:
            answers.append(provider_http().get(f"{base}/ping").text)

        threads = [threading.Thread(target=call) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == ["ok"] * 16
    assert len(ports) == 16


def test_a_forked_process_gets_its_own_client() -> None:
    inherited = provider_http()
    pid = os.fork()
    if pid == 0:  # the child: exit code 0 only if it was given a new client
        os._exit(0 if provider_http() is not inherited and provider_http() is provider_http() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert provider_http() is inherited
