"""The email channel over encrypted connections, against real servers with certificates from a test
authority (tests/webhooks/tls.py): Dovecot with STARTTLS on IMAP, STLS on POP3 and the implicit-TLS
ports (993 and 995 elsewhere), aiosmtpd offering STARTTLS (587) or wrapped in TLS (465). A reply
goes out through each SMTP mode and is read back from the customer's mailbox; the certificate is
verified, so a server whose certificate our trust store does not vouch for is refused, and the
connection test says why."""

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tertulia.channels.adapters import email as email_adapter
from tertulia.channels.adapters.email import ConnectionProblem, EmailAdapter
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, TransientError
from tertulia.conversations.models import Conversation, Message
from tertulia.conversations.service import do_reply
from tertulia.kit.db import Database
from tests.channels.email_support import (
    ANA,
    SUPPORT,
    MailServers,
    customer_mail,
    email_channel,
    fetch_and_write,
    messages_of,
)
from tests.conftest import Tenant
from tests.mailservers import Dovecot, dovecot, smtp_server
from tests.web.helpers import sign_in_as
from tests.webhooks.tls import ServerCertificate, TestAuthority


@pytest.fixture(scope="module")
def authority(tmp_path_factory: pytest.TempPathFactory) -> TestAuthority:
    return TestAuthority(tmp_path_factory.mktemp("mail-ca"))


@pytest.fixture(scope="module")
def certificate(authority: TestAuthority) -> ServerCertificate:
    return authority.issue("127.0.0.1")


@pytest.fixture(scope="module")
def tls_dovecot_session(certificate: ServerCertificate) -> Iterator[Dovecot]:
    with dovecot(tls=certificate) as server:
        yield server


@pytest.fixture
def tls_dovecot(tls_dovecot_session: Dovecot, authority: TestAuthority, monkeypatch: pytest.MonkeyPatch) -> Dovecot:
    """The TLS Dovecot, emptied, and our side trusting the test authority alone (what the default
    context loads: OpenSSL reads SSL_CERT_FILE)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(authority.ca_file))
    tls_dovecot_session.clear()
    return tls_dovecot_session


def _server_context(certificate: ServerCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


def _reply(db: Database, tenant: Tenant, conversation_id: int, text: str) -> Message:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        sent_id = do_reply(session, tenant.actor(), conversation, text=text).id
    with db.transaction(write=False) as session:
        stored = session.get(Message, sent_id)
        assert stored is not None
        session.expunge(stored)
        return stored


@pytest.mark.parametrize(
    ("smtp_security", "incoming_security"),
    [("starttls", "starttls"), ("ssl", "ssl")],
    ids=["starttls", "implicit-tls"],
)
def test_a_reply_goes_out_encrypted_and_arrives(
    db: Database,
    tenant: Tenant,
    tls_dovecot: Dovecot,
    certificate: ServerCertificate,
    smtp_security: str,
    incoming_security: str,
) -> None:
    implicit = smtp_security == "ssl"
    with smtp_server(tls_dovecot, tls=_server_context(certificate), implicit_tls=implicit) as smtp:
        servers = MailServers(tls_dovecot, smtp)
        imap_port = tls_dovecot.imaps_port if incoming_security == "ssl" else tls_dovecot.imap_port
        channel = email_channel(
            db,
            tenant,
            servers,
            incoming_port=imap_port,
            incoming_security=incoming_security,
            smtp_security=smtp_security,
        )
        with email_adapter.imap_session(channel) as imap:
            assert isinstance(imap.sock, ssl.SSLSocket)
        first = customer_mail(body="¿Me llega cifrado?")
        servers.send(first)
        assert fetch_and_write(db, channel.id).spooled == 1
        [incoming] = messages_of(db, channel.id)
        assert incoming.text == "¿Me llega cifrado?"

        sent = _reply(db, tenant, incoming.conversation_id, "Sí, por TLS.")
        assert sent.status == DeliveryStatus.SENT, sent.status_reason
        [delivered] = tls_dovecot.wait_for(ANA, 1)
        assert delivered["Message-ID"] == sent.provider_message_id
        assert delivered["In-Reply-To"] == first["Message-ID"]
        assert delivered.get_content().strip() == "Sí, por TLS."
        # The SMTP session that carried it was encrypted (aiosmtpd saw TLS under it, not plain text) ...
        [(sender, recipients, _)] = smtp.received
        assert (sender, recipients) == (SUPPORT, [ANA])
        assert smtp.received_over[0] in {"TLSv1.2", "TLSv1.3"}
        # ... and the copy went into Sent over the encrypted IMAP session.
        assert [m["Message-ID"] for m in tls_dovecot.messages(SUPPORT, "Sent")] == [sent.provider_message_id]


@pytest.mark.parametrize("security", ["ssl", "starttls"], ids=["pop3s", "stls"])
def test_pop3_over_tls_reads_the_mail_and_the_connection_test_says_so(
    db: Database, tenant: Tenant, tls_dovecot: Dovecot, certificate: ServerCertificate, security: str
) -> None:
    with smtp_server(tls_dovecot, tls=_server_context(certificate), implicit_tls=True) as smtp:
        port = tls_dovecot.pop3s_port if security == "ssl" else tls_dovecot.pop3_port
        channel = email_channel(
            db,
            tenant,
            MailServers(tls_dovecot, smtp),
            incoming_protocol="pop3",
            incoming_port=port,
            incoming_security=security,
            smtp_security="ssl",
            sent_folder="",
        )
        with email_adapter.pop3_session(channel) as pop:
            assert isinstance(pop.sock, ssl.SSLSocket)
        tls_dovecot.deliver(SUPPORT, customer_mail(subject="pop", body="por POP3 cifrado").as_bytes())
        report = EmailAdapter().check_connection(channel)
        assert report["incoming"]["protocol"] == "pop3"
        assert "Dovecot" in report["incoming"]["greeting"]
        assert report["incoming"]["messages"] == 1
        assert report["smtp"]["greeting"].startswith("250")
        assert fetch_and_write(db, channel.id).spooled == 1
        assert [m.text for m in messages_of(db, channel.id)] == ["por POP3 cifrado"]


def _with_trust(monkeypatch: pytest.MonkeyPatch, ca_file: Path) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))


@pytest.mark.parametrize("server", ["imap", "pop3", "smtp"])
def test_a_certificate_from_an_authority_we_do_not_trust_is_refused(
    client: TestClient,
    db: Database,
    tenant: Tenant,
    tls_dovecot: Dovecot,
    certificate: ServerCertificate,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    server: str,
) -> None:
    """The same servers, the same names, but our trust store holds another authority: every server
    is refused, with a reason that names the certificate, in the page's connection test too."""
    incoming: dict[str, object] = {"incoming_port": tls_dovecot.imaps_port, "incoming_security": "ssl"}
    if server == "pop3":
        incoming = {
            "incoming_protocol": "pop3",
            "incoming_port": tls_dovecot.pop3_port,
            "incoming_security": "starttls",
        }
    elif server == "smtp":
        incoming = {"incoming_port": tls_dovecot.imap_port, "incoming_security": "plain"}
    with smtp_server(tls_dovecot, tls=_server_context(certificate)) as smtp:
        channel = email_channel(
            db, tenant, MailServers(tls_dovecot, smtp), smtp_security="starttls", sent_folder="", **incoming
        )
        _with_trust(monkeypatch, TestAuthority(tmp_path, "Another CA").ca_file)
        with pytest.raises(ConnectionProblem) as refused:
            EmailAdapter().check_connection(channel)
        name = server.upper()
        assert refused.value.reason.startswith(f"{name}: ")
        assert "certificate is not trusted" in refused.value.reason
        assert "unable to get local issuer certificate" in refused.value.reason
        field = "config.smtp_host" if server == "smtp" else "config.incoming_host"
        assert refused.value.field == field

        csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
        tested = client.post(
            f"/settings/channels/{channel.id}/email/test", data={"csrf_token": csrf}, headers={"Accept-Language": "en"}
        )
        assert tested.status_code == 422
        assert "certificate is not trusted" in tested.text
        if server == "smtp":
            # A reply is not sent in clear instead: it waits, with the same reason, for a retry.
            with pytest.raises(TransientError) as waiting:
                EmailAdapter().send(channel, _outbound())
            assert "certificate is not trusted" in waiting.value.reason
            assert smtp.received == []


def test_a_certificate_for_another_name_is_refused(
    db: Database, tenant: Tenant, tls_dovecot: Dovecot, certificate: ServerCertificate
) -> None:
    """Trusted authority, wrong name: the host name is checked too. The certificate names 127.0.0.1
    only; asked as localhost, the same server is refused."""
    with smtp_server(tls_dovecot, tls=_server_context(certificate), implicit_tls=True) as smtp:
        channel = email_channel(
            db,
            tenant,
            MailServers(tls_dovecot, smtp),
            incoming_port=tls_dovecot.imap_port,
            incoming_security="plain",
            smtp_security="ssl",
        )
        with db.transaction() as session:
            stored = session.get(Channel, channel.id)
            assert stored is not None
            stored.config = {**stored.config, "smtp_host": "localhost"}
            session.flush()
            session.expunge(stored)
        with pytest.raises(ConnectionProblem) as refused:
            EmailAdapter().check_connection(stored)
    assert refused.value.field == "config.smtp_host"
    assert "certificate is not trusted" in refused.value.reason
    assert "localhost" in refused.value.reason


def _outbound() -> email_adapter.OutboundMessage:
    return email_adapter.OutboundMessage(
        message_id=11,
        idempotency_key="tertulia-msg-11",
        recipient_id=ANA,
        type=email_adapter.MessageType.TEXT,
        text="Hola",
        attachments=[],
        payload={},
    )
