"""A broadcast that cannot start fails with its reason, and says so in the event log."""

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tertulia.broadcasts import tasks
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.events.models import EventRecord
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.segments.models import Segment
from tests.broadcasts.support import customers_write, draft, fake_channel, get
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider


@pytest.mark.parametrize("what", ["segment_deleted", "empty_audience", "channel_disconnected"])
def test_a_broadcast_that_cannot_start_fails_with_its_reason(
    db: Database, client: TestClient, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter, what: str
) -> None:
    with fake_provider() as provider:
        channel = fake_channel(db, tenant, provider.url)
        (contact_id,) = customers_write(db, channel, ["+5215500000001"])
        segment = client.post(
            "/api/v1/segments",
            headers=tenant.headers,
            json={"name": "Todos", "filter": {"match": "all", "groups": []}},
        )
        assert segment.status_code == 201, segment.text
        broadcast_id = draft(
            db,
            tenant,
            name="Aviso",
            segment_id=segment.json()["id"],
            channel_id=channel.id,
            content={"default": {"text": "Hola"}},
        )
        later = (utcnow() + timedelta(hours=1)).isoformat()
        scheduled = client.post(
            f"/api/v1/broadcasts/{broadcast_id}/schedule", headers=tenant.headers, json={"scheduled_at": later}
        )
        assert scheduled.status_code == 200, scheduled.text
        with db.transaction() as session:
            if what == "segment_deleted":
                session.delete(session.get(Segment, segment.json()["id"]))
            elif what == "empty_audience":
                session.execute(update(Contact).where(Contact.id == contact_id).values(blocked=True))
            else:
                session.execute(update(Channel).where(Channel.id == channel.id).values(active=False))
        with travel(timedelta(hours=1, seconds=1)):
            tasks.sweep()
        item = get(db, broadcast_id)
        assert (item.status, item.failure_reason) == ("failed", what)
        with db.transaction(write=False) as session:
            event = session.scalar(select(EventRecord).where(EventRecord.type == "broadcast.failed"))
        assert event is not None
        assert event.payload["reason"] == what
        assert provider.calls == 0
