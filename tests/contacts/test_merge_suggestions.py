"""One contact per person across channels (contacts/identities.py, contacts/merge_suggestions.py): a
new identity joins the one contact that has the phone or email the channel vouches for; anything
less creates a contact and a merge suggestion shown on both, which a person accepts or dismisses."""

from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tertulia.contacts import merge_suggestions
from tertulia.contacts.identities import Sender, contact_id_for, placement, resolve_sender
from tertulia.contacts.models import Contact, ContactActivity, ContactIdentity, MergeSuggestion
from tertulia.contacts.service import FieldContext, do_create_contact
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.web.helpers import csrf_from, sign_in_as


def _contact(db: Database, tenant: Tenant, **values: Any) -> int:
    with db.transaction() as session:
        return do_create_contact(session, tenant.actor(), values).id


def _resolve(db: Database, tenant: Tenant, channel: str, sender: Sender) -> int:
    with db.transaction() as session:
        return resolve_sender(session, tenant.workspace_id, channel, sender).id


def _suggestions(db: Database, tenant: Tenant) -> list[tuple[int, int, str, str]]:
    with db.transaction(write=False) as session:
        rows = session.scalars(
            select(MergeSuggestion)
            .where(MergeSuggestion.workspace_id == tenant.workspace_id)
            .order_by(MergeSuggestion.id)
        )
        return [(r.contact_id, r.other_contact_id, r.reason, r.status) for r in rows]


def _event_types(db: Database, tenant: Tenant) -> list[str]:
    with db.transaction(write=False) as session:
        return list(
            session.scalars(
                select(EventRecord.type).where(EventRecord.workspace_id == tenant.workspace_id).order_by(EventRecord.id)
            )
        )


def test_a_whatsapp_number_one_contact_has_joins_that_contact(db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ana", phone="55 1234 5678", email="ana@example.com")  # Mexico City
    phone = "+525512345678"
    sender = Sender(external_id=phone.lstrip("+"), display_name="Ana WhatsApp", phone=phone)
    assert _resolve(db, tenant, "whatsapp", sender) == ana
    with db.transaction(write=False) as session:
        assert contact_id_for(session, tenant.workspace_id, "whatsapp", phone.lstrip("+")) == ana
        assert session.scalar(select(Contact.first_name).where(Contact.id == ana)) == "Ana"  # the name stays
        linked = session.scalars(
            select(ContactActivity.new_value).where(
                ContactActivity.contact_id == ana, ContactActivity.action == "identity_linked"
            )
        ).all()
        assert linked == [{"channel": "whatsapp", "external_id": phone.lstrip("+"), "matched_on": "phone"}]
    assert "contact.identity_linked" in _event_types(db, tenant)
    assert _suggestions(db, tenant) == []
    assert _resolve(db, tenant, "whatsapp", sender) == ana  # the next message: a known identity


def test_a_phone_in_another_format_is_the_same_number(db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ana", phone="+34 612 345 678")
    sender = Sender(external_id="34612345678", phone="0034612345678")
    assert _resolve(db, tenant, "whatsapp", sender) == ana


def test_a_contact_without_a_name_takes_the_profile_name(db: Database, tenant: Tenant) -> None:
    nameless = _contact(db, tenant, phone="+34 612 345 678")
    sender = Sender(external_id="34612345678", display_name="Lola Ruiz", phone="+34612345678")
    assert _resolve(db, tenant, "whatsapp", sender) == nameless
    with db.transaction(write=False) as session:
        stored = session.get(Contact, nameless)
        assert stored is not None
        assert (stored.first_name, stored.last_name, stored.first_name_folded) == ("Lola", "Ruiz", "lola")
    assert _event_types(db, tenant)[-1] == "contact.updated"


def test_an_email_a_web_chat_visitor_typed_is_only_a_suggestion(db: Database, tenant: Tenant) -> None:
    real = _contact(db, tenant, first_name="Real", email="real@example.com")
    newcomer = _resolve(db, tenant, "webchat", Sender(external_id="1:v:x", first_name="Who", email="REAL@example.com"))
    assert newcomer != real
    assert _suggestions(db, tenant) == [(real, newcomer, "email", "open")]
    assert "contact.merge_suggested" in _event_types(db, tenant)


def test_several_matches_make_suggestions_not_a_link(db: Database, tenant: Tenant) -> None:
    by_phone = _contact(db, tenant, first_name="Uno", phone="+34 612 345 678")
    by_email = _contact(db, tenant, first_name="Dos", email="dos@example.com")
    sender = Sender(external_id="34612345678", phone="+34612345678", email="dos@example.com")
    newcomer = _resolve(db, tenant, "whatsapp", sender)
    assert newcomer not in (by_phone, by_email)
    assert _suggestions(db, tenant) == [(by_phone, newcomer, "phone", "open"), (by_email, newcomer, "email", "open")]


def test_a_contact_with_another_identity_on_the_channel_type_is_not_joined(db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ana", phone="+34 612 345 678")
    with db.transaction() as session:
        session.add(
            ContactIdentity(workspace_id=tenant.workspace_id, contact_id=ana, channel="whatsapp", external_id="x")
        )
    newcomer = _resolve(db, tenant, "whatsapp", Sender(external_id="34612345678", phone="+34612345678"))
    assert newcomer != ana
    assert _suggestions(db, tenant) == [(ana, newcomer, "phone", "open")]


def test_a_disagreeing_email_keeps_them_apart(db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ana", phone="+34 612 345 678", email="ana@example.com")
    sender = Sender(external_id="34612345678", phone="+34612345678", email="other@example.com")
    assert _resolve(db, tenant, "whatsapp", sender) != ana


def test_the_same_full_name_is_a_weak_match(db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ána", last_name="López")
    newcomer = _resolve(db, tenant, "telegram", Sender(external_id="tg-1", display_name="ana lopez"))
    assert newcomer != ana
    assert _suggestions(db, tenant) == [(ana, newcomer, "name", "open")]
    # A first name alone is no evidence, and a name shared by many is too common.
    _resolve(db, tenant, "telegram", Sender(external_id="tg-2", display_name="Ana"))
    for n in range(3):
        _contact(db, tenant, first_name="Juan", last_name="Pérez", email=f"juan{n}@example.com")
    _resolve(db, tenant, "telegram", Sender(external_id="tg-3", display_name="Juan Pérez"))
    assert len(_suggestions(db, tenant)) == 1 + 3
    for n in range(3, 5):
        _contact(db, tenant, first_name="Juan", last_name="Pérez", email=f"juan{n}@example.com")
    _resolve(db, tenant, "telegram", Sender(external_id="tg-4", display_name="Juan Pérez"))
    assert len(_suggestions(db, tenant)) == 1 + 3


def test_the_api_lists_accepts_and_dismisses(client: TestClient, db: Database, tenant: Tenant) -> None:
    old = _contact(db, tenant, first_name="Ana", last_name="López", email="ana@example.com")
    new = _resolve(db, tenant, "telegram", Sender(external_id="tg-1", display_name="Ana López"))
    for me, other in ((old, new), (new, old)):
        listed = client.get(f"/api/v1/contacts/id:{me}/merge_suggestions", headers=tenant.headers)
        assert listed.status_code == 200
        [item] = listed.json()
        assert (item["contact"]["id"], item["reason"], item["status"], item["survivor_id"]) == (
            other,
            "name",
            "open",
            old,
        )
    suggestion_id = item["id"]

    missing = client.post(f"/api/v1/contacts/id:{old}/merge_suggestions/999999/accept", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    stranger = _contact(db, tenant, first_name="Otro")
    not_theirs = client.post(
        f"/api/v1/contacts/id:{stranger}/merge_suggestions/{suggestion_id}/dismiss", headers=tenant.headers
    )
    assert not_theirs.status_code == 404

    accepted = client.post(
        f"/api/v1/contacts/id:{new}/merge_suggestions/{suggestion_id}/accept", headers=tenant.headers
    )
    assert accepted.status_code == 200
    assert accepted.json()["id"] == old  # the older contact survives
    assert accepted.json()["email"] == "ana@example.com"
    with db.transaction(write=False) as session:
        assert session.get(Contact, new) is None
        assert contact_id_for(session, tenant.workspace_id, "telegram", "tg-1") == old
    assert client.get(f"/api/v1/contacts/id:{old}/merge_suggestions", headers=tenant.headers).json() == []
    assert _suggestions(db, tenant) == []
    assert "contact.merged" in _event_types(db, tenant)


def test_a_dismissed_pair_is_never_suggested_again(client: TestClient, db: Database, tenant: Tenant) -> None:
    old = _contact(db, tenant, first_name="Ana", email="ana@example.com")
    new = _resolve(db, tenant, "webchat", Sender(external_id="1:v:a", email="ana@example.com"))
    [item] = client.get(f"/api/v1/contacts/id:{old}/merge_suggestions", headers=tenant.headers).json()
    dismissed = client.post(f"/api/v1/contacts/id:{old}/merge_suggestions/{item['id']}/dismiss", headers=tenant.headers)
    assert dismissed.status_code == 200
    assert dismissed.json()["status"] == "dismissed"
    assert client.get(f"/api/v1/contacts/id:{new}/merge_suggestions", headers=tenant.headers).json() == []
    again = client.post(f"/api/v1/contacts/id:{new}/merge_suggestions/{item['id']}/accept", headers=tenant.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "merge_suggestion_dismissed"
    with db.transaction() as session:
        assert merge_suggestions.do_suggest(session, tenant.workspace_id, new, old, "email") is None
    assert _suggestions(db, tenant) == [(old, new, "email", "dismissed")]


def test_a_merge_carries_the_merged_contacts_suggestions(client: TestClient, db: Database, tenant: Tenant) -> None:
    ana = _contact(db, tenant, first_name="Ana", email="ana@example.com")
    third = _contact(db, tenant, first_name="Berta", email="berta@example.com")
    visitor = _resolve(db, tenant, "webchat", Sender(external_id="1:v:b", email="berta@example.com"))
    merged = client.post(f"/api/v1/contacts/id:{ana}/merge", json={"other": f"id:{visitor}"}, headers=tenant.headers)
    assert merged.status_code == 200
    assert _suggestions(db, tenant) == [(ana, third, "email", "open")]


def test_both_contact_pages_offer_accept_and_dismiss(client: TestClient, db: Database, tenant: Tenant) -> None:
    old = _contact(db, tenant, first_name="Ana", last_name="López")
    new = _resolve(db, tenant, "telegram", Sender(external_id="tg-1", display_name="Ana López"))
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    for me, other in ((old, new), (new, old)):
        page = client.get(f"/contacts/{me}")
        assert page.status_code == 200
        assert f'href="/contacts/{other}"' in page.text
        assert "/merge_suggestions/" in page.text
    assert [row[3] for row in _suggestions(db, tenant)] == ["open"]
    spanish = client.get(f"/contacts/{old}", headers={"Accept-Language": "es"}).text
    assert "Posiblemente la misma persona" in spanish
    assert "Mismo nombre completo" in spanish
    page = client.get(f"/contacts/{new}")
    with db.transaction(write=False) as session:
        suggestion_id = session.scalar(select(MergeSuggestion.id))
    response = client.post(
        f"/contacts/{new}/merge_suggestions/{suggestion_id}/dismiss",
        data={"csrf_token": csrf_from(page)},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "merge-suggestions" not in client.get(f"/contacts/{old}").text
    assert _suggestions(db, tenant)[0][3] == "dismissed"


PHONES = [f"+3461234567{d}" for d in range(4)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    people=st.lists(
        st.tuples(st.sampled_from([*PHONES, None]), st.booleans(), st.sampled_from(["Ana López", "Eva Gil", ""])),
        max_size=5,
    ),
    sender_phone=st.sampled_from(PHONES),
    spelled=st.sampled_from(["e164", "00", "spaced"]),
    channel=st.sampled_from(["whatsapp", "webchat", "telegram"]),
)
def test_linking_never_joins_different_phones_and_is_deterministic(
    db: Database,
    tenant: Tenant,
    people: list[tuple[str | None, bool, str]],
    sender_phone: str,
    spelled: str,
    channel: str,
) -> None:
    try:
        with db.transaction() as session:
            seen: set[str] = set()
            existing: dict[int, tuple[str | None, bool]] = {}
            for index, (drawn, on_channel, name) in enumerate(people):
                phone = drawn if drawn not in seen else None  # phones are unique in a workspace
                if phone:
                    seen.add(phone)
                first, _, last = name.partition(" ")
                contact = Contact(
                    workspace_id=tenant.workspace_id,
                    first_name=first or f"P{index}",
                    last_name=last or None,
                    first_name_folded=(first or f"P{index}").lower(),
                    last_name_folded=(last or "").lower() or None,
                    phone=phone,
                    custom={},
                )
                session.add(contact)
                session.flush()
                if on_channel:
                    session.add(
                        ContactIdentity(
                            workspace_id=tenant.workspace_id,
                            contact_id=contact.id,
                            channel=channel,
                            external_id=f"other-{index}",
                        )
                    )
                existing[contact.id] = (phone, on_channel)
        typed = {
            "e164": sender_phone,
            "00": "00" + sender_phone[1:],
            "spaced": sender_phone[:3] + " " + sender_phone[3:],
        }
        sender = Sender(external_id=sender_phone[1:], display_name="Ana López", phone=typed[spelled])
        with db.transaction(write=False) as session:
            ctx = FieldContext.load(session, tenant.workspace_id)
            once, twice = placement(session, ctx, channel, sender), placement(session, ctx, channel, sender)
            assert once.link is twice.link
            assert [(c.id, r) for c, r in once.suggest] == [(c.id, r) for c, r in twice.suggest]
        result = _resolve(db, tenant, channel, sender)
        holders = [cid for cid, (phone, _) in existing.items() if phone == sender_phone]
        if result in existing:
            # Linked: only to the one contact with this very number, on a channel that vouches for it.
            assert channel == "whatsapp"
            assert holders == [result]
            assert existing[result] == (sender_phone, False)
        else:
            expected_link = channel == "whatsapp" and len(holders) == 1 and not existing[holders[0]][1]
            assert not expected_link
            pairs = {(a, b) for a, b, _, _ in _suggestions(db, tenant)}
            for holder in holders:
                assert (holder, result) in pairs  # a near miss is always offered to a person
            with db.transaction(write=False) as session:
                stored = session.get(Contact, result)
                assert stored is not None
                assert stored.phone in (None, sender_phone)
                assert stored.phone is None or not holders  # never a second contact with the same phone
    finally:
        with db.transaction() as session:
            session.execute(delete(Contact).where(Contact.workspace_id == tenant.workspace_id))
