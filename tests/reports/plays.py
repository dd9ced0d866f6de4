"""Days of work played through the real inbox from a plan of steps (customers writing, replies, a
bot's answers, assignments, closing and reopening), the same plan in several workspaces at the same
instants: what the report tests built on Hypothesis share."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import strategies as st

from tertulia.contacts.models import Contact
from tertulia.contacts.service import do_add_tags, do_create_tag
from tertulia.conversations import service as inbox
from tertulia.conversations.models import Conversation
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.reports.support import Shop, at, system

DAY = "2026-11-04"
CUSTOMERS = 4
ACTIONS = ("write", "write", "reply", "bot", "assign", "reassign", "unassign", "close", "reopen")


@dataclass(frozen=True)
class Step:
    customer: int
    action: str
    seconds: int


steps = st.lists(
    st.builds(
        Step,
        customer=st.integers(0, CUSTOMERS - 1),
        action=st.sampled_from(ACTIONS),
        # Not whole minutes: the two workspaces' clocks differ by the milliseconds the steps take,
        # and a time a few milliseconds either side of a bucket's edge (2 min) would fall apart.
        seconds=st.sampled_from([67, 247, 2107, 9007, 42007]),
    ),
    min_size=4,
    max_size=18,
)


def phone(customer: int) -> str:
    return f"+52155500001{customer:02d}"


def play(shop: Shop, tenant: Tenant, plan: list[Step], customers: set[int]) -> dict[int, int]:
    """The plan's steps of `customers`, at the plan's times (so two workspaces playing different
    customers see the same customer's events at the same instants). A step that does not fit the
    conversation's state (a reply before any message, closing a closed one) is passed over, alike
    in both. The conversation of each customer who wrote."""
    clock = datetime.fromisoformat(f"{DAY} 08:00")
    conversations: dict[int, int] = {}
    closed: set[int] = set()
    for step in plan:
        clock += timedelta(seconds=step.seconds)
        if step.customer not in customers:
            continue
        conversation = conversations.get(step.customer)
        with at(clock.isoformat(sep=" ")):
            if step.action == "write":
                conversations[step.customer] = shop.customer_writes(phone(step.customer))
                closed.discard(step.customer)
            elif conversation is None:
                continue
            elif step.action == "reopen" and step.customer in closed:
                shop.reopen(conversation)
                closed.discard(step.customer)
            elif step.customer in closed:
                continue
            elif step.action == "reply":  # the owner may reply whoever has the conversation
                shop.reply(conversation, tenant.actor())
            elif step.action == "bot":
                shop.reply(conversation, system(tenant, "bot"), "automático")
            elif step.action == "assign":
                shop.assign(conversation, tenant.agent_id)
            elif step.action == "reassign":
                shop.assign(conversation, tenant.manager_id)
            elif step.action == "unassign":
                unassign(shop, conversation)
            elif step.action == "close":
                shop.close(conversation)
                closed.add(step.customer)
    return conversations


def unassign(shop: Shop, conversation_id: int) -> None:
    with shop.db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        inbox.do_assign(session, shop.tenant.actor(), conversation, user_id=None, team_id=None)


def tag_customers(db: Database, tenant: Tenant, shop: Shop, conversations: dict[int, int], customers: set[int]) -> None:
    with db.transaction() as session:
        do_create_tag(session, tenant.actor(), "VIP")  # it exists even when nobody who wrote has it
        for customer in sorted(customers & set(conversations)):
            contact = session.get(Contact, shop.contact_of(conversations[customer]))
            assert contact is not None
            do_add_tags(session, tenant.actor(), contact, ["VIP"])
