"""Real mail servers for the email channel's tests: a private Dovecot (IMAP and POP3) started from a
generated config in a temporary folder on free ports, with a passwd-file user database, and an
aiosmtpd SMTP server that delivers what it accepts into Dovecot's mailboxes over IMAP APPEND (so a
message sent "to the customer" can be read back from the customer's mailbox). Either can speak TLS
with a certificate from the test authority (tests/webhooks/tls.py): Dovecot offers STARTTLS (STLS on
POP3) and listens on implicit-TLS ports too; aiosmtpd offers STARTTLS or runs wrapped in TLS, as
port 465 does.

Dovecot comes from Debian's dovecot-imapd and dovecot-pop3d (.ci/run installs them). Run as root,
its mail processes use the `dovecot` system user the package creates (Dovecot refuses uid 0); run
as anyone else, every process runs as that user. Reference: ../shared/reference/channels.md §12.
"""

import asyncio
import base64
import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.webhooks.tls import ServerCertificate

PASSWORD = "secret-pw"  # every test user's password
USERS = ("support@shop.example.com", "ana@example.com", "bob@example.net", "list@example.org")
DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


CONFIG = """\
protocols = imap pop3
listen = 127.0.0.1
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechanisms}
mail_location = maildir:{dir}/mail/%u/Maildir
first_valid_uid = {uid}
last_valid_uid = 0
default_internal_user = {user}
default_login_user = {user}
default_internal_group = {group}
imap_idle_notify_interval = 1 secs
mailbox_idle_check_interval = 1 secs
pop3_uidl_format = %08Xu%08Xv
namespace inbox {{
  inbox = yes
  mailbox Sent {{
    special_use = \\Sent
    auto = create
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
  mechanisms = plain login
}}
{oauth_passdb}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {pop3s_port}
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    directory: Path
    imap_port: int
    pop3_port: int
    # IMAP and POP3 wrapped in TLS from the first byte (993 and 995 elsewhere); 0 without `tls`.
    imaps_port: int = 0
    pop3s_port: int = 0

    def imap(self, user: str) -> imaplib.IMAP4:
        client = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        client.login(user, PASSWORD)
        return client

    def deliver(self, user: str, raw: bytes, folder: str = "INBOX") -> None:
        """Put a message into a user's mailbox (what an MTA's local delivery does)."""
        client = self.imap(user)
        try:
            client.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
        finally:
            client.logout()

    def messages(self, user: str, folder: str = "INBOX") -> list[EmailMessage]:
        client = self.imap(user)
        try:
            client.select(folder, readonly=True)
            _, data = client.uid("SEARCH", "ALL")
            found: list[EmailMessage] = []
            for uid in data[0].split():
                _, parts = client.uid("FETCH", uid, "(BODY.PEEK[])")
                raw = next(p[1] for p in parts if isinstance(p, tuple))
                parsed = message_from_bytes(raw, policy=policy.default)
                assert isinstance(parsed, EmailMessage)
                found.append(parsed)
            return found
        finally:
            client.logout()

    def wait_for(self, user: str, count: int, timeout: float = 10.0, folder: str = "INBOX") -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(user, folder)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def clear(self) -> None:
        for user in USERS:
            client = self.imap(user)
            try:
                for folder in ("INBOX", "Sent"):
                    client.select(folder)
                    client.store("1:*", "+FLAGS", "\\Deleted") if _count(client) else None
                    client.expunge()
            finally:
                client.logout()


def _count(client: imaplib.IMAP4) -> int:
    _, data = client.search(None, "ALL")
    return len(data[0].split())


OAUTH_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/oauth2.conf.ext
}}
"""
# Dovecot asks the authorisation server whether a bearer token is live (RFC 7662 introspection).
OAUTH_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = email
active_attribute = active
active_value = true
"""


@contextlib.contextmanager
def dovecot(introspection_url: str | None = None, tls: ServerCertificate | None = None) -> Iterator[Dovecot]:
    """`introspection_url`: also accept XOAUTH2, checking tokens there (tests/fake_oauth.py).
    `tls`: the server's certificate; STARTTLS is offered and the implicit-TLS ports listen."""
    directory = Path(tempfile.mkdtemp(prefix="tertulia-dovecot-"))
    if os.getuid() == 0:
        account = pwd.getpwnam("dovecot")
    else:
        account = pwd.getpwuid(os.getuid())
    uid, gid, user = account.pw_uid, account.pw_gid, account.pw_name
    group = user if os.getuid() != 0 else "dovecot"
    imap_port, pop3_port = free_port(), free_port()
    imaps_port, pop3s_port = (free_port(), free_port()) if tls else (0, 0)
    ssl_setting = f"ssl = yes\nssl_cert = <{tls.cert_file}\nssl_key = <{tls.key_file}" if tls else "ssl = no"
    (directory / "users").write_text("".join(f"{u}:{{PLAIN}}{PASSWORD}\n" for u in USERS))
    for sub in ("run", "state", "mail"):
        (directory / sub).mkdir()
    config = directory / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            dir=directory,
            uid=uid,
            gid=gid,
            user=user,
            group=group,
            imap_port=imap_port,
            pop3_port=pop3_port,
            imaps_port=imaps_port,
            pop3s_port=pop3s_port,
            ssl=ssl_setting,
            oauth_mechanisms=" xoauth2 oauthbearer" if introspection_url else "",
            oauth_passdb=OAUTH_PASSDB.format(dir=directory) if introspection_url else "",
        )
    )
    if introspection_url:
        (directory / "oauth2.conf.ext").write_text(OAUTH_CONF.format(url=introspection_url))
    if os.getuid() == 0:
        os.chown(directory / "mail", uid, gid)
        directory.chmod(0o755)
    # In the foreground (-F), so the process is ours to stop and nothing daemonises past the tests.
    process = subprocess.Popen(  # noqa: S603 (our own config)
        [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Dovecot(directory, imap_port, pop3_port, imaps_port, pop3s_port)
    try:
        for port in (imap_port, pop3_port, imaps_port, pop3s_port):
            if port:
                _wait_listening(port, directory)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _wait_listening(port: int, directory: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    log = (directory / "dovecot.log").read_text() if (directory / "dovecot.log").exists() else ""
    raise RuntimeError(f"Dovecot did not start on port {port}: {log[-2000:]}")


# ----- SMTP: aiosmtpd, delivering into Dovecot ----------------------------------------------------


@dataclass
class SmtpServer:
    port: int
    dovecot: Dovecot | None
    received: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    # For each received message, the TLS version its session was encrypted with (None: in clear).
    received_over: list[str | None] = field(default_factory=list)
    rejected: set[str] = field(default_factory=set)
    fail_next: list[str] = field(default_factory=list)
    users: dict[str, str] = field(default_factory=lambda: dict.fromkeys(USERS, PASSWORD))
    # Bearer tokens accepted with SASL XOAUTH2 (a fake authorisation server's live tokens).
    oauth_tokens: set[str] | None = None

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        """SASL XOAUTH2 (developers.google.com/gmail/imap/xoauth2-protocol): the initial response is
        base64 of "user=<address>^Aauth=Bearer <token>^A^A"."""
        if self.oauth_tokens is None or len(args) < 2:
            return AuthResult(success=False, handled=False)
        pairs = [part.split("=", 1) for part in base64.b64decode(args[1]).decode().split("\x01") if "=" in part]
        fields = dict(pairs)
        token = fields.get("auth", "").removeprefix("Bearer ")
        ok = token in self.oauth_tokens and fields.get("user") in self.users
        return AuthResult(success=ok, handled=False, auth_data=fields.get("user"))

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
        if self.fail_next:
            return self.fail_next.pop(0)
        if address in self.rejected:
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        content = bytes(envelope.content)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        secured = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
        self.received_over.append(secured.version() if secured is not None else None)
        if self.dovecot is not None:
            local = [r for r in envelope.rcpt_tos if r in USERS]
            await asyncio.get_running_loop().run_in_executor(None, self._deliver, local, content)
        return "250 Message accepted"

    def _deliver(self, recipients: list[str], content: bytes) -> None:
        assert self.dovecot is not None
        for recipient in recipients:
            self.dovecot.deliver(recipient, content)

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.users.get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)


@contextlib.contextmanager
def smtp_server(
    into: Dovecot | None = None,
    oauth_tokens: set[str] | None = None,
    *,
    tls: ssl.SSLContext | None = None,
    implicit_tls: bool = False,
) -> Iterator[SmtpServer]:
    """`tls`: the server's TLS context; with `implicit_tls` every connection is TLS from the first
    byte (port 465, RFC 8314), otherwise STARTTLS is offered and required before MAIL."""
    loop = asyncio.new_event_loop()
    box = SmtpServer(port=0, dovecot=into, oauth_tokens=oauth_tokens)
    starttls = tls if tls is not None and not implicit_tls else None

    def protocol() -> SMTP:
        return SMTP(
            box,
            hostname="mx.shop.test",
            authenticator=box.authenticate,
            auth_require_tls=starttls is not None,
            tls_context=starttls,
            require_starttls=starttls is not None,
            loop=loop,
        )

    wrapped = tls if implicit_tls else None
    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0, ssl=wrapped))
    box.port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


@contextlib.contextmanager
def scripted_smtp(answers: list[str]) -> Iterator[int]:
    """An SMTP server (aiosmtpd) answering each message's RCPT with the next scripted reply
    ("550 5.1.1 ...", "421 4.7.0 ..."); "250 OK" accepts it. Yields the port."""

    class Script:
        async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:  # noqa: N802
            answer = answers.pop(0) if answers else "250 OK"
            if answer.startswith("250"):
                envelope.rcpt_tos.append(address)
            return answer

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            return "250 Message accepted"

    loop = asyncio.new_event_loop()
    handler = Script()

    def protocol() -> SMTP:
        return SMTP(handler, hostname="mx.example.com", loop=loop)

    server = loop.run_until_complete(loop.create_server(protocol, "127.0.0.1", 0))
    port: int = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(server.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
