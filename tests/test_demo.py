"""The demo workspace: every module has something to show, on SQLite and PostgreSQL."""

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from tertulia import demo_workflows
from tertulia.assistant import bot, bot_settings, model_settings
from tertulia.assistant.models import BotTurn
from tertulia.broadcasts.models import Broadcast, BroadcastRecipient, BroadcastStatus, RecipientState
from tertulia.channels.message_templates import slots, templates_of
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.import_runner import data_path
from tertulia.contacts.models import Contact
from tertulia.conversations.models import (
    Conversation,
    ConversationStatus,
    Direction,
    Message,
    OpeningSource,
    SenderKind,
    StoredFile,
)
from tertulia.demo import DEMO_OWNER_EMAIL, DEMO_PASSWORD, demo_origins, seed_demo
from tertulia.demo_inbox import BOT_SCRIPTS, BOT_SETTINGS, HISTORY_PREFIX, PAST_CONVERSATIONS, SCRIPTS, SPAM_NAME
from tertulia.demo_integrations import (
    IMPORT_FILENAME,
    IMPORT_REJECTED,
    WEBHOOK_DELIVERIES,
    WEBHOOK_EVENTS,
    WEBHOOK_URL,
)
from tertulia.events import dispatcher
from tertulia.kit.clock import as_utc, utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import get_settings
from tertulia.reports.export_models import DataExport
from tertulia.reports.models import Rollup
from tertulia.users.models import Membership, Role
from tertulia.webhooks import fanout
from tertulia.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tertulia.workflows import catalogue
from tertulia.workflows import repository as workflows_repo
from tertulia.workflows import service as workflows_service
from tertulia.workflows import triggers as workflow_triggers
from tertulia.workflows.models import RunStatus, Workflow, WorkflowRun, WorkflowStatus, WorkflowVersion
from tests.live_server import free_port, wait_until_serving
from tests.reports.support import feed
from tests.web.helpers import csrf_from


def test_the_demo_inbox_has_conversations_on_every_kind_of_channel(db: Database) -> None:
    with db.transaction() as session:
        workspace_id = seed_demo(session, contacts=20).workspace.id
    with db.transaction(write=False) as session:
        channels = {c.id: c.type for c in session.scalars(select(Channel).where(Channel.workspace_id == workspace_id))}
        conversations = list(session.scalars(select(Conversation).where(Conversation.workspace_id == workspace_id)))
        by_direction = Counter(
            session.scalars(
                select(Message.direction).where(
                    Message.workspace_id == workspace_id,
                    Message.sender_kind.not_in((SenderKind.BROADCAST, SenderKind.WORKFLOW)),
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
        spam_contact = session.scalar(
            select(Contact.id).where(Contact.workspace_id == workspace_id, Contact.first_name == SPAM_NAME.split()[0])
        )
        contacts = session.scalar(select(func.count()).select_from(Contact).where(Contact.workspace_id == workspace_id))
        # Generated contacts who wrote in before, from their phone (one conversation each).
        history = session.scalar(
            select(func.count()).where(
                Message.workspace_id == workspace_id, Message.provider_message_id.like(f"{HISTORY_PREFIX}-%-0")
            )
        )
        turns = session.scalars(select(BotTurn).where(BotTurn.workspace_id == workspace_id)).all()
        latest = session.scalar(select(func.max(Message.created_at)).where(Message.workspace_id == workspace_id))
    assert sorted(set(channels.values())) == ["telegram", "twilio", "webchat", "whatsapp"]
    # A broadcast sent days ago, with its exclusions, and customers who replied to it.
    assert [b.status for b in sent] == [BroadcastStatus.COMPLETED]
    assert recipients[RecipientState.MESSAGED] > 0
    assert recipients[RecipientState.EXCLUDED] > 0
    assert replied
    # The scripted conversations, older ones answered and closed over the past weeks, and the replies.
    assert history
    scripts = SCRIPTS + BOT_SCRIPTS
    assert len(conversations) == len(scripts) + PAST_CONVERSATIONS + replied + history
    on_channel = Counter(channels[c.channel_id] for c in conversations if c.channel_id)
    assert all(on_channel[kind] >= count for kind, count in Counter(s.channel for s in SCRIPTS).items())
    closed = [c for c in conversations if c.status == ConversationStatus.CLOSED and c.contact_id != spam_contact]
    assert len(closed) == sum(1 for s in scripts if s.closed) + PAST_CONVERSATIONS + replied + history
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
    scripted = Counter(who for s in scripts for who, _ in s.lines)
    assert by_direction[Direction.INCOMING] == scripted["customer"] + 2 * (PAST_CONVERSATIONS + history) + replied
    # The web chat's bot answered or handed off each web-chat message of the last two days it was
    # free to take (each turn one reply), besides the team's replies.
    assert len(turns) == sum(1 for t in turns if t.reply_message_id is not None)
    assert by_direction[Direction.OUTGOING] == scripted["agent"] + PAST_CONVERSATIONS + replied + history + len(turns)
    handoffs = [t for t in turns if t.outcome == "handoff"]
    assert by_direction[Direction.COMMENT] == sum(1 for s in SCRIPTS if s.note) + len(handoffs)
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
    _check_workflows(db, workspace_id)
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


def _check_workflows(db: Database, workspace_id: int) -> None:
    """Workflows a shop would have running, with the runs they made over the inbox's last days; made
    from the templates ones with nothing to fix (their teams and field exist)."""
    with db.transaction(write=False) as session:
        workflows = session.scalars(select(Workflow).where(Workflow.workspace_id == workspace_id)).all()
        from_templates = {catalogue.template(t).name["es"] for t in ("agent_routing", "csat_survey", "mark_spam")}
        problems = {
            w.name: workflows_service.definition_errors(
                session, w, session.get_one(WorkflowVersion, w.draft_version_id or w.published_version_id)
            )
            for w in workflows
            if w.name in from_templates
        }
        runs = session.execute(
            select(
                WorkflowRun.id, Workflow.name, WorkflowRun.status, WorkflowRun.started_at, WorkflowRun.conversation_id
            )
            .join(Workflow, Workflow.id == WorkflowRun.workflow_id)
            .where(WorkflowRun.workspace_id == workspace_id)
        ).all()
        logs = workflows_repo.logs_of(session, [run.id for run in runs])
        sources = dict(
            session.execute(
                select(Conversation.id, Conversation.opening_source).where(Conversation.workspace_id == workspace_id)
            ).all()
        )
        sent = session.scalars(
            select(Message.status).where(
                Message.workspace_id == workspace_id,
                Message.sender_kind == SenderKind.WORKFLOW,
                Message.direction == Direction.OUTGOING,
            )
        ).all()
    assert problems == {name: {} for name in from_templates}
    status = {w.name: w.status for w in workflows}
    assert status == {
        demo_workflows.WELCOME: WorkflowStatus.PUBLISHED,
        catalogue.template("csat_survey").name["es"]: WorkflowStatus.PUBLISHED,
        demo_workflows.VIP: WorkflowStatus.PUBLISHED,
        catalogue.template("mark_spam").name["es"]: WorkflowStatus.PUBLISHED,
        "Bienvenida y correo": WorkflowStatus.DRAFT,
        catalogue.template("agent_routing").name["es"]: WorkflowStatus.DRAFT,
    }
    # The welcome ran on each conversation of the last days as it opened (the first of them days
    # ago), to the end.
    welcomed = [run for run in runs if run.name == demo_workflows.WELCOME]
    assert len(welcomed) >= len(SCRIPTS)
    assert {run.status for run in welcomed} == {RunStatus.FINISHED}
    assert min(run.started_at for run in welcomed) < utcnow() - timedelta(days=3)
    assert max(run.started_at for run in welcomed) < utcnow()
    # Who opened the conversation chose its path: replies to the broadcast were tagged, customers
    # who wrote on a channel the bot does not answer welcomed or noted after hours, the rest left be.
    paths = {run.id: [f"{log.step_id}:{log.outcome}" for log in logs.get(run.id, [])] for run in welcomed}
    by_source = Counter((sources[run.conversation_id], paths[run.id][0]) for run in welcomed)
    assert by_source[(OpeningSource.BROADCAST_REPLY, "quien:branch 1: Respondió a una difusión")] > 0
    assert by_source[(OpeningSource.CONTACT, "quien:branch 2: Escribió el cliente")] > 0
    assert by_source[(OpeningSource.CONTACT, "quien:else")] > 0  # the web chat's, which its bot greets
    assert {tuple(path[1:3]) for path in paths.values() if path[0].startswith("quien:branch 2")} <= {
        ("horario:inside", "bienvenida:sent"),
        ("horario:outside", "fuera:done"),
    }
    # What the workflows sent was taken by the channel then: nothing waits for the outbox.
    assert DeliveryStatus.PENDING not in sent
    # The spam shortcut was run by hand on the spam conversation (carried out by the queue: when the
    # server starts, or at once where the queue is immediate).
    assert [run.name for run in runs if run.name != demo_workflows.WELCOME] == [
        catalogue.template("mark_spam").name["es"]
    ]
    # The workflows' consumer starts after the history, which it must not run again.
    dispatcher.dispatch(db, [workflow_triggers.CONSUMER])
    with db.transaction(write=False) as session:
        again = session.scalar(select(func.count()).where(WorkflowRun.workspace_id == workspace_id))
    assert again == len(runs)


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


def test_the_demo_fills_webhooks_the_bot_templates_and_the_import_history(db: Database) -> None:
    with db.transaction() as session:
        workspace_id = seed_demo(session, contacts=20).workspace.id
    # The queue is immediate here: the import ran right after the seed's commit, as the server's
    # consumer runs it when it starts.
    with db.transaction(write=False) as session:
        seeded_turns = session.scalar(select(func.count()).select_from(BotTurn))
    # What a server does as it starts: the webhooks' and the bot's consumers read the whole log.
    # Neither acts on the demo's history: the endpoint is off, and every web-chat message the bot
    # is free to answer already had its turn.
    for _ in range(50):
        if not dispatcher.dispatch(db, [fanout.CONSUMER, bot.CONSUMER], settle_wait=2.0).unsettled:
            break
    with db.transaction(write=False) as session:
        endpoints = session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.workspace_id == workspace_id)).all()
        deliveries = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.workspace_id == workspace_id).order_by(WebhookDelivery.id)
        ).all()
        attempts = session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in deliveries]))
        ).all()
        webchat = session.scalars(
            select(Channel).where(Channel.workspace_id == workspace_id, Channel.type == "webchat")
        ).one()
        whatsapp = session.scalars(
            select(Channel).where(Channel.workspace_id == workspace_id, Channel.type == "whatsapp")
        ).one()
        webchat_bot = bot_settings.settings_for(session, workspace_id, webchat.id)
        others = {
            c.id: bot_settings.settings_for(session, workspace_id, c.id).enabled
            for c in session.scalars(
                select(Channel).where(Channel.workspace_id == workspace_id, Channel.id != webchat.id)
            )
        }
        model = model_settings.active_model(session, workspace_id)
        turns = session.scalars(select(BotTurn).where(BotTurn.workspace_id == workspace_id)).all()
        notes = session.scalars(
            select(Message.text).where(Message.workspace_id == workspace_id, Message.direction == Direction.COMMENT)
        ).all()
        bot_replies = session.scalars(
            select(Message).where(
                Message.workspace_id == workspace_id,
                Message.sender_kind == SenderKind.BOT,
                Message.direction == Direction.OUTGOING,
            )
        ).all()
        templates = {t.name: t for t in templates_of(session, whatsapp)}
        approved = [t.name for t in templates_of(session, whatsapp, approved_only=True)]
        jobs = session.scalars(select(ImportJob).where(ImportJob.workspace_id == workspace_id)).all()
        imported = session.scalar(
            select(func.count()).where(Contact.workspace_id == workspace_id, Contact.email == "elena.vidal@example.com")
        )
        recipients = session.scalars(
            select(BroadcastRecipient).where(BroadcastRecipient.workspace_id == workspace_id)
        ).all()
        broadcast_statuses = Counter(
            session.scalars(
                select(Message.status).where(
                    Message.workspace_id == workspace_id, Message.sender_kind == SenderKind.BROADCAST
                )
            )
        )
    # 1. A switched-off webhook endpoint whose log is finished: delivered, one after a failed try.
    assert [(e.url, e.enabled, e.disabled_at is not None) for e in endpoints] == [(WEBHOOK_URL, False, True)]
    assert len(deliveries) == WEBHOOK_DELIVERIES
    assert len(turns) == seeded_turns
    assert {d.state for d in deliveries} == {DeliveryState.DELIVERED}
    assert {d.event_type for d in deliveries} == set(WEBHOOK_EVENTS)
    tries = Counter(a.delivery_id for a in attempts)
    assert sorted(tries.values()) == [1] * (WEBHOOK_DELIVERIES - 1) + [2]
    assert sorted(a.status for a in attempts) == [200] * WEBHOOK_DELIVERIES + [503]
    assert all(json.loads(d.body)["id"] == d.message_id for d in deliveries)
    assert all(d.delivered_at is not None and d.delivered_at < utcnow() - timedelta(days=1) for d in deliveries)
    # 2. The bot on the web chat only, no language model; it answered from the knowledge, handed
    # off when asked for a person (with the hand-off's note), and its replies were delivered.
    assert webchat_bot.enabled
    assert webchat_bot.max_bot_answers == BOT_SETTINGS["max_bot_answers"]
    assert not any(others.values())
    assert model is None
    outcomes = Counter((t.outcome, t.reason) for t in turns)
    assert outcomes[("answered", "matched")] >= len([who for s in BOT_SCRIPTS[:3] for who, _ in s.lines])
    assert outcomes[("handoff", "keyword")] == 1
    assert all(t.entry_id is not None for t in turns if t.outcome == "answered")
    assert sum(1 for n in notes if n and n.startswith("Bot handed off.")) == outcomes.total() - sum(
        n for (outcome, _), n in outcomes.items() if outcome == "answered"
    )
    assert any(n and "The customer asked for a person." in n for n in notes)
    assert len(bot_replies) == len(turns)
    assert {m.status for m in bot_replies} == {DeliveryStatus.READ}
    assert all((m.payload or {}).get("automation") == "assistant" for m in bot_replies)
    # 3. WhatsApp templates as the sync stores them: every status, category and both languages.
    assert {t.status for t in templates.values()} == {"APPROVED", "PENDING", "REJECTED"}
    assert {t.category for t in templates.values()} == {"MARKETING", "UTILITY", "AUTHENTICATION"}
    assert {t.language for t in templates.values()} == {"es_MX", "en_US"}
    assert {t.parameter_format for t in templates.values()} == {"POSITIONAL", "NAMED"}
    assert templates["oferta_relampago"].reason == "INVALID_FORMAT"
    assert [s.key for s in slots(templates["envio_en_camino"])] == ["first_name", "carrier", "tracking"]
    assert {"confirmacion_pedido", "envio_en_camino", "order_update"} <= set(approved)
    assert "encuesta_satisfaccion" not in approved
    # 4. The import, run by its runner: done, with its rejected rows' report.
    assert [(j.filename, j.status, j.rejected_count) for j in jobs] == [
        (IMPORT_FILENAME, ImportStatus.DONE, IMPORT_REJECTED)
    ]
    assert jobs[0].created_count == jobs[0].total_rows - IMPORT_REJECTED
    assert jobs[0].report_path
    report = data_path(jobs[0].report_path).read_text(encoding="utf-8")
    assert "tomas.quintero@example" in report
    assert imported == 1
    # 5. Most of the broadcast's audience had a channel to be reached on (generated contacts without
    # a phone have none), and its messages came back delivered, read or failed.
    unreachable = [r for r in recipients if r.state == RecipientState.EXCLUDED and r.reason == "no_identity"]
    assert len(unreachable) < len(recipients) / 2
    assert {DeliveryStatus.DELIVERED, DeliveryStatus.READ, DeliveryStatus.FAILED} <= set(broadcast_statuses)


def test_the_demo_command_seeds_and_serves_the_demo_workspace(tmp_path: Path) -> None:
    # The README's first command, as a process of its own on a throwaway SQLite file and data dir.
    port = free_port()
    env = {
        **os.environ,
        "TERTULIA_DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}",
        "TERTULIA_DATA_DIR": str(tmp_path),
        "TERTULIA_LOG_LEVEL": "warning",
    }
    env.pop("TERTULIA_BASE_URL", None)
    process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", "tertulia", "demo", "--port", str(port), "--contacts", "20"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    launched = utcnow()
    try:
        deadline = time.monotonic() + 120
        wait_until_serving(base, process, deadline, "the demo")
        with httpx.Client(base_url=base, timeout=10) as client:
            login = client.get("/login")
            signed = client.post(
                "/login",
                data={
                    "email": DEMO_OWNER_EMAIL,
                    "password": DEMO_PASSWORD,
                    "next": "/contacts",
                    "csrf_token": csrf_from(login),
                },
            )
            assert signed.status_code == 303, signed.text
            assert client.get("/messages").status_code == 200
            # The inbox's list, as its page asks for it: open conversations, the bot's hand-off among them.
            listed = client.get("/api/v1/conversations", params={"view": "all", "status": "all", "limit": 100})
            assert listed.status_code == 200, listed.text
            items = listed.json()["items"]
            assert len(items) >= len(SCRIPTS) + len(BOT_SCRIPTS)
            handed_off = next(c for c in items if "Beatriz" in json.dumps(c, ensure_ascii=False))
            thread = client.get(f"/api/v1/conversations/{handed_off['id']}/messages").json()["items"]
            assert any((m.get("payload") or {}).get("automation") == "assistant" for m in thread)
            assert any(m["direction"] == "comment" and m["text"].startswith("Bot handed off.") for m in thread)
            # The composer's template picker on a WhatsApp conversation: the approved templates.
            on_whatsapp = next(c for c in items if "Lucía" in json.dumps(c, ensure_ascii=False))
            picker = client.get(f"/api/v1/conversations/{on_whatsapp['id']}/templates").json()["items"]
            assert {"confirmacion_pedido", "envio_en_camino", "promo_buen_fin", "order_update"} <= {
                t["name"] for t in picker
            }
            assert all(t["status"] == "APPROVED" for t in picker)
            webhooks = client.get("/settings/webhooks")
            assert WEBHOOK_URL in webhooks.text
            endpoint = re.search(r'href="/settings/webhooks/(\d+)"', webhooks.text)
            assert endpoint is not None
            log = client.get(f"/settings/webhooks/{endpoint.group(1)}").text
            assert log.count("contact.created") + log.count("conversation.closed") >= WEBHOOK_DELIVERIES
            assert "503" in log
            bot_page = client.get("/settings/assistant-bot").text
            assert "Te comunico con alguien del equipo" in bot_page
            channels = client.get("/settings/channels").text
            templates_pages = [
                client.get(f"/settings/channels/{channel_id}/templates")
                for channel_id in dict.fromkeys(re.findall(r'href="/settings/channels/(\d+)"', channels))
            ]
            templates = next(page.text for page in templates_pages if "confirmacion_pedido" in page.text)
            assert "oferta_relampago" in templates
            assert "encuesta_satisfaccion" in templates
            # The import is run by the server's queue as it starts.
            while True:
                history = client.get("/contacts/import").text
                job = re.search(rf'href="/contacts/import/(\d+)">{re.escape(IMPORT_FILENAME)}<', history)
                assert job is not None
                page = client.get(f"/contacts/import/{job.group(1)}").text
                if "download-rejected" in page or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert f'data-testid="rejected-count">{IMPORT_REJECTED}<' in page
            rejected = client.get(f"/contacts/import/{job.group(1)}/rejected.csv")
            assert rejected.status_code == 200
            assert len(rejected.text.strip().splitlines()) == 1 + IMPORT_REJECTED
            # The published workflows are listed, and the server started no run over the seeded
            # history: the welcome's runs are those of the history, the spam shortcut's the one asked.
            listed_workflows = client.get("/workflows").text
            assert demo_workflows.WELCOME in listed_workflows
        engine = create_engine(f"sqlite:///{tmp_path / 'demo.db'}")
        try:
            with engine.connect() as connection:
                runs = connection.execute(
                    select(Workflow.name, WorkflowRun.started_at).join(Workflow, Workflow.id == WorkflowRun.workflow_id)
                ).all()
        finally:
            engine.dispose()
        assert {name for name, _ in runs} == {demo_workflows.WELCOME, catalogue.template("mark_spam").name["es"]}
        welcomed = [as_utc(at) for name, at in runs if name == demo_workflows.WELCOME]
        assert len(welcomed) >= len(SCRIPTS)
        assert max(welcomed) < launched
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
