"""Instagram: direct messages of a professional account (Business or Creator).

Wire format: ../shared/reference/channels.md §2 and §5 (developers.facebook.com, Instagram Platform).
Meta offers two ways in, chosen by the channel's `login` setting:

- `instagram` (Instagram API with Instagram Login, the default): the account's own token from
  graph.instagram.com. Config `ig_user_id` (filled on connect); secrets `access_token`,
  `app_secret`. Calls: `GET /me?fields=user_id,username`, `POST /me/subscribed_apps`,
  `POST /{ig_user_id}/messages`, all with `Authorization: Bearer <token>`.
- `facebook` (Messenger API for Instagram, Facebook Login): the Facebook Page linked to the account,
  on graph.facebook.com. Config `page_id` and `ig_user_id`; secrets `page_access_token`,
  `app_secret`. Calls: `GET /{page_id}?fields=id,name,instagram_business_account`,
  `POST /{page_id}/subscribed_apps`, `POST /{page_id}/messages`.

Either way the callbacks are `{"object": "instagram", "entry": [{"id": <ig_user_id>, "messaging":
[...]}]}`, verified as every Meta callback, and the events are Messenger's (channels/adapters/
messenger.py reads them): text, media (fetched into our files), story replies (`reply_to.story`),
story mentions (the story's file), reactions, postbacks (ice breakers), `is_unsupported` messages
kept as such, echoes of the account's own messages, `messaging_seen` receipts (`read.mid`), and
comments on the account's media (`changes[].field == "comments"`) as items to answer privately.

Rules: the 24-hour window, the HUMAN_AGENT tag up to 7 days after the customer's last message, one
private reply per comment within 7 days. The chat menu is the account's ice breakers (at most 4
questions), set with the Messenger Profile API (`platform: instagram`).
"""

import re
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from tertulia.channels.adapters import meta_graph
from tertulia.channels.adapters.messenger import (
    FAULTS,
    MAX_QUICK_REPLIES,
    QUICK_REPLY_PAYLOAD,
    QUICK_REPLY_TITLE,
    RETRYABLE_CODES,
    MetaMessagingAdapter,
    ParsedEvents,
    clean_menu_items,
    clean_secrets,
    comment_message,
)
from tertulia.channels.models import Channel
from tertulia.channels.protocol import (
    ChannelRules,
    InboundMessage,
    MessageType,
    ReplyChoices,
    SetupRefused,
    TransientError,
)
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.outgoing_http import provider_http

TYPE = "instagram"
INSTAGRAM_API = "https://graph.instagram.com"
FACEBOOK_API = "https://graph.facebook.com"
LOGINS = ("instagram", "facebook")
SUBSCRIBED_FIELDS = ("messages", "messaging_postbacks", "messaging_seen", "messaging_reactions", "comments")
PAGE_FIELDS = ("messages", "messaging_postbacks", "message_reads", "message_reactions", "feed")
MAX_TEXT = 1000
MAX_ICE_BREAKERS = 4
_DIGITS = re.compile(r"^[0-9]{5,25}$")


class InstagramAdapter(MetaMessagingAdapter):
    type: ClassVar[str] = TYPE
    webhook_object: ClassVar[str] = "instagram"
    provider: ClassVar[str] = "Instagram"
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"access_token", "page_access_token", "app_secret", "verify_token"}
    )
    profile_fields: ClassVar[str] = "name,username,profile_pic"
    rules: ClassVar[ChannelRules] = ChannelRules(
        reply_window=timedelta(hours=24),
        max_text_length=MAX_TEXT,
        delivery_receipts=True,
        quick_replies=True,
        # developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api/quick-replies
        reply_choices=ReplyChoices(
            provider="Instagram",
            max_buttons=MAX_QUICK_REPLIES,
            title_length=QUICK_REPLY_TITLE,
            id_length=QUICK_REPLY_PAYLOAD,
        ),
        message_tags=(("HUMAN_AGENT", timedelta(days=7)),),
        private_replies=timedelta(days=7),
        echoes=True,
    )

    # ----- where the account is ---------------------------------------------------------------

    @staticmethod
    def login(channel: Channel) -> str:
        return str((channel.config or {}).get("login") or "instagram")

    def account_id(self, channel: Channel) -> str:
        return str((channel.config or {}).get("ig_user_id") or "")

    def root(self, channel: Channel) -> str:
        default = FACEBOOK_API if self.login(channel) == "facebook" else INSTAGRAM_API
        return meta_graph.graph_root(channel, default)

    def token(self, channel: Channel) -> str:
        name = "page_access_token" if self.login(channel) == "facebook" else "access_token"
        return str((channel.secrets or {}).get(name) or "")

    def send_path(self, channel: Channel) -> str:
        if self.login(channel) == "facebook":
            return f"{(channel.config or {}).get('page_id')}/messages"
        return f"{self.account_id(channel) or 'me'}/messages"

    # ----- what Instagram adds to Messenger's events ------------------------------------------

    def inbound(self, channel: Channel, sender: str, message: dict[str, Any], at: datetime | None) -> InboundMessage:
        found = super().inbound(channel, sender, message, at)
        payload = dict(found.payload)
        reply = message.get("reply_to")
        story = reply.get("story") if isinstance(reply, dict) else None
        if isinstance(story, dict):
            payload["story_reply"] = {"id": story.get("id"), "url": story.get("url")}
        links = payload.pop("links", None) or []
        attachments = list(found.attachments)
        kind = found.type
        for link in links:
            if link.get("type") == "story_mention":
                # The story's own file (Meta's CDN keeps it a day): fetched as the customer's file.
                attachments.append({"provider_file": {"url": link["url"], "content_type": None, "name": "story"}})
                payload["story_mention"] = True
                payload.pop("unsupported", None)
                kind = MessageType.IMAGE
            else:
                payload.setdefault("links", []).append(link)
        return InboundMessage(
            sender_id=found.sender_id,
            provider_message_id=found.provider_message_id,
            type=kind,
            text=found.text,
            attachments=attachments,
            payload=payload,
            sent_at=found.sent_at,
        )

    def change(self, channel: Channel, change: dict[str, Any], parsed: ParsedEvents, entry: dict[str, Any]) -> None:
        """A comment on the account's media (`comments`): an item to answer privately."""
        value = change.get("value")
        if change.get("field") != "comments" or not isinstance(value, dict) or not value.get("id"):
            return
        found = value.get("from")
        author: dict[str, Any] = found if isinstance(found, dict) else {}
        author_id = str(author.get("id") or "")
        if not author_id or author_id == self.account_id(channel):
            return  # the account answering on its own media
        when = entry.get("time")
        created_at = (
            datetime.fromtimestamp(when if when < 10**11 else when / 1000, UTC) if isinstance(when, int) else None
        )
        given = value.get("media")
        media: dict[str, Any] = given if isinstance(given, dict) else {}
        parsed.messages.append(
            comment_message(
                str(value["id"]),
                author_id,
                str(author.get("username") or "") or None,
                value.get("text"),
                created_at,
                {"media_id": media.get("id"), "media_product_type": media.get("media_product_type")},
            )
        )

    # ----- settings -----------------------------------------------------------------------------

    def public_config(self, channel: Channel) -> dict[str, Any]:
        config = channel.config or {}
        return {"name": channel.name, "ig_user_id": config.get("ig_user_id"), "username": config.get("username")}

    def clean_config(self, config: dict[str, Any], secrets_: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        login = str(config.get("login") or "instagram").strip()
        if login not in LOGINS:
            raise ValidationFailed.field(
                "config.login", "must be instagram (Instagram Login) or facebook (Facebook Login)"
            )
        default = FACEBOOK_API if login == "facebook" else INSTAGRAM_API
        cleaned: dict[str, Any] = {"login": login, **meta_graph.clean_graph_location(config, default)}
        account = str(config.get("ig_user_id") or "").strip()
        if account and not _DIGITS.match(account):
            raise ValidationFailed.field("config.ig_user_id", "must be the account's numeric Instagram id")
        if account:
            cleaned["ig_user_id"] = account
        if login == "facebook":
            page_id = str(config.get("page_id") or "").strip()
            if not _DIGITS.match(page_id):
                raise ValidationFailed.field(
                    "config.page_id", "must be the numeric id of the Page linked to the account"
                )
            cleaned["page_id"] = page_id
        for name in ("username", "account_name"):
            if config.get(name):
                cleaned[name] = str(config[name])[:200]
        if config.get("menu"):
            cleaned["menu"] = self.clean_menu(config["menu"])
        token = "page_access_token" if login == "facebook" else "access_token"
        kept = clean_secrets(secrets_, (token, "app_secret"))
        return cleaned, kept

    # ----- connecting ---------------------------------------------------------------------------

    def connect(self, channel: Channel, callback_url: str) -> dict[str, Any]:
        token_field = "secrets.page_access_token" if self.login(channel) == "facebook" else "secrets.access_token"
        if self.login(channel) == "facebook":
            page_id = str((channel.config or {}).get("page_id"))
            page = self._call(
                channel, "GET", page_id, params={"fields": "id,name,instagram_business_account"}, field=token_field
            )
            linked = page.get("instagram_business_account")
            account = str(linked.get("id")) if isinstance(linked, dict) and linked.get("id") else ""
            if not account:
                raise SetupRefused("this Page has no Instagram professional account linked", field="config.page_id")
            self._call(
                channel,
                "POST",
                f"{page_id}/subscribed_apps",
                params={"subscribed_fields": ",".join(PAGE_FIELDS)},
                field="callback_url",
            )
            name = str(page.get("name") or "")
            username = None
        else:
            me = self._call(channel, "GET", "me", params={"fields": "user_id,username"}, field=token_field)
            account = str(me.get("user_id") or me.get("id") or "")
            self._call(
                channel,
                "POST",
                "me/subscribed_apps",
                params={"subscribed_fields": ",".join(SUBSCRIBED_FIELDS)},
                field="callback_url",
            )
            username = me.get("username")
            name = f"@{username}" if username else ""
        wanted = self.account_id(channel)
        if wanted and account != wanted:
            raise SetupRefused(
                "this token belongs to another Instagram account", field="config.ig_user_id", code="token"
            )
        return {"ig_user_id": account, "username": username, "account_name": name or None}

    def disconnect(self, channel: Channel) -> None:
        node = str((channel.config or {}).get("page_id")) if self.login(channel) == "facebook" else "me"
        try:
            response = provider_http().delete(
                f"{self.root(channel)}/{node}/subscribed_apps", headers=self._auth(channel), timeout=meta_graph.TIMEOUT
            )
        except httpx.TransportError as exc:
            raise TransientError(f"Instagram could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise meta_graph.graph_error(response, provider=self.provider, retryable=RETRYABLE_CODES, faults=FAULTS)

    # ----- chat menu: ice breakers ----------------------------------------------------------------

    def clean_menu(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return clean_menu_items(items, limit=MAX_ICE_BREAKERS, title_length=80, links=False, label="question")

    def push_menu(self, channel: Channel, items: list[dict[str, Any]]) -> str:
        url = f"{self.root(channel)}/me/messenger_profile"
        try:
            if items:
                actions = [{"question": item["question"], "payload": item["payload"]} for item in items]
                body = {"platform": "instagram", "ice_breakers": [{"call_to_actions": actions, "locale": "default"}]}
                response = provider_http().post(url, json=body, headers=self._auth(channel), timeout=meta_graph.TIMEOUT)
            else:
                response = provider_http().request(
                    "DELETE",
                    url,
                    json={"platform": "instagram", "fields": ["ice_breakers"]},
                    headers=self._auth(channel),
                    timeout=meta_graph.TIMEOUT,
                )
        except httpx.TransportError as exc:
            raise TransientError(f"Instagram could not be reached ({type(exc).__name__})") from exc
        if not response.is_success:
            raise meta_graph.graph_error(response, provider=self.provider, retryable=RETRYABLE_CODES, faults=FAULTS)
        return response.text
