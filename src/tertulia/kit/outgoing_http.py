"""One HTTP client per process for the calls we make to providers (Graph, Bot API, SMS and mail
gateways).

`httpx.post(...)` and friends build a throwaway client for every call, and with it an SSL context
that loads the system's CA bundle: on the outbox's path that cost tens of milliseconds of CPU per
message while holding the GIL (half of a busy server's CPU when draining 80 messages a second), plus a
new TCP (and TLS) connection each time. The shared client keeps connections alive per provider host
and builds its SSL context once. httpx clients are safe to share between threads; a forked child
(web or worker processes) gets its own, since a pool's sockets must not be shared across processes.
Per-call timeouts are still given by each caller.
"""

import os
import threading

import httpx

# Enough for a worker's threads to reach a few providers at once; idle ones are closed after 30 s.
LIMITS = httpx.Limits(max_connections=64, max_keepalive_connections=32, keepalive_expiry=30.0)
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

_lock = threading.Lock()
_client: httpx.Client | None = None
_owner_pid = 0


def provider_http() -> httpx.Client:
    """The process's client for outgoing provider calls."""
    global _client, _owner_pid
    client = _client
    if client is not None and _owner_pid == os.getpid():
        return client
    with _lock:
        if _client is None or _owner_pid != os.getpid():
            # A client inherited through fork is left alone (closing it would close the parent's sockets).
            _client = httpx.Client(limits=LIMITS, timeout=DEFAULT_TIMEOUT)
            _owner_pid = os.getpid()
        return _client
