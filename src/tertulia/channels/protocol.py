"""The channel adapter protocol: one adapter per provider type, the same five duties for all.

1. `verify_webhook`: authenticate a provider callback over the raw bytes (Meta's
   X-Hub-Signature-256, Telegram's secret-token header, Twilio's URL signature, ...) and answer a
   subscription handshake (Meta's hub.challenge) when there is one.
2. `parse_webhook`: turn the callback into normalised `InboundMessage`s (each with the provider's
   message id, used for dedupe) and `StatusUpdate`s (sent/delivered/read/failed + reason).
3. `send`: deliver one `OutboundMessage`; returns the provider's message id, or raises
   `TransientError` (retry with backoff: throttling, 5xx, timeouts) or `PermanentError` (record the
   provider's reason: blocked, not on WhatsApp, outside the 24-hour window, ...). `idempotency_key`
   is our message id: send it to providers that accept one; the others rely on our outbox never
   calling `send` again once the provider id is recorded. Each error carries a `Fault`: the
   adapter maps its provider's documented codes to whose fault the refusal is (the channel's
   credentials, its account, the provider itself, or this one message), so that only a broken
   channel is marked in error and its owners told (channels/health.py). A failure the provider
   reports later, in a status callback, carries the same error (`StatusUpdate.error`).
4. `rules`: what the composer and the outbox must enforce before calling `send` (reply window,
   templates outside it, text length, receipts).
5. `public_config`: what may be shown to the agent UI or embedded in a public page;
   `clean_config`: validate a manager's settings and fill generated secrets;
   `owns_identity`: whether a contact identity of this type belongs to this very channel (two
   WhatsApp numbers, or two web-chat widgets, each know their own customers).

Provider callbacks arrive at `/webhooks/{channel key}` (also `/channels/{key}/callback`, served by
conversations/ingress/callbacks.py): `verify_webhook` runs while the provider waits, `parse_webhook`
later in a queued task. Web chat (channels/adapters/webchat.py) and Telegram (telegram.py) are
the adapters so far; the wire formats of the others are in ../shared/reference/channels.md. Adapters
are listed in channels/adapters and looked up through channels/registry.py.

Adapters that talk to a provider's API also implement the optional protocols below, which the
service and the inbox find with isinstance():
- `ProviderSetup`: `connect` (name the account, register the callback URL) when a manager connects
  the channel, `disconnect` when it is disconnected (the history stays);
- `MediaSource`: `fetch_media` downloads a file an inbound message refers to
  (`InboundMessage.attachments` entries with a "provider_file"), stored by the inbox as our file;
  `follow_up` makes the provider calls a callback asks for once it is stored (Telegram's
  answerCallbackQuery);
- `ChatMenu`: `clean_menu`/`push_menu`, the persistent menu a customer sees (Telegram's commands);
- `CallbackAnswer`: `callback_answer`, the body a provider expects in the answer to a callback
  (Twilio: empty TwiML); the others get an empty 200;
- `TemplateCatalogue`: `fetch_templates`, the account's pre-approved message templates (WhatsApp),
  kept by channels/message_templates.py.
Every provider API URL comes from the channel's config (`api_base_url`), so tests point it at a
local fake and a business can go through a proxy.

This module is the bottom of the channel layer: it owns the vocabulary the inbox stores
(`MessageType`, `DeliveryStatus`, the order statuses move in) and imports nothing above it.
Adapters never touch the database: the conversations service and the outbox task do.
"""

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

from tertulia.channels.models import Channel


class MessageType(enum.StrEnum):
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    AUDIO = "audio"
    VIDEO = "video"
    LOCATION = "location"
    # A provider's pre-approved template (WhatsApp), the one kind allowed outside the reply window;
    # the template travels in the message's payload in the provider's own shape.
    TEMPLATE = "template"
    CONTACT = "contact"  # a shared contact card (payload "contact")
    # The customer's choice of a button or menu item (payload "postback": data, title, source).
    POSTBACK = "postback"
    # Something the channel sent that we cannot show (a sticker, a poll, ...): kept, never dropped;
    # payload "unsupported" names what it was.
    UNSUPPORTED = "unsupported"
    SYSTEM = "system"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


# The statuses a message may be in for it to move to the key status. Anything else is a step
# backwards (a late "delivered" after "read") or out of a terminal state, and is ignored.
STATUS_PREDECESSORS: dict[DeliveryStatus, frozenset[DeliveryStatus]] = {
    DeliveryStatus.PENDING: frozenset(),
    DeliveryStatus.SENT: frozenset({DeliveryStatus.PENDING}),
    DeliveryStatus.DELIVERED: frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENT}),
    DeliveryStatus.READ: frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENT, DeliveryStatus.DELIVERED}),
    DeliveryStatus.FAILED: frozenset({DeliveryStatus.PENDING, DeliveryStatus.SENT}),
}


def status_advances(current: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """Whether a message in `current` may move to `new` (statuses only move forward)."""
    return current is not None and current in STATUS_PREDECESSORS[new]


@dataclass(frozen=True)
class WebhookRequest:
    method: str
    url: str
    headers: Mapping[str, str]  # lower-cased names
    query: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class InboundMessage:
    """One customer message. `sender_id` is the customer's id on the channel (phone, PSID, chat id)."""

    sender_id: str
    provider_message_id: str | None
    type: MessageType = MessageType.TEXT
    text: str | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)
    display_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    sent_at: datetime | None = None
    # Other ids the same customer has on this channel type (WhatsApp: the BSUID beside the phone
    # number): contacts link them all to one contact.
    sender_aliases: tuple[str, ...] = ()
    # Whether it opens the reply window: a customer's message does; a comment on a post does not
    # (Messenger and Instagram allow one private reply to it instead).
    opens_window: bool = True
    # The customer's picture where the provider gives one (Messenger, Instagram profiles): a new
    # contact's avatar.
    avatar_url: str | None = None


@dataclass(frozen=True)
class StatusUpdate:
    """One message's new status; or, with `up_to` (Messenger's watermarks), every message sent to
    `recipient_id` on the channel up to that time (`provider_message_id` is then empty)."""

    provider_message_id: str
    status: DeliveryStatus
    reason: str | None = None
    at: datetime | None = None
    recipient_id: str | None = None
    up_to: datetime | None = None
    # The provider says the recipient opted out of messages (Vonage's err-code 9): recorded in our
    # own consent (conversations/sms_consent.py) beside the status.
    opted_out: bool = False
    # A failed status's error, mapped the way a refused send's is (its code and `Fault`, by the same
    # table of the adapter): a failure the provider reports later (WhatsApp's statuses[].errors[],
    # Twilio's ErrorCode, Vonage's err-code or error, Bird's failure) counts against the channel when
    # it is the channel's own, as a refused send does (channels/health.py). None: no error given.
    error: "ChannelError | None" = None


@dataclass(frozen=True)
class InboundEdit:
    """The customer changed a message they had sent: shown as an edit of it, never as a new message."""

    provider_message_id: str  # the edited message's id
    text: str | None
    edited_at: datetime
    sender_id: str


@dataclass(frozen=True)
class TemplateChange:
    """The provider changed one of the account's message templates (WhatsApp's
    message_template_status_update, template_category_update, message_template_quality_update).
    Fields left None did not change."""

    provider_template_id: str | None
    name: str | None
    language: str | None
    status: str | None = None
    category: str | None = None
    quality: str | None = None
    reason: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class QualityChange:
    """The provider's word on the number itself (WhatsApp's phone_number_quality_update): an event
    (FLAGGED, UNFLAGGED, UPGRADE, DOWNGRADE, THROUGHPUT_UPGRADE, ...) and the messaging limit tier."""

    event: str
    messaging_limit: str | None
    at: datetime | None = None


@dataclass(frozen=True)
class ParsedWebhook:
    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    edits: list[InboundEdit] = field(default_factory=list)
    # Provider calls to make once the callback's messages are stored (`MediaSource.follow_up`). A call
    # that answers one message names it (`message_id`, its provider message id) and is made once, not
    # again for a repeat: a provider retrying its callback does not get the customer answered twice.
    follow_ups: list[dict[str, Any]] = field(default_factory=list)
    # For handshakes (Meta's hub.challenge): the exact body to answer with.
    reply: str | None = None
    # What the provider says about the account rather than a conversation.
    templates: list[TemplateChange] = field(default_factory=list)
    quality: list[QualityChange] = field(default_factory=list)
    # Messages the business sent to a customer from elsewhere (the Facebook Page inbox, another
    # tool): stored as outgoing, never as the customer's; `sender_id` is the customer's id.
    echoes: list[InboundMessage] = field(default_factory=list)


@dataclass(frozen=True)
class OutboundMessage:
    message_id: int
    idempotency_key: str
    recipient_id: str
    type: MessageType
    text: str | None
    attachments: list[dict[str, Any]]
    payload: dict[str, Any]
    reply_to_provider_id: str | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    # Channels without receipts (Telegram, web chat) report their final state here.
    status: DeliveryStatus = DeliveryStatus.SENT
    # The customer's id the provider answered with when we did not address them by it (a private
    # reply to a comment reaches the commenter's Messenger id): linked to the same contact.
    recipient_id: str | None = None


@dataclass(frozen=True)
class Pace:
    """At most `messages` in any `seconds`-long span (a sliding window, so never more, whatever the
    moment one starts counting)."""

    messages: int
    seconds: float


# A channel's config may set its own pace per channel (WhatsApp numbers are raised by Meta beyond
# the default 80 messages a second); the adapter's `clean_config` validates it.
PACE_SETTING = "messages_per_second"


@dataclass(frozen=True)
class ListLimits:
    """A list to pick from (WhatsApp): the label of the button that opens it, its sections and rows."""

    button_length: int
    max_sections: int
    max_rows: int
    section_title_length: int
    row_title_length: int
    row_description_length: int


@dataclass(frozen=True)
class ReplyChoices:
    """What a channel's provider takes as reply choices (the API's `quick_reply`): how many reply
    buttons, how long their titles and ids may be, and whether a list or a header and footer can go
    with them. Checked before anything is written (channels/reply_choices.py); the composer offers
    no more than this."""

    provider: str
    max_buttons: int
    title_length: int
    # Bytes for Telegram's callback_data, characters elsewhere.
    id_length: int
    id_in_bytes: bool = False
    # WhatsApp's list messages (button label, sections, rows); None: no lists.
    lists: ListLimits | None = None
    header_footer: bool = False
    # The longest text the choices may go under (None: the channel's max_text_length).
    body_length: int | None = None
    # Telegram puts a keyboard under a file's caption; the others send choices with a text only.
    with_files: bool = False
    # Messenger shows quick replies above a button template; Telegram has one keyboard for both.
    with_buttons: bool = False


@dataclass(frozen=True)
class ChannelRules:
    # Free-form replies allowed only this long after the customer's last message (WhatsApp,
    # Messenger, Instagram: 24 h); None = always.
    reply_window: timedelta | None = None
    # Outside the window, only pre-approved templates may be sent (WhatsApp).
    templates_outside_window: bool = False
    max_text_length: int = 4096
    delivery_receipts: bool = False
    # Pacing the outbox keeps (queueing, never failing): per channel, and per recipient on the
    # channel. None = no limit.
    channel_pace: Pace | None = None
    recipient_pace: Pace | None = None
    # Buttons under a message (OutboundMessage.payload["buttons"]: [{"title", "payload"|"url"}]).
    buttons: bool = False
    # Reply buttons or a list to pick from (OutboundMessage.payload["quick_reply"]; the API's
    # `quick_reply` type): {"buttons": [{"id", "title"}]} or {"list": {"button", "sections":
    # [{"title", "rows": [{"id", "title", "description"}]}]}}, with an optional "header" and "footer".
    # None: the channel has none. Each adapter maps them to its provider's form.
    reply_choices: ReplyChoices | None = None
    message_types: frozenset[MessageType] = frozenset(
        {MessageType.TEXT, MessageType.IMAGE, MessageType.FILE, MessageType.AUDIO, MessageType.VIDEO}
    )
    # Quick replies under a message (OutboundMessage.payload["quick_replies"]: [{"title", "payload"}]).
    quick_replies: bool = False
    # Message tags that allow a message outside the reply window (Messenger, Instagram), each with
    # how long after the customer's last message it may be used (None: any time).
    message_tags: tuple[tuple[str, timedelta | None], ...] = ()
    # One private reply to a comment on the business's posts, this long after the comment (Messenger,
    # Instagram: 7 days); None = no private replies.
    private_replies: timedelta | None = None
    # SMS: the customers' STOP/START keywords (payload "sms_keyword") keep our own consent record, and
    # the outbox sends nothing to a number that opted out (conversations/sms_consent.py).
    keyword_consent: bool = False
    # The provider calls back with our own sent messages (Messenger and Instagram "echoes"); one may
    # be stored before the send is recorded, and the outbox then drops it (payload "echo").
    echoes: bool = False
    # Email: the outbox gives each message its thread's headers (payload "email_thread":
    # conversations/email_threads.py), and inbound mail is threaded by them.
    mail_threading: bool = False


class Fault(enum.StrEnum):
    """Whose fault a provider's refusal is: the channel's (every message will fail the same way until
    someone acts) or one message's. Only a channel's fault puts the channel in error and tells its
    owners (channels/health.py); a refused recipient is that message's failure alone."""

    # The provider refused the channel's credentials or they lack a permission: an expired or revoked
    # token, a wrong password, a missing scope (Meta 190, 10, 200-299; Telegram 401; Twilio 20003;
    # SMTP 535).
    CREDENTIALS = "credentials"
    # The account or number itself: misconfigured (a sender the account does not own), suspended,
    # restricted, out of credit, or rate-limited as a whole (Meta 4, 80007, 130429, 368, 131031).
    ACCOUNT = "account"
    # The provider could not be reached or failed (network trouble, timeouts, 5xx, an answer that
    # makes no sense). Only an outage counts against the channel, not a blip: failures that go on
    # (channels/health.py, PROVIDER_OUTAGE_AFTER and PROVIDER_OUTAGE_FAILURES).
    PROVIDER = "provider"
    # This message or its recipient: a bad or unreachable number, an opt-out, a blocked bot, the
    # 24-hour window, a template or file the provider refused, a per-recipient pace.
    MESSAGE = "message"


CHANNEL_FAULTS = frozenset({Fault.CREDENTIALS, Fault.ACCOUNT, Fault.PROVIDER})


class ChannelError(Exception):
    """A provider's refusal (or our own, before the provider is asked). `fault` says whose it is;
    left out, it is the class's `default_fault`."""

    default_fault: ClassVar[Fault] = Fault.PROVIDER

    def __init__(self, reason: str, *, code: str | None = None, fault: Fault | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.fault = fault if fault is not None else self.default_fault

    @property
    def channel_level(self) -> bool:
        """Whether the channel itself is broken (not just this one message)."""
        return self.fault in CHANNEL_FAULTS


class TransientError(ChannelError):
    """Worth retrying: throttled, provider 5xx, network trouble. By default the provider's fault;
    an adapter marks a per-recipient pace `Fault.MESSAGE`."""

    def __init__(
        self, reason: str, *, code: str | None = None, retry_after: float | None = None, fault: Fault | None = None
    ) -> None:
        super().__init__(reason, code=code, fault=fault)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """Retrying cannot help; the message is failed with this reason. By default the message's fault;
    an adapter marks refused credentials or a broken account as the channel's."""

    default_fault: ClassVar[Fault] = Fault.MESSAGE


class WebhookRejected(ChannelError):
    """A callback that fails authentication (wrong signature or secret token)."""


class SetupRefused(ChannelError):
    """The provider refused to connect the channel; `field` names the setting at fault (for the form)."""

    def __init__(self, reason: str, *, field: str, code: str | None = None, fault: Fault | None = None) -> None:
        super().__init__(reason, code=code, fault=fault)
        self.field = field


class ChannelAdapter(Protocol):
    type: ClassVar[str]
    rules: ClassVar[ChannelRules]

    def verify_webhook(self, channel: Channel, request: WebhookRequest) -> None: ...

    def parse_webhook(self, channel: Channel, request: WebhookRequest) -> ParsedWebhook: ...

    def send(self, channel: Channel, message: OutboundMessage) -> SendResult: ...

    def public_config(self, channel: Channel) -> dict[str, Any]: ...

    def clean_config(
        self, config: dict[str, Any], secrets: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def owns_identity(self, channel: Channel, external_id: str) -> bool:
        """Whether a contact identity of this channel's type belongs to this very channel."""
        ...


@dataclass(frozen=True)
class FetchedMedia:
    data: bytes
    content_type: str
    name: str


@runtime_checkable
class ProviderSetup(Protocol):
    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        """Check the credentials and register `callback_url` with the provider; the config to merge
        into the channel's (names the provider gave the account). Raises `SetupRefused`."""
        ...

    def disconnect(self, channel: Channel) -> None:
        """Stop the provider's callbacks. Raises `ChannelError` (the caller decides if it matters)."""
        ...


@runtime_checkable
class MediaSource(Protocol):
    def fetch_media(self, channel: Channel, reference: dict[str, Any]) -> FetchedMedia:
        """The bytes of a file an inbound message refers to; `PermanentError` when it cannot be had
        (too large, gone), `TransientError` when trying later may help."""
        ...

    def follow_up(self, channel: Channel, call: dict[str, Any]) -> None: ...


@runtime_checkable
class CallbackAnswer(Protocol):
    """A provider that reads the body of our answer to its callbacks (Twilio reads TwiML)."""

    def callback_answer(self, request: WebhookRequest) -> tuple[str, str]:
        """The body and media type to answer a verified, stored callback with (status 200)."""
        ...


@runtime_checkable
class ChatMenu(Protocol):
    def clean_menu(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Validated menu items (`ValidationFailed` at `menu[i].field`)."""
        ...

    def push_menu(self, channel: Channel, items: list[dict[str, Any]]) -> str:
        """Send the menu to the provider; its answer, to show the manager. Raises `ChannelError`."""
        ...


@runtime_checkable
class OutboundCheck(Protocol):
    def check_outbound(
        self,
        channel: Channel,
        message_type: MessageType,
        text: str | None,
        attachments: list[dict[str, Any]],
        payload: dict[str, Any],
    ) -> None:
        """Refuse (`ValidationFailed` naming the provider's rule) what the provider would refuse, before
        anything is written or sent: file types and sizes, captions, buttons and lists."""
        ...


@runtime_checkable
class ConnectionCheck(Protocol):
    def check_connection(self, channel: Channel) -> dict[str, Any]:
        """What the provider says about the account (WhatsApp: the number's name, quality rating and
        messaging limit), for Settings; `ChannelError` with the provider's reason when it cannot."""
        ...


def channel_pace(rules: ChannelRules, channel: Channel) -> Pace | None:
    """The channel's own pace when its config sets one, else its adapter's."""
    configured = (channel.config or {}).get(PACE_SETTING)
    if isinstance(configured, int) and not isinstance(configured, bool) and configured > 0:
        return Pace(configured, 1.0)
    return rules.channel_pace


@dataclass(frozen=True)
class ProviderTemplate:
    """A message template as the provider lists it (`TemplateCatalogue.fetch_templates`)."""

    provider_template_id: str | None
    name: str
    language: str
    category: str
    status: str
    parameter_format: str  # POSITIONAL or NAMED
    components: list[dict[str, Any]]
    quality: str | None = None
    reason: str | None = None


@runtime_checkable
class TemplateCatalogue(Protocol):
    def fetch_templates(self, channel: Channel) -> list[ProviderTemplate]:
        """Every message template of the channel's account, all pages read. Raises `ChannelError`."""
        ...


def window_open(rules: ChannelRules, last_incoming_at: datetime | None, now: datetime) -> bool:
    """Whether a free-form message may be sent now; our own outgoing messages never extend it."""
    if rules.reply_window is None:
        return True
    return last_incoming_at is not None and now - last_incoming_at < rules.reply_window


def window_closes_at(rules: ChannelRules, last_incoming_at: datetime | None) -> datetime | None:
    """When the reply window closes (or closed); None when the channel has none or it never opened."""
    if rules.reply_window is None or last_incoming_at is None:
        return None
    return last_incoming_at + rules.reply_window
