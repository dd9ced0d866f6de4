"""The audience: snapshotted set-based from the segment compiler, each exclusion reason counted,
WhatsApp's messaging limit refused or sent partly; the dry run writes nothing."""

from collections.abc import Callable
from datetime import timedelta

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, cast, func, select, update

from tertulia.broadcasts import audience, service
from tertulia.broadcasts.models import Broadcast, BroadcastRecipient
from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact
from tertulia.conversations.models import SmsConsent
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.segments import service as segments_service
from tertulia.segments.models import Segment
from tertulia.segments.service import do_create_segment
from tests.broadcasts.support import customers_write, draft, fake_channel
from tests.channels import whatsapp_samples as wa
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter

NO_GRAPH = "http://127.0.0.1:9"


def whatsapp(db: Database, tenant: Tenant, **columns: object) -> Channel:
    with db.transaction() as session:
        channel = do_create_channel(
            session,
            tenant.actor(),
            "whatsapp",
            "Ventas",
            {
                "phone_number_id": wa.PHONE_NUMBER_ID,
                "business_account_id": wa.BUSINESS_ACCOUNT_ID,
                "api_base_url": NO_GRAPH,
            },
            {"access_token": "EAAG-test-token", "app_secret": wa.APP_SECRET},
        )
        for name, value in columns.items():
            setattr(channel, name, value)
        body = [{"type": "BODY", "text": "Hola {{1}}, tenemos 20% para ti."}]
        do_store_templates(
            session, channel, [ProviderTemplate("1", "promo", "es_MX", "MARKETING", "APPROVED", "POSITIONAL", body)]
        )
        session.flush()
        session.expunge(channel)
    return channel


def segment(db: Database, tenant: Tenant, name: str, countries: list[str]) -> int:
    condition = {"category": "contact_field", "field": "country", "operator": "is_any_of", "value": countries}
    with db.transaction() as session:
        return do_create_segment(
            session, tenant.actor(), name, {"match": "all", "groups": [{"match": "all", "conditions": [condition]}]}
        ).id


def test_each_exclusion_reason_is_counted_and_exported(db: Database, client: TestClient, tenant: Tenant) -> None:
    channel = whatsapp(db, tenant)
    senders = [f"52155{n:08d}" for n in range(6)]
    ok, in_excluded_segment, blocked, opted_out, _unused, no_email = customers_write(db, channel, senders)
    with travel(timedelta(hours=-25)):
        (window_closed,) = customers_write(db, channel, ["5215599999999"])
    with db.transaction() as session:
        session.execute(update(Contact).values(email="c" + cast(Contact.id, String) + "@example.com", country="MX"))
        session.execute(update(Contact).where(Contact.id == no_email).values(email=None))
        session.execute(update(Contact).where(Contact.id == in_excluded_segment).values(country="AR"))
        session.execute(update(Contact).where(Contact.id == blocked).values(blocked=True))
        no_identity = Contact(workspace_id=tenant.workspace_id, first_name="Sin", email="x@example.com", custom={})
        session.add(no_identity)
        session.flush()
        no_identity_id = no_identity.id
        target = session.get(Contact, opted_out)
        assert target is not None
        service.do_set_opted_out(session, tenant.actor(), target, True)
    argentina = segment(db, tenant, "Argentina", ["AR"])
    broadcast_id = draft(
        db,
        tenant,
        name="Correo",
        audience="all",
        exclude_segment_id=argentina,
        channel_id=channel.id,
        content={"whatsapp": {"text": 'Hola {{contact.first_name | "cliente"}}, te escribimos a {{contact.email}}.'}},
    )
    dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers)
    assert dry.status_code == 200, dry.text
    counts = dry.json()["counts"]
    assert counts["audience"] == 8
    assert counts["recipients"] == 2  # ok, and the sixth sender nobody excluded
    assert counts["by_channel"] == {str(channel.id): 2}
    assert counts["excluded_by_reason"] == {
        "excluded_segment": 1,
        "blocked": 1,
        "opted_out": 1,
        "no_identity": 1,
        "window_closed": 1,
        "variable_empty": 1,
    }
    exported = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run/excluded.csv", headers=tenant.headers)
    assert exported.status_code == 200, exported.text
    reasons = {int(line.split(",")[0]): line.split(",")[6] for line in exported.text.splitlines()[1:]}
    assert reasons == {
        in_excluded_segment: "excluded_segment",
        blocked: "blocked",
        opted_out: "opted_out",
        no_identity_id: "no_identity",
        window_closed: "window_closed",
        no_email: "variable_empty",
    }
    assert ok not in reasons
    with db.transaction(write=False) as session:  # the dry run wrote nothing
        assert session.scalar(select(func.count()).select_from(BroadcastRecipient)) == 0


def test_the_messaging_limit_refuses_or_sends_partly(db: Database, client: TestClient, tenant: Tenant) -> None:
    channel = whatsapp(db, tenant, messaging_limit="TIER_50")
    with travel(timedelta(hours=-25)):  # every window closed: each one needs the template
        customers_write(db, channel, [f"52155{n:08d}" for n in range(53)])
    template = {
        "name": "promo",
        "language": "es_MX",
        "components": [{"type": "body", "parameters": [{"variable": "contact.first_name", "fallback": "cliente"}]}],
    }
    broadcast_id = draft(
        db, tenant, name="Promo", audience="all", channel_id=channel.id, content={"whatsapp": {"template": template}}
    )
    dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers).json()
    assert dry["refused"] is True
    assert dry["messaging_limits"] == [{"channel_id": channel.id, "limit": 50, "used": 0, "room": 50, "over": 3}]
    refused = client.post(f"/api/v1/broadcasts/{broadcast_id}/schedule", headers=tenant.headers, json={})
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "broadcast_refused"
    patched = client.patch(f"/api/v1/broadcasts/{broadcast_id}", headers=tenant.headers, json={"over_limit": "partial"})
    assert patched.status_code == 200, patched.text
    dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers).json()
    assert dry["refused"] is False
    assert dry["counts"]["recipients"] == 50
    assert dry["counts"]["templates_by_channel"] == {str(channel.id): 50}
    assert dry["counts"]["excluded_by_reason"] == {"messaging_limit": 3}
    preview = client.post(f"/api/v1/broadcasts/{broadcast_id}/preview", headers=tenant.headers).json()
    assert preview[0]["type"] == "template"
    assert preview[0]["text"] == "Hola cliente, tenemos 20% para ti."


COUNTRIES = ["MX", "AR", "CO", "ES"]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    countries=st.lists(st.sampled_from([*COUNTRIES, None]), min_size=0, max_size=12),
    chosen=st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3, unique=True),
)
def test_the_snapshot_is_the_segments_members(
    db: Database,
    make_tenant: Callable[..., Tenant],
    fakehttp_adapter: FakeHttpAdapter,
    countries: list[str | None],
    chosen: list[str],
) -> None:
    tenant = make_tenant()
    channel = fake_channel(db, tenant, NO_GRAPH)
    ids = customers_write(db, channel, [f"+52155{n:08d}" for n in range(len(countries))])
    with db.transaction() as session:
        for contact_id, country in zip(ids, countries, strict=True):
            session.execute(update(Contact).where(Contact.id == contact_id).values(country=country))
    segment_id = segment(db, tenant, "Elegidos", chosen)
    broadcast_id = draft(
        db, tenant, name="B", segment_id=segment_id, channel_id=channel.id, content={"default": {"text": "hola"}}
    )
    with db.transaction() as session:
        item = session.get(Broadcast, broadcast_id)
        assert item is not None
        savepoint = session.begin_nested()
        audience.snapshot(session, item, utcnow())
        snapshot = set(
            session.scalars(
                select(BroadcastRecipient.contact_id).where(BroadcastRecipient.broadcast_id == broadcast_id)
            )
        )
        savepoint.rollback()
        stored = session.get(Segment, segment_id)
        assert stored is not None
        checked = segments_service.checked_segment_filter(session, tenant.actor(), stored)
        members = {
            c.id for c in segments_service.contacts_page(session, tenant.actor(), checked, after_id=None, limit=200)
        }
    assert snapshot == members
    assert members == {cid for cid, country in zip(ids, countries, strict=True) if country in chosen}


def test_a_number_that_texted_stop_is_opted_out_on_that_sms_channel(
    db: Database, client: TestClient, tenant: Tenant
) -> None:
    with db.transaction() as session:
        sms = do_create_channel(
            session,
            tenant.actor(),
            "twilio",
            "SMS",
            {"account_sid": "AC" + "0" * 32, "from_number": "+525512345678", "api_base_url": NO_GRAPH},
            {"auth_token": "0" * 32},
        )
        session.expunge(sms)
    stays, stopped = customers_write(db, sms, ["+5215500000001", "+5215500000002"])
    with db.transaction() as session:
        session.add(
            SmsConsent(
                workspace_id=tenant.workspace_id,
                channel_id=sms.id,
                recipient="+5215500000002",
                opted_out=True,
                keyword="STOP",
            )
        )
    broadcast_id = draft(
        db, tenant, name="SMS", audience="all", channel_id=sms.id, content={"default": {"text": "Hola"}}
    )
    dry = client.post(f"/api/v1/broadcasts/{broadcast_id}/dry-run", headers=tenant.headers).json()
    assert dry["counts"]["recipients"] == 1
    assert dry["counts"]["excluded_by_reason"] == {"opted_out": 1}
    assert (stays, stopped) != (0, 0)
