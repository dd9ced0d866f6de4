"""A burst of concurrent writes through a real server neither stalls nor fails (SQLite and PostgreSQL).

With the request transaction committed in a separate threadpool job, such a burst used to fill the
threadpool with requests waiting for the SQLite write lock or a pooled connection held by requests
that waited for a thread to commit in: "database is locked" or pool time-outs after 30 s.
"""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tertulia.app import create_app
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tests.conftest import Tenant
from tests.live_server import free_port, serve_app

CLIENTS = 60
REQUESTS_EACH = 3


@pytest.fixture
def base_url(db: Database, settings: Settings) -> Iterator[str]:
    port = free_port()
    with serve_app(create_app(settings, db), port) as url:
        yield url


def test_burst_of_concurrent_creates_all_succeed(base_url: str, tenant: Tenant) -> None:
    def client_work(n: int) -> list[int]:
        statuses = []
        with httpx.Client(base_url=base_url, headers=tenant.headers, timeout=25) as client:
            for i in range(REQUESTS_EACH):
                created = client.post("/api/v1/contacts", json={"first_name": f"C{n}-{i}", "email": f"c{n}-{i}@x.com"})
                statuses.append(created.status_code)
                statuses.append(client.get(f"/api/v1/contacts/email:c{n}-{i}@x.com").status_code)
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [status for statuses in pool.map(client_work, range(CLIENTS)) for status in statuses]
    assert results.count(201) == CLIENTS * REQUESTS_EACH
    assert results.count(200) == CLIENTS * REQUESTS_EACH
    with httpx.Client(base_url=base_url, headers=tenant.headers) as client:
        seen, cursor = 0, None
        while True:
            page = client.get("/api/v1/contacts", params={"limit": 200} | ({"cursor": cursor} if cursor else {})).json()
            seen += len(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
    assert seen == CLIENTS * REQUESTS_EACH
