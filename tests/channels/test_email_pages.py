"""Settings > Channels for email, through the real pages against the real mail servers: connecting
(both servers asked first; a refused login and our own checks beside the field, in Spanish and
English; the password never put back into the page), the channel's page with its health, the
connection test showing what each server answered, and `tertulia channel connect email`."""

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner, Result

from tertulia.channels.models import Channel
from tertulia.cli import app
from tertulia.kit import db as kit_db
from tertulia.kit import settings as kit_settings
from tertulia.kit.db import Database
from tertulia.users.models import User
from tests.channels.email_support import SUPPORT, MailServers, customer_mail, fetch_and_write
from tests.conftest import Tenant
from tests.mailservers import PASSWORD
from tests.web.helpers import sign_in_as


def _form(mail: MailServers, csrf: str, **overrides: str) -> dict[str, str]:
    return {
        "address": SUPPORT,
        "password": PASSWORD,
        "incoming_host": "127.0.0.1",
        "incoming_port": str(mail.dovecot.imap_port),
        "incoming_security": "plain",
        "incoming_protocol": "imap",
        "smtp_host": "127.0.0.1",
        "smtp_port": str(mail.smtp.port),
        "smtp_security": "plain",
        "from_name": "Soporte",
        "folder": "INBOX",
        "sent_folder": "Sent",
        "poll_seconds": "60",
        "name": "Soporte",
        "csrf_token": csrf,
        **overrides,
    }


def test_connecting_a_mailbox_from_the_page(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    assert 'data-testid="connect-email"' in client.get("/settings/channels").text
    wrong = "not-the-password"
    refused = client.post(
        "/settings/channels/email", data=_form(mail, csrf, password=wrong), headers={"Accept-Language": "es"}
    )
    assert refused.status_code == 422
    assert "El servidor de correo rechazó el inicio de sesión" in refused.text
    assert 'id="password-error"' in refused.text
    assert wrong not in refused.text  # a secret is never put back into the page
    assert 'value="Soporte"' in refused.text
    bad_address = client.post(
        "/settings/channels/email", data=_form(mail, csrf, address="soporte"), headers={"Accept-Language": "es"}
    )
    assert bad_address.status_code == 422
    assert "debe ser la dirección de correo del buzón" in bad_address.text
    assert 'id="address-error"' in bad_address.text
    plain_far = client.post(
        "/settings/channels/email",
        data=_form(mail, csrf, smtp_host="smtp.example.com"),
        headers={"Accept-Language": "en"},
    )
    assert plain_far.status_code == 422
    assert "plain (unencrypted) is allowed only for a server on this machine" in plain_far.text
    assert 'id="smtp_security-error"' in plain_far.text
    done = client.post("/settings/channels/email", data=_form(mail, csrf), follow_redirects=False)
    assert done.status_code == 303
    detail = client.get(done.headers["location"], headers={"Accept-Language": "en"})
    assert 'data-testid="email-status"' in detail.text
    assert SUPPORT in detail.text
    assert PASSWORD not in detail.text
    channel_id = int(done.headers["location"].rstrip("/").rpartition("/")[2])

    mail.send(customer_mail())
    fetch_and_write(db, channel_id)
    received = client.get(f"/settings/channels/{channel_id}", headers={"Accept-Language": "en"})
    assert 'data-testid="last-received"' in received.text
    assert "never" not in received.text.split('data-testid="last-received"')[1][:80]

    tested = client.post(
        f"/settings/channels/{channel_id}/email/test", data={"csrf_token": csrf}, headers={"Accept-Language": "en"}
    )
    assert tested.status_code == 200
    assert 'data-testid="email-test-result"' in tested.text
    assert "Dovecot" in tested.text.split('data-testid="email-test-result"')[1]
    assert "250" in tested.text

    # A new (wrong) password is refused beside the field and the stored one stays.
    again = client.post(
        f"/settings/channels/{channel_id}/email",
        data={"password": "changed-wrong", "csrf_token": csrf},
        headers={"Accept-Language": "en"},
    )
    assert again.status_code == 422
    assert 'id="password-error"' in again.text
    with db.transaction(write=False) as session:
        channel = session.scalar(select(Channel).where(Channel.id == channel_id))
        assert channel is not None
        assert channel.secrets["password"] == PASSWORD


def test_connect_email_from_the_command_line(
    db: Database, tenant: Tenant, mail: MailServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    try:
        result = _connect_cli(tenant, mail)
    finally:
        kit_settings.get_settings.cache_clear()
        kit_db.get_database.cache_clear()
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == {"id", "callback_url"}
    with db.transaction(write=False) as session:
        channel = session.get(Channel, printed["id"])
        assert channel is not None
        assert (channel.type, channel.config["address"], channel.secrets["password"]) == ("email", SUPPORT, PASSWORD)


def _connect_cli(tenant: Tenant, mail: MailServers) -> Result:
    return CliRunner().invoke(
        app,
        [
            "channel",
            "connect",
            "email",
            "--workspace",
            tenant.name,
            "--name",
            "Soporte",
            "--set",
            f"address={SUPPORT}",
            "--set",
            "incoming_host=127.0.0.1",
            "--set",
            f"incoming_port={mail.dovecot.imap_port}",
            "--set",
            "incoming_security=plain",
            "--set",
            "smtp_host=127.0.0.1",
            "--set",
            f"smtp_port={mail.smtp.port}",
            "--set",
            "smtp_security=plain",
            "--set",
            f"password={PASSWORD}",
        ],
    )


def test_the_email_signature_is_set_on_the_profile(client: TestClient, db: Database, tenant: Tenant) -> None:
    csrf = sign_in_as(client, db, tenant.agent_id, "agent-password")
    form = {"first_name": "Laura", "last_name": "Gil", "csrf_token": csrf}
    too_long = client.post("/profile", data={**form, "email_signature": "x" * 2001})
    assert too_long.status_code == 422
    assert 'id="email_signature-error"' in too_long.text
    saved = client.post("/profile", data={**form, "email_signature": "Laura  \r\nSoporte\r\n"}, follow_redirects=False)
    assert saved.status_code == 303
    with db.transaction(write=False) as session:
        user = session.get(User, tenant.agent_id)
        assert user is not None
        assert user.email_signature == "Laura\nSoporte"
    assert "Soporte</textarea>" in client.get("/profile").text


def test_a_pop3_mailbox_connected_from_the_page_and_its_connection_test(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    form = _form(mail, csrf, incoming_protocol="pop3", incoming_port=str(mail.dovecot.pop3_port), sent_folder="")
    done = client.post("/settings/channels/email", data=form, follow_redirects=False)
    assert done.status_code == 303, done.text
    channel_id = int(done.headers["location"].rstrip("/").rpartition("/")[2])
    mail.send(customer_mail())
    tested = client.post(
        f"/settings/channels/{channel_id}/email/test", data={"csrf_token": csrf}, headers={"Accept-Language": "en"}
    )
    assert tested.status_code == 200
    result = tested.text.split('data-testid="email-test-result"')[1].split("</dl>")[0]
    assert "+OK Dovecot" in result  # POP3's greeting
    assert "IDLE" not in result  # an IMAP matter
    assert "250" in result
    with db.transaction() as session:
        channel = session.scalar(select(Channel).where(Channel.id == channel_id))
        assert channel is not None
        channel.secrets = {**channel.secrets, "password": "not-any-more"}
    for language, answered in (("en", "The mail server answered"), ("es", "El servidor de correo respondió")):
        refused = client.post(
            f"/settings/channels/{channel_id}/email/test",
            data={"csrf_token": csrf},
            headers={"Accept-Language": language},
        )
        assert refused.status_code == 422
        error = refused.text.split('data-testid="test-error"')[1].split("</div>")[0]
        assert answered in error
        assert "POP3: the POP3 server refused the login" in error
