"""The email adapter: a mailbox, read over IMAP (or POP3) and written through SMTP.

Reference: ../shared/reference/channels.md §12 (threading, parsing, loop safety, IMAP/POP dedupe).

- Settings (`clean_config`): the mailbox's `address` (and a `from_name`), the incoming server
  (`incoming_protocol` imap or pop3, `incoming_host`, `incoming_port`, `incoming_security` ssl,
  starttls or plain), the IMAP `folder` (INBOX), `poll_seconds` (how often to look when the
  server has no IDLE), the SMTP server (`smtp_host`, `smtp_port`, `smtp_security`; plain only to a
  server on this machine), the `username` (the address by default), the `sent_folder` a copy of
  each reply is appended to (IMAP only; empty: none). Secrets: `password` (or an app password), or
  for `auth` "oauth2" the OAuth client and refresh token (channels/adapters/email_oauth.py);
  `token_secret` (generated) signs reply addresses; `ingest_secret` (generated) signs raw mail
  posted to the channel's callback URL by a mail server's pipe instead of fetching it.
- Inbound: the fetcher (conversations/ingress/mailbox.py) reads new mail by UID and puts each raw
  message in the callback spool, as if posted; `parse_webhook` reads it (email_parse.py). The
  provider message id is the Message-ID (a hash of the raw bytes when it has none), so a message
  read twice is stored once. Automatic mail (auto-replies, mailing lists, bulk) and our own sent
  mail are never stored as a customer's message, so nothing answers them; a bounce (a DSN) fails the
  message it reports on.
- Threading: every reply's Reply-To is the mailbox's plus-address for its conversation
  (`support+t<conversation id>.<tag>@shop.example`, the tag an HMAC under `token_secret`, so nobody
  can write into a conversation by guessing its number), and it carries Message-ID, In-Reply-To
  and References. Inbound mail is matched by that token first, then by the ids it refers to, then
  by normalised subject and participants (conversations/email_threads.py, which owns the lookups).
- Outbound: text (and the agent's signature) as text/plain, the files as attachments, subject,
  CC and BCC from the composer (payload "email"), the thread's headers from the outbox (payload
  "email_thread"). The Message-ID is derived from our message id, so a retried send carries the
  same one. SMTP 4xx and network trouble are transient, 5xx permanent with the server's words.
  Whose fault (`Fault`): a refused login (SMTP 530/534/535/538, IMAP or POP3 LOGIN, OAuth's
  token endpoint) is the channel's credentials, a refused sender address (MAIL FROM) or folder its
  account, a server that cannot be reached the provider's; a refused recipient (550/551/553), a
  full mailbox (552) or a refused message (554) is that message's alone.
  No receipts: a message the server accepted is SENT; a later bounce makes it FAILED.
"""

import base64
import hashlib
import hmac
import imaplib
import ipaddress
import mimetypes
import poplib
import re
import secrets
import select
import smtplib
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar

import structlog

from tertulia.channels.adapters import email_oauth
from tertulia.channels.adapters.email_parse import (
    ParsedMail,
    format_address,
    is_reply_subject,
    normalised_subject,
    parse,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelError,
    ChannelRules,
    DeliveryStatus,
    Fault,
    FetchedMedia,
    InboundMessage,
    MessageType,
    OutboundMessage,
    Pace,
    ParsedWebhook,
    PermanentError,
    SendResult,
    SetupRefused,
    StatusUpdate,
    TransientError,
    WebhookRejected,
    WebhookRequest,
)
from tertulia.kit import storage
from tertulia.kit.clock import utcnow
from tertulia.kit.errors import ValidationFailed

log = structlog.get_logger()

TYPE = "email"
SIGNATURE_HEADER = "x-tertulia-signature"
MAILBOX_HEADER = "x-tertulia-mailbox"  # where the fetcher read the mail (folder, UIDVALIDITY, UID)
CHANNEL_HEADER = "X-Tertulia-Channel"  # on every mail we send: our own mail, seen again, is skipped
SECURITY = ("ssl", "starttls", "plain")
PROTOCOLS = ("imap", "pop3")
DEFAULT_PORTS = {
    ("imap", "ssl"): 993,
    ("imap", "starttls"): 143,
    ("imap", "plain"): 143,
    ("pop3", "ssl"): 995,
    ("pop3", "starttls"): 110,
    ("pop3", "plain"): 110,
    ("smtp", "ssl"): 465,
    ("smtp", "starttls"): 587,
    ("smtp", "plain"): 25,
}
TIMEOUT = 30.0
MAX_TEXT = 60_000
MAX_SEND_BYTES = 25 * 1024 * 1024  # what common servers accept in one message
MAX_RECIPIENTS = 50
PROVIDER_ID_LENGTH = 200  # messages.provider_message_id
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}$|^\[?[0-9A-Fa-f:.]+\]?$")
_TOKEN = re.compile(r"^t(\d{1,18})\.([0-9a-f]{10})$")
_ADDRESS = re.compile(r"^[^@\s<>()\[\],;:\"]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z0-9-]{2,63}$")


class EmailAdapter:
    type: ClassVar[str] = TYPE
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=None,
        max_text_length=MAX_TEXT,
        delivery_receipts=False,
        # A mail server takes a few messages a second from one account without complaint.
        channel_pace=Pace(10, 1.0),
        message_types=frozenset({MessageType.TEXT, MessageType.IMAGE, MessageType.FILE}),
        mail_threading=True,
    )
    secret_fields: ClassVar[frozenset[str]] = frozenset({"password", "oauth_client_secret", "oauth_refresh_token"})

    # ----- raw mail posted to the callback URL, and the fetcher's spooled mail ---------------------

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None:
        if request.method != "POST":
            raise WebhookRejected("mail is posted; there is no handshake")
        secret = str((channel.secrets or {}).get("ingest_secret") or "")
        given = request.headers.get(SIGNATURE_HEADER, "").removeprefix("sha256=")
        expected = ingest_signature(secret, request.body) if secret else ""
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebhookRejected("bad signature")

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook:
        return parse_mail(channel, request.body, request.headers.get(MAILBOX_HEADER))

    # ----- sending --------------------------------------------------------------------------------

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult:
        mail, recipients = build_mail(channel, message)
        # CRLF line ends (RFC 5322 §2.1): smtplib sends bytes as given, and a mail with bare LFs reaches
        # the server as one long line, which it refuses once the mail is over 1,000 bytes (RFC 5321
        # §4.5.3.1.6), or which servers guarding against SMTP smuggling refuse at any size.
        data = mail.as_bytes(policy=email_policy.SMTP)
        if len(data) > MAX_SEND_BYTES:
            raise PermanentError(f"the message is larger than {MAX_SEND_BYTES // (1024 * 1024)} MB")
        sender = config_of(channel).address
        try:
            with smtp_session(channel) as client:
                refused = client.sendmail(sender, recipients, data)
        except smtplib.SMTPRecipientsRefused as exc:
            raise _smtp_error(*_first_refusal(exc.recipients)) from exc
        except smtplib.SMTPAuthenticationError as exc:
            # Whatever the code (XOAUTH2's failure arrives as a 334 challenge): the login was refused.
            raise PermanentError(
                f"{exc.smtp_code} {_text(exc.smtp_error)}", code=str(exc.smtp_code), fault=Fault.CREDENTIALS
            ) from exc
        except smtplib.SMTPSenderRefused as exc:
            # The server will not send from the mailbox's address: every message would be refused.
            raise _smtp_error(exc.smtp_code, exc.smtp_error, sender=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise _smtp_error(exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(unreachable("mail", exc)) from exc
        if refused:
            log.info("email_some_recipients_refused", channel_id=channel.id, refused=sorted(refused))
        message_id = str(mail["Message-ID"])
        append_sent(channel, data)
        return SendResult(provider_message_id=message_id)

    # ----- settings -------------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {"name": channel.name, "address": config.get("address")}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        address = str(config.get("address") or "").strip().lower()
        if not _ADDRESS.match(address):
            raise ValidationFailed.field("config.address", "must be the mailbox's email address")
        protocol = str(config.get("incoming_protocol") or "imap").lower()
        if protocol not in PROTOCOLS:
            raise ValidationFailed.field("config.incoming_protocol", "must be imap or pop3")
        auth = str(config.get("auth") or "password").lower()
        if auth not in {"password", "oauth2"}:
            raise ValidationFailed.field("config.auth", "must be password or oauth2")
        cleaned: dict[str, Any] = {
            "address": address,
            "from_name": " ".join(str(config.get("from_name") or "").split())[:120] or None,
            "incoming_protocol": protocol,
            "auth": auth,
            "username": str(config.get("username") or address).strip()[:320],
        }
        for prefix, kind in (("incoming", protocol), ("smtp", "smtp")):
            host = str(config.get(f"{prefix}_host") or "").strip().lower()
            if not host or not _HOST.match(host):
                raise ValidationFailed.field(f"config.{prefix}_host", "must be the server's host name")
            security = str(config.get(f"{prefix}_security") or "ssl").lower()
            if security not in SECURITY:
                raise ValidationFailed.field(f"config.{prefix}_security", "must be ssl, starttls or plain")
            if security == "plain" and not _local(host):
                raise ValidationFailed.field(
                    f"config.{prefix}_security", "plain (unencrypted) is allowed only for a server on this machine"
                )
            port = _port(config.get(f"{prefix}_port"), DEFAULT_PORTS[(kind, security)], f"config.{prefix}_port")
            cleaned.update({f"{prefix}_host": host, f"{prefix}_port": port, f"{prefix}_security": security})
        folder = str(config.get("folder") or "INBOX").strip()
        sent_folder = str(config.get("sent_folder") if config.get("sent_folder") is not None else "Sent").strip()
        for name, value in (("folder", folder), ("sent_folder", sent_folder)):
            if len(value) > 200 or any(ch in value for ch in '"\r\n\\'):
                raise ValidationFailed.field(f"config.{name}", "is not a folder name")
        poll = _port(config.get("poll_seconds"), 60, "config.poll_seconds", low=10, high=3600)
        cleaned.update({"folder": folder or "INBOX", "sent_folder": sent_folder, "poll_seconds": poll})
        kept: dict[str, Any] = {
            "token_secret": str(secrets_.get("token_secret") or secrets.token_urlsafe(32)),
            "ingest_secret": str(secrets_.get("ingest_secret") or secrets.token_urlsafe(32)),
        }
        if auth == "password":
            password = str(secrets_.get("password") or "")
            if not password:
                raise ValidationFailed.field("secrets.password", "is required (the mailbox's or an app password)")
            kept["password"] = password
        else:
            cleaned.update(email_oauth.clean_oauth_config(config))
            kept.update(email_oauth.clean_oauth_secrets(secrets_))
        for key in ("oauth", "imap_capabilities", "smtp_greeting"):
            if isinstance(config.get(key), dict):
                cleaned[key] = config[key]
        return cleaned, kept

    def check_outbound(
        self,
        channel: Channel,
        message_type: MessageType,
        text: str | None,
        attachments: list[dict[str, Any]],
        payload: dict[str, Any],
    ) -> None:
        """The composer's subject, CC and BCC: a subject on one line, real addresses, at most
        MAX_RECIPIENTS in all; the files under what mail servers take in one message."""
        options = payload.get("email")
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise ValidationFailed.field("message.email", "must be an object")
        subject = options.get("subject")
        if subject is not None and (not isinstance(subject, str) or len(subject) > 998):
            raise ValidationFailed.field("message.email.subject", "must be at most 998 characters")
        if isinstance(subject, str) and ("\r" in subject or "\n" in subject):
            raise ValidationFailed.field("message.email.subject", "must be one line")
        total = 1
        for name in ("cc", "bcc"):
            addresses = options.get(name) or []
            if not isinstance(addresses, list):
                raise ValidationFailed.field(f"message.email.{name}", "is not a valid email address")
            for address in addresses:
                if not isinstance(address, str) or not _ADDRESS.match(address.strip()):
                    raise ValidationFailed.field(f"message.email.{name}", "is not a valid email address")
            total += len(addresses)
        if total > MAX_RECIPIENTS:
            raise ValidationFailed.field("message.email.cc", "at most 50 recipients")
        size = sum(int(a.get("size") or 0) for a in attachments)
        if size > MAX_SEND_BYTES * 3 // 4:  # base64 makes files a third larger
            raise ValidationFailed.field("message.attachments", "the files are too large for one email")

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        # An address is the same person whichever of the workspace's mailboxes writes to it.
        return "@" in external_id

    # ----- connecting -------------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        if config_of(channel).auth == "oauth2" and not (channel.secrets or {}).get("oauth_refresh_token"):
            return {}  # saved first; the servers are asked once the mailbox is authorised
        try:
            report = self.check_connection(channel)
        except ChannelError as exc:
            field = getattr(exc, "field", "config.incoming_host")
            raise SetupRefused(exc.reason, field=field, code=exc.code or "mailserver") from exc
        return {"imap_capabilities": report.get("incoming"), "smtp_greeting": report.get("smtp")}

    def disconnect(self, channel: Channel) -> None:
        """Nothing to undo at the provider: the fetcher stops with the channel."""

    def check_connection(self, channel: Channel) -> dict[str, Any]:
        """Logs in to both servers and reports what each answered; `ConnectionProblem` naming the
        server at fault otherwise."""
        config = config_of(channel)
        incoming: dict[str, Any]
        try:
            if config.protocol == "imap":
                with imap_session(channel) as client:
                    capabilities = sorted(str(c) for c in client.capabilities)
                    incoming = {
                        "protocol": "imap",
                        "greeting": _text(client.welcome),
                        "capabilities": capabilities,
                        "idle": "IDLE" in capabilities,
                    }
            else:
                with pop3_session(channel) as pop:
                    incoming = {"protocol": "pop3", "greeting": _text(pop.getwelcome()), "messages": pop.stat()[0]}
        except ChannelError as exc:
            login = exc.code == "login"
            raise ConnectionProblem(
                f"{config.protocol.upper()}: {exc.reason}",
                field="secrets.password" if login else "config.incoming_host",
                code="login" if login else "mailserver",
            ) from exc
        try:
            with smtp_session(channel) as smtp:
                code, answer = smtp.noop()
                outgoing = {"greeting": f"{code} {_text(answer)}", "extensions": sorted(smtp.esmtp_features)}
        except smtplib.SMTPAuthenticationError as exc:
            raise ConnectionProblem(
                f"SMTP: {exc.smtp_code} {_text(exc.smtp_error)}", field="secrets.password", code="login"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            reason = untrusted("SMTP", exc) or str(exc)
            raise ConnectionProblem(f"SMTP: {reason}", field="config.smtp_host", code="mailserver") from exc
        return {"incoming": incoming, "smtp": outgoing}

    # ----- files -------------------------------------------------------------------------------------

    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        data = reference.get("data")
        if not isinstance(data, str):
            raise PermanentError("the attachment's bytes were not kept")
        return FetchedMedia(
            data=base64.b64decode(data),
            content_type=str(reference.get("content_type") or "application/octet-stream").lower(),
            name=str(reference.get("name") or "attachment"),
        )

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None:
        raise ValueError("email callbacks ask for no follow-up calls")


class ConnectionProblem(ChannelError):
    def __init__(self, reason: str, *, field: str, code: str | None = None) -> None:
        super().__init__(reason, code=code or "mailserver")
        self.field = field


# ----- the channel's settings ---------------------------------------------------------------------


@dataclass(frozen=True)
class MailConfig:
    address: str
    from_name: str | None
    protocol: str
    incoming_host: str
    incoming_port: int
    incoming_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    username: str
    folder: str
    sent_folder: str
    poll_seconds: int
    auth: str

    @property
    def domain(self) -> str:
        return self.address.partition("@")[2]


def config_of(channel: Channel) -> MailConfig:
    config = channel.config or {}
    return MailConfig(
        address=str(config.get("address") or ""),
        from_name=config.get("from_name"),
        protocol=str(config.get("incoming_protocol") or "imap"),
        incoming_host=str(config.get("incoming_host") or ""),
        incoming_port=int(config.get("incoming_port") or 993),
        incoming_security=str(config.get("incoming_security") or "ssl"),
        smtp_host=str(config.get("smtp_host") or ""),
        smtp_port=int(config.get("smtp_port") or 465),
        smtp_security=str(config.get("smtp_security") or "ssl"),
        username=str(config.get("username") or config.get("address") or ""),
        folder=str(config.get("folder") or "INBOX"),
        sent_folder=str(config.get("sent_folder") or ""),
        poll_seconds=int(config.get("poll_seconds") or 60),
        auth=str(config.get("auth") or "password"),
    )


def _port(value: Any, default: int, field: str, *, low: int = 1, high: int = 65535) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationFailed.field(field, f"must be a number from {low} to {high}") from None
    if not low <= number <= high:
        raise ValidationFailed.field(field, f"must be a number from {low} to {high}")
    return number


def _local(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace").strip()
    return str(value).strip()


def ingest_signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ----- reply addresses and message ids -------------------------------------------------------------


def _tag(channel: Channel, conversation_id: int) -> str:
    secret = str((channel.secrets or {}).get("token_secret") or "")
    return hmac.new(secret.encode(), f"t{conversation_id}".encode(), hashlib.sha256).hexdigest()[:10]


def reply_address(channel: Channel, conversation_id: int) -> str:
    """The mailbox's plus-address for one conversation: mail sent to it threads there."""
    local, _, domain = config_of(channel).address.partition("@")
    return f"{local}+t{conversation_id}.{_tag(channel, conversation_id)}@{domain}"


def conversation_of(channel: Channel, addresses: list[str]) -> int | None:
    """The conversation a reply address among `addresses` names (with a tag that checks out)."""
    local, _, domain = config_of(channel).address.partition("@")
    for address in addresses:
        name, _, at = address.lower().partition("@")
        base, plus, token = name.partition("+")
        if not plus or at != domain or base != local:
            continue
        found = _TOKEN.match(token)
        if found and hmac.compare_digest(found.group(2), _tag(channel, int(found.group(1)))):
            return int(found.group(1))
    return None


def message_id_for(channel: Channel, message_id: int) -> str:
    """Our message's Message-ID: new for each message, the same on every try of one."""
    secret = str((channel.secrets or {}).get("token_secret") or "")
    tag = hmac.new(secret.encode(), f"m{message_id}".encode(), hashlib.sha256).hexdigest()[:16]
    return f"<tertulia.{message_id}.{tag}@{config_of(channel).domain}>"


def provider_id_of(message_id: str | None, raw: bytes) -> str:
    if message_id and len(message_id) <= PROVIDER_ID_LENGTH:
        return message_id
    basis = message_id.encode() if message_id else raw
    return f"sha256:{hashlib.sha256(basis).hexdigest()}"


# ----- parsing --------------------------------------------------------------------------------------


def parse_mail(channel: Channel, raw: bytes, mailbox: str | None = None) -> ParsedWebhook:
    """One raw message as the inbox sees it (see the module's docstring)."""
    mail = parse(raw)
    config = config_of(channel)
    if mail.bounce is not None:
        original, reason = mail.bounce
        if original is None:
            log.info("email_bounce_without_original", channel_id=channel.id)
            return ParsedWebhook()
        return ParsedWebhook(
            statuses=[StatusUpdate(provider_message_id=original, status=DeliveryStatus.FAILED, reason=reason)]
        )
    if mail.from_address is None or _is_ours(config, mail.from_address) or _sent_by_us(raw):
        return ParsedWebhook()
    if mail.automatic is not None:
        log.info("email_automatic_skipped", channel_id=channel.id, reason=mail.automatic, message_id=mail.message_id)
        return ParsedWebhook()
    return ParsedWebhook(messages=[_inbound(channel, mail, raw, mailbox)])


def _is_ours(config: MailConfig, address: str) -> bool:
    """The mailbox's own address, or one of its plus-addresses."""
    name, _, domain = address.partition("@")
    return domain == config.domain and name.partition("+")[0] == config.address.partition("@")[0]


def _sent_by_us(raw: bytes) -> bool:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return CHANNEL_HEADER.lower().encode() in head.lower()


def _inbound(channel: Channel, mail: ParsedMail, raw: bytes, mailbox: str | None) -> InboundMessage:
    assert mail.from_address is not None
    files = mail.attachments
    text = mail.text or mail.subject
    kind = MessageType.TEXT
    if not text.strip() and files:
        kind = (
            MessageType.IMAGE
            if all(f["provider_file"]["content_type"].startswith("image/") for f in files)
            else (MessageType.FILE)
        )
    email_payload: dict[str, Any] = {
        "message_id": mail.message_id,
        "subject": mail.subject,
        "subject_key": normalised_subject(mail.subject),
        "reply": is_reply_subject(mail.subject),
        "from": mail.from_address,
        "to": mail.to,
        "cc": mail.cc,
        "in_reply_to": mail.in_reply_to,
        "references": mail.references[-50:],
        "participants": sorted({mail.from_address, *mail.to, *mail.cc} - {channel.config.get("address")}),
    }
    thread = conversation_of(channel, [*mail.to, *mail.cc, *mail.reply_to])
    if thread is not None:
        email_payload["conversation_id"] = thread
    if mail.quoted:
        email_payload["quoted"] = mail.quoted
    if mail.signature:
        email_payload["signature"] = mail.signature
    if mail.html:
        email_payload["html"] = mail.html
    if mailbox:
        email_payload["mailbox"] = mailbox
    first, _, last = (mail.from_name or "").partition(" ")
    return InboundMessage(
        sender_id=mail.from_address,
        provider_message_id=provider_id_of(mail.message_id, raw),
        type=kind,
        text=text if text.strip() else None,
        attachments=files,
        payload={"email": email_payload},
        display_name=mail.from_name,
        first_name=first or None,
        last_name=last or None,
        email=mail.from_address,
        sent_at=mail.date,
    )


# ----- building and sending mail ----------------------------------------------------------------------


def build_mail(channel: Channel, message: OutboundMessage) -> tuple[EmailMessage, list[str]]:
    config = config_of(channel)
    options = message.payload.get("email") if isinstance(message.payload.get("email"), dict) else {}
    thread = message.payload.get("email_thread") if isinstance(message.payload.get("email_thread"), dict) else {}
    assert isinstance(options, dict)
    assert isinstance(thread, dict)
    mail = EmailMessage()
    mail["From"] = format_address(config.address, config.from_name)
    mail["To"] = message.recipient_id
    cc = [str(a) for a in options.get("cc") or []]
    bcc = [str(a) for a in options.get("bcc") or []]
    if cc:
        mail["Cc"] = ", ".join(cc)
    subject = str(options.get("subject") or "").strip() or str(thread.get("subject") or "")
    mail["Subject"] = subject or f"Message from {config.from_name or config.address}"
    mail["Date"] = format_datetime(utcnow())
    mail["Message-ID"] = message_id_for(channel, message.message_id)
    parent = thread.get("in_reply_to") or message.reply_to_provider_id
    if parent:
        mail["In-Reply-To"] = str(parent)
        references = [str(r) for r in thread.get("references") or []]
        if parent not in references:
            references.append(str(parent))
        mail["References"] = " ".join(references[-20:])
    conversation_id = thread.get("conversation_id")
    if isinstance(conversation_id, int):
        mail["Reply-To"] = format_address(reply_address(channel, conversation_id), config.from_name)
    mail[CHANNEL_HEADER] = channel.key
    # RFC 3834: mail a person writes is not automatic; an auto-acknowledgement says so itself.
    mail["Auto-Submitted"] = "auto-replied" if message.payload.get("automatic") else "no"
    body = message.text or ""
    signature = str(thread.get("signature") or "").strip()
    if signature:
        body = f"{body}\n\n-- \n{signature}"
    mail.set_content(body or " ")
    for attachment in message.attachments:
        key = attachment.get("storage_key")
        if not key:
            raise PermanentError("the file to send is not in our storage")
        try:
            data = storage.get_storage().get(str(key))
        except (FileNotFoundError, KeyError) as exc:
            raise PermanentError("the file to send is missing from our storage") from exc
        content_type = str(attachment.get("content_type") or "")
        if "/" not in content_type:
            content_type = mimetypes.guess_type(str(attachment.get("name") or ""))[0] or "application/octet-stream"
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=str(attachment.get("name") or "file"))
    recipients = list(dict.fromkeys([message.recipient_id, *cc, *bcc]))
    return mail, recipients


def _first_refusal(recipients: dict[str, tuple[int, bytes]]) -> tuple[int, bytes]:
    return next(iter(recipients.values()), (550, b"refused"))


# RFC 4954: authentication required (530), mechanism too weak (534), credentials invalid (535),
# encryption required for the mechanism (538).
SMTP_AUTH_CODES = frozenset({530, 534, 535, 538})
# A recipient's mailbox busy or greylisted for now (450): retried, that message's alone.
SMTP_RECIPIENT_TRANSIENT = frozenset({450})


def _smtp_error(code: int, answer: bytes | str, *, sender: bool = False) -> ChannelError:
    reason = f"{code} {_text(answer)}"
    if code in SMTP_AUTH_CODES:
        return PermanentError(reason, code=str(code), fault=Fault.CREDENTIALS)
    if 400 <= code < 500 or code == -1:
        fault = Fault.MESSAGE if code in SMTP_RECIPIENT_TRANSIENT and not sender else Fault.PROVIDER
        return TransientError(reason, code=str(code), fault=fault)
    return PermanentError(reason, code=str(code), fault=Fault.ACCOUNT if sender else Fault.MESSAGE)


def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def untrusted(server: str, exc: BaseException) -> str | None:
    """A certificate our trust store does not vouch for (an unknown authority, another host's name,
    expired), said as such: "could not be reached" would send whoever reads it looking at the
    network instead of at the certificate or the host name."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the {server} server's certificate is not trusted: {exc.verify_message or exc.reason}"
    return None


def unreachable(server: str, exc: BaseException) -> str:
    return untrusted(server, exc) or f"the {server} server could not be reached: {exc}"


@contextmanager
def smtp_session(channel: Channel) -> Iterator[smtplib.SMTP]:
    """A logged-in SMTP session (password or XOAUTH2)."""
    config = config_of(channel)
    client: smtplib.SMTP
    if config.smtp_security == "ssl":
        client = smtplib.SMTP_SSL(config.smtp_host, config.smtp_port, timeout=TIMEOUT, context=_ssl_context())
    else:
        client = smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=TIMEOUT)
    try:
        client.ehlo()
        if config.smtp_security == "starttls":
            client.starttls(context=_ssl_context())
            client.ehlo()
        if config.auth == "oauth2":
            token = email_oauth.access_token(channel)
            xoauth = email_oauth.xoauth2_string(config.username, token)
            code, answer = client.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth.encode()).decode())
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, answer)
        elif client.has_extn("auth"):
            client.login(config.username, str((channel.secrets or {}).get("password") or ""))
        yield client
    finally:
        with suppress(smtplib.SMTPException, OSError):
            client.quit()
        client.close()


@contextmanager
def imap_session(channel: Channel) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP session; `TransientError` when the server cannot be reached, `PermanentError`
    when it refuses the login."""
    config = config_of(channel)
    try:
        client: imaplib.IMAP4
        if config.incoming_security == "ssl":
            client = imaplib.IMAP4_SSL(
                config.incoming_host, config.incoming_port, ssl_context=_ssl_context(), timeout=TIMEOUT
            )
        else:
            client = imaplib.IMAP4(config.incoming_host, config.incoming_port, timeout=TIMEOUT)
            if config.incoming_security == "starttls":
                client.starttls(ssl_context=_ssl_context())
    except (OSError, imaplib.IMAP4.error) as exc:
        raise TransientError(unreachable("IMAP", exc)) from exc
    try:
        try:
            if config.auth == "oauth2":
                token = email_oauth.access_token(channel)
                xoauth = email_oauth.xoauth2_string(config.username, token).encode()
                client.authenticate("XOAUTH2", lambda _challenge: xoauth)
            else:
                client.login(config.username, str((channel.secrets or {}).get("password") or ""))
        except imaplib.IMAP4.error as exc:
            raise PermanentError(
                f"the IMAP server refused the login: {_text(exc)}", code="login", fault=Fault.CREDENTIALS
            ) from exc
        except OSError as exc:
            raise TransientError(unreachable("IMAP", exc)) from exc
        yield client
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            client.logout()


@contextmanager
def pop3_session(channel: Channel) -> Iterator[poplib.POP3]:
    config = config_of(channel)
    try:
        client: poplib.POP3
        if config.incoming_security == "ssl":
            client = poplib.POP3_SSL(
                config.incoming_host, config.incoming_port, timeout=TIMEOUT, context=_ssl_context()
            )
        else:
            client = poplib.POP3(config.incoming_host, config.incoming_port, timeout=TIMEOUT)
            if config.incoming_security == "starttls":
                client.stls(context=_ssl_context())
    except (OSError, poplib.error_proto) as exc:
        raise TransientError(unreachable("POP3", exc)) from exc
    try:
        try:
            if config.auth == "oauth2":
                raise PermanentError("OAuth mailboxes are read over IMAP, not POP3", code="login", fault=Fault.ACCOUNT)
            else:
                client.user(config.username)
                client.pass_(str((channel.secrets or {}).get("password") or ""))
        except poplib.error_proto as exc:
            raise PermanentError(
                f"the POP3 server refused the login: {_text(exc)}", code="login", fault=Fault.CREDENTIALS
            ) from exc
        yield client
    finally:
        with suppress(poplib.error_proto, OSError):
            client.quit()


def append_sent(channel: Channel, data: bytes) -> None:
    """A copy of a sent message in the mailbox's Sent folder (IMAP only); a failure is logged."""
    config = config_of(channel)
    if config.protocol != "imap" or not config.sent_folder:
        return
    try:
        with imap_session(channel) as client:
            status, answer = client.append(
                _quoted(config.sent_folder), "(\\Seen)", imaplib.Time2Internaldate(time.time()), data
            )
            if status != "OK":
                log.warning("email_sent_copy_refused", channel_id=channel.id, answer=_text(answer))
    except (ChannelError, imaplib.IMAP4.error, OSError) as exc:
        log.warning("email_sent_copy_failed", channel_id=channel.id, reason=str(exc))


def _quoted(folder: str) -> str:
    return f'"{folder}"'


# ----- reading a mailbox ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchedMail:
    uid: int
    raw: bytes


@dataclass(frozen=True)
class MailboxBatch:
    uidvalidity: int
    messages: list[FetchedMail]
    # Whether more new mail is waiting beyond this batch.
    more: bool
    idle: bool = False


def select_folder(client: imaplib.IMAP4, folder: str) -> int:
    """Selects `folder` (read-only: we never change the customer's flags) and returns UIDVALIDITY."""
    status, answer = client.select(_quoted(folder), readonly=True)
    if status != "OK":
        raise PermanentError(
            f"the folder {folder!r} could not be opened: {_text(answer[0] if answer else '')}", fault=Fault.ACCOUNT
        )
    _, values = client.response("UIDVALIDITY")
    if not values or values[0] is None:
        raise PermanentError("the IMAP server gave no UIDVALIDITY", fault=Fault.PROVIDER)
    return int(values[0])


def fetch_new(client: imaplib.IMAP4, folder: str, last_uid: int, uidvalidity: int | None, limit: int) -> MailboxBatch:
    """The mail after `last_uid` (all of it when UIDVALIDITY changed), oldest first, at most `limit`."""
    current = select_folder(client, folder)
    after = last_uid if uidvalidity == current else 0
    status, data = client.uid("SEARCH", f"UID {after + 1}:*")
    if status != "OK":
        raise TransientError(f"UID SEARCH failed: {_text(data[0] if data else '')}")
    uids = sorted(int(u) for u in (data[0] or b"").split() if int(u) > after)
    chosen = uids[:limit]
    messages: list[FetchedMail] = []
    for start in range(0, len(chosen), 50):
        group = chosen[start : start + 50]
        status, parts = client.uid("FETCH", ",".join(str(u) for u in group), "(UID BODY.PEEK[])")
        if status != "OK":
            raise TransientError(f"UID FETCH failed: {_text(parts[0] if parts else '')}")
        by_uid: dict[int, bytes] = {}
        for part in parts:
            if isinstance(part, tuple):
                found = re.search(rb"UID (\d+)", part[0])
                if found:
                    by_uid[int(found.group(1))] = part[1]
        messages.extend(FetchedMail(uid, by_uid[uid]) for uid in group if uid in by_uid)
    return MailboxBatch(uidvalidity=current, messages=messages, more=len(uids) > len(chosen))


# RFC 2177: a server may log out a client idle for 30 minutes; IDLE is re-issued well before (29 at most).
IDLE_SECONDS = 25 * 60


class _IdleReader:
    """imaplib's reader on an IDLE connection. imaplib reads through a buffered file, whose read-ahead
    `select` cannot see and which is unusable once a read timed out; this one keeps its own buffer, so
    the wait for the server's next line is a `select` that a stop request interrupts."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buffer = b""

    def waiting(self) -> bool:
        pending = self._sock.pending() if isinstance(self._sock, ssl.SSLSocket) else 0
        return bool(self._buffer) or pending > 0

    def _more(self) -> bool:
        chunk: bytes = self._sock.recv(65536)
        self._buffer += chunk
        return bool(chunk)

    def readline(self, limit: int = -1) -> bytes:
        while b"\n" not in self._buffer and (limit < 0 or len(self._buffer) < limit) and self._more():
            pass
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        if limit >= 0:
            end = min(end, limit)
        line, self._buffer = self._buffer[:end], self._buffer[end:]
        return line

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size and self._more():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def close(self) -> None:
        pass


@contextmanager
def idle_session(channel: Channel) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP session for `wait_idle` (a mailbox's watcher: it only selects and idles)."""
    with imap_session(channel) as client:
        # Right after the login's tagged answer the server has nothing more to say, so nothing is
        # left behind in imaplib's own buffer.
        client.file = _IdleReader(client.sock)  # type: ignore[assignment]
        yield client


def _news(line: bytes) -> bool:
    """Whether an untagged answer says the folder changed (new mail: EXISTS, RECENT)."""
    return line.startswith(b"*") and (b"EXISTS" in line or b"RECENT" in line)


def wait_idle(client: imaplib.IMAP4, seconds: float, stop: Callable[[], bool] = lambda: False) -> bool:
    """IMAP IDLE (RFC 2177) on the selected folder of an `idle_session` for at most `seconds`, or
    until `stop()` (asked about every second): whether the server said the folder changed.
    `TransientError` when the connection dropped or the server ended the IDLE itself."""
    reader = client.file
    if not isinstance(reader, _IdleReader):
        raise TypeError("wait_idle needs a client from idle_session")
    tag = client._new_tag()
    client.send(tag + b" IDLE\r\n")
    changed = False
    while True:
        line = client.readline()
        if not line:
            raise TransientError("the IMAP server closed the connection")
        if line.startswith(b"+"):
            break
        if line.startswith(tag):
            raise TransientError(f"the IMAP server refused IDLE: {_text(line)}")
        changed = changed or _news(line)
    sock = client.socket()
    deadline = time.monotonic() + seconds
    while not changed and not stop():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not reader.waiting():
            readable, _, _ = select.select([sock], [], [], min(1.0, left))
            if not readable:
                continue
        line = client.readline()
        if not line or line.startswith(b"* BYE"):
            raise TransientError(f"the IMAP server ended the connection: {_text(line) or 'closed'}")
        changed = _news(line)
    client.send(b"DONE\r\n")
    while True:
        line = client.readline()
        if not line:
            raise TransientError("the IMAP server closed the connection")
        if line.startswith(tag):
            if not line[len(tag) :].lstrip().upper().startswith(b"OK"):
                raise TransientError(f"the IMAP server ended IDLE: {_text(line)}")
            break
        changed = changed or _news(line)
    return changed


def pop3_fetch(pop: poplib.POP3, seen: set[str], limit: int) -> tuple[list[tuple[str, bytes]], bool]:
    """New mail by UIDL (RFC 1939): the messages whose unique id is not in `seen`, at most `limit`.
    Mail is left on the server."""
    _, listing, _ = pop.uidl()
    pending: list[tuple[int, str]] = []
    for entry in listing:
        position, _, uidl = entry.decode().partition(" ")
        if uidl and uidl not in seen:
            pending.append((int(position), uidl))
    found: list[tuple[str, bytes]] = []
    for number, uidl in pending[:limit]:
        _, lines, _ = pop.retr(number)
        found.append((uidl, b"\r\n".join(lines) + b"\r\n"))
    return found, len(pending) > limit


def server_uidls(pop: poplib.POP3) -> set[str]:
    _, listing, _ = pop.uidl()
    return {entry.decode().partition(" ")[2] for entry in listing}
