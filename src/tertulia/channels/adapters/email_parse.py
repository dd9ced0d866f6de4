"""Reading one email (RFC 5322 / MIME) as the inbox sees it: who sent it, the text, a sanitised HTML
view, its files, the headers that thread it, and whether it is automatic mail (an auto-reply, a
bounce, a mailing list's) that must never be answered.

Parsing uses the standard library (../shared/reference/channels.md §12) with its compat32 policy:
the structure, and only the headers we read decoded (RFC 2047) one by one; `policy.default` builds a
header object for every header each time one is read, which was most of the time spent per message.
HTML is cleaned with nh3 (ammonia): no scripts, styles, event
handlers or forms; images keep their address in `data-src` only, so nothing remote loads until the
agent asks (the page swaps `data-src` back in). Quoted history ("On ... wrote:" and the `>` lines
under it) and a signature after the standard "-- " line are split off the plain text, kept in the
payload to show collapsed.
"""

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime
from email import message_from_bytes
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any

import nh3

MAX_TEXT = 60_000  # what is kept of a body as the message's text (conversations' MAX_TEXT is larger)
MAX_HTML = 500_000
MAX_ATTACHMENTS = 30
# Subject prefixes of replies and forwards in common mail programs (English, German, Nordic, Spanish, ...).
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|sv|vs|wg|rv|enc|antw|res|tr)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")
# "On <date>, <someone> wrote:" in English and Spanish (and the Outlook "-----Original Message-----").
_QUOTE_HEADER = re.compile(
    r"^(On .{0,200}wrote:|El .{0,200}escribió:|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Mensaje original\s*-{2,})\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_AUTO_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply"})


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    from_address: str | None
    from_name: str | None
    to: list[str]
    cc: list[str]
    reply_to: list[str]
    subject: str
    date: datetime | None
    in_reply_to: list[str]
    references: list[str]
    text: str
    quoted: str
    signature: str
    html: str | None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # Why it is automatic mail ("auto-reply", "list", "bulk"), or None for a person's mail.
    automatic: str | None = None
    # A delivery status notification: the original message's id and the reason it failed.
    bounce: tuple[str | None, str] | None = None


def parse(raw: bytes) -> ParsedMail:
    message = message_from_bytes(raw)
    from_name, from_address = _first_address(message, "from")
    text, html = _bodies(message)
    main, quoted, signature = split_quoted(text)
    return ParsedMail(
        message_id=_one_id(message.get("message-id")),
        from_address=from_address,
        from_name=from_name,
        to=_addresses(message, "to"),
        cc=_addresses(message, "cc"),
        reply_to=_addresses(message, "reply-to"),
        subject=_header(message, "subject"),
        date=_date(message),
        in_reply_to=_ids(message.get("in-reply-to")),
        references=_ids(message.get("references")),
        text=main[:MAX_TEXT],
        quoted=quoted[:MAX_TEXT],
        signature=signature[:2000],
        html=sanitise_html(html)[:MAX_HTML] if html else None,
        attachments=_attachments(message),
        automatic=automatic_reason(message),
        bounce=_bounce(message),
    )


def _decoded_words(value: str) -> str:
    """RFC 2047 encoded words decoded (`=?utf-8?q?...?=`), the text as it was otherwise."""
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeDecodeError, HeaderParseError):
        return value


def _header(message: Message, name: str) -> str:
    value = message.get(name)
    return " ".join(_decoded_words(str(value)).split()) if value is not None else ""


def _addresses(message: Message, name: str) -> list[str]:
    found: list[str] = []
    try:
        values = [str(v) for v in message.get_all(name) or []]
    except (ValueError, IndexError, AttributeError):
        return found
    for _, given in getaddresses(values):
        address = given.strip().lower()
        if "@" in address and address not in found:
            found.append(address)
    return found


def _first_address(message: Message, name: str) -> tuple[str | None, str | None]:
    try:
        values = [str(v) for v in message.get_all(name) or []]
    except (ValueError, IndexError, AttributeError):
        return None, None
    for display, address in getaddresses(values):
        if "@" in address:
            return (" ".join(_decoded_words(display).split()) or None), address.strip().lower()
    return None, None


def _one_id(value: object) -> str | None:
    ids = _ids(value)
    return ids[0] if ids else None


def _ids(value: object) -> list[str]:
    return _MESSAGE_ID.findall(str(value)) if value else []


def _date(message: Message) -> datetime | None:
    try:
        value = message.get("date")
        return parsedate_to_datetime(str(value)) if value else None
    except (ValueError, TypeError, IndexError):
        return None


def is_reply_subject(subject: str) -> bool:
    """Whether the subject says it answers or forwards something (Re:, AW:, SV:, Fwd: ...)."""
    return bool(_PREFIX.match(subject or ""))


def normalised_subject(subject: str) -> str:
    """The subject without Re:/Fwd:/AW:/SV: prefixes, case-folded and with spaces collapsed."""
    return " ".join(_PREFIX.sub("", subject or "").split()).casefold()


def automatic_reason(message: Message) -> str | None:
    """Why this is automatic mail (RFC 3834's Auto-Submitted, vacation responders' headers,
    Precedence, a mailing list's List-Id), or None."""
    auto = _header(message, "auto-submitted").lower()
    if auto and not auto.startswith("no"):
        return "auto-reply"
    if any(message.get(name) for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress")):
        suppress = _header(message, "x-auto-response-suppress").lower()
        if not suppress or any(word in suppress for word in ("oof", "autoreply", "all")):
            return "auto-reply"
    precedence = _header(message, "precedence").lower()
    if precedence in _AUTO_PRECEDENCE:
        return "auto-reply" if precedence == "auto_reply" else precedence
    if message.get("list-id") or message.get("list-unsubscribe"):
        return "list"
    return None


def _bounce(message: Message) -> tuple[str | None, str] | None:
    """A delivery status notification (RFC 3464, multipart/report; report-type=delivery-status): the
    id of the message that failed and the reason the reporting server gave."""
    if message.get_content_type() != "multipart/report":
        return None
    if str(message.get_param("report-type", "")).lower() != "delivery-status":
        return None
    original: str | None = None
    reason = ""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            status, diagnostic, action = _dsn_fields(part)
            if action and action.lower() not in {"failed", ""}:
                return None  # delayed, delivered, relayed: not a failure
            reason = "; ".join(x for x in (status, diagnostic) if x) or "the mail could not be delivered"
        elif kind in {"message/rfc822", "text/rfc822-headers"}:
            original = original or _original_id(part)
    return original, reason or "the mail could not be delivered"


def _dsn_fields(part: Message) -> tuple[str, str, str]:
    payload = part.get_payload()
    if isinstance(payload, list):
        text = "\n".join(str(p) for p in payload)
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    fields: dict[str, str] = {}
    for line in re.sub(r"\r?\n[ \t]+", " ", text).splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in {"status", "diagnostic-code", "action"}:
            fields.setdefault(name.strip().lower(), value.strip())
    return fields.get("status", ""), fields.get("diagnostic-code", ""), fields.get("action", "")


def _original_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return _one_id(payload[0].get("message-id"))
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
    found = re.search(r"^message-id:\s*(<[^>]+>)", text, re.IGNORECASE | re.MULTILINE)
    return found.group(1) if found else None


# ----- bodies -------------------------------------------------------------------------------------


def _content(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return ""
    try:
        return raw.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", "replace")


def _bodies(message: Message) -> tuple[str, str | None]:
    """The plain text (from the HTML when there is no plain part) and the HTML, if any: the first
    of each that is not an attachment, outside attached messages."""
    plain: str | None = None
    html: str | None = None
    pending = [message]
    while pending:
        part = pending.pop(0)
        if part.is_multipart():
            if part.get_content_type() != "message/rfc822":
                pending[:0] = [p for p in part.get_payload() if isinstance(p, Message)]
            continue
        if (part.get_content_disposition() or "") == "attachment":
            continue
        kind = part.get_content_type()
        if kind == "text/plain" and plain is None:
            plain = _content(part)
        elif kind == "text/html" and html is None:
            html = _content(part)
    if plain is not None:
        text = plain
    elif html is not None:
        text = html_to_text(html)
    else:
        text = ""
    return text.replace("\r\n", "\n").strip(), html


class _TextOf(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"script", "style", "head", "title"}:
            self.skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style", "head", "title"}:
            self.skip = max(0, self.skip - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _TextOf()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    if tag == "img" and attribute == "src":
        # Inline images (cid:) are ours once stored; anything else loads only when the agent allows it.
        return value if value.startswith("cid:") else None
    return value


def sanitise_html(html: str) -> str:
    """Safe HTML to show: no scripts, styles, forms or event handlers (nh3's defaults), links open
    apart without the referrer, and remote images held back (their address kept in `data-src`)."""
    held_back = re.sub(r"(<img\b[^>]*?)\bsrc\s*=", r"\1data-src=", html, flags=re.IGNORECASE)
    attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
    attributes.setdefault("img", set()).update({"data-src", "alt", "width", "height", "src"})
    return nh3.clean(
        held_back,
        tags=set(nh3.ALLOWED_TAGS),
        attributes=attributes,
        url_schemes={"http", "https", "mailto", "cid"},
        link_rel="noopener noreferrer nofollow",
        attribute_filter=_attribute_filter,
    )


def split_quoted(text: str) -> tuple[str, str, str]:
    """(what is new, the quoted history, the signature) of a plain-text body."""
    lines = text.split("\n")
    cut = len(lines)
    header = _QUOTE_HEADER.search(text)
    if header is not None:
        cut = text[: header.start()].count("\n")
    else:
        # A block of "> " lines to the end (blank lines allowed) is quoted history.
        index = len(lines)
        while index > 0 and (lines[index - 1].startswith(">") or not lines[index - 1].strip()):
            index -= 1
        if index < len(lines) and any(line.startswith(">") for line in lines[index:]):
            cut = index
    main_lines, quoted = lines[:cut], "\n".join(lines[cut:]).strip()
    signature = ""
    for index in range(len(main_lines) - 1, -1, -1):
        if main_lines[index].rstrip() == "--" and main_lines[index].startswith("--"):
            signature = "\n".join(main_lines[index + 1 :]).strip()
            main_lines = main_lines[:index]
            break
    main = "\n".join(main_lines).strip()
    if not main and (quoted or signature):
        return text.strip(), "", ""  # nothing new above the quote: show it all rather than nothing
    return main, quoted, signature


# ----- files ----------------------------------------------------------------------------------------


def _attachments(message: Message) -> list[dict[str, Any]]:
    """Attachments and inline images as references our file storage takes in (`provider_file` with
    the bytes, read by `EmailAdapter.fetch_media`)."""
    found: list[dict[str, Any]] = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() == "message":
            continue
        disposition = (part.get_content_disposition() or "").lower()
        given = part.get_filename()
        filename = _decoded_words(given) if given else None
        kind = part.get_content_type()
        if disposition != "attachment" and not (filename or (kind.startswith("image/") and part.get("content-id"))):
            continue
        if kind in {"text/plain", "text/html"} and disposition != "attachment" and not filename:
            continue
        data = part.get_payload(decode=True)
        if not isinstance(data, bytes):
            continue
        content_id = _one_id(part.get("content-id"))
        found.append(
            {
                "provider_file": {
                    "name": filename or f"image{len(found) + 1}.{kind.split('/')[-1]}",
                    "content_type": kind,
                    "size": len(data),
                    "data": base64.b64encode(data).decode(),
                    **({"content_id": content_id.strip("<>")} if content_id else {}),
                    **({"inline": True} if disposition == "inline" else {}),
                }
            }
        )
        if len(found) >= MAX_ATTACHMENTS:
            break
    return found


def format_address(address: str, name: str | None = None) -> str:
    local, _, domain = address.partition("@")
    return str(Address(display_name=name or "", username=local, domain=domain))
