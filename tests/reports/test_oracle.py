"""The rollups against a plain recomputation from the inbox's own tables, for random days of work:
customers writing, people, bots and workflows replying, conversations closed. Also the report read
before the consumer ran (the events replayed in memory) against the report read after."""

import random
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message, SenderKind
from tertulia.kit import queue
from tertulia.kit.clock import as_utc
from tertulia.kit.db import Database
from tertulia.reports import histogram
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import Shop, at, feed, report, system

DAY = "2026-11-04"


def _play(shop: Shop, tenant: Tenant, rng: random.Random) -> None:
    clock = datetime.fromisoformat(f"{DAY} 08:00")
    open_ids: dict[str, int] = {}
    for _ in range(24):
        clock += timedelta(seconds=rng.choice([5, 40, 150, 400, 900, 2400, 4000]))
        with at(clock.isoformat(sep=" ")):
            action = rng.random()
            if action < 0.4 or not open_ids:
                sender = f"+521555000{rng.randint(100, 105)}"
                open_ids[sender] = shop.customer_writes(sender)
            else:
                sender = rng.choice(sorted(open_ids))
                conversation = open_ids[sender]
                if action < 0.6:
                    shop.reply(conversation, tenant.actor(Role.AGENT) if rng.random() < 0.5 else tenant.actor())
                elif action < 0.8:
                    shop.reply(conversation, system(tenant, rng.choice(["bot", "workflow"])), "automático")
                else:
                    shop.close(conversation)
                    del open_ids[sender]


def _recomputed(db: Database) -> dict[str, Any]:
    """The definitions of docs/reports.md, straight from conversations and messages."""
    with db.transaction(write=False) as session:
        conversations = list(session.scalars(select(Conversation)))
        messages = list(session.scalars(select(Message).order_by(Message.created_at, Message.id)))
    first_responses: list[float] = []
    for conversation in conversations:
        own = [m for m in messages if m.conversation_id == conversation.id]
        waiting = next((m.created_at for m in own if m.direction == Direction.INCOMING), None)
        if waiting is None:
            continue
        reply = next(
            (
                m.created_at
                for m in own
                if m.direction == Direction.OUTGOING and m.sender_kind == SenderKind.USER and m.created_at >= waiting
            ),
            None,
        )
        if reply is not None:
            first_responses.append((as_utc(reply) - as_utc(waiting)).total_seconds())
    return {
        "opened": len(conversations),
        "closed": sum(1 for c in conversations if c.status == ConversationStatus.CLOSED),
        "incoming": sum(1 for m in messages if m.direction == Direction.INCOMING),
        "outgoing": sum(1 for m in messages if m.direction == Direction.OUTGOING),
        "first_responses": first_responses,
    }


def _summary(tables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = tables["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rollups_agree_with_a_recomputation_from_the_inbox(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, seed: int
) -> None:
    params = {"range": "custom", "from": DAY, "to": DAY}
    queue.huey.immediate = False  # the consumer runs only when fed
    try:
        with fake_provider() as provider:
            with db.transaction() as session:
                channel: Channel = do_create_channel(
                    session, tenant.actor(), "fakehttp", "Tienda", {"url": provider.url}
                )
            _play(Shop(db, tenant, channel.id), tenant, random.Random(seed))
            before = {
                name: report(client, tenant, name, **params)["tables"]
                for name in ("conversations", "responses", "messages")
            }
            feed(db)
            after = {
                name: report(client, tenant, name, **params)["tables"]
                for name in ("conversations", "responses", "messages")
            }
    finally:
        queue.huey.flush()
    assert before == after
    expected = _recomputed(db)
    conversations, messages = _summary(after["conversations"]), _summary(after["messages"])
    assert conversations["opened"]["count"] == expected["opened"]
    assert conversations["closed"]["count"] == expected["closed"]
    assert messages["incoming"]["count"] == expected["incoming"]
    assert messages["outgoing"]["count"] == expected["outgoing"]
    times = sorted(expected["first_responses"])
    first = conversations["first_response"]
    assert first["count"] == len(times)
    # These seeds' days have closings and answered customers, so the comparisons below bite.
    assert expected["closed"] > 0
    assert times
    assert abs(first["average_seconds"] - sum(times) / len(times)) <= 0.1
    exact_median = times[max(1, -(-len(times) // 2)) - 1]
    assert abs(first["median_seconds"] - exact_median) <= max(1.0, 0.091 * exact_median) + 0.1
    buckets = {row[0]: row[1] for row in after["responses"]["buckets"]["rows"]}
    assert list(buckets.values()) == histogram.response_table(histogram.from_values(times))
