"""What a consumer does when it starts: queue again the work a crashed process left behind."""

import time

import pytest
from fastapi.testclient import TestClient

from tertulia.conversations.models import DeliveryStatus, Message
from tertulia.conversations.outbox import requeue_pending_outbound
from tertulia.kit import queue
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import fake_channel_with_contact
from tests.fakes import fake_provider, fakehttp_adapter

__all__ = ["fakehttp_adapter"]
pytestmark = pytest.mark.usefixtures("fakehttp_adapter")


def _status(db: Database, message_id: int) -> DeliveryStatus:
    with db.transaction(write=False) as session:
        message = session.get(Message, message_id)
        assert message is not None
        return message.status


def _reply_whose_enqueue_was_lost(client: TestClient, tenant: Tenant, channel_id: int, contact_id: int) -> int:
    """A reply committed `pending` whose queue task died with the process (the queue is emptied)."""
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": {"type": "text", "text": "sorry for the wait"}},
    )
    assert response.status_code == 201, response.text
    queue.huey.flush()
    message_id: int = response.json()["id"]
    return message_id


def test_a_starting_consumer_sends_pending_replies_at_once(client: TestClient, db: Database, tenant: Tenant) -> None:
    """Before, such a reply waited for the 15-minute stuck sweep (review finding L1)."""
    queue.huey.immediate = False
    queue.huey.flush()
    with fake_provider() as provider:
        channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
        message_id = _reply_whose_enqueue_was_lost(client, tenant, channel_id, contact_id)
        assert _status(db, message_id) == DeliveryStatus.PENDING
        consumer = queue.start_consumer(1)
        try:
            deadline = time.monotonic() + 30
            while _status(db, message_id) == DeliveryStatus.PENDING and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            consumer.stop(graceful=True)
            queue.huey.flush()
        assert _status(db, message_id) == DeliveryStatus.SENT
        assert dict(provider.deliveries) == {f"tertulia-msg-{message_id}": 1}


def test_a_reply_whose_task_is_still_queued_is_not_queued_twice(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    queue.huey.immediate = False
    queue.huey.flush()
    try:
        with fake_provider() as provider:
            channel_id, contact_id = fake_channel_with_contact(db, tenant, provider.url)
            lost = _reply_whose_enqueue_was_lost(client, tenant, channel_id, contact_id)
            response = client.post(
                f"/api/v1/contacts/id:{contact_id}/messages",
                headers=tenant.headers,
                json={"channel_id": channel_id, "message": {"type": "text", "text": "still queued"}},
            )
            queued = response.json()["id"]
            assert requeue_pending_outbound() == 1
            # The lost one is queued again (in a batch), the queued one is not queued twice; the event
            # log's dispatch nudges wait in the queue too.
            waiting = sorted(
                int(message_id)
                for task in queue.huey.pending()
                if task.name in ("conversations.send_message", "conversations.send_messages")
                for message_id in (task.args[0] if isinstance(task.args[0], list) else [task.args[0]])
            )
            assert waiting == [lost, queued]
    finally:
        queue.huey.flush()
