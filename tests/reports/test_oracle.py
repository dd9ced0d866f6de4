"""The rollups against a plain recomputation from the inbox's own tables, for random days of work:
customers writing, people, bots and workflows replying, conversations assigned, unassigned, closed
and reopened. Also the report read
before the consumer ran (the events replayed in memory) against the report read after."""

import itertools
import random
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.models import Conversation, Direction, Message, SenderKind
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit import queue
from tertulia.kit.clock import as_utc
from tertulia.kit.db import Database
from tertulia.reports import histogram
from tertulia.users.models import Role
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import Shop, at, feed, report, system

DAY = "2026-11-04"


def _play(shop: Shop, tenant: Tenant, rng: random.Random, steps: int = 60, customers: str = "+521555000") -> None:
    """`steps` random things happening on DAY, to six customers whose numbers start `customers`."""
    clock = datetime.fromisoformat(f"{DAY} 01:00")
    open_ids: dict[str, int] = {}
    closed_ids: dict[str, int] = {}
    people = [tenant.owner_id, tenant.agent_id]
    assignees: dict[int, int | None] = {}
    for _ in range(steps):
        clock += timedelta(seconds=rng.choice([5, 40, 150, 400, 900, 2400]))
        with at(clock.isoformat(sep=" ")):
            action = rng.random()
            reopenable = sorted(set(closed_ids) - set(open_ids))
            if action >= 0.9 and reopenable:
                sender = rng.choice(reopenable)
                shop.reopen(closed_ids[sender])
                open_ids[sender] = closed_ids.pop(sender)
            elif action < 0.3 or action >= 0.9 or not open_ids:
                sender = f"{customers}{rng.randint(100, 105)}"
                open_ids[sender] = shop.customer_writes(sender)
            else:
                sender = rng.choice(sorted(open_ids))
                conversation = open_ids[sender]
                if action < 0.48:
                    # An agent may reply to conversations of theirs or of nobody's.
                    by_agent = rng.random() < 0.5 and assignees.get(conversation) in (None, tenant.agent_id)
                    shop.reply(conversation, tenant.actor(Role.AGENT) if by_agent else tenant.actor())
                elif action < 0.54:
                    shop.reply(conversation, system(tenant, rng.choice(["bot", "workflow"])), "automático")
                elif action < 0.74:  # assignments are frequent, so reassignments happen
                    assignees[conversation] = rng.choice(people)
                    shop.assign(conversation, assignees[conversation])
                elif action < 0.77:
                    assignees[conversation] = None
                    shop.unassign(conversation)
                else:
                    shop.close(conversation)
                    closed_ids[sender] = open_ids.pop(sender)


# What happens to a conversation, in the order it happened: a customer's message, a person's reply,
# an assignment (to someone, or to nobody), a closing, a reopening. Others' messages change nothing.
IN, REPLY, ASSIGNED, CLOSED, REOPENED = "in", "reply", "assigned", "closed", "reopened"


def _timelines(messages: list[Message], events: list[EventRecord]) -> dict[int, list[tuple[datetime, str, Any]]]:
    timelines: dict[int, list[tuple[datetime, str, Any]]] = defaultdict(list)
    for m in messages:
        if m.direction == Direction.INCOMING:
            timelines[m.conversation_id].append((as_utc(m.created_at), IN, None))
        elif m.direction == Direction.OUTGOING and m.sender_kind == SenderKind.USER:
            timelines[m.conversation_id].append((as_utc(m.created_at), REPLY, None))
    kinds = {
        EventType.CONVERSATION_ASSIGNED: ASSIGNED,
        EventType.CONVERSATION_UNASSIGNED: ASSIGNED,
        EventType.CONVERSATION_CLOSED: CLOSED,
        EventType.CONVERSATION_REOPENED: REOPENED,
    }
    for event in events:
        if event.type in kinds and event.conversation_id is not None:
            change = (event.payload["conversation"].get("assignee_id"), event.payload.get("previous_assignee_id"))
            timelines[event.conversation_id].append((as_utc(event.created_at), kinds[event.type], change))
    for timeline in timelines.values():
        timeline.sort(key=lambda item: item[0])
    return timelines


def _recomputed(db: Database, channel_id: int) -> dict[str, Any]:
    """The definitions of docs/reports.md, straight from the channel's conversations, their messages
    and their assignment, closing and reopening events, one conversation at a time."""
    with db.transaction(write=False) as session:
        conversations = list(session.scalars(select(Conversation).where(Conversation.channel_id == channel_id)))
        ids = [c.id for c in conversations]
        messages = list(
            session.scalars(
                select(Message).where(Message.conversation_id.in_(ids)).order_by(Message.created_at, Message.id)
            )
        )
        events = list(
            session.scalars(select(EventRecord).where(EventRecord.conversation_id.in_(ids)).order_by(EventRecord.id))
        )
    times: dict[str, list[float]] = defaultdict(list)
    replies = 0
    replied: set[int] = set()
    for conversation_id, timeline in _timelines(messages, events).items():
        is_open, responded, first_assigned = True, False, False
        waiting: datetime | None = None  # the first response's clock
        clocks: dict[str, datetime | None] = dict.fromkeys(
            ("reply_time", "first_assign_response", "last_assign_response")
        )
        for when, kind, change in timeline:
            if kind == IN and is_open:
                if waiting is None and not responded:
                    waiting = when
                if clocks["reply_time"] is None:
                    clocks["reply_time"] = when
            elif kind == REPLY:
                replies += 1
                replied.add(conversation_id)
                if waiting is not None and not responded:
                    times["first_response"].append((when - waiting).total_seconds())
                    responded = True
                for metric, since in clocks.items():
                    if since is not None:
                        times[metric].append((when - since).total_seconds())
                        clocks[metric] = None
            elif kind == ASSIGNED:
                assignee, previous = change
                if assignee is not None and assignee != previous:
                    clocks["last_assign_response"] = when
                    if not first_assigned:
                        first_assigned = True
                        clocks["first_assign_response"] = when
                elif assignee is None:
                    clocks["last_assign_response"] = None
            else:  # a closing or a reopening ends the open period
                is_open = kind == REOPENED
                waiting, responded = None, False
                clocks = dict.fromkeys(clocks)
    return {
        "opened": len(conversations),
        "closed": sum(1 for e in events if e.type == EventType.CONVERSATION_CLOSED),
        "reopened": sum(1 for e in events if e.type == EventType.CONVERSATION_REOPENED),
        "incoming": sum(1 for m in messages if m.direction == Direction.INCOMING),
        "outgoing": sum(1 for m in messages if m.direction == Direction.OUTGOING),
        "times": times,
        "replies": replies,
        "replied_conversations": len(replied),
    }


def _summary(tables: dict[str, Any]) -> dict[str, dict[str, Any]]:
    table = tables["summary"]
    return {row[0]: dict(zip(table["columns"], row, strict=True)) for row in table["rows"]}


def _agrees(row: dict[str, Any], values: list[float]) -> None:
    """A summary row of a time against the exact times: the count and the average exactly, the
    median within the histogram's bound."""
    times = sorted(values)
    assert row["count"] == len(times), row
    if not times:
        assert row["median_seconds"] is None
        return
    assert abs(row["average_seconds"] - sum(times) / len(times)) <= 0.1, row
    exact_median = times[max(1, -(-len(times) // 2)) - 1]
    assert abs(row["median_seconds"] - exact_median) <= max(1.0, 0.091 * exact_median) + 0.1, row


REPORTS = ("conversations", "responses", "messages")


def _run(
    db: Database, tenant: Tenant, client: TestClient, rng: random.Random, steps: int, customers: str, filtered: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A random day of work on a new channel: the reports read before the consumer ran (the events
    replayed in memory) must be those read after; the tables after, and the recomputation. Filtered
    on the channel, the reports read the detailed rollups; unfiltered, the workspace's totals."""
    queue.huey.immediate = False  # the consumer runs only when fed
    try:
        with fake_provider() as provider:
            with db.transaction() as session:
                channel: Channel = do_create_channel(
                    session, tenant.actor(), "fakehttp", "Tienda", {"url": provider.url}
                )
            params: dict[str, Any] = {"range": "custom", "from": DAY, "to": DAY}
            if filtered:
                params["channel_id"] = channel.id
            _play(Shop(db, tenant, channel.id), tenant, rng, steps, customers)
            before = {name: report(client, tenant, name, **params)["tables"] for name in REPORTS}
            feed(db)
            after = {name: report(client, tenant, name, **params)["tables"] for name in REPORTS}
    finally:
        queue.huey.flush()
        queue.huey.immediate = True
    assert before == after
    return after, _recomputed(db, channel.id)


def _check(after: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every number the recomputation has, against the report's."""
    conversations, messages = _summary(after["conversations"]), _summary(after["messages"])
    responses = _summary(after["responses"])
    assert conversations["opened"]["count"] == expected["opened"]
    assert conversations["closed"]["count"] == expected["closed"]
    assert conversations["reopened"]["count"] == expected["reopened"]
    assert messages["incoming"]["count"] == expected["incoming"]
    assert messages["outgoing"]["count"] == expected["outgoing"]
    times = expected["times"]
    _agrees(conversations["first_response"], times["first_response"])
    for metric in ("first_response", "reply_time", "first_assign_response", "last_assign_response"):
        _agrees(responses[metric], times[metric])
    for table, metric in (("buckets", "first_response"), ("reply_buckets", "reply_time")):
        buckets = [row[1] for row in after["responses"][table]["rows"]]
        assert buckets == histogram.response_table(histogram.from_values(times[metric])), table
    per = after["responses"]["per_conversation"]
    row = dict(zip(per["columns"], per["rows"][0], strict=True))
    assert (row["replies"], row["conversations"]) == (expected["replies"], expected["replied_conversations"])
    replied = expected["replied_conversations"]
    assert row["average"] == (round(expected["replies"] / replied, 2) if replied else None)


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_rollups_agree_with_a_recomputation_from_the_inbox(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, seed: int
) -> None:
    after, expected = _run(db, tenant, client, random.Random(seed), 60, "+521555000", filtered=False)
    _check(after, expected)
    # These seeds' days have closings, reopenings, answered customers and answered assignments, so
    # the comparisons bite.
    times = expected["times"]
    assert expected["closed"] > 0
    assert expected["reopened"] > 0
    assert times["first_response"]
    assert len(times["reply_time"]) > len(times["first_response"])
    assert times["first_assign_response"]
    # A reassignment (or a second assignment after a reply) sets the two assignment times apart.
    assert sorted(times["last_assign_response"]) != sorted(times["first_assign_response"])


_examples = itertools.count(1)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rng=st.randoms(use_true_random=False), steps=st.integers(min_value=1, max_value=40))
def test_any_day_of_work_agrees_with_the_recomputation(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, rng: random.Random, steps: int
) -> None:
    # Each example on a channel of its own, with customers of its own: the examples share the database.
    after, expected = _run(db, tenant, client, rng, steps, f"+52{next(_examples):03d}5550", filtered=True)
    _check(after, expected)
