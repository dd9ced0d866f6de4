"""Every trigger and step against the app's services, on both databases. The queue does not run
inline here: each test feeds the trigger consumer and sweeps due runs itself (support.feed)."""

from typing import Any

import pytest
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact, FieldType
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.users.models import User
from tertulia.users.permissions import Actor
from tertulia.users.service import do_set_activity_status
from tertulia.workflows import runner, service
from tertulia.workflows.models import WorkflowRun
from tests.conftest import Tenant
from tests.webhooks.support import receiver
from tests.workflows.support import (
    customer_writes,
    dispatch,
    feed,
    logs,
    open_conversation,
    publish,
    runs,
    sent_texts,
    tags_of,
)

pytestmark = pytest.mark.usefixtures("no_background_work")


def one(*steps: dict[str, Any], trigger: dict[str, Any]) -> dict[str, Any]:
    return {"trigger": trigger, "steps": list(steps)}


def contact(db: Database, contact_id: int) -> Contact:
    with db.transaction(write=False) as session:
        found = session.get(Contact, contact_id)
        assert found is not None
        session.expunge(found)
        return found


def act(db: Database, tenant: Tenant, contact_id: int, do: Any) -> None:
    with db.transaction() as session:
        found = session.get(Contact, contact_id)
        assert found is not None
        do(session, tenant.actor(), found)


TAG_MARK = {"id": "mark", "type": "add_tags", "config": {"tags": ["hit"]}}


def test_tag_added_and_removed_triggers_by_tag(db: Database, tenant: Tenant, channel: Channel) -> None:
    added = publish(db, tenant, one(TAG_MARK, trigger={"type": "tag_added", "config": {"tags": ["VIP"]}}))
    removed = publish(
        db,
        tenant,
        one(
            {"id": "x", "type": "add_tags", "config": {"tags": ["gone"]}},
            trigger={"type": "tag_removed", "config": {"tags": ["vip"]}},
        ),
    )
    contact_id = customer_writes(db, channel, "t1", "hola")
    act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["otra"]))
    feed(db)
    assert runs(db, added) == []
    act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["vip"]))
    act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_remove_tags(s, a, c, ["vip"]))
    feed(db)
    assert tags_of(db, contact_id) == ["gone", "hit", "otra"]
    assert runs(db, added)[0].state["trigger"] == {"tag": "vip"}
    assert [r.status for r in runs(db, removed)] == ["finished"]


def test_field_changed_trigger_and_update_field_step(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        contacts_service.do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
    flow = one(
        {
            "id": "set",
            "type": "update_field",
            "config": {"field": "last_name", "value": "{{trigger.new_value}} {{contact.custom.plan}}"},
        },
        trigger={"type": "field_changed", "config": {"fields": ["plan"]}},
    )
    workflow_id = publish(db, tenant, flow)
    contact_id = customer_writes(db, channel, "f1", "hola")
    act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_update_contact(s, a, c, {"first_name": "Ana"}))
    feed(db)
    assert runs(db, workflow_id) == []
    act(
        db,
        tenant,
        contact_id,
        lambda s, a, c: contacts_service.do_update_contact(s, a, c, {"custom_fields": {"plan": "oro"}}),
    )
    feed(db)
    assert contact(db, contact_id).last_name == "oro oro"


def test_conversation_closed_by_a_user_with_a_category(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        sale = conversations_service.do_create_closing_category(session, tenant.actor(), "Venta").id
        other = conversations_service.do_create_closing_category(session, tenant.actor(), "Otro").id
    flow = one(
        {"id": "thanks", "type": "send_message", "config": {"text": "Gracias por tu compra ({{trigger.summary}})"}},
        trigger={"type": "conversation_closed", "config": {"sources": ["user"], "category_ids": [sale]}},
    )
    workflow_id = publish(db, tenant, flow)
    for sender, category in (("c1", other), ("c2", sale)):
        contact_id = customer_writes(db, channel, sender, "hola")
        conversation = open_conversation(db, contact_id)
        assert conversation is not None
        with db.transaction() as session:
            found = session.get(Conversation, conversation.id)
            assert found is not None
            conversations_service.do_close(session, tenant.actor(), found, category_id=category, summary="pedido 7")
    feed(db)
    [run] = runs(db, workflow_id)
    assert sent_texts(db, run.contact_id) == ["Gracias por tu compra (pedido 7)"]


def test_broadcast_reply_trigger(db: Database, tenant: Tenant, channel: Channel) -> None:
    named = publish(db, tenant, one(TAG_MARK, trigger={"type": "broadcast_replied", "config": {}}), name="A")
    only_5 = publish(
        db,
        tenant,
        one(
            {"id": "x", "type": "add_tags", "config": {"tags": ["five"]}},
            trigger={"type": "broadcast_replied", "config": {"broadcast_ids": [5]}},
        ),
        name="B",
    )
    contact_id = customer_writes(db, channel, "b1", "hola")
    with db.transaction() as session:
        payload = {
            "broadcast_id": 9,
            "contact_id": contact_id,
            "channel_id": channel.id,
            "message_id": 1,
            "reply_message_id": 2,
            "workflow_id": named,
        }
        event_log.emit(
            session, event_log.Event(EventType.BROADCAST_REPLIED, tenant.workspace_id, payload, contact_id=contact_id)
        )
    feed(db)
    assert tags_of(db, contact_id) == ["hit"]
    assert runs(db, only_5) == []


def test_blocked_contacts_and_imports_trigger_nothing(db: Database, tenant: Tenant, channel: Channel) -> None:
    workflow_id = publish(db, tenant, one(TAG_MARK, trigger={"type": "tag_added", "config": {}}))
    blocked = customer_writes(db, channel, "k1", "hola")
    act(db, tenant, blocked, contacts_service.do_block_contact)
    act(db, tenant, blocked, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["x"]))
    imported = customer_writes(db, channel, "k2", "hola")
    with db.transaction() as session:
        found = session.get(Contact, imported)
        assert found is not None
        contacts_service.do_add_tags(session, Actor.system(tenant.workspace_id, "import"), found, ["x"])
    feed(db)
    assert runs(db, workflow_id) == []


def test_once_per_contact_and_one_run_at_a_time(db: Database, tenant: Tenant, channel: Channel) -> None:
    waiting = {"id": "w", "type": "wait", "config": {"duration": {"amount": 1, "unit": "days"}}}
    at_a_time = publish(db, tenant, one(waiting, trigger={"type": "tag_added", "config": {}}), name="A")
    once = publish(
        db, tenant, one(TAG_MARK, trigger={"type": "tag_added", "config": {}, "once_per_contact": True}), name="B"
    )
    contact_id = customer_writes(db, channel, "o1", "hola")
    for tag in ("a", "b", "c"):
        act(db, tenant, contact_id, lambda s, a, c, tag=tag: contacts_service.do_add_tags(s, a, c, [tag]))
        feed(db)
    assert len(runs(db, at_a_time)) == 1
    assert len(runs(db, once)) == 1


def test_assign_round_robin_least_open_online_and_unassign(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        for user_id in (tenant.manager_id, tenant.agent_id):
            user = session.get(User, user_id)
            assert user is not None
            do_set_activity_status(session, user, "online")
    robin = publish(
        db,
        tenant,
        one(
            {"id": "a", "type": "assign", "config": {"to": "workspace", "only_online": True}},
            trigger={"type": "conversation_opened", "config": {}},
        ),
    )
    contacts = [customer_writes(db, channel, f"r{i}", "hola") for i in range(4)]
    feed(db)
    assignees = [open_conversation(db, c).assignee_id for c in contacts]  # type: ignore[union-attr]
    online = sorted([tenant.manager_id, tenant.agent_id])
    assert assignees == [online[0], online[1], online[0], online[1]]
    assert all(r.status == "finished" for r in runs(db, robin))
    with db.transaction() as session:
        service.do_stop(session, tenant.actor(), service.access_workflow(session, tenant.actor(), robin))
    publish(
        db,
        tenant,
        one(
            {"id": "a", "type": "assign", "config": {"to": "workspace", "strategy": "least_open"}},
            trigger={"type": "conversation_opened", "config": {}},
        ),
        name="L",
    )
    newcomer = customer_writes(db, channel, "r9", "hola")
    feed(db)
    assert open_conversation(db, newcomer).assignee_id == tenant.owner_id  # type: ignore[union-attr]
    publish(db, tenant, one({"id": "u", "type": "unassign"}, trigger={"type": "tag_added", "config": {}}), name="U")
    act(db, tenant, newcomer, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["x"]))
    feed(db)
    assert open_conversation(db, newcomer).assignee_id is None  # type: ignore[union-attr]


def test_comment_close_open_and_start_another_workflow(db: Database, tenant: Tenant, channel: Channel) -> None:
    child = publish(
        db,
        tenant,
        one(
            {"id": "note", "type": "add_comment", "config": {"text": "de {{trigger.workflow_id}}: {{trigger.n}}"}},
            trigger={"type": "manual"},
        ),
        name="Child",
    )
    parent = one(
        {
            "id": "ask",
            "type": "ask_question",
            "config": {"text": "¿Número?", "kind": "number", "save_to": {"kind": "variable", "name": "n"}},
            "next": "close",
        },
        {"id": "close", "type": "close_conversation", "config": {"summary": "n={{vars.n}}"}, "next": "open"},
        {"id": "open", "type": "open_conversation", "next": "start"},
        {"id": "start", "type": "start_workflow", "config": {"workflow_id": child}},
        trigger={"type": "tag_added", "config": {}},
    )
    parent_id = publish(db, tenant, parent, name="Parent")
    contact_id = customer_writes(db, channel, "s1", "hola")
    act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["go"]))
    feed(db)
    customer_writes(db, channel, "s1", "42")
    feed(db)
    assert [r.status for r in runs(db, parent_id)] == ["finished"]
    with db.transaction(write=False) as session:
        closed = session.scalars(
            select(Conversation).where(Conversation.contact_id == contact_id).order_by(Conversation.id)
        ).all()
        assert [c.status for c in closed] == ["closed", "open"]
        assert closed[0].closing_summary == "n=42"
        notes = session.scalars(
            select(Message.text).where(Message.contact_id == contact_id, Message.direction == Direction.COMMENT)
        ).all()
    assert notes == [f"de {parent_id}: 42"]
    assert [r.status for r in runs(db, child)] == ["finished"]


def test_http_request_maps_the_answer_and_private_addresses_are_refused(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with receiver() as server:
        flow = one(
            {
                "id": "call",
                "type": "http_request",
                "config": {
                    "url": server.url,
                    "body": '{"email": "{{contact.email | "none"}}"}',
                    "response": [{"path": "$.ok", "variable": "ok"}],
                    "status_variable": "code",
                },
                "next": "tag",
                "on": {"failure": "failed"},
            },
            {"id": "tag", "type": "add_tags", "config": {"tags": ["ok"]}},
            {"id": "failed", "type": "add_tags", "config": {"tags": ["failed"]}},
            trigger={"type": "tag_added", "config": {"tags": ["go"]}},
        )
        workflow_id = publish(db, tenant, flow)
        first = customer_writes(db, channel, "h1", "hola")
        act(db, tenant, first, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["go"]))
        feed(db)  # allows private addresses, as a test server needs
        [request] = server.requests
        assert request.json == {"email": "none"}
        assert request.headers["idempotency-key"].startswith("wfrun-")
        [run] = runs(db, workflow_id)
        assert run.state["vars"] == {"ok": True, "code": 200}
        second = customer_writes(db, channel, "h2", "hola")
        act(db, tenant, second, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["go"]))
        feed(db, allow_private=False)
        assert len(server.requests) == 1
    assert "failed" in tags_of(db, second)
    failed_run = runs(db, workflow_id)[-1]
    assert any("refused" in (outcome or "") or step == "call" for step, outcome in logs(db, failed_run.id))


def test_stopping_a_workflow_ends_its_runs_and_starts_no_more(db: Database, tenant: Tenant, channel: Channel) -> None:
    waiting = {"id": "w", "type": "wait", "config": {"duration": {"amount": 1, "unit": "days"}}, "next": "t"}
    workflow_id = publish(db, tenant, one(waiting, TAG_MARK | {"id": "t"}, trigger={"type": "tag_added", "config": {}}))
    first = customer_writes(db, channel, "z1", "hola")
    act(db, tenant, first, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["a"]))
    feed(db)
    with db.transaction() as session:
        stopped = service.do_stop(
            session, tenant.actor(), service.access_workflow(session, tenant.actor(), workflow_id)
        )
    assert stopped == 1
    [run] = runs(db, workflow_id)
    assert run.status == "stopped"
    assert run.active_contact_id is None
    assert logs(db, run.id)[-1] == ("w", "stopped")
    second = customer_writes(db, channel, "z2", "hola")
    act(db, tenant, second, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["a"]))
    feed(db)
    assert len(runs(db, workflow_id)) == 1


def test_a_message_during_an_http_request_does_not_send_it_again(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with receiver() as server:
        flow = one(
            {"id": "call", "type": "http_request", "config": {"url": server.url, "body": '{"a": 1}'}, "next": "wait"},
            {
                "id": "wait",
                "type": "wait",
                "config": {"duration": {"amount": 1, "unit": "hours"}, "until_contact_writes": True},
            },
            trigger={"type": "tag_added", "config": {}},
        )
        workflow_id = publish(db, tenant, flow)
        contact_id = customer_writes(db, channel, "w1", "hola")
        act(db, tenant, contact_id, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["go"]))
        dispatch(db)
        [run] = runs(db, workflow_id)
        with db.transaction() as session:
            call = runner.turn(session, run.id, utcnow())  # the request is under way (not made yet)
        assert call is not None
        customer_writes(db, channel, "w1", "¿sigues ahí?")
        dispatch(db)
        runner.run_due(db, policy=runner.Policy(allow_private=True))
        assert server.requests == []  # the lease holds: nobody sends it a second time
        outcome = runner.http_request(call, runner.Policy(allow_private=True))
        with db.transaction() as session:
            stored = session.get(WorkflowRun, run.id)
            assert stored is not None
            runner._record_effect(session, stored, call.key, call.step_id, "http_request", outcome)
            stored.due_at = utcnow()
        runner.run_due(db, policy=runner.Policy(allow_private=True))
        assert len(server.requests) == 1
    [run] = runs(db, workflow_id)
    assert run.status == "waiting"  # the message came before the wait began, so it did not cut it short
