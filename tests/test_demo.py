"""The demo workspace: every module has something to show, on SQLite and PostgreSQL."""

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tertulia.broadcasts.models import Broadcast, BroadcastRecipient, BroadcastStatus, RecipientState
from tertulia.channels.models import Channel
from tertulia.contacts.models import Contact
from tertulia.conversations.models import (
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    SenderKind,
    StoredFile,
)
from tertulia.demo import demo_origins, seed_demo
from tertulia.demo_inbox import PAST_CONVERSATIONS, SCRIPTS, SPAM_NAME
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import get_settings
from tertulia.reports.export_models import DataExport
from tertulia.reports.models import Rollup
from tertulia.users.models import Membership, Role
from tertulia.workflows import catalogue
from tertulia.workflows import service as workflows_service
from tertulia.workflows.models import Workflow, WorkflowRun, WorkflowVersion
from tests.reports.support import feed


def test_the_demo_inbox_has_conversations_on_every_kind_of_channel(db: Database) -> None:
    with db.transaction() as session:
        workspace_id = seed_demo(session, contacts=20).workspace.id
    with db.transaction(write=False) as session:
        channels = {c.id: c.type for c in session.scalars(select(Channel).where(Channel.workspace_id == workspace_id))}
        conversations = list(session.scalars(select(Conversation).where(Conversation.workspace_id == workspace_id)))
        by_direction = Counter(
            session.scalars(
                select(Message.direction).where(
                    Message.workspace_id == workspace_id, Message.sender_kind != SenderKind.BROADCAST
                )
            ).all()
        )
        sent = session.scalars(
            select(Broadcast).where(Broadcast.workspace_id == workspace_id, Broadcast.started_at.is_not(None))
        ).all()
        recipients = Counter(
            session.scalars(select(BroadcastRecipient.state).where(BroadcastRecipient.workspace_id == workspace_id))
        )
        replied = session.scalar(
            select(func.count()).where(
                BroadcastRecipient.workspace_id == workspace_id, BroadcastRecipient.replied_at.is_not(None)
            )
        )
        runs = session.scalars(select(WorkflowRun.status).where(WorkflowRun.workspace_id == workspace_id)).all()
        spam_contact = session.scalar(
            select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.first_name == SPAM_NAME.split()[0])
        )
        contacts = session.scalar(select(func.count()).select_from(Contact).where(Contact.workspace_id == workspace_id))
        latest = session.scalar(select(func.max(Message.created_at)).where(Message.workspace_id == workspace_id))
    assert sorted(set(channels.values())) == ["telegram", "twilio", "webchat", "whatsapp"]
    # A broadcast sent days ago, with its exclusions, and customers who replied to it.
    assert [b.status for b in sent] == [BroadcastStatus.COMPLETED]
    assert recipients[RecipientState.MESSAGED] > 0
    assert recipients[RecipientState.EXCLUDED] > 0
    assert replied
    # The scripted conversations, older ones answered and closed over the past weeks, and the replies.
    assert len(conversations) == len(SCRIPTS) + PAST_CONVERSATIONS + replied
    on_channel = Counter(channels[c.channel_id] for c in conversations if c.channel_id)
    assert all(on_channel[kind] >= count for kind, count in Counter(s.channel for s in SCRIPTS).items())
    closed = [c for c in conversations if c.status == ConversationStatus.CLOSED and c.contact_id != spam_contact]
    assert len(closed) == sum(1 for s in SCRIPTS if s.closed) + PAST_CONVERSATIONS + replied
    assert all(c.closing_category_id is not None for c in closed)
    assert {c.assignee_id is None for c in conversations} == {True, False}  # some wait in "Unassigned"
    # Only the open conversations nobody answered wait for a first response (the dashboard's count).
    unanswered = [
        c
        for c in conversations
        if c.status == ConversationStatus.OPEN and c.last_agent_message_at is None and c.contact_id != spam_contact
    ]
    expected = [s for s in SCRIPTS if not s.closed and s.name != SPAM_NAME and all(w == "customer" for w, _ in s.lines)]
    assert len(unanswered) == len(expected)
    scripted = Counter(who for s in SCRIPTS for who, _ in s.lines)
    assert by_direction[Direction.INCOMING] == scripted["customer"] + 2 * PAST_CONVERSATIONS + replied
    assert by_direction[Direction.OUTGOING] == scripted["agent"] + PAST_CONVERSATIONS + replied
    # The spam shortcut was run by hand on the spam conversation (carried out by the queue: when the
    # server starts, or at once where the queue is immediate).
    assert len(runs) == 1
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
                session, w, session.get_one(WorkflowVersion, w.draft_version_id or w.published_version_id)
            )
            for w in drafts
            if w.name in from_templates
        }
    assert problems == {name: {} for name in from_templates}
    # The reports read like the past weeks, not like the second the demo was seeded: conversations
    # opened on many days, and first responses and resolutions timed from the history.
    feed(db)
    with db.transaction(write=False) as session:
        periods = {
            metric: set(
                session.scalars(
                    select(Rollup.period).where(
                        Rollup.workspace_id == workspace_id, Rollup.grain == "d", Rollup.metric == metric
                    )
                )
            )
            for metric in ("opened", "first_response", "resolution")
        }
        roles = Counter(session.scalars(select(Membership.role).where(Membership.workspace_id == workspace_id)))
        exports = session.scalars(select(DataExport).where(DataExport.workspace_id == workspace_id)).all()
        library = session.scalars(select(StoredFile.name).where(StoredFile.workspace_id == workspace_id)).all()
    assert len(periods["opened"]) >= 10
    assert len(periods["first_response"]) >= 10
    assert len(periods["resolution"]) >= 10
    # A person of each role to sign in as.
    assert roles == {Role.OWNER: 1, Role.MANAGER: 1, Role.AGENT: 1}
    # Settings > Data export and the files library are not empty either.
    assert len(exports) == 1
    assert library == ["lista-de-precios.csv"]


def test_the_demo_web_chat_allows_the_address_the_demo_is_served_from(monkeypatch: pytest.MonkeyPatch) -> None:
    # `tertulia demo --port 8731` sets the base URL to where it serves; a page from there embeds the chat.
    try:
        monkeypatch.setenv("TERTULIA_BASE_URL", "http://127.0.0.1:8731")
        get_settings.cache_clear()
        assert demo_origins() == ["http://127.0.0.1:8731", "http://localhost:8731"]
        monkeypatch.setenv("TERTULIA_BASE_URL", "https://crm.example.com")
        get_settings.cache_clear()
        assert demo_origins() == ["https://crm.example.com"]
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
