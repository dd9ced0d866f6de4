from collections.abc import Iterator

import pytest

from tertulia.channels.models import Channel
from tertulia.kit import queue
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fakehttp_adapter
from tests.workflows.support import channel_on_fake

__all__ = ["fakehttp_adapter"]


@pytest.fixture
def channel(db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter) -> Iterator[Channel]:
    """A channel whose provider is the local fake; queued work waits for the test to run it."""
    with channel_on_fake(db, tenant) as (found, _provider):
        queue.huey.immediate = False
        try:
            yield found
        finally:
            queue.huey.immediate = True
            queue.huey.flush()
