"""@mentions by name: the pure resolver, and comments written by name through the API."""

import json
import re
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.conversations import files
from tertulia.conversations.mentions import Mentionable, name_key, resolve_mentions
from tertulia.conversations.models import Mention, Message
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.service import do_add_member, do_create_user, do_deactivate_member
from tertulia.users.sessions import do_sign_in
from tests.conftest import Tenant
from tests.conversations.support import Agent, make_webchat, new_visitor, sign_in

ANA = Mentionable(1, "Ana")
ANA_MARIA = Mentionable(2, "Ana María")
JOSE = Mentionable(3, "José Núñez")


def test_names_are_found_case_and_accent_insensitively() -> None:
    assert resolve_mentions("@jose nunez, ¿lo ves?", [ANA, JOSE]) == [3]
    assert resolve_mentions("Gracias @JOSÉ  NÚÑEZ.", [JOSE]) == [3]
    assert resolve_mentions("@José Núñez y @Ana: mirad esto", [ANA, JOSE]) == [3, 1]


def test_the_longest_name_wins_and_names_end_at_a_word_boundary() -> None:
    assert resolve_mentions("@Ana María ¿puedes?", [ANA, ANA_MARIA]) == [2]
    assert resolve_mentions("@Ana, ¿puedes?", [ANA, ANA_MARIA]) == [1]
    assert resolve_mentions("@Anabel ¿puedes?", [ANA, ANA_MARIA]) == []
    assert resolve_mentions("@Ana_b", [ANA]) == []


def test_what_is_not_a_mention() -> None:
    assert resolve_mentions("escribe a ana@example.com", [ANA]) == []
    assert resolve_mentions("@ Ana", [ANA]) == []
    assert resolve_mentions("@Ana\nMaría", [ANA_MARIA]) == []
    assert resolve_mentions("Ana María sin arroba", [ANA, ANA_MARIA]) == []
    assert resolve_mentions("@Ana", []) == []
    assert resolve_mentions("@", [Mentionable(9, "  ")]) == []


def test_a_shared_name_mentions_everyone_with_it_once() -> None:
    twin = Mentionable(7, "ana")
    assert resolve_mentions("@Ana @ana @ANA", [ANA, twin]) == [1, 7]


NAME_WORDS = st.text(alphabet="abcdeilmnoprstuzñáéíóúüABCDEÑÁÉ", min_size=1, max_size=8)
NAMES = st.lists(NAME_WORDS, min_size=1, max_size=3).map(" ".join)


@given(names=st.lists(NAMES, min_size=1, max_size=6), picks=st.lists(st.integers(0, 5), max_size=6), data=st.data())
def test_written_names_resolve_to_exactly_those_members(names: list[str], picks: list[int], data: Any) -> None:
    members = [Mentionable(100 + index, name) for index, name in enumerate(names)]
    chosen = [members[p % len(members)] for p in picks]
    # Written the way a person might: other case, with or without accents, between other words.
    written = [data.draw(st.sampled_from([m.name, m.name.upper(), m.name.lower()])) for m in chosen]
    text = "Hola " + ", ".join(f"@{w}" for w in written) + ". Gracias"
    expected: dict[int, None] = {}
    for member in chosen:
        for other in members:
            if name_key(other.name) == name_key(member.name):
                expected.setdefault(other.user_id, None)
    assert sorted(resolve_mentions(text, members)) == sorted(expected)


@given(text=st.text(max_size=200), names=st.lists(NAMES, max_size=4))
def test_only_members_are_returned_once_and_text_without_at_mentions_no_one(text: str, names: list[str]) -> None:
    members = [Mentionable(index, name) for index, name in enumerate(names)]
    found = resolve_mentions(text, members)
    assert len(found) == len(set(found))
    assert set(found) <= {m.user_id for m in members}
    assert resolve_mentions(text.replace("@", ""), members) == []


# ----- through the API (both databases) -------------------------------------------------------


def _conversation_id(client: TestClient, db: Database, tenant: Tenant) -> int:
    new_visitor(client, make_webchat(db, tenant)).say("hola")
    response = client.get("/api/v1/conversations", headers=tenant.headers)
    assert response.status_code == 200, response.text
    conversation_id: int = response.json()["items"][0]["id"]
    return conversation_id


def _teammates(db: Database, tenant: Tenant) -> tuple[int, int, int]:
    """Mara López (active), Mara Ruiz (deactivated), and Mara López of another workspace."""
    with db.transaction() as session:
        lopez = do_create_user(session, "mara.lopez@example.com", "x-password", first_name="Mara", last_name="López")
        do_add_member(session, tenant.workspace_id, lopez.id, Role.AGENT)
        ruiz = do_create_user(session, "mara.ruiz@example.com", "x-password", first_name="Mara", last_name="Ruiz")
        do_add_member(session, tenant.workspace_id, ruiz.id, Role.AGENT)
        do_deactivate_member(session, tenant.actor(), ruiz.id)
        stranger = do_create_user(session, "mara@other.example.com", "x-password", first_name="Mara", last_name="López")
        return lopez.id, ruiz.id, stranger.id


def test_comment_written_with_names_creates_mention_rows(client: TestClient, db: Database, tenant: Tenant) -> None:
    lopez, _ruiz, _stranger = _teammates(db, tenant)
    conversation_id = _conversation_id(client, db, tenant)
    response = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "@mara lopez y @Mara Ruiz, ¿lo veis? (copia a mara@example.com)"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["payload"]["mentions"] == [lopez]
    with db.transaction(write=False) as session:
        rows = list(session.execute(select(Mention.user_id, Mention.message_id, Mention.conversation_id)))
    assert rows == [(lopez, body["id"], conversation_id)]


def test_ids_given_win_over_names_in_the_text(client: TestClient, db: Database, tenant: Tenant) -> None:
    lopez, _ruiz, stranger = _teammates(db, tenant)
    conversation_id = _conversation_id(client, db, tenant)
    given_ids = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "@Mara López, mira", "mentions": [tenant.manager_id]},
    )
    assert given_ids.status_code == 201, given_ids.text
    foreign = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "@Mara López, mira", "mentions": [stranger]},
    )
    assert foreign.status_code == 422
    assert foreign.json()["error"]["details"] == {"mentions[0]": f"no active user {stranger} in this workspace"}
    nobody = client.post(
        f"/api/v1/conversations/{conversation_id}/comments",
        headers=tenant.headers,
        json={"text": "@Nadie Conocido, mira"},
    )
    assert nobody.status_code == 201, nobody.text
    with db.transaction(write=False) as session:
        assert list(session.scalars(select(Mention.user_id).order_by(Mention.id))) == [tenant.manager_id]
        comments = select(Message).where(Message.direction == "comment").order_by(Message.id)
        payloads = [m.payload for m in session.scalars(comments)]
    assert payloads == [{"mentions": [tenant.manager_id]}, {"mentions": []}]
    assert lopez not in payloads[0]["mentions"]


def test_inbox_page_offers_every_teammate_by_name_and_the_upload_limits(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    lopez, ruiz, stranger = _teammates(db, tenant)
    agent = sign_in(db, tenant, Role.AGENT)
    page = client.get("/messages", headers={"Cookie": agent.headers["Cookie"]})
    assert page.status_code == 200
    found = re.search(r'<script type="application/json" id="inbox-data">(.*?)</script>', page.text, re.S)
    assert found is not None
    data = json.loads(found.group(1))
    people = {p["id"]: (p["name"], p["active"]) for p in data["people"]}
    # An agent may assign only to themselves, but may mention (and read the names of) everyone.
    assert [m["id"] for m in data["members"]] == [tenant.agent_id]
    assert people[lopez] == ("Mara López", True)
    assert people[ruiz] == ("Mara Ruiz", False)
    assert stranger not in people
    assert {tenant.owner_id, tenant.manager_id, tenant.agent_id} <= set(people)
    assert data["upload"] == {"max_bytes": files.max_bytes(), "types": list(files.ALLOWED_TYPES), "max_files": 10}


def test_a_mentioned_agent_may_open_a_colleagues_conversation_others_may_not(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    conversation_id = _conversation_id(client, db, tenant)
    taken = client.post(
        f"/api/v1/conversations/{conversation_id}/assign", headers=tenant.headers, json={"user_id": tenant.manager_id}
    )
    assert taken.status_code == 200, taken.text
    agent = sign_in(db, tenant, Role.AGENT)
    url = f"/api/v1/conversations/{conversation_id}"
    assert client.get(url, headers=agent.headers).status_code == 404
    noted = client.post(f"{url}/comments", headers=tenant.headers, json={"text": "mira", "mentions": [agent.user_id]})
    assert noted.status_code == 201, noted.text
    assert client.get(url, headers=agent.headers).status_code == 200
    assert client.get(f"{url}/messages", headers=agent.headers).status_code == 200
    # It is reachable, not listed: their inbox views stay what their permissions give them.
    listed = client.get("/api/v1/conversations", headers=agent.headers).json()["items"]
    assert conversation_id not in [c["id"] for c in listed]
    lopez, _ruiz, _stranger = _teammates(db, tenant)  # another agent, never mentioned here
    with db.transaction() as session:
        signed = do_sign_in(session, "mara.lopez@example.com", "x-password", client_ip=None)
    other = Agent(lopez, signed.token, signed.web_session.csrf_token)
    assert client.get(url, headers=other.headers).status_code == 404
