"""Gmail and Google Workspace mailboxes through OAuth 2.0: the authorisation-code flow and token
refresh against a local fake authorisation server (tests/fake_oauth.py), and SASL XOAUTH2 on real
servers: Dovecot checking each bearer token with the fake server (RFC 7662 introspection) and
aiosmtpd accepting the live ones."""

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from tertulia.channels.adapters import email_oauth
from tertulia.channels.adapters.email import EmailAdapter
from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.conversations.ingress.mailbox import fetch_mailbox
from tertulia.conversations.models import Conversation
from tertulia.conversations.service import do_reply
from tertulia.kit.db import Database
from tests.channels.email_support import ANA, SUPPORT, MailServers, customer_mail, fetch_and_write, messages_of
from tests.conftest import Tenant
from tests.fake_oauth import CLIENT_ID, CLIENT_SECRET, FakeOAuth, fake_oauth
from tests.mailservers import dovecot, smtp_server
from tests.web.helpers import sign_in_as

REDIRECT = "https://crm.example/settings/channels/email/oauth"


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[FakeOAuth, MailServers]]:
    with (
        fake_oauth() as oauth,
        dovecot(f"{oauth.url}/introspect") as server,
        smtp_server(server, oauth_tokens=oauth.access_tokens) as smtp,
    ):
        yield oauth, MailServers(server, smtp)


@pytest.fixture
def oauth(google: tuple[FakeOAuth, MailServers]) -> Iterator[FakeOAuth]:
    email_oauth.forget_tokens()
    google[1].dovecot.clear()
    google[1].smtp.received.clear()
    google[0].refreshes = 0
    yield google[0]
    email_oauth.forget_tokens()


def _authorise(oauth: FakeOAuth, config: dict[str, str]) -> str:
    """The manager's trip to the consent page and back: the code the redirect carries."""
    url = email_oauth.authorization_url(config, REDIRECT, "state-1")
    answer = httpx.get(url, follow_redirects=False)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert back.geturl().startswith(REDIRECT)
    query = parse_qs(back.query)
    assert query["state"] == ["state-1"]
    return query["code"][0]


def _channel(db: Database, tenant: Tenant, oauth: FakeOAuth, mail: MailServers, refresh: str) -> Channel:
    config = {
        **mail.config(),
        "auth": "oauth2",
        "oauth_client_id": CLIENT_ID,
        "oauth_auth_url": f"{oauth.url}/auth",
        "oauth_token_url": f"{oauth.url}/token",
    }
    with db.transaction() as session:
        channel = do_create_channel(
            session,
            tenant.actor(),
            "email",
            "Gmail",
            config,
            {"oauth_client_secret": CLIENT_SECRET, "oauth_refresh_token": refresh},
        )
        session.expunge(channel)
        return channel


def test_authorisation_code_then_xoauth2_on_imap_and_smtp(
    db: Database, tenant: Tenant, oauth: FakeOAuth, google: tuple[FakeOAuth, MailServers]
) -> None:
    mail = google[1]
    config = email_oauth.clean_oauth_config(
        {"oauth_client_id": CLIENT_ID, "oauth_auth_url": f"{oauth.url}/auth", "oauth_token_url": f"{oauth.url}/token"}
    )
    code = _authorise(oauth, {**config, "address": SUPPORT})
    answer = email_oauth.exchange_code(config, {"oauth_client_secret": CLIENT_SECRET}, code, REDIRECT)
    refresh = answer["refresh_token"]
    channel = _channel(db, tenant, oauth, mail, refresh)

    report = EmailAdapter().check_connection(channel)
    assert "AUTH=XOAUTH2" in report["incoming"]["capabilities"]
    mail.send(customer_mail())
    assert fetch_and_write(db, channel.id).spooled == 1
    [incoming] = messages_of(db, channel.id)
    with db.transaction() as session:
        conversation = session.get(Conversation, incoming.conversation_id)
        assert conversation is not None
        do_reply(session, tenant.actor(), conversation, text="Respuesta por Gmail")
    [delivered] = mail.dovecot.wait_for(ANA, 1)
    assert delivered.get_content().strip() == "Respuesta por Gmail"
    # One access token served every login: it is refreshed only when it runs out.
    assert oauth.refreshes == 1


def test_a_revoked_grant_is_the_channels_last_error(
    db: Database, tenant: Tenant, oauth: FakeOAuth, google: tuple[FakeOAuth, MailServers]
) -> None:
    channel = _channel(db, tenant, oauth, google[1], "never-issued")
    report = fetch_mailbox(db, channel.id, enqueue=False)
    assert report.error is not None
    assert "Token has been expired or revoked." in report.error
    with db.transaction(write=False) as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        assert stored.last_error == report.error


def test_a_token_the_server_does_not_know_is_refused(
    db: Database, tenant: Tenant, oauth: FakeOAuth, google: tuple[FakeOAuth, MailServers]
) -> None:
    oauth.refresh_tokens.add("r-ok")
    channel = _channel(db, tenant, oauth, google[1], "r-ok")
    EmailAdapter().check_connection(channel)
    oauth.access_tokens.clear()  # revoked at the provider while we still hold it
    report = fetch_mailbox(db, channel.id, enqueue=False)
    assert report.error is not None
    assert "refused the login" in report.error


def test_authorising_a_gmail_mailbox_from_the_page(
    client: TestClient, db: Database, tenant: Tenant, oauth: FakeOAuth, google: tuple[FakeOAuth, MailServers]
) -> None:
    mail = google[1]
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    form = {
        **{k: str(v) for k, v in mail.config().items()},
        "auth": "oauth2",
        "oauth_client_id": CLIENT_ID,
        "oauth_client_secret": CLIENT_SECRET,
        "oauth_auth_url": f"{oauth.url}/auth",
        "oauth_token_url": f"{oauth.url}/token",
        "name": "Gmail",
        "csrf_token": csrf,
    }
    saved = client.post("/settings/channels/email", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    page = saved.headers["location"]
    assert "Not authorised yet" in client.get(page, headers={"Accept-Language": "en"}).text
    channel_id = page.rstrip("/").rpartition("/")[2]
    to_google = client.post(
        f"/settings/channels/{channel_id}/email/authorise", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert to_google.status_code == 303
    assert to_google.headers["location"].startswith(f"{oauth.url}/auth?")
    consent = httpx.get(to_google.headers["location"], follow_redirects=False)
    back = urlsplit(consent.headers["location"])
    assert back.path == "/settings/channels/email/oauth"
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    forged = client.get(back.path, params={**query, "state": f"{channel_id}.forged"})
    assert forged.status_code == 422
    confirm = client.get(back.path, params=query, headers={"Accept-Language": "en"})
    assert confirm.status_code == 200
    assert 'data-testid="email-oauth-finish"' in confirm.text
    done = client.post(back.path, data={**query, "csrf_token": csrf}, follow_redirects=False)
    assert done.status_code == 303, done.text
    after = client.get(page, headers={"Accept-Language": "en"})
    assert "Signed in with OAuth" in after.text
    assert CLIENT_SECRET not in after.text
    with db.transaction(write=False) as session:
        channel = session.get(Channel, int(channel_id))
        assert channel is not None
        assert channel.secrets["oauth_refresh_token"] in oauth.refresh_tokens
        assert channel.last_error is None


def test_an_expired_access_token_is_refreshed_and_the_new_one_used_on_imap_and_smtp(
    db: Database,
    tenant: Tenant,
    oauth: FakeOAuth,
    google: tuple[FakeOAuth, MailServers],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """We refresh a minute before a token runs out; one that lives 61 seconds is stale a second
    later. The provider then refuses it too, so the fetch and the reply only work with a new token
    obtained with the refresh token."""
    mail = google[1]
    monkeypatch.setattr(oauth, "expires_in", 61)
    oauth.refresh_tokens.add("r-short")
    before = set(oauth.access_tokens)
    channel = _channel(db, tenant, oauth, mail, "r-short")
    EmailAdapter().check_connection(channel)  # the first token: IMAP and SMTP log in with it
    assert oauth.refreshes == 1
    [first] = oauth.access_tokens - before
    time.sleep(1.2)
    oauth.access_tokens.discard(first)  # expired at the provider: Dovecot and the SMTP server refuse it

    mail.send(customer_mail())
    assert fetch_and_write(db, channel.id).spooled == 1
    assert oauth.refreshes == 2
    [second] = oauth.access_tokens - before  # the IMAP login used a new one
    [incoming] = messages_of(db, channel.id)
    with db.transaction() as session:
        conversation = session.get(Conversation, incoming.conversation_id)
        assert conversation is not None
        do_reply(session, tenant.actor(), conversation, text="Con un token nuevo")
    [delivered] = mail.dovecot.wait_for(ANA, 1)
    assert delivered.get_content().strip() == "Con un token nuevo"
    assert second != first
    # The reply's SMTP and Sent-copy logins reused it, or took another once it went stale in its
    # turn; never the expired one, which the servers would have refused.
    assert first not in oauth.access_tokens
    assert [m["Message-ID"] for m in mail.dovecot.messages(SUPPORT, "Sent")] == [delivered["Message-ID"]]
