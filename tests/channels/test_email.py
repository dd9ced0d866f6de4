"""The email channel against real mail servers: Dovecot (IMAP, POP3) and aiosmtpd (SMTP), started
by tests/mailservers.py. Customers' mail is delivered into the support mailbox, read by the fetcher,
written through the inbox; agents' replies go out over SMTP into the customers' mailboxes, where the
tests read them back."""

import threading
import time
from email.utils import make_msgid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from tertulia.channels.adapters.email import ConnectionProblem, EmailAdapter, reply_address
from tertulia.channels.health import Health, health_of
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, Fault, MessageType, OutboundMessage, PermanentError
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.contacts.service import do_create_contact
from tertulia.conversations.ingress import mailbox as fetcher
from tertulia.conversations.ingress.callbacks import callback_spool
from tertulia.conversations.models import Conversation, Mailbox, Message
from tertulia.conversations.models import Direction as MessageDirection
from tertulia.conversations.service import do_reply
from tertulia.events.models import EventRecord
from tertulia.kit.db import Database
from tertulia.users.models import User
from tests.channels.email_support import (
    ANA,
    BOB,
    SUPPORT,
    MailServers,
    customer_mail,
    email_channel,
    fetch_and_write,
    mailbox_state,
    messages_of,
)
from tests.conftest import Tenant


def _conversation_of(db: Database, message: Message) -> Conversation:
    with db.transaction(write=False) as session:
        found = session.get(Conversation, message.conversation_id)
        assert found is not None
        session.expunge(found)
        return found


def _reply(db: Database, tenant: Tenant, conversation_id: int, text: str, **email: object) -> Message:
    with db.transaction() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        sent = do_reply(session, tenant.actor(), conversation, text=text, payload={"email": email} if email else None)
        sent_id = sent.id
    with db.transaction(write=False) as session:
        stored = session.get(Message, sent_id)
        assert stored is not None
        session.expunge(stored)
        return stored


def test_customer_mail_becomes_a_message_of_the_sender_contact(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    first = customer_mail(body="Hola, mi pedido 1234 no ha llegado.")
    mail.send(first)
    report = fetch_and_write(db, channel.id)
    assert report.spooled == 1
    [message] = messages_of(db, channel.id)
    assert message.direction == MessageDirection.INCOMING
    assert message.text == "Hola, mi pedido 1234 no ha llegado."
    assert message.provider_message_id == first["Message-ID"]
    assert message.payload["email"]["subject"] == "Mi pedido no llegó"
    with db.transaction(write=False) as session:
        contact = session.get(Contact, message.contact_id)
        assert contact is not None
        assert (contact.email, contact.first_name, contact.last_name) == (ANA, "Ana", "Ruiz")
        identity = session.scalar(select(ContactIdentity).where(ContactIdentity.contact_id == contact.id))
        assert identity is not None
        assert (identity.channel, identity.external_id) == ("email", ANA)
    # Nothing new: a second look spools nothing, and the place in the mailbox is kept.
    assert fetch_and_write(db, channel.id).spooled == 0
    state = mailbox_state(db, channel.id)
    folder, uidvalidity, uid = message.payload["email"]["mailbox"].split(":")
    assert (folder, state.uidvalidity, state.last_uid) == ("INBOX", int(uidvalidity), int(uid))
    assert len(messages_of(db, channel.id)) == 1


def test_an_address_already_on_a_contact_links_to_it(db: Database, tenant: Tenant, mail: MailServers) -> None:
    with db.transaction() as session:
        known = do_create_contact(session, tenant.actor(), {"first_name": "Bob", "email": BOB})
        known_id = known.id
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail(BOB, name="Roberto", subject="Factura"))
    fetch_and_write(db, channel.id)
    [message] = messages_of(db, channel.id)
    assert message.contact_id == known_id


def test_reply_threads_in_the_customers_mailbox_and_their_answer_comes_back(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """The end-to-end loop: customer mail -> conversation -> agent reply (threaded in the customer's
    mailbox, a copy in Sent) -> the customer's answer, and a colleague's, land in the same conversation."""
    channel = email_channel(db, tenant, mail)
    first = customer_mail()
    mail.send(first)
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    conversation = _conversation_of(db, incoming)

    sent = _reply(db, tenant, conversation.id, "Lo revisamos hoy mismo.", cc=[BOB])
    assert sent.status == DeliveryStatus.SENT
    [delivered] = mail.dovecot.wait_for(ANA, 1)
    assert delivered["In-Reply-To"] == first["Message-ID"]
    assert first["Message-ID"] in delivered["References"]
    assert delivered["Subject"] == "Re: Mi pedido no llegó"
    assert delivered["Message-ID"] == sent.provider_message_id
    assert delivered["Reply-To"].addresses[0].addr_spec == reply_address(channel, conversation.id)
    assert delivered["Cc"] == BOB
    assert delivered.get_content().startswith("Lo revisamos hoy mismo.")
    assert len(mail.dovecot.wait_for(BOB, 1)) == 1  # the copy
    assert [m["Message-ID"] for m in mail.dovecot.messages(SUPPORT, "Sent")] == [sent.provider_message_id]

    # The customer answers: In-Reply-To our message, to the reply address.
    answer = customer_mail(
        subject="Re: Mi pedido no llegó", body="Gracias!", to=reply_address(channel, conversation.id)
    )
    answer["In-Reply-To"] = delivered["Message-ID"]
    answer["References"] = f"{first['Message-ID']} {delivered['Message-ID']}"
    mail.send(answer)
    # The colleague copied answers from their own address, new to us: threaded by the reply address.
    colleague = customer_mail(BOB, name="Bob", subject="Re: Mi pedido no llegó", body="Yo también espero.")
    del colleague["To"]
    colleague["To"] = reply_address(channel, conversation.id)
    mail.send(colleague)
    fetch_and_write(db, channel.id)
    found = messages_of(db, channel.id)
    assert [m.text for m in found] == [
        "Hola, mi pedido 1234 no ha llegado.",
        "Lo revisamos hoy mismo.",
        "Gracias!",
        "Yo también espero.",
    ]
    assert {m.conversation_id for m in found} == {conversation.id}
    # The agent's next reply continues the chain.
    second = _reply(db, tenant, conversation.id, "Ya salió.")
    assert second.payload["email_thread"]["in_reply_to"] == colleague["Message-ID"]


def test_threading_by_references_and_by_subject(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail())
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    sent = _reply(db, tenant, incoming.conversation_id, "Hola Ana", cc=[BOB])
    # Bob, a new address, answers with only References pointing at our message.
    by_reference = customer_mail(BOB, name="Bob", subject="otra cosa", body="por referencia")
    by_reference["References"] = str(sent.provider_message_id)
    mail.send(by_reference)
    # Another new address, copied on the thread, answers with the subject alone.
    with db.transaction() as session:
        stored = session.get(Message, sent.id)
        assert stored is not None
        stored.payload = {
            **stored.payload,
            "email_thread": {**stored.payload["email_thread"], "participants": [ANA, BOB, "carla@example.org"]},
        }
    by_subject = customer_mail("carla@example.org", name="Carla", subject="RE: Mi pedido no llegó", body="por asunto")
    mail.send(by_subject)
    # A stranger with the same subject is not put into Ana's conversation.
    stranger = customer_mail("dan@example.org", name="Dan", subject="Re: Mi pedido no llegó", body="no soy de aquí")
    mail.send(stranger)
    fetch_and_write(db, channel.id)
    by_text = {m.text: m for m in messages_of(db, channel.id)}
    assert by_text["por referencia"].conversation_id == incoming.conversation_id
    assert by_text["por asunto"].conversation_id == incoming.conversation_id
    assert by_text["no soy de aquí"].conversation_id != incoming.conversation_id


def test_a_forged_reply_address_threads_nowhere(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail())
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    forged = reply_address(channel, incoming.conversation_id).replace(".", "x", 1)
    mail.send(customer_mail("eve@evil.test", name="Eve", subject="hi", body="let me in", to=forged))
    fetch_and_write(db, channel.id)
    eve = next(m for m in messages_of(db, channel.id) if m.text == "let me in")
    assert eve.conversation_id != incoming.conversation_id


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"X-Autoreply": "yes"},
        {"Precedence": "bulk"},
        {"List-Id": "<news.lists.test>"},
    ],
)
def test_automatic_mail_is_not_stored_and_never_answered(
    db: Database, tenant: Tenant, mail: MailServers, headers: dict[str, str]
) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail(subject="Fuera de la oficina", body="Vuelvo el lunes.", headers=headers))
    assert fetch_and_write(db, channel.id).spooled == 1
    assert messages_of(db, channel.id) == []
    assert mail.smtp.received == []


def test_our_own_sent_mail_is_not_taken_for_a_customer(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail(SUPPORT, name="Shop support", subject="copia", body="nuestra"))
    fetch_and_write(db, channel.id)
    assert messages_of(db, channel.id) == []


def _bounce(original_id: str, recipient: str) -> bytes:
    """A delivery status notification (RFC 3464) as Postfix sends it."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
        f"To: {SUPPORT}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: {make_msgid(domain='mx.example.com')}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        "This is the mail system at host mx.example.com.\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx.example.com\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"From: {SUPPORT}\r\n"
        f"To: {recipient}\r\n"
        "Subject: Re: x\r\n"
        f"Message-ID: {original_id}\r\n"
        "\r\n"
        "--B1--\r\n"
    ).encode()


def test_a_bounce_fails_the_message_with_the_reason(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail())
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    sent = _reply(db, tenant, incoming.conversation_id, "Hola")
    assert sent.status == DeliveryStatus.SENT
    before = len(mail.smtp.received)
    mail.dovecot.deliver(SUPPORT, _bounce(str(sent.provider_message_id), ANA))
    fetch_and_write(db, channel.id)
    failed = next(m for m in messages_of(db, channel.id) if m.id == sent.id)
    assert failed.status == DeliveryStatus.FAILED
    assert failed.status_reason is not None
    assert "5.1.1" in failed.status_reason
    assert "Recipient address rejected" in failed.status_reason
    assert len(messages_of(db, channel.id)) == 2  # the bounce is no customer message
    assert len(mail.smtp.received) == before  # and nothing answered it


def test_a_restart_in_the_middle_of_a_fetch_neither_loses_nor_duplicates(
    db: Database, tenant: Tenant, mail: MailServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = email_channel(db, tenant, mail)
    sent = [customer_mail(subject=f"Pedido {n}", body=f"mensaje {n}") for n in range(25)]
    for message in sent:
        mail.send(message)
    real_advance = fetcher._advance
    calls = {"n": 0}

    def dies_on_second_batch(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second batch is in the spool, the worker dies before moving on
            raise SystemExit("worker killed")
        real_advance(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(fetcher, "_advance", dies_on_second_batch)
    with pytest.raises(SystemExit):
        fetcher.fetch_mailbox(db, channel.id, batch=10, enqueue=False)
    monkeypatch.setattr(fetcher, "_advance", real_advance)
    assert callback_spool(db).waiting() == 20  # two batches spooled, the place moved past the first only
    # The restarted worker reads again from where the mailbox says (the second batch, again, and the
    # third), then writes what the spool holds: every message once.
    assert fetch_and_write(db, channel.id).spooled == 15
    stored = messages_of(db, channel.id)
    assert sorted(m.provider_message_id or "" for m in stored) == sorted(m["Message-ID"] for m in sent)
    assert callback_spool(db).waiting() == 0
    assert fetch_and_write(db, channel.id).spooled == 0


def test_a_new_uidvalidity_reads_the_folder_again_without_duplicates(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail)
    for n in range(3):
        mail.send(customer_mail(subject=f"n{n}", body=f"b{n}"))
    fetch_and_write(db, channel.id)
    with db.transaction() as session:
        session.execute(update(Mailbox).where(Mailbox.channel_id == channel.id).values(uidvalidity=1, last_uid=99))
    assert fetch_and_write(db, channel.id).spooled == 3  # renumbered: read again ...
    assert len(messages_of(db, channel.id)) == 3  # ... and stored once


def test_html_attachments_and_quoted_history(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    rich = customer_mail(
        body="Adjunto la factura.\n\nOn Mon, 1 Jan 2026, Shop wrote:\n> Hola\n> ¿Nos manda la factura?\n"
    )
    rich.add_alternative(
        '<p>Adjunto la <b>factura</b>.</p><script>alert(1)</script><img src="https://tracker.test/p.gif">'
        '<a href="javascript:alert(1)" onclick="x()">x</a><img src="cid:logo1">',
        subtype="html",
    )
    rich.add_attachment(b"%PDF-1.4 factura", maintype="application", subtype="pdf", filename="factura.pdf")
    html_part = rich.get_body(preferencelist=("html",))
    assert html_part is not None
    html_part.add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<logo1>")
    mail.send(rich)
    fetch_and_write(db, channel.id)
    [message] = messages_of(db, channel.id)
    assert message.text == "Adjunto la factura."
    assert message.payload["email"]["quoted"].startswith("On Mon, 1 Jan 2026, Shop wrote:")
    html = message.payload["email"]["html"]
    assert "<b>factura</b>" in html
    assert "script" not in html
    assert "onclick" not in html
    assert "javascript:" not in html
    assert 'data-src="https://tracker.test/p.gif"' in html
    assert ' src="https://tracker.test' not in html
    names = sorted(a["name"] for a in message.attachments)
    assert names == ["factura.pdf", "image1.png"]
    assert all(a.get("file_id") for a in message.attachments)


def test_pop3_reads_each_message_once(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(
        db, tenant, mail, incoming_protocol="pop3", incoming_port=mail.dovecot.pop3_port, sent_folder=""
    )
    mail.send(customer_mail(subject="uno", body="primero"))
    mail.send(customer_mail(subject="dos", body="segundo"))
    assert fetch_and_write(db, channel.id).spooled == 2
    assert fetch_and_write(db, channel.id).spooled == 0
    mail.send(customer_mail(subject="tres", body="tercero"))
    assert fetch_and_write(db, channel.id).spooled == 1
    assert [m.text for m in messages_of(db, channel.id)] == ["primero", "segundo", "tercero"]
    assert len(mailbox_state(db, channel.id).pop_uidls) == 3


def test_idle_reads_new_mail_as_it_arrives(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail, poll_seconds=3600)
    stop = threading.Event()
    watcher = threading.Thread(target=fetcher.watch_mailbox, args=(db, channel.id, stop), daemon=True)
    watcher.start()
    try:
        time.sleep(0.5)  # the watcher is idling
        mail.send(customer_mail(subject="push", body="llegó por IDLE"))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not messages_of(db, channel.id):
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(15)
    assert [m.text for m in messages_of(db, channel.id)] == ["llegó por IDLE"]


def test_check_connection_shows_both_servers_answers(db: Database, tenant: Tenant, mail: MailServers) -> None:
    channel = email_channel(db, tenant, mail)
    report = EmailAdapter().check_connection(channel)
    assert report["incoming"]["idle"] is True
    assert "Dovecot" in report["incoming"]["greeting"]
    assert report["smtp"]["greeting"].startswith("250")
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        stored.secrets = {**stored.secrets, "password": "wrong"}
        session.flush()
        session.expunge(stored)
    with pytest.raises(ConnectionProblem) as refused:
        EmailAdapter().check_connection(stored)
    assert refused.value.field == "secrets.password"
    assert "refused the login" in refused.value.reason


def test_a_refused_login_puts_the_mailbox_in_error_and_a_refused_recipient_does_not(
    db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail)
    to_bob = OutboundMessage(
        message_id=7,
        idempotency_key="tertulia-msg-7",
        recipient_id=BOB,
        type=MessageType.TEXT,
        text="Hola",
        attachments=[],
        payload={},
    )
    mail.smtp.rejected.add(BOB)
    with pytest.raises(PermanentError) as refused:
        EmailAdapter().send(channel, to_bob)
    assert (refused.value.code, refused.value.fault) == ("550", Fault.MESSAGE)

    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        stored.secrets = {**stored.secrets, "password": "wrong"}
        session.flush()
        session.expunge(stored)
    with pytest.raises(PermanentError) as locked_out:
        EmailAdapter().send(stored, to_bob)
    assert (locked_out.value.code, locked_out.value.fault) == ("535", Fault.CREDENTIALS)

    for _ in range(2):  # read after read, the IMAP login is refused: one change of state
        report = fetch_and_write(db, channel.id)
        assert report.error is not None
        assert "refused the login" in report.error
    with db.transaction(write=False) as session:
        events = session.scalars(
            select(EventRecord).where(
                EventRecord.workspace_id == tenant.workspace_id, EventRecord.type.like("channel.%")
            )
        ).all()
        assert [(e.type, e.payload["fault"], e.payload["code"]) for e in events] == [
            ("channel.errored", "credentials", "login")
        ]
        found = session.get(Channel, channel.id)
        assert found is not None
        assert health_of(found).state == Health.ERROR


def test_the_composer_sets_subject_cc_and_bcc_and_the_agent_signs(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail())
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    with db.transaction() as session:
        owner = session.get(User, tenant.owner_id)
        assert owner is not None
        owner.email_signature = "Laura\nSoporte de la tienda"
    url = f"/api/v1/conversations/{incoming.conversation_id}/messages"
    bad = client.post(url, headers=tenant.headers, json={"text": "hola", "email": {"cc": ["no es correo"]}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"] == {"message.email.cc": "is not a valid email address"}
    sent = client.post(
        url,
        headers=tenant.headers,
        json={"text": "Va la factura.", "email": {"subject": "Factura 1234", "cc": [BOB], "bcc": ["list@example.org"]}},
    )
    assert sent.status_code == 201, sent.text
    [delivered] = mail.dovecot.wait_for(ANA, 1)
    assert delivered["Subject"] == "Factura 1234"
    assert delivered["Cc"] == BOB
    assert delivered["Bcc"] is None  # blind: in the envelope only
    assert delivered["In-Reply-To"] is not None
    assert delivered.get_content().strip() == "Va la factura."  # sent with an API token: no person, no signature
    assert len(mail.dovecot.wait_for("list@example.org", 1)) == 1
    assert len(mail.dovecot.wait_for(BOB, 1)) == 1
    _reply(db, tenant, incoming.conversation_id, "Saludos.")  # the owner writes: signed
    signed = mail.dovecot.wait_for(ANA, 2)[-1]
    assert signed.get_content().replace("\r\n", "\n").rstrip() == "Saludos.\n\n-- \nLaura\nSoporte de la tienda"
    assert signed["Subject"] == "Re: Factura 1234"  # the thread goes on under the subject the agent set


def test_only_email_channels_take_email_options(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        contact = do_create_contact(session, tenant.actor(), {"first_name": "Ana"})
        webchat = do_create_channel(session, tenant.actor(), "webchat", "Web", {"allowed_origins": []}, {})
        ids = (contact.id, webchat.id)
    refused = client.post(
        f"/api/v1/contacts/id:{ids[0]}/messages",
        headers=tenant.headers,
        json={"channel_id": ids[1], "message": {"text": "hola", "email": {"subject": "x"}}},
    )
    assert refused.status_code == 422


def test_a_reply_with_files_arrives_with_their_names_types_and_bytes(
    client: TestClient, db: Database, tenant: Tenant, mail: MailServers
) -> None:
    """Files uploaded to our storage and sent through the API as a reply are attachments of the mail
    the customer's mailbox holds: the same names (a non-ASCII one too), types and bytes. The mail is
    over 1,000 bytes: sent with bare LFs, it reached the server as one line and was refused."""
    channel = email_channel(db, tenant, mail)
    first = customer_mail()
    mail.send(first)
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    invoice = b"%PDF-1.4\n% factura 1234\n" + bytes(range(256)) * 8  # binary: every byte value survives
    photo = b"\x89PNG\r\n\x1a\n" + b"\x00\xff" * 300
    uploaded = [
        client.post(
            "/api/v1/files",
            headers=tenant.headers,
            files={"file": (name, data, kind)},
            data={"conversation_id": str(incoming.conversation_id)},
        )
        for name, data, kind in (("factura año 2026.pdf", invoice, "application/pdf"), ("foto.png", photo, "image/png"))
    ]
    assert [u.status_code for u in uploaded] == [201, 201], [u.text for u in uploaded]
    sent = client.post(
        f"/api/v1/conversations/{incoming.conversation_id}/messages",
        headers=tenant.headers,
        json={
            "type": "file",
            "text": "Le adjunto la factura y la foto.",
            "attachments": [u.json()["id"] for u in uploaded],
        },
    )
    assert sent.status_code == 201, sent.text
    [delivered] = mail.dovecot.wait_for(ANA, 1)
    assert delivered["In-Reply-To"] == first["Message-ID"]
    body = delivered.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content().strip() == "Le adjunto la factura y la foto."
    found = [
        (part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
        for part in delivered.iter_attachments()
    ]
    assert found == [("factura año 2026.pdf", "application/pdf", invoice), ("foto.png", "image/png", photo)]
    # What went over SMTP is that same mail (the envelope to Ana alone), and the Sent copy has the files.
    [(sender, recipients, raw)] = mail.smtp.received
    assert (sender, recipients) == (SUPPORT, [ANA])
    assert raw.count(b"Content-Disposition: attachment") == 2
    # Every line ends in CRLF, as SMTP needs: a bare LF made this mail one over-long line, refused.
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    [copy] = mail.dovecot.messages(SUPPORT, "Sent")
    assert [part.get_filename() for part in copy.iter_attachments()] == ["factura año 2026.pdf", "foto.png"]
    with db.transaction(write=False) as session:
        stored = session.get(Message, sent.json()["id"])
        assert stored is not None
        assert stored.status == DeliveryStatus.SENT
        assert [a["name"] for a in stored.attachments] == ["factura año 2026.pdf", "foto.png"]


def test_threading_by_in_reply_to_alone(db: Database, tenant: Tenant, mail: MailServers) -> None:
    """A mail program that writes In-Reply-To but no References, to our own address (no reply
    token) and under a new subject from a new address: the one header is enough."""
    channel = email_channel(db, tenant, mail)
    mail.send(customer_mail())
    fetch_and_write(db, channel.id)
    [incoming] = messages_of(db, channel.id)
    sent = _reply(db, tenant, incoming.conversation_id, "¿Cuál es su dirección?")
    answer = customer_mail("carla@example.org", name="Carla", subject="dirección", body="Calle Mayor 1")
    answer["In-Reply-To"] = str(sent.provider_message_id)
    assert answer["References"] is None
    assert answer["To"] == SUPPORT
    # And one with an In-Reply-To we never sent: a new conversation.
    unrelated = customer_mail("carla@example.org", name="Carla", subject="otra", body="otra cosa")
    unrelated["In-Reply-To"] = "<not-ours@example.org>"
    mail.send(answer)
    mail.send(unrelated)
    fetch_and_write(db, channel.id)
    by_text = {m.text: m for m in messages_of(db, channel.id)}
    assert by_text["Calle Mayor 1"].conversation_id == incoming.conversation_id
    assert by_text["otra cosa"].conversation_id != incoming.conversation_id
