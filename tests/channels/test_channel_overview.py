"""Settings > Channels per channel: its state, and its messages in and out today (in the workspace's
time zone, counted through an index on both databases); a disconnected channel's history stays
readable in the inbox."""

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.service import (
    do_create_channel,
    last_received,
    last_received_query,
    message_counts,
    message_counts_query,
)
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message, SenderKind
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.conversations.support import SHOP, new_visitor
from tests.web.helpers import sign_in_as

ZONE = ZoneInfo("America/Mexico_City")  # the tenant fixture's time zone


def _midnight_here() -> datetime:
    return datetime.combine(datetime.now(ZONE).date(), time(), tzinfo=ZONE)


def _webchat(db: Database, tenant: Tenant, name: str) -> Channel:
    with db.transaction() as session:
        return do_create_channel(session, tenant.actor(), "webchat", name, {"allowed_origins": [SHOP]})


def _messages(session: Session, tenant: Tenant, channel_id: int, *rows: tuple[Direction, datetime]) -> None:
    contact = Contact(workspace_id=tenant.workspace_id, first_name="Eva", first_name_folded="eva", custom={})
    session.add(contact)
    session.flush()
    conversation = Conversation(
        workspace_id=tenant.workspace_id,
        contact_id=contact.id,
        channel_id=channel_id,
        status=ConversationStatus.OPEN,
        last_message_at=utcnow(),
    )
    session.add(conversation)
    session.flush()
    for direction, at in rows:
        session.add(
            Message(
                workspace_id=tenant.workspace_id,
                conversation_id=conversation.id,
                contact_id=contact.id,
                channel_id=channel_id,
                direction=direction,
                sender_kind=SenderKind.CONTACT if direction == Direction.INCOMING else SenderKind.USER,
                type="text",
                text="x",
                created_at=at,
            )
        )
    session.flush()


def test_messages_in_and_out_today_in_the_workspaces_time_zone(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    busy, quiet = _webchat(db, tenant, "Busy"), _webchat(db, tenant, "Quiet")
    midnight = _midnight_here()
    with db.transaction() as session:
        _messages(
            session,
            tenant,
            busy.id,
            (Direction.INCOMING, midnight + timedelta(seconds=1)),
            (Direction.INCOMING, midnight + timedelta(seconds=2)),
            (Direction.OUTGOING, midnight + timedelta(seconds=3)),
            (Direction.COMMENT, midnight + timedelta(seconds=4)),  # a note is neither in nor out
            (Direction.INCOMING, midnight - timedelta(seconds=1)),  # late yesterday here (today in UTC)
            (Direction.OUTGOING, midnight - timedelta(days=3)),
        )
    with db.transaction(write=False) as session:
        assert message_counts(session, [busy.id, quiet.id], midnight) == {
            busy.id: {"incoming": 2, "outgoing": 1},
            quiet.id: {"incoming": 0, "outgoing": 0},
        }
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/channels")
    assert page.status_code == 200
    assert re.findall(r'data-testid="channel-today">([^<]*)<', page.text) == ["2 / 1", "0 / 0"]


def test_the_count_reads_a_range_of_the_index(db: Database, tenant: Tenant) -> None:
    query = message_counts_query([1, 2], _midnight_here())
    with db.transaction(write=False) as session:
        dialect = session.get_bind().dialect
        sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "COVERING INDEX ix_messages_channel_id_direction_created_at" in plan, plan
            assert "created_at>?" in plan.replace(" ", ""), plan  # the day is a range, not a filter
        else:
            # An empty table is cheapest to read whole; with that off, the planner must find the index.
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(str(row[0]) for row in session.execute(text("EXPLAIN " + sql)))
            assert "Index Only Scan using ix_messages_channel_id_direction_created_at" in plan, plan
            index_condition = next(line for line in plan.splitlines() if "Index Cond" in line)
            assert "created_at >=" in index_condition, plan


def test_a_disconnected_channels_conversations_stay_readable(client: TestClient, db: Database, tenant: Tenant) -> None:
    channel = _webchat(db, tenant, "Old site")
    visitor = new_visitor(client, channel, name="Iris Soto")
    visitor.say("¿Seguís abiertos?")
    with db.transaction(write=False) as session:
        conversation_id = session.scalars(select(Conversation.id).where(Conversation.channel_id == channel.id)).one()
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    off = client.post(f"/settings/channels/{channel.id}/disconnect", data={"csrf_token": csrf})
    assert off.status_code == 200
    client.cookies.clear()

    listed = client.get("/api/v1/conversations?view=all&status=all", headers=tenant.headers).json()["items"]
    assert [(c["id"], c["channel_id"]) for c in listed] == [(conversation_id, channel.id)]
    thread = client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=tenant.headers).json()["items"]
    assert [(m["text"], m["channel_id"]) for m in thread] == [("¿Seguís abiertos?", channel.id)]
    # Nothing more goes out through it, and the refusal names the rule.
    shown = client.get(f"/api/v1/conversations/{conversation_id}", headers=tenant.headers).json()
    assert shown["reply_channels"] == []
    refused = client.post(
        f"/api/v1/conversations/{conversation_id}/messages",
        headers=tenant.headers,
        json={"type": "text", "text": "Sí"},
    )
    assert refused.status_code == 422
    assert refused.json()["error"]["details"] == {"channel_id": "this channel is disabled"}

    # The inbox page still names the channel of the conversation and its messages.
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    page = client.get(f"/messages/{conversation_id}")
    assert page.status_code == 200
    # (A web chat has no reply buttons to offer in the composer.)
    assert f'{{"id": {channel.id}, "name": "Old site", "reply_choices": null, "type": "webchat"}}' in page.text
    client.cookies.clear()
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    overview = client.get("/settings/channels")
    assert re.search(r'data-testid="channel-today">1 / 0<', overview.text)
    assert "Disconnected" in overview.text


def test_last_received_is_the_newest_incoming_message_of_each_channel(db: Database, tenant: Tenant) -> None:
    busy, quiet = _webchat(db, tenant, "Busy"), _webchat(db, tenant, "Quiet")
    now = utcnow().replace(microsecond=0)
    with db.transaction() as session:
        _messages(
            session,
            tenant,
            busy.id,
            (Direction.INCOMING, now - timedelta(days=2)),
            (Direction.INCOMING, now - timedelta(hours=5)),
            (Direction.INCOMING, now - timedelta(days=1)),  # written later, older
            (Direction.OUTGOING, now - timedelta(hours=1)),  # ours: not received
            (Direction.COMMENT, now - timedelta(minutes=1)),  # a note: not received
        )
        _messages(session, tenant, quiet.id, (Direction.OUTGOING, now))
    with db.transaction(write=False) as session:
        assert last_received(session, [busy.id, quiet.id]) == {busy.id: now - timedelta(hours=5), quiet.id: None}
        assert last_received(session, []) == {}


def test_last_received_reads_the_top_of_the_index_per_channel(db: Database, tenant: Tenant) -> None:
    query = last_received_query([1, 2])
    with db.transaction(write=False) as session:
        dialect = session.get_bind().dialect
        sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        if dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in session.execute(text("EXPLAIN QUERY PLAN " + sql)))
            assert "COVERING INDEX ix_messages_channel_id_direction_created_at" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index is already in time order
        else:
            session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(str(row[0]) for row in session.execute(text("EXPLAIN " + sql)))
            assert "Index Only Scan Backward using ix_messages_channel_id_direction_created_at" in plan, plan
            assert "Sort" not in plan, plan
