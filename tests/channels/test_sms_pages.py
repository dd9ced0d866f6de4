"""Settings > Channels for the SMS providers, through the real pages against their local fakes:
connecting (the provider's refusals and our own checks beside the field, in Spanish and English,
secrets never put back into the page), the channel's page with its callback URL and health, and the
connection test."""

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.kit.clock import travel
from tertulia.kit.db import Database
from tests.channels import twilio_samples as tw
from tests.channels.fake_bird import ACCESS_KEY as BIRD_KEY
from tests.channels.fake_bird import CHANNEL as BIRD_CHANNEL
from tests.channels.fake_bird import SIGNING_KEY as BIRD_SIGNING_KEY
from tests.channels.fake_bird import WORKSPACE as BIRD_WORKSPACE
from tests.channels.fake_bird import fake_bird
from tests.channels.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, NUMBER, FakeTwilio, fake_twilio
from tests.channels.fake_vonage import API_KEY as VONAGE_KEY
from tests.channels.fake_vonage import API_SECRET as VONAGE_SECRET
from tests.channels.fake_vonage import NUMBER as VONAGE_NUMBER
from tests.channels.fake_vonage import SIGNATURE_SECRET, fake_vonage
from tests.channels.support import channel_messages, connect
from tests.conftest import Tenant
from tests.fakes import callbacks_written
from tests.web.helpers import sign_in_as


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    with fake_twilio() as server:
        server.add_number()
        yield server


def test_connecting_a_twilio_number_from_the_page(
    client: TestClient, db: Database, tenant: Tenant, twilio: FakeTwilio
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/channels")
    assert 'data-testid="connect-twilio"' in page.text
    form = {"account_sid": ACCOUNT_SID, "from_number": NUMBER, "api_base_url": twilio.url, "csrf_token": csrf}
    wrong = "a" * 32
    refused = client.post(
        "/settings/channels/sms/twilio",
        data={**form, "auth_token": wrong, "name": "Ventas"},
        headers={"Accept-Language": "es"},
    )
    assert refused.status_code == 422
    assert "Twilio rechazó el token: Authenticate (20003)" in refused.text
    assert wrong not in refused.text  # a secret is never put back into the page
    assert 'value="Ventas"' in refused.text
    malformed = client.post(
        "/settings/channels/sms/twilio",
        data={**form, "account_sid": "AC123", "auth_token": AUTH_TOKEN},
        headers={"Accept-Language": "es"},
    )
    assert malformed.status_code == 422
    assert "debe ser el Account SID: AC seguido de 32 caracteres" in malformed.text
    assert 'id="account_sid-error"' in malformed.text
    unknown_number = client.post(
        "/settings/channels/sms/twilio",
        data={**form, "from_number": "+14155550199", "auth_token": AUTH_TOKEN},
        headers={"Accept-Language": "en"},
    )
    assert unknown_number.status_code == 422
    assert "Twilio does not know this sender: the account has no number +14155550199" in unknown_number.text
    assert 'id="from_number-error"' in unknown_number.text
    assert client.post("/settings/channels/sms/carrier-pigeon", data=form).status_code == 404
    done = client.post("/settings/channels/sms/twilio", data={**form, "auth_token": AUTH_TOKEN}, follow_redirects=False)
    assert done.status_code == 303
    detail = client.get(done.headers["location"], headers={"Accept-Language": "en"})
    assert 'data-testid="sms-status"' in detail.text
    assert "Tienda Lupita" in detail.text
    assert twilio.numbers[NUMBER]["sms_url"] in detail.text  # the callback URL, to check
    assert AUTH_TOKEN not in detail.text
    channel_id = done.headers["location"].rstrip("/").rpartition("/")[2]
    tested = client.post(
        f"/settings/channels/{channel_id}/sms/test", data={"csrf_token": csrf}, headers={"Accept-Language": "en"}
    )
    assert tested.status_code == 200
    assert 'data-testid="sms-test-result"' in tested.text
    assert "not this channel&#39;s callback URL" not in tested.text
    twilio.numbers[NUMBER]["sms_url"] = "https://elsewhere.example/sms"
    moved = client.post(
        f"/settings/channels/{channel_id}/sms/test", data={"csrf_token": csrf}, headers={"Accept-Language": "es"}
    )
    assert "no es la URL de callback de este canal" in moved.text
    twilio.numbers.clear()
    failed = client.post(
        f"/settings/channels/{channel_id}/sms/test", data={"csrf_token": csrf}, headers={"Accept-Language": "es"}
    )
    assert failed.status_code == 422
    assert "Twilio respondió: the account has no number +14155550100" in failed.text
    overview = client.get("/settings/channels")
    assert "Tienda Lupita" in overview.text


def test_new_credentials_are_kept_and_the_channel_connected_again(
    client: TestClient, db: Database, tenant: Tenant, twilio: FakeTwilio
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    form = {"account_sid": ACCOUNT_SID, "from_number": NUMBER, "api_base_url": twilio.url, "csrf_token": csrf}
    done = client.post("/settings/channels/sms/twilio", data={**form, "auth_token": AUTH_TOKEN}, follow_redirects=False)
    location = done.headers["location"]
    page = client.get(location, headers={"Accept-Language": "en"})
    assert 'data-testid="sms-secrets"' in page.text
    assert 'name="auth_token"' in page.text
    assert AUTH_TOKEN not in page.text
    refused = client.post(
        f"{location}/sms", data={"auth_token": "c" * 32, "csrf_token": csrf}, headers={"Accept-Language": "en"}
    )
    assert refused.status_code == 422
    assert "Twilio refused the token: Authenticate (20003)" in refused.text
    twilio.numbers[NUMBER]["sms_url"] = ""
    again = client.post(f"{location}/sms", data={"auth_token": "", "csrf_token": csrf}, follow_redirects=False)
    assert again.status_code == 303
    assert twilio.numbers[NUMBER]["sms_url"].endswith("/webhooks/" + _key(db))


def _key(db: Database) -> str:
    with db.transaction(write=False) as session:
        [channel] = session.scalars(select(Channel)).all()
        return channel.key


def _vonage_form(api_base_url: str, csrf: str) -> dict[str, str]:
    """The Vonage connect form, filled in for the fake Vonage."""
    return {
        "api": "sms",
        "api_key": VONAGE_KEY,
        "api_secret": VONAGE_SECRET,
        "signature_secret": SIGNATURE_SECRET,
        "signature_method": "sha256",
        "from_number": VONAGE_NUMBER,
        "api_base_url": api_base_url,
        "csrf_token": csrf,
    }


def test_connecting_a_vonage_number_from_the_page(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_vonage() as vonage:
        vonage.add_number()
        csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
        page = client.get("/settings/channels", headers={"Accept-Language": "es"})
        assert 'data-testid="connect-vonage"' in page.text
        form = _vonage_form(vonage.url, csrf)
        refused = client.post(
            "/settings/channels/sms/vonage",
            data={**form, "api_secret": "nope-nope"},
            headers={"Accept-Language": "es"},
        )
        assert refused.status_code == 422
        assert "Vonage rechazó el token: authentication failed" in refused.text
        assert 'id="api_secret-error"' in refused.text
        assert "nope-nope" not in refused.text
        malformed = client.post(
            "/settings/channels/sms/vonage", data={**form, "api_key": "?"}, headers={"Accept-Language": "es"}
        )
        assert "debe ser la API key que muestra el panel de Vonage" in malformed.text
        done = client.post("/settings/channels/sms/vonage", data=form, follow_redirects=False)
        assert done.status_code == 303
        detail = client.get(done.headers["location"], headers={"Accept-Language": "en"})
        assert vonage.numbers[VONAGE_NUMBER.lstrip("+")]["moHttpUrl"] in detail.text
        assert 'name="signature_secret"' in detail.text
        assert SIGNATURE_SECRET not in detail.text
        tested = client.post(f"{done.headers['location']}/sms/test", data={"csrf_token": csrf})
        assert tested.status_code == 200
        assert "balance 10.28" in tested.text


def test_the_signing_settings_from_the_page(
    client: TestClient, db: Database, tenant: Tenant, twilio: FakeTwilio
) -> None:
    """Twilio's webhook shared key and Vonage's tolerance for signed callbacks, under Advanced: kept,
    the secret never shown again, and a tolerance out of bounds refused beside its field."""
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/channels", headers={"Accept-Language": "es"})
    assert 'name="webhook_key_sid"' in page.text
    assert "Antigüedad máxima de un aviso firmado (segundos)" in page.text
    form = {"account_sid": ACCOUNT_SID, "from_number": NUMBER, "api_base_url": twilio.url, "csrf_token": csrf}
    shared = {"webhook_key_sid": "webhooks_sharedkey_0123", "webhook_key_secret": "shared-key-secret"}
    done = client.post(
        "/settings/channels/sms/twilio", data={**form, "auth_token": AUTH_TOKEN, **shared}, follow_redirects=False
    )
    assert done.status_code == 303
    with db.transaction(write=False) as session:
        [channel] = session.scalars(select(Channel)).all()
        assert channel.config["webhook_key_sid"] == "webhooks_sharedkey_0123"
        assert channel.secrets["webhook_key_secret"] == "shared-key-secret"
    detail = client.get(done.headers["location"], headers={"Accept-Language": "en"})
    assert 'name="webhook_key_secret"' in detail.text
    assert "shared-key-secret" not in detail.text
    with fake_vonage() as vonage:
        vonage.add_number()
        vonage_form = _vonage_form(vonage.url, csrf)
        refused = client.post(
            "/settings/channels/sms/vonage",
            data={**vonage_form, "signature_max_age": "5"},
            headers={"Accept-Language": "es"},
        )
        assert refused.status_code == 422
        assert 'id="signature_max_age-error"' in refused.text
        assert "debe ser un número de segundos de 30 a 86400" in refused.text
        kept = client.post(
            "/settings/channels/sms/vonage", data={**vonage_form, "signature_max_age": "900"}, follow_redirects=False
        )
        assert kept.status_code == 303
    with db.transaction(write=False) as session:
        vonage_channel = session.scalars(select(Channel).where(Channel.type == "vonage")).one()
        assert vonage_channel.config["signature_max_age"] == 900


def test_connecting_a_bird_channel_from_the_page(client: TestClient, db: Database, tenant: Tenant) -> None:
    with fake_bird() as bird:
        csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
        assert 'data-testid="connect-bird"' in client.get("/settings/channels").text
        form = {
            "api": "channels",
            "workspace_id": BIRD_WORKSPACE,
            "channel_id": BIRD_CHANNEL,
            "access_key": BIRD_KEY,
            "signing_key": BIRD_SIGNING_KEY,
            "api_base_url": bird.url,
            "csrf_token": csrf,
        }
        malformed = client.post(
            "/settings/channels/sms/bird", data={**form, "workspace_id": "a b"}, headers={"Accept-Language": "es"}
        )
        assert malformed.status_code == 422
        assert "debe ser el identificador que muestra Bird" in malformed.text
        assert 'id="workspace_id-error"' in malformed.text
        refused = client.post(
            "/settings/channels/sms/bird", data={**form, "access_key": "nope"}, headers={"Accept-Language": "en"}
        )
        assert "Bird refused the token: Invalid access key" in refused.text
        assert 'id="access_key-error"' in refused.text
        done = client.post("/settings/channels/sms/bird", data=form, follow_redirects=False)
        assert done.status_code == 303
        detail = client.get(done.headers["location"])
        assert "Tienda SMS" in detail.text
        assert "/webhooks/" in detail.text
        assert BIRD_SIGNING_KEY not in detail.text


def _shown(page: str, testid: str) -> str:
    """The text of the element with this data-testid (the first), without its tags."""
    found = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</(?:dd|td)>', page, re.S)
    assert found is not None, testid
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


@pytest.mark.usefixtures("immediate_queue")
def test_the_page_shows_when_a_customer_last_wrote_not_when_a_status_last_came(
    client: TestClient, db: Database, tenant: Tenant, twilio: FakeTwilio
) -> None:
    """ "Last message received" is the newest customer message; a delivery report since (a callback
    too) does not move it. The last callback is shown beside it."""
    channel = connect(
        client,
        db,
        tenant,
        "twilio",
        {"api_base_url": twilio.url, "account_sid": ACCOUNT_SID, "from_number": NUMBER},
        {"auth_token": AUTH_TOKEN},
    )
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = f"/settings/channels/{channel['id']}"
    assert _shown(client.get(page, headers={"Accept-Language": "es"}).text, "last-received") == "nunca"
    with travel(-timedelta(hours=3)):
        assert twilio.deliver(client, tw.inbound("SM" + "3" * 32, "¿Tienen talla M?")).status_code == 200
        callbacks_written(db)
    [incoming] = channel_messages(db, channel["id"])
    reply = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages", json={"text": "Sí"}, headers=tenant.headers
    )
    assert reply.status_code == 201, reply.text
    assert twilio.status(client, twilio.messages[0]["sid"], "delivered").status_code == 200
    callbacks_written(db)

    for language, three_hours in (("en", "3 hours ago"), ("es", "hace 3 horas")):
        detail = client.get(page, headers={"Accept-Language": language}).text
        assert _shown(detail, "last-received") == three_hours
        assert "hour" not in _shown(detail, "last-callback")  # the delivery report, just now
        assert "hora" not in _shown(detail, "last-callback")
        listed = client.get("/settings/channels", headers={"Accept-Language": language}).text
        assert _shown(listed, "channel-last-received") == three_hours
    assert "Last message received" in client.get(page, headers={"Accept-Language": "en"}).text
    assert "Último mensaje recibido" in client.get("/settings/channels", headers={"Accept-Language": "es"}).text
