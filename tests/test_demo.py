"""The demo workspace: every module has something to show, on SQLite and PostgreSQL."""

from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, ConversationStatus, Direction, Message
from tertulia.demo import seed_demo
from tertulia.demo_inbox import SCRIPTS
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.workflows import catalogue
from tertulia.workflows import service as workflows_service
from tertulia.workflows.models import Workflow, WorkflowVersion


def test_the_demo_inbox_has_conversations_on_every_kind_of_channel(db: Database) -> None:
    with db.transaction() as session:
        workspace_id = seed_demo(session, contacts=20).workspace.id
    with db.transaction(write=False) as session:
        channels = {c.id: c.type for c in session.scalars(select(Channel).where(Channel.workspace_id == workspace_id))}
        conversations = list(session.scalars(select(Conversation).where(Conversation.workspace_id == workspace_id)))
        by_direction = Counter(
            session.scalars(select(Message.direction).where(Message.workspace_id == workspace_id)).all()
        )
        contacts = session.scalar(select(func.count()).select_from(Contact).where(Contact.workspace_id == workspace_id))
        latest = session.scalar(select(func.max(Message.created_at)).where(Message.workspace_id == workspace_id))
    assert sorted(set(channels.values())) == ["telegram", "twilio", "webchat", "whatsapp"]
    assert len(conversations) == len(SCRIPTS)
    assert Counter(channels[c.channel_id] for c in conversations if c.channel_id) == Counter(s.channel for s in SCRIPTS)
    closed = [c for c in conversations if c.status == ConversationStatus.CLOSED]
    assert len(closed) == sum(1 for s in SCRIPTS if s.closed)
    assert all(c.closing_category_id is not None for c in closed)
    assert {c.assignee_id is None for c in conversations} == {True, False}  # some wait in "Unassigned"
    assert by_direction[Direction.INCOMING] == sum(1 for s in SCRIPTS for who, _ in s.lines if who == "customer")
    assert by_direction[Direction.OUTGOING] == sum(1 for s in SCRIPTS for who, _ in s.lines if who == "agent")
    assert by_direction[Direction.COMMENT] == sum(1 for s in SCRIPTS if s.note)
    # Customers who wrote in are contacts too, beside the 20 generated ones.
    assert contacts is not None
    assert contacts > 20
    # The history reads as the past days, not as the second the demo was seeded.
    assert latest is not None
    assert latest < utcnow()
    assert min(c.last_message_at for c in conversations) < utcnow() - timedelta(days=2)
    with db.transaction(write=False) as session:
        names = session.scalars(
            select(Contact.first_name).join(Conversation, Conversation.contact_id == Contact.id)
        ).all()
    assert "Lucía" in names
    assert "Emma" in names
    # Drafts made from the workflow templates, with nothing to fix (their teams and field exist).
    with db.transaction(write=False) as session:
        drafts = session.scalars(select(Workflow).where(Workflow.workspace_id == workspace_id)).all()
        from_templates = {catalogue.template(t).name["es"] for t in ("agent_routing", "csat_survey", "mark_spam")}
        problems = {
            w.name: workflows_service.definition_errors(
                session, w, session.get_one(WorkflowVersion, w.draft_version_id)
            )
            for w in drafts
            if w.name in from_templates
        }
    assert problems == {name: {} for name in from_templates}
