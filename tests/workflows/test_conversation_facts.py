"""The two halves of branch conditions on the conversation agree with what they stand for:

- the batch's one query (`conversation_conditions.load`) picks, for every contact, the conversation
  a plain reading of the rule picks (the open one, else the latest), with its channel's type, its
  assignee's status and its opening source, on SQLite and PostgreSQL, for generated conversations and statuses;
- the engine, which evaluates the conditions as conditions on prefixed list fields through the
  segments' evaluator, takes the branch a direct reading of each operator takes, for generated
  facts and conditions.
"""

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from tertulia.channels.service import do_create_channel
from tertulia.contacts.service import do_create_contact
from tertulia.conversations.models import Conversation, ConversationStatus, OpeningSource
from tertulia.kit.db import Database
from tertulia.segments.evaluator import ContactSnapshot
from tertulia.segments.timing import EvalContext
from tertulia.users.models import ActivityStatus, User
from tertulia.users.teams import do_create_team
from tertulia.workflows import conversation_conditions, engine
from tertulia.workflows import language as lang
from tertulia.workflows.conversation_conditions import ConversationFacts
from tests.conftest import Tenant

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
STATUSES = [status.value for status in ActivityStatus]
SOURCES = [source.value for source in OpeningSource]


class World:
    """A workspace's contacts, channels, team and people, made once per test."""

    def __init__(self, tenant: Tenant, contacts: list[int], channels: list[int], team: int) -> None:
        self.tenant = tenant
        self.contacts = contacts
        self.channels = channels
        self.team = team
        self.people = [tenant.owner_id, tenant.manager_id, tenant.agent_id]


@pytest.fixture
def world(db: Database, tenant: Tenant) -> World:
    with db.transaction() as session:
        actor = tenant.actor()
        contacts = [do_create_contact(session, actor, {"first_name": f"C{n}"}).id for n in range(4)]
        channels = [
            do_create_channel(session, actor, "webchat", f"Web {n}", {"allowed_origins": [f"https://s{n}.example"]}).id
            for n in range(2)
        ]
        team = do_create_team(session, actor, "Soporte").id
    return World(tenant, contacts, channels, team)


def conversation_rows(world: World) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Conversations of the world's contacts, in the order they are made (their ids grow), at most
    one open per contact (the partial unique index)."""
    one = st.fixed_dictionaries(
        {
            "contact": st.sampled_from(world.contacts),
            "open": st.booleans(),
            "channel": st.sampled_from([None, *world.channels]),
            "team": st.sampled_from([None, world.team]),
            "assignee": st.sampled_from([None, *world.people]),
            "source": st.sampled_from([None, *SOURCES]),
        }
    )

    def one_open_each(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[int] = set()
        for row in rows:
            if row["open"] and row["contact"] in seen:
                row["open"] = False
            if row["open"]:
                seen.add(row["contact"])
        return rows

    return st.lists(one, max_size=10).map(one_open_each)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_batch_query_picks_the_open_else_the_latest_conversation(db: Database, world: World, data: Any) -> None:
    rows = data.draw(conversation_rows(world))
    statuses = data.draw(st.lists(st.sampled_from(STATUSES), min_size=3, max_size=3))
    with db.transaction() as session:
        for person, status in zip(world.people, statuses, strict=True):
            user = session.get(User, person)
            assert user is not None
            user.activity_status = ActivityStatus(status)
        made = []
        for row in rows:
            conversation = Conversation(
                workspace_id=world.tenant.workspace_id,
                contact_id=row["contact"],
                channel_id=row["channel"],
                status=ConversationStatus.OPEN if row["open"] else ConversationStatus.CLOSED,
                team_id=row["team"],
                assignee_id=row["assignee"],
                opening_source=row["source"],
            )
            session.add(conversation)
            session.flush()
            made.append((conversation.id, row))
        found = conversation_conditions.load(
            session, [(contact, world.tenant.workspace_id) for contact in world.contacts]
        )
        session.execute(delete(Conversation).where(Conversation.contact_id.in_(world.contacts)))
    expected: dict[int, ConversationFacts] = {}
    for contact in world.contacts:
        mine = [(conversation_id, row) for conversation_id, row in made if row["contact"] == contact]
        if not mine:
            continue
        opened = [item for item in mine if item[1]["open"]]
        _id, row = opened[0] if opened else max(mine, key=lambda item: item[0])
        status_of = dict(zip(world.people, statuses, strict=True))
        expected[contact] = ConversationFacts(
            status="open" if row["open"] else "closed",
            channel_id=row["channel"],
            channel_type="webchat" if row["channel"] is not None else None,
            team_id=row["team"],
            assignee_id=row["assignee"],
            assignee_status=status_of[row["assignee"]] if row["assignee"] is not None else None,
            opening_source=row["source"],
        )
    assert found == expected


# ----- the engine against a direct reading of the operators --------------------------------------

CHANNELS, TEAMS, USERS = (7, 8), (31, 32), (21, 22)
KNOWN = lang.CheckContext(
    custom_fields={},
    channel_ids=frozenset(CHANNELS),
    channel_types={7: "whatsapp", 8: "telegram"},
    user_ids=frozenset(USERS),
    team_ids=frozenset(TEAMS),
)
VALUES: dict[str, tuple[Any, ...]] = {
    "status": ("open", "closed"),
    "channel": CHANNELS,
    "channel_type": ("whatsapp", "telegram", "webchat"),
    "team": TEAMS,
    "assignee": USERS,
    "assignee_status": tuple(STATUSES),
    "opening_source": tuple(SOURCES),
}

facts_strategy = st.one_of(
    st.none(),
    st.builds(
        ConversationFacts,
        status=st.sampled_from(("open", "closed")),
        channel_id=st.sampled_from((None, *CHANNELS)),
        channel_type=st.sampled_from((None, "whatsapp", "telegram", "webchat")),
        team_id=st.sampled_from((None, *TEAMS)),
        assignee_id=st.sampled_from((None, *USERS)),
        assignee_status=st.sampled_from((None, *STATUSES)),
        opening_source=st.sampled_from((None, *SOURCES)),
    ),
)


@st.composite
def conditions(draw: Any) -> dict[str, Any]:
    name = draw(st.sampled_from(tuple(VALUES)))
    operator = draw(st.sampled_from(conversation_conditions.OPERATORS[name]))
    found: dict[str, Any] = {"operator": operator}
    if name == "assignee_status":
        found["category"] = "assignee_status"
    else:
        found.update({"category": "conversation", "field": name})
    if operator in ("is", "is_not"):
        found["value"] = draw(st.sampled_from(VALUES[name]))
    elif operator in ("is_any_of", "is_none_of"):
        found["value"] = draw(st.lists(st.sampled_from(VALUES[name]), min_size=1, max_size=3, unique=True))
    return found


def direct(condition: dict[str, Any], facts: ConversationFacts | None) -> bool:
    """What the condition says, read straight off the facts."""
    name = condition.get("field") or "assignee_status"
    have = None
    if facts is not None:
        have = {
            "status": facts.status,
            "channel": facts.channel_id,
            "channel_type": facts.channel_type,
            "team": facts.team_id,
            "assignee": facts.assignee_id,
            "assignee_status": facts.assignee_status,
            "opening_source": facts.opening_source,
        }[name]
    value = condition.get("value")
    match condition["operator"]:
        case "is":
            return have is not None and have == value
        case "is_not":
            return have is None or have != value
        case "is_any_of":
            return have is not None and have in value
        case "is_none_of":
            return have is None or have not in value
        case "exists":
            return have is not None
        case _:
            return have is None


@settings(max_examples=300, deadline=None)
@given(
    groups=st.lists(
        st.tuples(st.sampled_from(("all", "any")), st.lists(conditions(), min_size=1, max_size=3)),
        min_size=1,
        max_size=3,
    ),
    match=st.sampled_from(("all", "any")),
    facts=facts_strategy,
)
def test_the_engine_takes_the_branch_a_direct_reading_takes(
    groups: list[tuple[str, list[dict[str, Any]]]], match: str, facts: ConversationFacts | None
) -> None:
    raw = {"match": match, "groups": [{"match": m, "conditions": c} for m, c in groups]}
    definition = {
        "trigger": {"type": "manual"},
        "steps": [
            {"id": "b", "type": "branch", "config": {"branches": [{"name": "y", "conditions": raw, "next": "y"}]}},
            {"id": "y", "type": "unassign"},
        ],
    }
    workflow, errors = lang.check_definition(definition, KNOWN)
    assert workflow is not None, errors
    context = engine.Context(
        now=NOW,
        eval=EvalContext(workspace_id=1, timezone=ZoneInfo("UTC"), now=NOW),
        contact=ContactSnapshot(id=1, workspace_id=1, created_at=NOW, updated_at=NOW),
        conversation=facts,
    )
    path = engine.advance(workflow, engine.new_state({}), engine.Start(), context).state.path
    results = [(all if m == "all" else any)(direct(c, facts) for c in conds) for m, conds in groups]
    expected = (all if match == "all" else any)(results)
    assert path[:2] == (["b", "y"] if expected else ["b"])
