"""A workspace where things happen at chosen local times, and the reports' consumer fed by hand."""

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.contacts.exporter import safe_cell
from tertulia.contacts.models import Contact, Tag
from tertulia.contacts.service import do_add_tags, do_merge_contacts
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation
from tertulia.events import dispatcher
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.reports.rollups import CONSUMER
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.conversations.support import receive_customer_message
from tests.fakes import fake_provider


def feed(db: Database) -> int:
    """Feed the consumer everything written so far (on PostgreSQL, once it is settled)."""
    delivered = 0
    for _ in range(50):
        report = dispatcher.dispatch(db, [CONSUMER], settle_wait=2.0)
        delivered += report.delivered
        if not report.unsettled:
            return delivered
    raise AssertionError("the event log did not settle")


# How far a measured duration may be from the one a test set up: `at` moves the application's clock
# but lets it run, so a step's time is taken when the step is processed, a moment after its block
# starts (up to 5.5 s seen on a heavily loaded machine).
DRIFT = 10


@contextmanager
def at(local: str, zone: str = "America/Mexico_City") -> Iterator[None]:
    """The application's clock at `local` ("2026-11-02 23:50") in `zone`, for the block."""
    target = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
    with travel(target - datetime.now(UTC)):
        yield


@dataclass
class Shop:
    db: Database
    tenant: Tenant
    channel_id: int

    def customer_writes(self, sender: str, text: str = "hola") -> int:
        """The conversation id."""
        return receive_customer_message(self.db, self.channel_id, sender, f"{sender}-{utcnow().timestamp()}", text)

    def reply(self, conversation_id: int, actor: Actor, text: str = "buenos días") -> int:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            return inbox.do_reply(session, actor, conversation, text=text).id

    def assign(self, conversation_id: int, user_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_assign(session, self.tenant.actor(), conversation, user_id=user_id, team_id=None)

    def unassign(self, conversation_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_assign(session, self.tenant.actor(), conversation, user_id=None, team_id=None)

    def close(self, conversation_id: int, category_id: int | None = None) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_close(session, self.tenant.actor(), conversation, category_id=category_id, summary=None)

    def reopen(self, conversation_id: int) -> None:
        with self.db.transaction() as session:
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            inbox.do_reopen(session, self.tenant.actor(), conversation)

    def category(self, name: str) -> int:
        with self.db.transaction() as session:
            return inbox.do_create_closing_category(session, self.tenant.actor(), name).id

    def contact_of(self, conversation_id: int) -> int:
        with self.db.transaction(write=False) as session:
            contact_id = session.scalar(select(Conversation.contact_id).where(Conversation.id == conversation_id))
            assert contact_id is not None
            return int(contact_id)

    def tag(self, conversation_id: int, name: str) -> int:
        """Tag the conversation's contact (the tag is created if new); the tag's id."""
        with self.db.transaction() as session:
            contact = session.get(Contact, self.contact_of(conversation_id))
            assert contact is not None
            do_add_tags(session, self.tenant.actor(), contact, [name])
            tag_id = session.scalar(
                select(Tag.id).where(Tag.workspace_id == self.tenant.workspace_id, Tag.name == name)
            )
            assert tag_id is not None
            return int(tag_id)

    def merge(self, survivor_id: int, other_id: int) -> None:
        with self.db.transaction() as session:
            survivor = session.get(Contact, survivor_id)
            other = session.get(Contact, other_id)
            assert survivor is not None
            assert other is not None
            do_merge_contacts(session, self.tenant.actor(), survivor, other)


def make_shop(db: Database, tenant: Tenant, url: str, name: str = "Tienda") -> Shop:
    """A shop selling through a fake provider channel at `url`."""
    with db.transaction() as session:
        channel = do_create_channel(session, tenant.actor(), "fakehttp", name, {"url": url})
    return Shop(db, tenant, channel.id)


def system(tenant: Tenant, kind: str) -> Actor:
    return Actor.system(tenant.workspace_id, kind)


def report(client: Any, tenant: Tenant, name: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/api/v1/reports/{name}", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


REPLY_DAY = "2026-11-02"  # a Monday
FRIDAY, MONDAY, TUESDAY = "2026-11-06", "2026-11-09", "2026-11-10"
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday")
NINE_TO_SEVEN = {
    "timezone": "America/Mexico_City",
    "week": {day: [{"start": "09:00", "end": "19:00"}] for day in WEEKDAYS},
}


def reassignments_and_reopenings(shop: Shop) -> tuple[int, int]:
    """On REPLY_DAY, two conversations (their ids). The first: assigned to the agent at 09:10,
    reassigned to the owner at 09:15, answered by the owner at 09:25 (reply 1500 s, first assignment
    900 s, last assignment 600 s); asked again at 09:40, reassigned to the agent at 09:45, answered by
    the agent at 09:50 (reply 600 s, last assignment 300 s); closed, reopened, asked at 11:05 and
    answered by the agent at 11:20 (reply 900 s). The second: assigned at 12:05 and closed at 12:10
    unanswered (a closing stops the clocks), reopened, asked at 12:40 and answered by the agent at
    12:47 (reply 420 s)."""
    tenant = shop.tenant
    agent = tenant.actor(Role.AGENT)
    day = REPLY_DAY
    with at(f"{day} 09:00"):
        conversation = shop.customer_writes("+5215550000211")
    with at(f"{day} 09:10"):
        shop.assign(conversation, tenant.agent_id)  # the first assignment
    with at(f"{day} 09:15"):
        shop.assign(conversation, tenant.owner_id)  # reassigned: the latest assignment
    with at(f"{day} 09:25"):
        shop.reply(conversation, tenant.actor())
    with at(f"{day} 09:40"):
        shop.customer_writes("+5215550000211", "otra pregunta")
    with at(f"{day} 09:45"):
        shop.assign(conversation, tenant.agent_id)
    with at(f"{day} 09:50"):
        shop.reply(conversation, agent)
    with at(f"{day} 10:00"):
        shop.close(conversation)
    with at(f"{day} 11:00"):
        shop.reopen(conversation)
    with at(f"{day} 11:05"):
        shop.customer_writes("+5215550000211", "de nuevo")
    with at(f"{day} 11:20"):
        shop.reply(conversation, agent)  # no assignment since the reopening
    with at(f"{day} 12:00"):
        second = shop.customer_writes("+5215550000212")
    with at(f"{day} 12:05"):
        shop.assign(second, tenant.agent_id)
    with at(f"{day} 12:10"):
        shop.close(second)
    with at(f"{day} 12:30"):
        shop.reopen(second)
    with at(f"{day} 12:40"):
        shop.customer_writes("+5215550000212", "¿y mi pedido?")
    with at(f"{day} 12:47"):
        shop.reply(second, agent)
    return conversation, second


def a_weekend_in_business_hours(shop: Shop) -> int:
    """Business hours 09:00-19:00 on weekdays, from REPLY_DAY; a customer writes on FRIDAY at 18:55,
    is assigned to the owner at 09:02 on MONDAY and answered at 09:05 (2 d 14 h 10 min; 10 business
    minutes), writes again at 18:58 and is answered on TUESDAY at 09:03 (14 h 5 min; 5 business
    minutes). The conversation's id."""
    tenant = shop.tenant
    with at(f"{REPLY_DAY} 08:00"), shop.db.transaction() as session:
        do_set_business_hours(session, tenant.actor(), NINE_TO_SEVEN)
    with at(f"{FRIDAY} 18:55"):
        conversation = shop.customer_writes("+5215550000231")
    with at(f"{MONDAY} 09:02"):
        shop.assign(conversation, tenant.owner_id)
    with at(f"{MONDAY} 09:05"):
        shop.reply(conversation, tenant.actor())
    with at(f"{MONDAY} 18:58"):
        shop.customer_writes("+5215550000231", "una cosa más")
    with at(f"{TUESDAY} 09:03"):
        shop.reply(conversation, tenant.actor())
    return conversation


# The weekend scenario's calendar and business-hours durations: a message on Friday at 18:55,
# assigned on Monday at 09:02, answered at 09:05 and closed at 09:35, in a workspace open 09:00-19:00.
WEEKEND = 2 * 86400 + 14 * 3600
FIRST_RESPONSE = (WEEKEND + 10 * 60, 10 * 60)
ASSIGNMENT = (WEEKEND + 7 * 60, 7 * 60)
RESOLUTION = (WEEKEND + 40 * 60, 40 * 60)


def set_hours(db: Database, tenant: Tenant, hours: dict[str, Any]) -> None:
    with db.transaction() as session:
        do_set_business_hours(session, tenant.actor(), hours)


@contextmanager
def shop_open_nine_to_seven(db: Database, tenant: Tenant) -> Iterator[Shop]:
    """A shop on a fake provider (up for the block) in a workspace open 09:00-19:00 on weekdays since
    the Monday before the scenarios' week."""
    with at("2026-11-02 08:00"):
        set_hours(db, tenant, NINE_TO_SEVEN)
    with fake_provider() as provider:
        yield make_shop(db, tenant, provider.url)


def weekend(shop: Shop, tenant: Tenant) -> int:
    """A message at 18:55 on Friday, assigned at 09:02 on Monday, answered at 09:05, closed at 09:35."""
    with at(f"{FRIDAY} 18:55"):
        conversation = shop.customer_writes("+5215550000101")
    with at(f"{MONDAY} 09:02"):
        shop.assign(conversation, tenant.owner_id)
    with at(f"{MONDAY} 09:05"):
        shop.reply(conversation, tenant.actor())
    with at(f"{MONDAY} 09:35"):
        shop.close(conversation)
    return conversation


def near(value: float | None, expected: float) -> bool:
    # The scenario's clock keeps running for a moment inside each travelled instant.
    return value is not None and abs(value - expected) <= DRIFT


BUSY_DAY = "2026-11-02"


def busy_day(db: Database, tenant: Tenant) -> Shop:
    """Four conversations on BUSY_DAY, answered after 20 s, 90 s, 400 s and 4000 s, three closed,
    and a reply the provider refuses."""
    start = datetime.fromisoformat(f"{BUSY_DAY} 00:00")
    with fake_provider() as provider:
        with db.transaction() as session:
            channel: Channel = do_create_channel(session, tenant.actor(), "fakehttp", "=Tienda", {"url": provider.url})
        shop = Shop(db, tenant, channel.id)
        category = shop.category("Venta")
        conversation = 0
        for n, (hour, wait) in enumerate([(9, 20), (10, 90), (11, 400), (22, 4000)]):
            opened = start + timedelta(hours=hour)
            with at(opened.isoformat(sep=" ")):
                conversation = shop.customer_writes(f"+52155500001{n:02d}")
            with at((opened + timedelta(seconds=wait)).isoformat(sep=" ")):
                shop.assign(conversation, tenant.agent_id if n % 2 else tenant.owner_id)
                shop.reply(conversation, tenant.actor(Role.AGENT) if n % 2 else tenant.actor())
            if n < 3:
                with at((opened + timedelta(hours=1)).isoformat(sep=" ")):
                    shop.close(conversation, category)
        provider.script.append((400, {"error": "-1 blocked"}))
        with at(f"{BUSY_DAY} 23:59"):
            shop.reply(conversation, tenant.actor())
        feed(db)
    return shop


def report_csv(client: Any, tenant: Tenant, name: str, table: str, params: dict[str, Any]) -> list[list[str]]:
    response = client.get(f"/api/v1/reports/{name}/{table}.csv", headers=tenant.headers, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


def as_cell(value: Any) -> str:
    """A JSON value as the CSV writes it."""
    if value is None:
        return ""
    return safe_cell(value) if isinstance(value, str) else str(value)
