from collections.abc import Iterator

import pytest

from tertulia.conversations import tasks as _tasks  # noqa: F401  (registers the queue tasks)
from tertulia.kit import queue
from tertulia.kit.db import Database


@pytest.fixture
def immediate_queue(db: Database) -> Iterator[None]:
    """Queued tasks run inline, right after the commit that queued them, against the test DB."""
    queue.huey.immediate = True
    queue.use_database(db)
    yield
    queue.huey.immediate = False
    queue.use_database(None)
