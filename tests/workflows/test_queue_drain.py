"""Draining the assignment queue, on both databases: each pool is served first come, first served,
every freed place is taken once while a run waits, and a wake costs a turn per pool, not one per
waiting run."""

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, insert, select

from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation, ConversationStatus
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.db import Database
from tertulia.workflows import queue, runner, service
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowVersion
from tests.conftest import Tenant
from tests.workflows.support import dispatch, publish

pytestmark = pytest.mark.usefixtures("no_background_work")

POLICY = runner.Policy(allow_private=True)


def assigning_to(user_id: int, capacity: int) -> dict[str, Any]:
    """A manual workflow whose only step waits in the queue for `user_id` (a pool of its own)."""
    config = {"to": "user", "user_id": user_id, "max_open": capacity, "queue_timeout": {"amount": 1, "unit": "days"}}
    return {"trigger": {"type": "manual"}, "steps": [{"id": "a", "type": "assign", "config": config}]}


def new_conversations(db: Database, tenant: Tenant, count: int, assignee_id: int | None = None) -> list[int]:
    """`count` contacts, each with an open conversation; their ids, oldest first."""
    with db.transaction() as session:
        contact_ids = [
            session.execute(
                insert(Contact).values(workspace_id=tenant.workspace_id, first_name="C", first_name_folded="c")
            ).inserted_primary_key[0]
            for _ in range(count)
        ]
        session.execute(
            insert(Conversation),
            [
                {
                    "workspace_id": tenant.workspace_id,
                    "contact_id": contact_id,
                    "status": ConversationStatus.OPEN,
                    "assignee_id": assignee_id,
                }
                for contact_id in contact_ids
            ],
        )
    return [int(contact_id) for contact_id in contact_ids]


def start(db: Database, workflow_id: int, contact_id: int) -> int:
    with db.transaction() as session:
        workflow = session.get(Workflow, workflow_id)
        assert workflow is not None
        version = session.get(WorkflowVersion, workflow.published_version_id)
        assert version is not None
        run = runner.start_run(session, workflow, version, contact_id, {}, once_per_contact=False)
        assert run is not None
        return run.id


def assignees(db: Database, contact_ids: list[int]) -> dict[int, int | None]:
    with db.transaction(write=False) as session:
        rows = session.execute(
            select(Conversation.contact_id, Conversation.assignee_id).where(Conversation.contact_id.in_(contact_ids))
        )
        return {int(contact_id): assignee for contact_id, assignee in rows}


def turn_until_idle(db: Database) -> int:
    turns = 0
    while taken := runner.run_due(db, policy=POLICY):
        turns += taken
    return turns


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    joins=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=6),
    steps=st.lists(st.tuples(st.sampled_from(["close", "stop"]), st.sampled_from([0, 1])), max_size=6),
    capacity=st.integers(min_value=1, max_value=2),
)
def test_each_pool_is_served_in_order_and_every_freed_place_is_taken_once(
    db: Database,
    make_tenant: Callable[..., Tenant],
    joins: list[int],
    steps: list[tuple[str, int]],
    capacity: int,
) -> None:
    tenant = make_tenant()
    users = [tenant.manager_id, tenant.agent_id]
    workflows = [publish(db, tenant, assigning_to(user_id, capacity), name=f"To {user_id}") for user_id in users]
    # Each user starts full: `capacity` conversations of their own, closed one by one below.
    for user_id in users:
        new_conversations(db, tenant, capacity, assignee_id=user_id)
    contacts = new_conversations(db, tenant, len(joins))
    run_ids = [start(db, workflows[pool], contact) for pool, contact in zip(joins, contacts, strict=True)]
    turn_until_idle(db)
    dispatch(db)

    # The model: each pool's waiting runs in the order they joined, and its free places.
    waiting = [
        [(run, contact) for run, contact, p in zip(run_ids, contacts, joins, strict=True) if p == pool]
        for pool in (0, 1)
    ]
    free = [0, 0]
    served: list[list[int]] = [[], []]
    with db.transaction(write=False) as session:
        assert [entry.run_id for entry in queue.waiting(session, tenant.workspace_id)] == run_ids

    # A wake that frees nobody tries each pool's first run only.
    with db.transaction() as session:
        assert queue.wake(session, tenant.workspace_id) == len(set(joins))
    assert turn_until_idle(db) == len(set(joins))

    for kind, pool in steps:
        if kind == "close":
            with db.transaction() as session:
                conversation = session.scalar(
                    select(Conversation)
                    .where(Conversation.assignee_id == users[pool], Conversation.status == ConversationStatus.OPEN)
                    .order_by(Conversation.id)
                    .limit(1)
                )
                if conversation is not None:  # none when every place of the user is free already
                    conversations_service.do_close(
                        session, tenant.actor(), conversation, category_id=None, summary=None
                    )
                    free[pool] += 1
        elif waiting[pool]:
            with db.transaction() as session:
                run = session.get(WorkflowRun, waiting[pool].pop(0)[0])
                assert run is not None
                service.end_run(session, run, "stopped", "stopped by a person")
        while free[pool] and waiting[pool]:
            served[pool].append(waiting[pool].pop(0)[1])
            free[pool] -= 1
        dispatch(db)
        turn_until_idle(db)
        dispatch(db)  # the queue's own assignments are events too: they wake nothing more
        turn_until_idle(db)

        found = assignees(db, contacts)
        for number, user_id in enumerate(users):
            assert [c for c in contacts if found[c] == user_id] == served[number]
        with db.transaction(write=False) as session:
            still = [entry.run_id for entry in queue.waiting(session, tenant.workspace_id)]
        assert still == sorted(run for pool_waiting in waiting for run, _ in pool_waiting)

    with db.transaction(write=False) as session:
        assigned = session.execute(
            select(EventRecord.contact_id, func.count())
            .where(EventRecord.type == EventType.CONVERSATION_ASSIGNED, EventRecord.contact_id.in_(contacts))
            .group_by(EventRecord.contact_id)
        ).all()
    assert sorted(contact for contact, times in assigned if times == 1) == sorted(served[0] + served[1])
    assert all(times == 1 for _, times in assigned)
