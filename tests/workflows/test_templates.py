"""The workflow templates (workflows/catalogue.py): every one passes the checker in both languages,
the gallery page and the API make drafts from them (saying what the workspace lacks), and each runs
end to end: created from its template, published, fed customers' messages through the inbound path,
with its outcome asserted (assignment, messages, tags, fields, closing, opt-out)."""

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.assistant import bot, bot_settings
from tertulia.broadcasts import service as broadcasts_service
from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact, FieldType
from tertulia.conversations import service as conversations_service
from tertulia.conversations.models import Conversation, Direction, Message
from tertulia.events import service as event_log
from tertulia.events.types import EventType
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.users import teams
from tertulia.users.models import Role, User
from tertulia.users.service import do_set_activity_status
from tertulia.workflows import catalogue, queue, service, shortcuts
from tertulia.workflows import language as lang
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.support import (
    advance,
    close_conversation,
    customer_writes,
    dispatch,
    feed,
    open_conversation,
    runs,
    sent_texts,
    tags_of,
)

TEMPLATE_IDS = [t.id for t in catalogue.templates()]
NINE = {
    "close_and_resume_bot",
    "assign_agent",
    "sales_team_assignment",
    "support_team_assignment",
    "priority_support_assignment",
    "agent_assigned_message",
    "out_of_hours",
    "agents_at_capacity",
    "agent_routing",
}
EXTRA = {"welcome_message", "welcome_ask_email", "away_message", "csat_survey", "unsubscribe_broadcasts", "mark_spam"}


def test_the_catalogue_has_the_nine_examples_and_the_six_others() -> None:
    assert set(TEMPLATE_IDS) == NINE | EXTRA
    assert {t.id for t in catalogue.templates() if t.example} == NINE


@pytest.mark.parametrize("language", catalogue.LANGUAGES)
@pytest.mark.parametrize("template_id", TEMPLATE_IDS)
def test_every_template_passes_the_checker(template_id: str, language: str) -> None:
    found = catalogue.template(template_id)
    values = {p.key: 7 if p.kind in catalogue.ID_KINDS else p.default_for(language) for p in found.placeholders}
    definition = catalogue.build(found, values, language)
    ctx = lang.CheckContext(
        custom_fields={"csat": FieldType.NUMBER},
        channel_ids=frozenset(),
        user_ids=frozenset(),
        team_ids=frozenset({7}),
        closing_category_ids=frozenset({7}),
        manual_workflow_ids=frozenset(),
    )
    checked, errors = lang.check_definition(definition, ctx)
    assert errors == {}
    assert checked is not None
    assert "$text" not in str(definition)
    assert "$placeholder" not in str(definition)
    assert found.name[language]
    assert found.description[language]
    assert all(p.label[language] for p in found.placeholders)


# ----- the workspace, its people and its customers ---------------------------------------------------


def set_online(db: Database, *user_ids: int) -> None:
    with db.transaction() as session:
        for user_id in user_ids:
            user = session.get(User, user_id)
            assert user is not None
            do_set_activity_status(session, user, "online")


def set_offline(db: Database, user_id: int) -> None:
    with db.transaction() as session:
        user = session.get(User, user_id)
        assert user is not None
        do_set_activity_status(session, user, "offline")


def wake_after_presence(db: Database) -> None:
    """What the minute sweep does after an agent comes online, then the runner's turn."""
    with db.transaction() as session:
        queue.wake_after_presence(session)
    advance(db)


def make_team(db: Database, tenant: Tenant, name: str, *members: int) -> int:
    with db.transaction() as session:
        team = teams.do_create_team(session, tenant.actor(), name)
        teams.do_set_team_members(session, tenant.actor(), team.id, list(members))
        return team.id


def use(db: Database, tenant: Tenant, template_id: str, language: str = "es", **values: Any) -> int:
    """Create a draft from the template (the workspace's suggestions fill what is not given), check it
    has nothing to fix, publish it; its id."""
    with db.transaction() as session:
        created = catalogue.do_create_from_template(
            session, tenant.actor(), template_id, values=values, language=language
        )
        assert created.problems == {}
        service.do_publish(session, tenant.actor(), created.workflow)
        return created.workflow.id


def act(db: Database, tenant: Tenant, contact_id: int, do: Callable[..., Any]) -> None:
    with db.transaction() as session:
        found = session.get(Contact, contact_id)
        assert found is not None
        do(session, tenant.actor(), found)


def assignee(db: Database, contact_id: int) -> int | None:
    conversation = open_conversation(db, contact_id)
    assert conversation is not None
    return conversation.assignee_id


def conversations_of(db: Database, contact_id: int) -> list[Conversation]:
    with db.transaction(write=False) as session:
        found = list(
            session.scalars(select(Conversation).where(Conversation.contact_id == contact_id).order_by(Conversation.id))
        )
        for conversation in found:
            session.expunge(conversation)
        return found


def notes_of(db: Database, contact_id: int) -> list[str]:
    with db.transaction(write=False) as session:
        query = select(Message.text).where(Message.contact_id == contact_id, Message.direction == Direction.COMMENT)
        return [text or "" for text in session.scalars(query)]


def assign_to(db: Database, tenant: Tenant, contact_id: int, user_id: int) -> None:
    conversation = open_conversation(db, contact_id)
    assert conversation is not None
    with db.transaction() as session:
        found = session.get(Conversation, conversation.id)
        assert found is not None
        conversations_service.do_assign(session, tenant.actor(), found, user_id=user_id, team_id=None)


def text_of(template_id: str, key: str, language: str = "es") -> str:
    return str(catalogue.template(template_id).texts[key][language])


# ----- the nine examples ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_background_work")
@pytest.mark.parametrize("bot_on", [False, True])
def test_close_and_resume_bot(db: Database, tenant: Tenant, channel: Channel, bot_on: bool) -> None:
    if bot_on:  # a channel whose bot keeps a pause into the contact's next conversation
        with db.transaction() as session:
            bot_settings.do_save_settings(session, tenant.actor(), channel.id, {"enabled": True, "keep_paused": True})
    workflow_id = use(db, tenant, "close_and_resume_bot")
    contact_id = customer_writes(db, channel, "bot-1", "quiero hablar con una persona")
    assign_to(db, tenant, contact_id, tenant.agent_id)
    pause(db, tenant, contact_id)
    run_shortcut(db, tenant, workflow_id, contact_id)
    feed(db)
    [first] = conversations_of(db, contact_id)
    assert (first.status, first.assignee_id, first.closing_summary) == (
        "closed",
        None,
        text_of("close_and_resume_bot", "summary"),
    )
    assert first.bot_paused is not bot_on  # handed to the assistant: the pause does not carry over
    assert sent_texts(db, contact_id) == [text_of("close_and_resume_bot", "goodbye")]
    assert [r.status for r in runs(db, workflow_id)] == ["finished"]
    customer_writes(db, channel, "bot-1", "otra pregunta")
    feed(db)
    second = conversations_of(db, contact_id)[-1]
    assert (second.status, second.assignee_id) == ("open", None)
    if bot_on:
        with db.transaction() as session:
            newest = session.scalar(
                select(Message.id).where(Message.conversation_id == second.id).order_by(Message.id.desc()).limit(1)
            )
            assert newest is not None
            # The bot takes the message (a paused one carried over would not even be looked at).
            assert bot.respond(session, tenant.workspace_id, newest) is not None


def run_shortcut(db: Database, tenant: Tenant, workflow_id: int, contact_id: int) -> None:
    """An agent runs the shortcut from the contact's open conversation."""
    conversation = open_conversation(db, contact_id)
    assert conversation is not None
    with db.transaction() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        shortcuts.do_run_shortcut(
            session, tenant.actor(Role.AGENT), workflow_id, contact, {}, conversation_id=conversation.id
        )


def pause(db: Database, tenant: Tenant, contact_id: int) -> None:
    conversation = open_conversation(db, contact_id)
    assert conversation is not None
    with db.transaction() as session:
        found = session.get(Conversation, conversation.id)
        assert found is not None
        conversations_service.do_set_bot_paused(session, tenant.actor(), found, True)


@pytest.mark.usefixtures("no_background_work")
def test_assign_to_an_agent_online_or_queue_then_say_we_will_get_back(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    workflow_id = use(db, tenant, "assign_agent")
    waiting = customer_writes(db, channel, "as-1", "hola")
    feed(db)
    assert assignee(db, waiting) is None  # nobody online: it waits in the queue
    [welcome] = sent_texts(db, waiting)
    assert welcome.startswith("¡Hola")
    set_online(db, tenant.agent_id)
    wake_after_presence(db)
    assert assignee(db, waiting) == tenant.agent_id  # the first one online takes it
    assert sent_texts(db, waiting) == [welcome]  # taken in time: no "we'll get back to you"
    served = customer_writes(db, channel, "as-2", "hola")
    feed(db)
    assert assignee(db, served) == tenant.agent_id
    assert len(sent_texts(db, served)) == 1
    set_offline(db, tenant.agent_id)
    late = customer_writes(db, channel, "as-3", "hola")
    feed(db)
    advance(db, utcnow() + timedelta(minutes=9))
    assert len(sent_texts(db, late)) == 1
    advance(db, utcnow() + timedelta(minutes=11))  # nobody within 10 minutes: the timeout branch
    assert sent_texts(db, late)[1:] == [text_of("assign_agent", "later")]
    assert assignee(db, late) is None
    assert [r.status for r in runs(db, workflow_id)] == ["finished"] * 3


@pytest.mark.usefixtures("no_background_work")
@pytest.mark.parametrize(
    ("template_id", "team_name"), [("sales_team_assignment", "Ventas"), ("support_team_assignment", "Soporte")]
)
def test_team_assignment_prefers_online_members_queues_and_falls_back_to_the_team(
    db: Database, tenant: Tenant, channel: Channel, template_id: str, team_name: str
) -> None:
    make_team(db, tenant, team_name, tenant.agent_id, tenant.manager_id)
    workflow_id = use(db, tenant, template_id)  # the team is found by its name
    waiting = customer_writes(db, channel, f"{template_id}-1", "hola")
    feed(db)
    assert assignee(db, waiting) is None  # nobody online: it waits in the queue
    assert sent_texts(db, waiting) == [text_of(template_id, "later")]
    set_online(db, tenant.manager_id)
    wake_after_presence(db)
    assert assignee(db, waiting) == tenant.manager_id  # the first one online takes it
    assert [r.status for r in runs(db, workflow_id) if r.contact_id == waiting] == ["finished"]
    for n in range(2):
        online = customer_writes(db, channel, f"{template_id}-online-{n}", "hola")
        feed(db)
        assert assignee(db, online) == tenant.manager_id
        assert sent_texts(db, online) == []
    set_offline(db, tenant.manager_id)
    late = customer_writes(db, channel, f"{template_id}-late", "hola")
    feed(db)
    advance(db, utcnow() + timedelta(minutes=29))
    assert assignee(db, late) is None
    advance(db, utcnow() + timedelta(minutes=31))  # nobody came online: any member of the team
    assert assignee(db, late) in {tenant.agent_id, tenant.manager_id}
    assert sent_texts(db, late) == [text_of(template_id, "later")]


@pytest.mark.usefixtures("no_background_work")
def test_priority_support_only_for_vip_contacts(db: Database, tenant: Tenant, channel: Channel) -> None:
    team_id = make_team(db, tenant, "Soporte alto", tenant.agent_id)
    workflow_id = use(db, tenant, "priority_support_assignment", priority_team=team_id)
    regular = customer_writes(db, channel, "vip-0", "hola")
    feed(db)
    assert assignee(db, regular) is None
    assert runs(db, workflow_id) == []
    vip = customer_writes(db, channel, "vip-1", "hola")
    act(db, tenant, vip, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["VIP"]))
    feed(db)
    assert assignee(db, vip) is None  # nobody online: it waits up to 10 minutes
    assert notes_of(db, vip) == []
    advance(db, utcnow() + timedelta(minutes=11))
    assert assignee(db, vip) == tenant.agent_id  # still offline, so the fallback took it
    assert notes_of(db, vip) == [text_of("priority_support_assignment", "offline")]
    other = customer_writes(db, channel, "vip-2", "hola")
    act(db, tenant, other, lambda s, a, c: contacts_service.do_add_tags(s, a, c, ["VIP"]))
    feed(db)
    set_online(db, tenant.agent_id)
    wake_after_presence(db)
    assert assignee(db, other) == tenant.agent_id  # came online within the 10 minutes: no note
    assert notes_of(db, other) == []


@pytest.mark.usefixtures("no_background_work")
def test_agent_assigned_message_names_the_agent(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        agent = session.get(User, tenant.agent_id)
        assert agent is not None
        agent.first_name = "Marta"
    set_online(db, tenant.agent_id)
    use(db, tenant, "agent_assigned_message", language="en")
    contact_id = customer_writes(db, channel, "named-1", "hola")
    feed(db)
    who = assignee(db, contact_id)
    assert who is not None
    with db.transaction(write=False) as session:
        user = session.get(User, who)
        assert user is not None
        expected = f"{user.first_name or 'our team'} is looking after you"
    [message] = sent_texts(db, contact_id)
    assert expected in message
    assert message.startswith("Hi")


@pytest.mark.usefixtures("no_background_work")
def test_out_of_hours_answers_by_the_workspace_business_hours(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        office = {day: [{"start": "09:00", "end": "18:00"}] for day in ("monday", "tuesday", "wednesday", "thursday")}
        do_set_business_hours(session, tenant.actor(), {"timezone": "UTC", "week": office})
    use(db, tenant, "out_of_hours")
    # Next week's Wednesday (always after now: the runner does not go back in time).
    today = utcnow()
    wednesday = (today + timedelta(days=7 + (2 - today.weekday()) % 7)).replace(minute=0, second=0, microsecond=0)
    inside = customer_writes(db, channel, "hours-1", "hola")
    dispatch(db)
    advance(db, wednesday.replace(hour=10))
    assert assignee(db, inside) is not None
    assert sent_texts(db, inside) == []
    assert tags_of(db, inside) == []
    outside = customer_writes(db, channel, "hours-2", "hola")
    dispatch(db)
    advance(db, wednesday.replace(hour=19))
    [away] = sent_texts(db, outside)
    assert away.endswith(text_of("out_of_hours", "away").rsplit("!", 1)[-1])
    assert assignee(db, outside) is None
    assert tags_of(db, outside) == ["fuera-de-horario"]
    assert notes_of(db, outside) == [text_of("out_of_hours", "note")]


@pytest.mark.usefixtures("no_background_work")
def test_nobody_online_gets_the_away_text(db: Database, tenant: Tenant, channel: Channel) -> None:
    use(db, tenant, "away_message")
    contact_id = customer_writes(db, channel, "away_message-1", "hola")
    feed(db)
    [away] = sent_texts(db, contact_id)
    assert away.endswith(text_of("away_message", "away").rsplit("!", 1)[-1])
    assert assignee(db, contact_id) is None
    assert tags_of(db, contact_id) == []
    set_online(db, tenant.owner_id)
    served = customer_writes(db, channel, "away_message-2", "hola")
    feed(db)
    assert assignee(db, served) == tenant.owner_id
    assert sent_texts(db, served) == []


@pytest.mark.usefixtures("no_background_work")
def test_agents_at_capacity_queues_until_someone_is_free(db: Database, tenant: Tenant, channel: Channel) -> None:
    set_online(db, tenant.agent_id)
    workflow_id = use(db, tenant, "agents_at_capacity")
    served = [customer_writes(db, channel, f"busy-{n}", "hola") for n in range(5)]  # max_open is 5
    feed(db)
    assert {assignee(db, contact_id) for contact_id in served} == {tenant.agent_id}
    queued = customer_writes(db, channel, "busy-queued", "hola")
    feed(db)
    assert sent_texts(db, queued) == [text_of("agents_at_capacity", "busy")]
    assert assignee(db, queued) is None
    [run] = [r for r in runs(db, workflow_id) if r.contact_id == queued]
    assert run.status == "waiting"
    close_conversation(db, tenant, served[0])  # the agent frees a place: the queue wakes
    feed(db)
    assert assignee(db, queued) == tenant.agent_id
    assert [r.status for r in runs(db, workflow_id) if r.contact_id == queued] == ["finished"]
    assert len(sent_texts(db, queued)) == 1
    late = customer_writes(db, channel, "busy-late", "hola")  # full again: it waits an hour, then a note
    feed(db)
    advance(db, utcnow() + timedelta(hours=1, minutes=1))
    assert assignee(db, late) is None
    assert notes_of(db, late) == [text_of("agents_at_capacity", "note")]
    assert sent_texts(db, late) == [text_of("agents_at_capacity", "busy")]


@pytest.mark.usefixtures("no_background_work")
def test_agent_routing_asks_the_area_and_assigns_within_its_team(
    db: Database, tenant: Tenant, channel: Channel
) -> None:
    make_team(db, tenant, "Ventas", tenant.agent_id)
    make_team(db, tenant, "Soporte", tenant.manager_id)
    use(db, tenant, "agent_routing")
    sales = customer_writes(db, channel, "route-1", "hola")
    support = customer_writes(db, channel, "route-2", "hola")
    feed(db)
    assert "1. Ventas\n2. Soporte" in sent_texts(db, sales)[0]
    customer_writes(db, channel, "route-1", "ventas")
    customer_writes(db, channel, "route-2", "2")
    feed(db)
    assert assignee(db, sales) == tenant.agent_id
    assert assignee(db, support) == tenant.manager_id


# ----- the others -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("no_background_work")
def test_welcome_message_once_per_contact(db: Database, tenant: Tenant, channel: Channel) -> None:
    use(db, tenant, "welcome_message")
    contact_id = customer_writes(db, channel, "w-1", "hola")
    feed(db)
    close_conversation(db, tenant, contact_id)
    customer_writes(db, channel, "w-1", "hola otra vez")
    feed(db)
    assert len(conversations_of(db, contact_id)) == 2
    [welcome] = sent_texts(db, contact_id)
    assert welcome.endswith("¿En qué podemos ayudarte?")


@pytest.mark.usefixtures("no_background_work")
def test_welcome_and_ask_for_email_saves_it(db: Database, tenant: Tenant, channel: Channel) -> None:
    use(db, tenant, "welcome_ask_email")
    contact_id = customer_writes(db, channel, "e-1", "hola")
    feed(db)
    customer_writes(db, channel, "e-1", "no sé")
    feed(db)
    customer_writes(db, channel, "e-1", "Ana@Example.com")
    feed(db)
    texts = sent_texts(db, contact_id)
    assert texts[-2:] == [text_of("welcome_ask_email", "retry"), "¡Gracias! Te escribiremos a ana@example.com."]
    with db.transaction(write=False) as session:
        found = session.get(Contact, contact_id)
        assert found is not None
        assert found.email == "ana@example.com"


@pytest.mark.usefixtures("no_background_work")
def test_csat_survey_saves_the_rating_to_a_field(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        missing = catalogue.do_create_from_template(session, tenant.actor(), "csat_survey")
        assert missing.problems == {"steps[0].config.save_to.name": "unknown contact field 'csat'"}
        with pytest.raises(lang.DefinitionErrors):
            service.do_publish(session, tenant.actor(), missing.workflow)
    with db.transaction() as session:
        contacts_service.do_create_custom_field(session, tenant.actor(), "csat", "CSAT", FieldType.NUMBER)
    use(db, tenant, "csat_survey")
    contact_id = customer_writes(db, channel, "csat-1", "gracias, todo resuelto")
    close_conversation(db, tenant, contact_id)
    feed(db)
    assert sent_texts(db, contact_id) == [text_of("csat_survey", "question")]
    customer_writes(db, channel, "csat-1", "9")
    feed(db)
    customer_writes(db, channel, "csat-1", "⭐⭐⭐⭐")  # a rating question takes stars too
    feed(db)
    assert sent_texts(db, contact_id)[1:] == [text_of("csat_survey", "retry"), text_of("csat_survey", "thanks")]
    with db.transaction(write=False) as session:
        found = session.get(Contact, contact_id)
        assert found is not None
        assert found.custom["csat"] == 4


@pytest.mark.usefixtures("no_background_work")
@pytest.mark.parametrize(("answer", "opted_out"), [("baja", True), ("1", False)])
def test_unsubscribe_from_broadcasts(
    db: Database, tenant: Tenant, channel: Channel, answer: str, opted_out: bool
) -> None:
    use(db, tenant, "unsubscribe_broadcasts")
    contact_id = customer_writes(db, channel, "unsub-1", "¿qué es esto?")
    with db.transaction() as session:
        payload = {
            "broadcast_id": 3,
            "contact_id": contact_id,
            "channel_id": channel.id,
            "message_id": 1,
            "reply_message_id": 2,
            "workflow_id": None,
        }
        event_log.emit(
            session, event_log.Event(EventType.BROADCAST_REPLIED, tenant.workspace_id, payload, contact_id=contact_id)
        )
    feed(db)
    customer_writes(db, channel, "unsub-1", answer)
    feed(db)
    with db.transaction(write=False) as session:
        assert broadcasts_service.is_opted_out(session, tenant.workspace_id, contact_id) is opted_out
    expected = "done" if opted_out else "kept"
    assert sent_texts(db, contact_id)[-1] == text_of("unsubscribe_broadcasts", expected)
    assert tags_of(db, contact_id) == (["sin-difusiones"] if opted_out else [])


@pytest.mark.usefixtures("no_background_work")
def test_mark_as_spam_closes_with_the_spam_category(db: Database, tenant: Tenant, channel: Channel) -> None:
    with db.transaction() as session:
        spam = conversations_service.do_create_closing_category(session, tenant.actor(), "Spam").id
        conversations_service.do_create_closing_category(session, tenant.actor(), "Venta")
    workflow_id = use(db, tenant, "mark_spam")  # the category is found by its name
    contact_id = customer_writes(db, channel, "spam-1", "gana dinero rápido")
    assign_to(db, tenant, contact_id, tenant.agent_id)
    run_shortcut(db, tenant, workflow_id, contact_id)
    feed(db)
    [conversation] = conversations_of(db, contact_id)
    assert (conversation.status, conversation.assignee_id) == ("closed", None)
    assert conversation.closing_category_id == spam
    assert sent_texts(db, contact_id) == []
    assert tags_of(db, contact_id) == ["spam"]


# ----- the gallery and the API ------------------------------------------------------------------------


def test_api_lists_templates_and_makes_drafts_that_say_what_is_missing(client: TestClient, tenant: Tenant) -> None:
    listed = client.get("/api/v1/workflow-templates", headers=tenant.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()] == TEMPLATE_IDS
    one = client.get("/api/v1/workflow-templates/sales_team_assignment", headers=tenant.headers).json()
    assert one["name"]["es"] == "Asignación automática para equipos de ventas"
    assert one["placeholders"][0]["key"] == "sales_team"
    assert client.get("/api/v1/workflow-templates/nope", headers=tenant.headers).status_code == 404

    created = client.post(
        "/api/v1/workflow-templates/sales_team_assignment/workflows", headers=tenant.headers, json={"language": "en"}
    )
    assert created.status_code == 201
    body = created.json()
    assert body["status"] == "draft"
    assert body["name"] == "Automatic assignment for sales teams"
    assert body["problems"] == {
        "steps[0].config.team_id": "choose the team",
        "steps[2].config.team_id": "choose the team",
        "steps[3].config.team_id": "choose the team",
    }
    refused = client.post(f"/api/v1/workflows/{body['id']}/publish", headers=tenant.headers)
    assert refused.status_code == 422
    assert "steps[0].config.team_id" in refused.json()["error"]["details"]

    bad = client.post(
        "/api/v1/workflow-templates/sales_team_assignment/workflows",
        headers=tenant.headers,
        json={"values": {"sales_team": "²", "other": 1}},
    )
    assert bad.status_code == 422
    assert set(bad.json()["error"]["details"]) == {"values.sales_team", "values.other"}

    given = client.post(
        "/api/v1/workflow-templates/mark_spam/workflows",
        headers=tenant.headers,
        json={"name": "Spam", "values": {"spam_tag": "basura"}},
    ).json()
    assert given["problems"] == {}
    assert given["definition"]["trigger"]["type"] == "shortcut"
    assert given["definition"]["steps"][1]["config"]["tags"] == ["basura"]
    published = client.post(f"/api/v1/workflows/{given['id']}/publish", headers=tenant.headers)
    assert published.json()["status"] == "published"


def test_gallery_page_creates_a_draft(client: TestClient, db: Database, tenant: Tenant) -> None:
    csrf = sign_in_as(client, db, tenant.manager_id, "manager-password")
    assert 'href="/workflows/new/templates"' in client.get("/workflows").text
    page = client.get("/workflows/new/templates", headers={"accept-language": "es"})
    assert page.status_code == 200
    assert "Enrutamiento de agentes" in page.text
    assert "‹Equipo de ventas› · por turnos · solo conectados" in page.text  # the steps' preview
    assert page.text.count('data-testid="template-card"') == len(TEMPLATE_IDS)
    refused = client.post("/workflows/new/templates/sales_team_assignment", data={"csrf_token": csrf, "value_0": "abc"})
    assert refused.status_code == 422
    assert "values.sales_team" not in refused.text
    assert "has-error" in refused.text
    made = client.post("/workflows/new/templates/welcome_message", data={"csrf_token": csrf}, follow_redirects=False)
    assert made.status_code == 303
    draft = client.get(made.headers["location"])
    assert draft.status_code == 200
    assert "welcome" in draft.text
    agent = TestClient(client.app, raise_server_exceptions=False)
    sign_in_as(agent, db, tenant.agent_id, "agent-password")
    assert agent.get("/workflows/new/templates").status_code == 403
