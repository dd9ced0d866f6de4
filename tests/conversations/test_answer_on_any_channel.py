"""A contact with several channels can be answered on any of them; by default on the one they last
wrote on (`POST /api/v1/contacts/{identifier}/messages` without channel_id, the composer's choice),
and a reply window belongs to its channel, not to the person."""

from collections.abc import Iterator
from datetime import timedelta
from typing import ClassVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tertulia.channels import registry
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ChannelRules, InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.inbound import do_receive
from tertulia.conversations.models import Conversation, Message
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider

pytestmark = pytest.mark.usefixtures("immediate_queue", "fakehttp_adapter")

PHONE = "+5215512345678"


class WindowedAdapter(FakeHttpAdapter):
    """The fake provider with a 24-hour reply window, like WhatsApp's."""

    type: ClassVar[str] = "fakewindow"
    rules: ClassVar[ChannelRules] = ChannelRules(delivery_receipts=True, reply_window=timedelta(hours=24))


@pytest.fixture
def windowed() -> Iterator[None]:
    with registry.registered(WindowedAdapter()):
        yield


def _channel(db: Database, tenant: Tenant, url: str, name: str, kind: str = "fakehttp") -> int:
    with db.transaction() as session:
        return do_create_channel(session, tenant.actor(), kind, name, {"url": url}).id


def _contact(db: Database, tenant: Tenant, *kinds: str) -> int:
    with db.transaction() as session:
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Luz", first_name_folded="luz", custom={})
        session.add(contact)
        session.flush()
        for kind in kinds:
            session.add(
                ContactIdentity(
                    workspace_id=tenant.workspace_id, contact_id=contact.id, channel=kind, external_id=PHONE
                )
            )
        return contact.id


def _writes(db: Database, channel_id: int, text: str) -> int:
    with db.transaction() as session:
        channel = session.get(Channel, channel_id)
        assert channel is not None
        inbound = InboundMessage(sender_id=PHONE, provider_message_id=f"in-{channel_id}-{text}", text=text)
        return do_receive(session, channel, inbound).conversation.id


def _send(client: TestClient, tenant: Tenant, contact_id: int, **body: object) -> dict[str, object]:
    response = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={**body, "message": {"type": "text", "text": "hola"}},
    )
    assert response.status_code == 201, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_without_channel_id_the_answer_goes_where_the_contact_last_wrote(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with fake_provider() as provider:
        first = _channel(db, tenant, provider.url, "Line one")
        second = _channel(db, tenant, provider.url, "Line two")
        contact_id = _contact(db, tenant, "fakehttp")
        _writes(db, first, "one")
        conversation_id = _writes(db, second, "two")
        assert _send(client, tenant, contact_id)["channel_id"] == second
        # Answering on the other line does not move the default: it is where the contact wrote.
        assert _send(client, tenant, contact_id, channel_id=first)["channel_id"] == first
        assert _send(client, tenant, contact_id)["channel_id"] == second
        _writes(db, first, "three")
        assert _send(client, tenant, contact_id)["channel_id"] == first

        shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
        assert [(c["id"], c["name"]) for c in shown["reply_channels"]] == [(first, "Line one"), (second, "Line two")]
        assert shown["default_channel_id"] == first
        assert provider.calls == 4


def test_a_contact_with_no_channel_is_a_422_naming_the_rule(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        channel_id = _channel(db, tenant, provider.url, "Line one")
        nowhere = _contact(db, tenant)
        refused = client.post(
            f"/api/v1/contacts/id:{nowhere}/messages",
            headers=tenant.headers,
            json={"message": {"type": "text", "text": "hola"}},
        )
        assert refused.status_code == 422
        error = refused.json()["error"]
        assert error["code"] == "no_channel"
        assert "channel_id" in error["details"]
        assert "no active channel" in error["message"]
        # A disconnected channel is no channel to answer on.
        reachable = _contact(db, tenant, "fakehttp")
        with db.transaction() as session:
            session.execute(update(Channel).where(Channel.id == channel_id).values(active=False))
        off = client.post(
            f"/api/v1/contacts/id:{reachable}/messages",
            headers=tenant.headers,
            json={"message": {"type": "text", "text": "hola"}},
        )
        assert off.status_code == 422
        assert off.json()["error"]["code"] == "no_channel"
        assert provider.calls == 0


@pytest.mark.usefixtures("windowed")
def test_a_reply_window_is_the_channels_own(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        always = _channel(db, tenant, provider.url, "No window")
        windowed = _channel(db, tenant, provider.url, "Windowed", kind="fakewindow")
        contact_id = _contact(db, tenant, "fakehttp", "fakewindow")
        _writes(db, windowed, "long ago")
        with db.transaction() as session:
            session.execute(
                update(Message).where(Message.channel_id == windowed).values(created_at=utcnow() - timedelta(hours=25))
            )
        conversation_id = _writes(db, always, "today")  # the contact wrote today, on the other channel
        late = client.post(
            f"/api/v1/contacts/id:{contact_id}/messages",
            headers=tenant.headers,
            json={"channel_id": windowed, "message": {"type": "text", "text": "hola"}},
        )
        assert late.status_code == 422
        assert late.json()["error"]["code"] == "reply_window_closed"
        assert _send(client, tenant, contact_id)["channel_id"] == always
        shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
        windows = {c["id"]: c["reply_window_open"] for c in shown["reply_channels"]}
        assert windows == {always: True, windowed: False}
        assert provider.calls == 1
    with db.transaction(write=False) as session:
        sent = session.scalars(select(Message.channel_id).where(Message.direction == "outgoing")).all()
    assert sent == [always]


def test_a_merged_person_is_answered_where_they_wrote_last(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_provider() as provider:
        first = _channel(db, tenant, provider.url, "Line one")
        second = _channel(db, tenant, provider.url, "Line two")
        older = _contact(db, tenant, "fakehttp")
        _writes(db, first, "one")
        with db.transaction() as session:
            channel = session.get(Channel, second)
            assert channel is not None
            inbound = InboundMessage(sender_id="+5215599999999", provider_message_id="in-other", text="two")
            newer = do_receive(session, channel, inbound).contact.id
        merged = client.post(
            f"/api/v1/contacts/id:{older}/merge", json={"other": f"id:{newer}"}, headers=tenant.headers
        )
        assert merged.status_code == 200
        with db.transaction(write=False) as session:
            [(conversation_id, channel_id, preview)] = session.execute(
                select(Conversation.id, Conversation.channel_id, Conversation.last_message_preview).where(
                    Conversation.contact_id == older
                )
            ).all()
        assert (channel_id, preview) == (second, "two")
        shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
        assert shown["default_channel_id"] == second
        assert _send(client, tenant, older)["channel_id"] == second
