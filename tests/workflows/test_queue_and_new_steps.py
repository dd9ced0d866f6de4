"""The date & time step, the assignment queue, the hand-off to the assistant and location answers
against the app's services, on both databases. The queue does not run inline: each test feeds the
trigger consumer and the runner itself."""

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.assistant import bot_settings
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage, MessageType
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Conversation
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.users import presence
from tertulia.users.presence import MemoryPresenceStore
from tertulia.users.teams import do_create_team, do_set_team_members
from tertulia.workflows import queue, runner, service
from tertulia.workflows.models import WorkflowQueueEntry, WorkflowRun
from tertulia.workflows.simulate import simulate
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.workflows.support import (
    advance,
    counter,
    customer_writes,
    dispatch,
    feed,
    logs,
    open_conversation,
    publish,
    runs,
    set_status,
    tags_of,
)

pytestmark = pytest.mark.usefixtures("no_background_work")

OPENED = {"type": "conversation_opened", "config": {}}


def tag(name: str) -> dict[str, Any]:
    return {"id": name, "type": "add_tags", "config": {"tags": [name]}}


def queued_run_ids(db: Database, workspace_id: int) -> list[int]:
    with db.transaction(write=False) as session:
        return [entry.run_id for entry in queue.waiting(session, workspace_id)]


def run_of(db: Database, workflow_id: int, contact_id: int) -> WorkflowRun:
    return next(r for r in runs(db, workflow_id) if r.contact_id == contact_id)


ALL_WEEK = {day: [{"start": "00:00", "end": "24:00"}] for day in ("monday", "tuesday", "wednesday", "thursday")}
ALL_WEEK |= {day: [{"start": "00:00", "end": "24:00"}] for day in ("friday", "saturday", "sunday")}


def publish_assign(db: Database, tenant: Tenant, config: dict[str, Any], *, tag_on_timeout: str = "") -> int:
    """Publishes a workflow on opened conversations whose assign step "a" (with `config`) goes on to
    tag "ok"; with `tag_on_timeout`, a queue timeout tags that instead. The workflow's id."""
    assign: dict[str, Any] = {"id": "a", "type": "assign", "config": config, "next": "ok"}
    steps = [assign, tag("ok")]
    if tag_on_timeout:
        assign["on"] = {"timeout": tag_on_timeout}
        steps.append(tag(tag_on_timeout))
    return publish(db, tenant, {"trigger": OPENED, "steps": steps})


def test_date_time_reads_the_workspace_or_the_conversation_teams_hours(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with db.transaction() as session:
        do_set_business_hours(session, tenant.actor(), {"timezone": "UTC", "week": ALL_WEEK})
        night = do_create_team(session, tenant.actor(), "Closed team")
        # The team has hours of its own: no block on any day, so it is always closed.
        do_set_business_hours(session, tenant.actor(), {"timezone": "UTC", "week": {}}, team_id=night.id)
        team_id = night.id
    workflow_id = publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {}},
            "steps": [
                {
                    "id": "d",
                    "type": "date_time",
                    "config": {"mode": "business_hours"},
                    "next": "in",
                    "on": {"failure": "out"},
                },
                tag("in"),
                tag("out"),
            ],
        },
    )
    open_hours = customer_writes(db, channel, "h1", "hola")
    closed_team = customer_writes(db, channel, "h2", "hola")
    with db.transaction() as session:
        conversation = session.scalar(select(Conversation).where(Conversation.contact_id == closed_team))
        assert conversation is not None
        conversations_service.do_assign(session, tenant.actor(), conversation, user_id=None, team_id=team_id)
        for contact_id in (open_hours, closed_team):
            contact = session.get(Contact, contact_id)
            assert contact is not None
            contacts_service.do_add_tags(session, tenant.actor(), contact, ["go"])
    feed(db)
    assert tags_of(db, open_hours) == ["go", "in"]
    assert tags_of(db, closed_team) == ["go", "out"]
    assert ("d", "outside") in logs(db, run_of(db, workflow_id, closed_team).id)
    # Simulation reads the same hours at the moment it is given.
    with db.transaction(write=False) as session:
        checked = service.check_definition(
            session,
            tenant.workspace_id,
            service.current_definition(session, service.access_workflow(session, tenant.actor(), workflow_id)),
            workflow_id,
        )
        contact = session.get(Contact, closed_team)
        assert contact is not None
        simulated = simulate(session, checked, contact, now=utcnow() + timedelta(days=3))
    assert simulated.path == ["d", "out"]
    assert {"step_id": "d", "outcome": "outside", "error": None} in simulated.logs


def test_queue_first_come_first_served_capacity_presence_and_timeout(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    set_status(db, tenant.manager_id, "online")
    workflow_id = publish_assign(
        db,
        tenant,
        {"to": "workspace", "only_online": True, "max_open": 1, "queue_timeout": {"amount": 1, "unit": "hours"}},
        tag_on_timeout="late",
    )
    first = customer_writes(db, channel, "q1", "hola")
    feed(db)
    assert open_conversation(db, first).assignee_id == tenant.manager_id  # type: ignore[union-attr]
    second = customer_writes(db, channel, "q2", "hola")
    third = customer_writes(db, channel, "q3", "hola")
    feed(db)
    queued = queued_run_ids(db, tenant.workspace_id)
    assert queued == [run_of(db, workflow_id, second).id, run_of(db, workflow_id, third).id]
    assert open_conversation(db, second).assignee_id is None  # type: ignore[union-attr]
    assert ("a", "queued") in logs(db, queued[0])

    # The manager closes the first conversation: the queue wakes. The newer run is processed first
    # on purpose and gives way to the older one, which takes the manager.
    with db.transaction() as session:
        conversation = session.scalar(select(Conversation).where(Conversation.contact_id == first))
        assert conversation is not None
        conversations_service.do_close(session, tenant.actor(), conversation, category_id=None, summary=None)
    dispatch(db)
    runner.process_run(db, queued[1])
    assert open_conversation(db, third).assignee_id is None  # type: ignore[union-attr]
    advance(db)
    assert open_conversation(db, second).assignee_id == tenant.manager_id  # type: ignore[union-attr]
    assert tags_of(db, second) == ["ok"]
    assert queued_run_ids(db, tenant.workspace_id) == [queued[1]]
    # The queue's own assignment woke it again; the manager is full, so the third stays.
    feed(db)
    assert open_conversation(db, third).assignee_id is None  # type: ignore[union-attr]

    # The agent comes online (no event: the sweep notices the new online period).
    set_status(db, tenant.agent_id, "online")
    with db.transaction() as session:
        assert queue.wake_after_presence(session) == 1
    advance(db)
    assert open_conversation(db, third).assignee_id == tenant.agent_id  # type: ignore[union-attr]
    assert queued_run_ids(db, tenant.workspace_id) == []
    with db.transaction() as session:
        assert queue.wake_after_presence(session) == 0  # nothing waits

    # Everyone is full: the fourth waits, then times out.
    fourth = customer_writes(db, channel, "q4", "hola")
    feed(db)
    assert queued_run_ids(db, tenant.workspace_id) == [run_of(db, workflow_id, fourth).id]
    advance(db, now=utcnow() + timedelta(hours=1, minutes=1))
    assert tags_of(db, fourth) == ["late"]
    assert open_conversation(db, fourth).assignee_id is None  # type: ignore[union-attr]
    assert queued_run_ids(db, tenant.workspace_id) == []
    assert all(r.status == "finished" for r in runs(db, workflow_id))


def test_a_queued_conversation_taken_by_hand_or_a_stopped_run_leaves_the_queue(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    workflow_id = publish_assign(
        db, tenant, {"to": "workspace", "only_online": True, "queue_timeout": {"amount": 2, "unit": "hours"}}
    )
    taken = customer_writes(db, channel, "t1", "hola")
    stopped = customer_writes(db, channel, "t2", "hola")
    feed(db)
    assert len(queued_run_ids(db, tenant.workspace_id)) == 2
    with db.transaction() as session:
        conversation = session.scalar(select(Conversation).where(Conversation.contact_id == taken))
        assert conversation is not None
        conversations_service.do_assign(session, tenant.actor(), conversation, user_id=tenant.owner_id, team_id=None)
        run = session.get(WorkflowRun, run_of(db, workflow_id, stopped).id)
        assert run is not None
        service.end_run(session, run, "stopped", "stopped by a person")
    feed(db)
    assert open_conversation(db, taken).assignee_id == tenant.owner_id  # type: ignore[union-attr]
    assert ("a", f"already assigned to user {tenant.owner_id}") in logs(db, run_of(db, workflow_id, taken).id)
    assert tags_of(db, taken) == ["ok"]
    with db.transaction(write=False) as session:
        assert session.scalars(select(WorkflowQueueEntry)).all() == []


def test_hand_to_assistant_turns_the_bot_on_or_takes_the_failure_branch(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    publish(
        db,
        tenant,
        {
            "trigger": {"type": "tag_added", "config": {}},
            "steps": [{"id": "h", "type": "hand_to_assistant", "on": {"failure": "off"}}, tag("off")],
        },
    )
    contact_id = customer_writes(db, channel, "b1", "hola")
    with db.transaction() as session:
        conversation = session.scalar(select(Conversation).where(Conversation.contact_id == contact_id))
        assert conversation is not None
        conversations_service.do_assign(session, tenant.actor(), conversation, user_id=tenant.agent_id, team_id=None)
        conversations_service.do_set_bot_paused(session, tenant.actor(), conversation, True)

    def tag_contact(name: str) -> None:
        with db.transaction() as session:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            contacts_service.do_add_tags(session, tenant.actor(), contact, [name])

    tag_contact("first")  # the channel's bot is off: the failure branch
    feed(db)
    assert tags_of(db, contact_id) == ["first", "off"]
    assert open_conversation(db, contact_id).bot_paused  # type: ignore[union-attr]
    with db.transaction() as session:
        bot_settings.do_save_settings(session, tenant.actor(), channel.id, {"enabled": True})
    with db.transaction() as session:
        for run in session.scalars(select(WorkflowRun)):
            run.active_contact_id = None  # let the workflow run again for this contact
    tag_contact("second")
    feed(db)
    conversation = open_conversation(db, contact_id)
    assert conversation is not None
    assert (conversation.assignee_id, conversation.bot_paused) == (None, False)
    assert tags_of(db, contact_id) == ["first", "off", "second"]


def test_a_location_question_takes_a_shared_location(db: Database, tenant: Tenant, channel: Channel) -> None:
    workflow_id = publish(
        db,
        tenant,
        {
            "trigger": OPENED,
            "steps": [
                {
                    "id": "q",
                    "type": "ask_question",
                    "config": {
                        "text": "¿Dónde estás?",
                        "kind": "location",
                        "save_to": {"kind": "variable", "name": "where"},
                    },
                }
            ],
        },
    )
    contact_id = customer_writes(db, channel, "l1", "hola")
    feed(db)
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        do_receive_many(
            session,
            [
                (
                    stored,
                    InboundMessage(
                        sender_id="l1",
                        provider_message_id=f"in-{next(counter)}",
                        type=MessageType.LOCATION,
                        payload={"location": {"latitude": 40.4168, "longitude": -3.7038, "name": "Sol"}},
                    ),
                )
            ],
        )
    feed(db)
    run = run_of(db, workflow_id, contact_id)
    assert (run.status, run.state["vars"]) == ("finished", {"where": "40.416800,-3.703800 Sol"})


class Crash(Exception):
    pass


def test_a_crash_while_the_queue_assigns_assigns_once(db: Database, tenant: Tenant, channel: Channel) -> None:
    workflow_id = publish_assign(
        db, tenant, {"to": "workspace", "only_online": True, "queue_timeout": {"amount": 1, "unit": "hours"}}
    )
    contact_id = customer_writes(db, channel, "c1", "hola")
    feed(db)
    [run_id] = queued_run_ids(db, tenant.workspace_id)
    set_status(db, tenant.manager_id, "online")
    with db.transaction() as session:
        queue.wake_after_presence(session)
    points: list[str] = []

    def crash_once(point: str) -> None:
        points.append(point)
        if len(points) == 1:
            raise Crash(point)

    runner.crash_point = crash_once
    try:
        with pytest.raises(Crash):
            runner.process_run(db, run_id)  # the assignment is made, then the process dies
        advance(db)
    finally:
        runner.crash_point = None
    assert points[0] == "after_action"
    assert open_conversation(db, contact_id).assignee_id == tenant.manager_id  # type: ignore[union-attr]
    with db.transaction(write=False) as session:
        assigned = session.scalars(
            select(EventRecord).where(
                EventRecord.contact_id == contact_id, EventRecord.type == EventType.CONVERSATION_ASSIGNED
            )
        ).all()
    assert len(assigned) == 1
    assert [outcome for step, outcome in logs(db, run_id) if step == "a"] == [
        "queued",
        f"assigned to user {tenant.manager_id}",
    ]
    assert run_of(db, workflow_id, contact_id).status == "finished"


def test_the_api_simulates_a_date_time_step_at_a_given_moment_and_reports_bad_windows(
    client: TestClient, tenant: Tenant
) -> None:
    christmas = {"mode": "date_range", "start": "2026-12-24", "end": "2026-12-25", "timezone": "America/Mexico_City"}
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "d", "type": "date_time", "config": christmas, "next": "in", "on": {"failure": "out"}},
            tag("in"),
            tag("out"),
        ],
    }
    bad = {
        **definition,
        "steps": [
            {
                "id": "d",
                "type": "date_time",
                "config": {"mode": "weekly", "windows": [{"days": ["friday"], "start": "18:00", "end": "09:00"}]},
            }
        ],
    }
    refused = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Bad", "definition": bad})
    assert refused.status_code == 422
    assert set(refused.json()["error"]["details"]) == {"steps[0].config.windows[0].end"}
    created = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "Xmas", "definition": definition})
    assert created.status_code == 201, created.text
    contact = client.post("/api/v1/contacts", headers=tenant.headers, json={"first_name": "Ana"})
    assert contact.status_code == 201, contact.text
    url = f"/api/v1/workflows/{created.json()['id']}/simulate"
    body = {"contact": f"id:{contact.json()['id']}"}
    inside = client.post(url, headers=tenant.headers, json={**body, "at": "2026-12-25T23:30:00-06:00"})
    # 05:30 UTC on the 26th is still 23:30 on the 25th in Mexico City: inside the range.
    utc_next_day = client.post(url, headers=tenant.headers, json={**body, "at": "2026-12-26T05:30:00Z"})
    assert (inside.json()["path"], utc_next_day.json()["path"]) == (["d", "in"], ["d", "in"])
    later = client.post(url, headers=tenant.headers, json={**body, "at": "2026-12-26T06:00:00Z"})
    assert later.json()["path"] == ["d", "out"]
    far = client.post(url, headers=tenant.headers, json={**body, "at": "9999-12-31T23:59:59Z"})
    assert far.status_code == 422
    assert "at" in str(far.json()["error"])


def test_an_agent_coming_online_assigns_a_queued_conversation_without_the_sweep(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    workflow_id = publish_assign(
        db, tenant, {"to": "workspace", "only_online": True, "queue_timeout": {"amount": 1, "unit": "days"}}
    )
    waiting = customer_writes(db, channel, "p1", "hola")
    feed(db)
    [queued] = queued_run_ids(db, tenant.workspace_id)
    assert run_of(db, workflow_id, waiting).due_at > utcnow() + timedelta(hours=23)  # type: ignore[operator]

    # Someone going away or busy is no reason to try again.
    set_status(db, tenant.manager_id, "busy")
    dispatch(db)
    assert run_of(db, workflow_id, waiting).due_at > utcnow() + timedelta(hours=23)  # type: ignore[operator]

    # The agent opens the inbox: their tab makes them online, which is an event in the log.
    store = MemoryPresenceStore()
    presence.Tab(db, store, tenant.agent_id, tenant.workspace_id, "tab-1").arrive()
    with db.transaction(write=False) as session:
        came = session.scalars(
            select(EventRecord)
            .where(EventRecord.type == EventType.USER_STATUS_CHANGED, EventRecord.workspace_id == tenant.workspace_id)
            .order_by(EventRecord.id)
        ).all()
    assert [(e.payload["user_id"], e.payload["status"]) for e in came] == [
        (tenant.manager_id, "busy"),
        (tenant.agent_id, "online"),
    ]
    # The consumer reads it and the runner assigns: no call to the minute sweep's presence check.
    dispatch(db)
    assert run_of(db, workflow_id, waiting).due_at <= utcnow()  # type: ignore[operator]
    advance(db)
    assert open_conversation(db, waiting).assignee_id == tenant.agent_id  # type: ignore[union-attr]
    assert tags_of(db, waiting) == ["ok"]
    assert queued_run_ids(db, tenant.workspace_id) == []
    assert run_of(db, workflow_id, waiting).id == queued


def test_an_online_agent_joining_the_team_takes_its_queued_conversation_without_the_sweep(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    with db.transaction() as session:
        team_id = do_create_team(session, tenant.actor(), "Ventas").id
    workflow_id = publish_assign(
        db,
        tenant,
        {"to": "team", "team_id": team_id, "only_online": True, "queue_timeout": {"amount": 1, "unit": "days"}},
    )
    # The agent is online but in no team: the team's conversation waits.
    presence.Tab(db, MemoryPresenceStore(), tenant.agent_id, tenant.workspace_id, "tab-1").arrive()
    waiting = customer_writes(db, channel, "t1", "hola")
    feed(db)
    assert queued_run_ids(db, tenant.workspace_id) == [run_of(db, workflow_id, waiting).id]
    assert run_of(db, workflow_id, waiting).due_at > utcnow() + timedelta(hours=23)  # type: ignore[operator]

    # An offline manager joining is tried (nobody qualifies yet); leaving frees nobody: no new try.
    with db.transaction() as session:
        do_set_team_members(session, tenant.actor(), team_id, [tenant.manager_id])
    dispatch(db)
    assert run_of(db, workflow_id, waiting).due_at <= utcnow()  # type: ignore[operator]
    advance(db)
    assert run_of(db, workflow_id, waiting).due_at > utcnow() + timedelta(hours=23)  # type: ignore[operator]
    with db.transaction() as session:
        do_set_team_members(session, tenant.actor(), team_id, [])
    dispatch(db)
    assert run_of(db, workflow_id, waiting).due_at > utcnow() + timedelta(hours=23)  # type: ignore[operator]
    with db.transaction(write=False) as session:
        changes = session.scalars(
            select(EventRecord)
            .where(EventRecord.type == EventType.TEAM_MEMBERS_CHANGED, EventRecord.workspace_id == tenant.workspace_id)
            .order_by(EventRecord.id)
        ).all()
    assert [(e.payload["added_user_ids"], e.payload["removed_user_ids"]) for e in changes] == [
        ([tenant.manager_id], []),
        ([], [tenant.manager_id]),
    ]
    assert open_conversation(db, waiting).assignee_id is None  # type: ignore[union-attr]

    # The online agent joins the team: the event wakes the queue and the runner assigns them.
    with db.transaction() as session:
        do_set_team_members(session, tenant.actor(), team_id, [tenant.agent_id])
    dispatch(db)
    assert run_of(db, workflow_id, waiting).due_at <= utcnow()  # type: ignore[operator]
    advance(db)
    conversation = open_conversation(db, waiting)
    assert conversation is not None
    assert (conversation.assignee_id, conversation.team_id) == (tenant.agent_id, team_id)
    assert tags_of(db, waiting) == ["ok"]
    assert queued_run_ids(db, tenant.workspace_id) == []
