"""What a broadcast sends and to whom: its content rendered for a contact, and the audience
snapshot (INSERT ... SELECT from the segment compiler, then one UPDATE per exclusion reason) with
its counts. Shared by the service (dry run, preview) and the sender (start)."""

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, case, func, or_, select, true
from sqlalchemy.orm import Session

from tertulia.broadcasts import repository as repo
from tertulia.broadcasts.models import (
    Audience,
    Broadcast,
    ChannelMode,
    ExclusionReason,
    FailureReason,
    RecipientState,
)
from tertulia.channels.message_templates import check_template_message
from tertulia.channels.models import Channel
from tertulia.channels.protocol import MessageType
from tertulia.channels.registry import get_adapter
from tertulia.channels.service import list_channels
from tertulia.contacts.models import Contact
from tertulia.conversations import service as conversations_service
from tertulia.conversations import variables
from tertulia.kit.errors import ValidationFailed
from tertulia.segments import service as segments_service
from tertulia.segments.compiler import compile_filter, custom_text
from tertulia.segments.models import Segment
from tertulia.users.models import User
from tertulia.users.permissions import Actor
from tertulia.workspaces.service import get_workspace

# Channels a broadcast cannot go through (respond.io's list: web chat visitors are not reachable when
# away, Instagram allows no automated message outside the window).
UNSUPPORTED_TYPES = frozenset({"webchat", "instagram"})

# Standard contact fields a variable may name, as the contact's columns.
_CONTACT_COLUMNS = {
    "first_name": Contact.first_name,
    "last_name": Contact.last_name,
    "email": Contact.email,
    "phone": Contact.phone,
    "country": Contact.country,
    "language": Contact.language,
}
# WhatsApp's messaging limit tiers: unique customers a number may start conversations with in 24 h.
TIERS = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
}

# ----- content for a contact --------------------------------------------------------------------


# Meta's rules on a template's text parameters; a message that breaks one is refused (error 132018,
# "There was an issue with the parameters in your template"), so it is checked here instead.
# - A TEXT header's value: at most 60 characters (Meta's template components reference, "Text
#   header": developers.facebook.com/documentation/business-messaging/whatsapp/templates/components).
# - A body parameter: at most 1024 characters when the message has components besides the body,
#   32768 when the body is its only one (the Cloud API's template parameter object, as client
#   libraries that follow it check it: whatsapp-api-js's BodyParameter). A template's own body is at
#   most 1024 characters, so one limit, the lower, is held for every body parameter.
# - Any text parameter: no new-line or tab characters and no more than 4 consecutive spaces (the
#   error's details: "Param text cannot have new-line/tab characters or more than 4 consecutive
#   spaces"). A line break is any character str.splitlines breaks at.
MAX_HEADER_TEXT = 60
MAX_BODY_PARAMETER = 1024
PARAMETER_LIMITS = {"header": MAX_HEADER_TEXT, "body": MAX_BODY_PARAMETER}
HEADER_TOO_LONG = ExclusionReason.HEADER_TOO_LONG.value
BODY_PARAMETER_TOO_LONG = ExclusionReason.BODY_PARAMETER_TOO_LONG.value
PARAMETER_SPACING = ExclusionReason.PARAMETER_SPACING.value
TOO_LONG = {"header": HEADER_TOO_LONG, "body": BODY_PARAMETER_TOO_LONG}
PARAMETER_REFUSALS = frozenset({HEADER_TOO_LONG, BODY_PARAMETER_TOO_LONG, PARAMETER_SPACING})
LINE_BREAKS = "\t\n\v\f\r\x1c\x1d\x1e\x85\u2028\u2029"  # a tab and what str.splitlines breaks at
MAX_SPACES = 4
_BAD_SPACING = re.compile(f"[{re.escape(LINE_BREAKS)}]| {{{MAX_SPACES + 1},}}")


# Each refusal as the API says it (the editor's words are its own, translated).
REFUSAL_RULES = {
    HEADER_TOO_LONG: f"a header's text is at most {MAX_HEADER_TEXT} characters",
    BODY_PARAMETER_TOO_LONG: f"a body parameter is at most {MAX_BODY_PARAMETER} characters",
    PARAMETER_SPACING: f"a parameter cannot have line breaks, tabs or more than {MAX_SPACES} spaces in a row",
}


def parameter_refusal(component: str, text: str) -> str | None:
    """Why Meta would refuse `text` as a text parameter of a template's `component` (header or
    body; others are not checked): HEADER_TOO_LONG, BODY_PARAMETER_TOO_LONG or PARAMETER_SPACING,
    or None when it takes it. The one definition of these rules: the content's check, the editor,
    the snapshot's exclusions and the renderer all ask it."""
    limit = PARAMETER_LIMITS.get(component)
    if limit is None:
        return None
    if len(text) > limit:
        return TOO_LONG[component]
    if _BAD_SPACING.search(text):
        return PARAMETER_SPACING
    return None


def known_value(text: str) -> str:
    """A parameter's value as far as it is known before sending: each variable as its fallback
    (empty without one), since a contact's own value is only known when the message is rendered."""
    return variables.substitute_names(text, lambda _name: None)


def known_refusal(component: str, text: str) -> str | None:
    """parameter_refusal of the value as the editor and the API can know it (known_value)."""
    return parameter_refusal(component, known_value(text))


def text_parameters(template: Any) -> Iterator[tuple[int, int, str, dict[str, Any]]]:
    """Each text parameter of a template's components, with its place (component index, parameter
    position) and its component's type in lower case; the one walk over them."""
    if not isinstance(template, dict):
        return
    for index, component in enumerate(template.get("components") or []):
        if not isinstance(component, dict):
            continue
        kind = str(component.get("type", "")).lower()
        for position, parameter in enumerate(component.get("parameters") or []):
            if (
                isinstance(parameter, dict)
                and parameter.get("type", "text") == "text"
                and isinstance(parameter.get("text"), str)
            ):
                yield index, position, kind, parameter


def content_for(item: Broadcast, channel_type: str) -> dict[str, Any] | None:
    content = item.content or {}
    spec = content.get(channel_type, content.get("default"))
    return spec if isinstance(spec, dict) else None


@dataclass
class Renderer:
    """Renders a broadcast's content for its contacts; the workspace and the author are read once."""

    session: Session
    item: Broadcast
    custom_keys: list[str]
    user: dict[str, Any]
    workspace: dict[str, Any]
    attachments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def of(cls, session: Session, item: Broadcast) -> "Renderer":
        workspace = get_workspace(session, item.workspace_id)
        user = session.get(User, item.created_by_user_id) if item.created_by_user_id else None
        return cls(
            session,
            item,
            conversations_service.custom_keys(session, item.workspace_id),
            {
                "first_name": user.first_name if user else None,
                "last_name": user.last_name if user else None,
                "full_name": user.full_name if user else None,
                "email": user.email if user else None,
            },
            {"name": workspace.name},
        )

    def context(self, contact: Contact) -> variables.VariableContext:
        return variables.VariableContext(
            contact={
                "first_name": contact.first_name,
                "last_name": contact.last_name,
                "full_name": contact.full_name,
                "email": contact.email,
                "phone": contact.phone,
                "country": contact.country,
                "language": contact.language,
            },
            custom=dict(contact.custom or {}),
            user=self.user,
            workspace=self.workspace,
        )

    def render(self, channel: Channel, contact: Contact) -> "Rendered":
        spec = content_for(self.item, channel.type)
        if spec is None:
            raise ValidationFailed.field(f"content.{channel.type}", "no content for this kind of channel")
        context = self.context(contact)
        where = f"content.{channel.type}"
        file_ids = list(spec.get("file_ids") or [])
        key = file_ids[0] if file_ids else 0
        if key not in self.attachments:
            self.attachments[key] = conversations_service.check_files(self.session, self.item.workspace_id, file_ids)
        attachments = self.attachments[key]
        message_type = conversations_service.message_type_of(attachments)
        payload: dict[str, Any] = {"broadcast_id": self.item.id}
        template = spec.get("template")
        if isinstance(template, dict):
            components = [
                {**c, "parameters": list(c.get("parameters") or [])} if c.get("parameters") else c
                for c in template.get("components") or []
            ]
            for index, position, kind, parameter in text_parameters(template):
                text = variables.render(parameter["text"], context, self.custom_keys, f"{where}.template")
                refusal = parameter_refusal(kind, text)
                if refusal is not None:
                    # Meta would refuse the message: this contact's values break the rule.
                    path = f"{where}.template.components[{index}].parameters[{position}]"
                    rule = f"{REFUSAL_RULES[refusal]}: {len(text)} characters with this contact's values"
                    raise ValidationFailed(f"{path}: {rule}", code=refusal, details={path: rule})
                components[index]["parameters"][position] = {**parameter, "text": text}  # typed when checked
            checked, text = check_template_message(self.session, channel, {**template, "components": components})
            payload["template"] = checked
            return Rendered(MessageType.TEMPLATE, text, [], payload)
        raw = spec.get("text")
        body = variables.render(raw, context, self.custom_keys, f"{where}.text") if isinstance(raw, str) else None
        for key_name in ("quick_reply", "buttons"):
            if spec.get(key_name):
                payload[key_name] = spec[key_name]
        if spec.get("message_tag"):
            payload["message_tag"] = spec["message_tag"]
        return Rendered(message_type, body or None, attachments, payload)


@dataclass
class Rendered:
    type: MessageType
    text: str | None
    attachments: list[dict[str, Any]]
    payload: dict[str, Any]


def check_rendered(channel: Channel, contact: Contact, rendered: Rendered) -> None:
    """The channel's own rules on what it can carry (buttons, reply choices, files, lengths)."""
    rules = get_adapter(channel.type).rules
    if rendered.type not in rules.message_types:
        raise ValidationFailed.field(
            f"content.{channel.type}", f"{channel.type} cannot send {rendered.type.value} messages"
        )
    if rendered.type == MessageType.TEXT and not rendered.text:
        raise ValidationFailed.field(f"content.{channel.type}.text", "renders empty")
    if rendered.text and rendered.type != MessageType.TEMPLATE and len(rendered.text) > rules.max_text_length:
        raise ValidationFailed.field(
            f"content.{channel.type}.text", f"must be at most {rules.max_text_length} characters"
        )
    plan = conversations_service.OutboundPlan(contact, channel, "", rendered.text, rendered.type, rendered.attachments)
    conversations_service.check_content(channel, plan, rendered.payload)
    tag = rendered.payload.get("message_tag")
    if tag is not None:
        allowed = dict(rules.message_tags)
        if tag not in allowed or tag == conversations_service.HUMAN_AGENT_TAG:
            raise ValidationFailed.field(
                f"content.{channel.type}.message_tag",
                f"must be one of: {', '.join(t for t in allowed if t != conversations_service.HUMAN_AGENT_TAG)}",
            )


# ----- the audience -----------------------------------------------------------------------------


def _filter_clause(session: Session, actor: Actor, segment: Segment) -> ColumnElement[bool]:
    checked = segments_service.checked_segment_filter(session, actor, segment)
    return compile_filter(checked, segments_service.eval_context(session, actor))


def _system(workspace_id: int) -> Actor:
    return Actor(workspace_id=workspace_id, kind="system")


class AudienceGone(Exception):
    def __init__(self, reason: FailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _audience_clauses(session: Session, item: Broadcast) -> tuple[ColumnElement[bool], ColumnElement[bool] | None]:
    actor = _system(item.workspace_id)
    if item.audience == Audience.ALL:
        audience: ColumnElement[bool] = Contact.workspace_id == item.workspace_id
    elif item.audience == Audience.RESEND:
        if item.resend_of_id is None:
            raise AudienceGone(FailureReason.SEGMENT_DELETED, "the broadcast this resends was deleted")
        audience = repo.failed_contacts_of(item.resend_of_id)
    else:
        segment = repo_segment(session, item.workspace_id, item.segment_id)
        if segment is None:
            raise AudienceGone(FailureReason.SEGMENT_DELETED, "the audience's segment was deleted")
        audience = _filter_clause(session, actor, segment)
    excluded: ColumnElement[bool] | None = None
    if item.exclude_segment_chosen:
        segment = repo_segment(session, item.workspace_id, item.exclude_segment_id)
        if segment is None:
            raise AudienceGone(FailureReason.SEGMENT_DELETED, "the exclusion segment was deleted")
        excluded = _filter_clause(session, actor, segment)
    return audience, excluded


def repo_segment(session: Session, workspace_id: int, segment_id: int | None) -> Segment | None:
    if segment_id is None:
        return None
    return session.scalar(select(Segment).where(Segment.workspace_id == workspace_id, Segment.id == segment_id))


def broadcast_channels(session: Session, item: Broadcast) -> list[Channel]:
    """The channels this broadcast may go through: its channel, or every active channel that can
    broadcast (last interacted)."""
    if item.channel_mode == ChannelMode.SPECIFIC:
        channel = (
            session.scalar(
                select(Channel).where(Channel.workspace_id == item.workspace_id, Channel.id == item.channel_id)
            )
            if item.channel_id is not None
            else None
        )
        if channel is None or not channel.active:
            raise AudienceGone(FailureReason.CHANNEL_DISCONNECTED, "the broadcast's channel is disconnected")
        return [channel]
    return [c for c in list_channels(session, item.workspace_id) if c.active and c.type not in UNSUPPORTED_TYPES]


def _empty_clause(spec: dict[str, Any], custom_keys: Sequence[str]) -> ColumnElement[bool] | None:
    """True for a contact lacking a variable the content uses without a fallback."""
    texts: list[str] = []
    if isinstance(spec.get("text"), str):
        texts.append(spec["text"])
    for component in (spec.get("template") or {}).get("components") or []:
        for parameter in component.get("parameters") or []:
            if isinstance(parameter.get("text"), str):
                texts.append(parameter["text"])
    clauses: list[ColumnElement[bool]] = []
    for text in texts:
        for variable in variables.parse(text, custom_keys):
            if variable.fallback:
                continue
            parts = variable.name.split(".")
            if parts[0] != "contact":
                continue
            if len(parts) == 3:
                value: Any = custom_text(parts[2])
            elif parts[1] == "full_name":
                clauses.append(
                    (Contact.first_name.is_(None) | (Contact.first_name == ""))
                    & (Contact.last_name.is_(None) | (Contact.last_name == ""))
                )
                continue
            else:
                value = _CONTACT_COLUMNS[parts[1]]
            clauses.append(value.is_(None) | (value.cast(String) == ""))
    return or_(*clauses) if clauses else None


def _value_bound(variable: variables.Variable) -> tuple[list[ColumnElement[Any]], ColumnElement[Any]]:
    """A contact variable's value in SQL: the texts it is made of, and how much longer than its
    fallback it makes a parameter at most (0 when the contact has no value: the fallback is used).
    For a custom value the bound has a margin: one that is not a string (a number, a list) is
    written differently by each database and by Python's str()."""
    parts = variable.name.split(".")
    texts: list[ColumnElement[Any]]
    length: ColumnElement[Any]
    if len(parts) == 3:
        texts = [custom_text(parts[2])]
        length = func.coalesce(func.length(texts[0]), 0)
        bound = length * 2 + 8
    elif parts[1] == "full_name":
        texts = [Contact.first_name.expression, Contact.last_name.expression]
        length = func.coalesce(func.length(texts[0]), 0) + func.coalesce(func.length(texts[1]), 0)
        bound = length + 1
    else:
        texts = [_CONTACT_COLUMNS[parts[1]].expression]
        length = bound = func.coalesce(func.length(texts[0]), 0)
    return texts, case((length == 0, 0), else_=bound - len(variable.fallback or ""))


def _odd_spacing(value: ColumnElement[Any]) -> ColumnElement[bool]:
    """True for a value that could make a run of spaces or a line break in a parameter: a tab or a
    line break, two spaces in a row, or a space at either end (a value without these, between
    whatever the text has around it, can only lengthen a run of spaces by none)."""
    text = value.cast(String)
    odd = [text.contains(ch) for ch in LINE_BREAKS]
    return or_(*odd, text.contains("  "), text.startswith(" "), text.endswith(" "))


def _refusal_candidates(renderer: "Renderer", spec: dict[str, Any]) -> ColumnElement[bool] | None:
    """True for at least every contact whose own values could make a text parameter of the
    template one Meta refuses (parameter_refusal), in SQL, so that only those few are rendered: with
    each contact variable at its fallback (and the author's and workspace's variables at their
    values) a parameter is `base`; a contact's own values replace fallbacks, so they lengthen it by
    at most their length less the fallback's (_value_bound), and they add a line break or a longer
    run of spaces only when odd (_odd_spacing). A `base` already refused makes every contact a
    candidate."""
    blank = renderer.context(Contact(custom={}))
    clauses: list[ColumnElement[bool]] = []
    for _index, _position, kind, parameter in text_parameters(spec.get("template")):
        if kind not in PARAMETER_LIMITS:
            continue
        base = variables.render(parameter["text"], blank, renderer.custom_keys)
        if parameter_refusal(kind, base) is not None:
            return true()
        found = variables.parse(parameter["text"], renderer.custom_keys)
        bounds = [_value_bound(v) for v in found if v.name.startswith("contact.")]
        if not bounds:
            continue
        longer: ColumnElement[Any] = bounds[0][1]
        for _texts, bound in bounds[1:]:
            longer = longer + bound
        clauses.append(longer > PARAMETER_LIMITS[kind] - len(base))
        clauses.extend(_odd_spacing(text) for texts, _bound in bounds for text in texts)
    return or_(*clauses) if clauses else None


# Contacts rendered per query when the snapshot checks the candidates of a refused parameter.
REFUSAL_BATCH = 500


def exclude_refused_parameters(
    session: Session, item: Broadcast, channel: Channel, renderer: "Renderer", spec: dict[str, Any]
) -> None:
    """Exclude the waiting recipients on `channel` whose own values make the template's text
    parameters ones Meta refuses, each with the refusal as its reason: the candidates are found in
    SQL (_refusal_candidates), then rendered by the very renderer that sends, whose refusal is the
    reason, so that the dry run counts exactly whom the send would skip."""
    candidates = _refusal_candidates(renderer, spec)
    if candidates is None:
        return
    contact_ids = repo.waiting_contacts_where(session, item.id, channel.id, candidates)
    refused: dict[str, list[int]] = {}
    for start in range(0, len(contact_ids), REFUSAL_BATCH):
        batch = contact_ids[start : start + REFUSAL_BATCH]
        for contact in session.scalars(select(Contact).where(Contact.id.in_(batch))):
            try:
                renderer.render(channel, contact)
            except ValidationFailed as exc:
                if exc.code in PARAMETER_REFUSALS:
                    refused.setdefault(exc.code, []).append(contact.id)
    for reason, ids in refused.items():
        repo.exclude_contacts(session, item.id, channel.id, ids, ExclusionReason(reason))


@dataclass
class LimitCheck:
    channel_id: int
    limit: int
    used: int
    room: int
    over: int


def snapshot(session: Session, item: Broadcast, now: datetime) -> list[LimitCheck]:
    """Write the audience as recipient rows and apply every exclusion; the messaging-limit checks
    of the WhatsApp channels involved."""
    audience, excluded = _audience_clauses(session, item)
    channels = broadcast_channels(session, item)
    if item.channel_mode == ChannelMode.LAST_INTERACTED:
        # Only the channels the broadcast has content for: a contact whose last channel has none
        # is reached on the last one that has (or excluded, no_identity).
        channels = [c for c in channels if content_for(item, c.type) is not None]
    by_id = {c.id: c for c in channels}
    specific = channels[0].id if item.channel_mode == ChannelMode.SPECIFIC else None
    with segments_service.filter_deadline(session):
        repo.insert_audience(session, item, audience, excluded, now, channel_id=specific)
    repo.exclude_blocked(session, item)
    repo.exclude_opted_out(session, item)
    if specific is None:
        repo.assign_last_interacted(session, item.id, list(by_id))
    repo.refresh_statistics(session)
    repo.exclude_without_identity(session, item, channels)
    used_channels = [by_id[c] for c in repo.waiting_channels(session, item.id) if c in by_id]
    keys = conversations_service.custom_keys(session, item.workspace_id)
    renderer: Renderer | None = None
    limits: list[LimitCheck] = []
    for channel in used_channels:
        rules = get_adapter(channel.type).rules
        spec = content_for(item, channel.type) or {}
        if rules.keyword_consent:
            repo.exclude_sms_opted_out(session, item, channel)
        if rules.reply_window is not None:
            tag = spec.get("message_tag")
            horizon = dict(rules.message_tags).get(tag) if tag else rules.reply_window
            if spec.get("template"):
                repo.mark_needs_template(session, item.id, channel.id, now - rules.reply_window)
            elif tag is None or horizon is not None:
                repo.exclude_window_closed(session, item, channel.id, now - (horizon or rules.reply_window))
        empty = _empty_clause(spec, keys)
        if empty is not None:
            repo.exclude_empty_variables(session, item, [channel.id], empty)
        if spec.get("template"):
            renderer = renderer or Renderer.of(session, item)
            exclude_refused_parameters(session, item, channel, renderer, spec)
        limit = TIERS.get(channel.messaging_limit or "")
        if channel.type == "whatsapp" and limit is not None:
            used = repo.business_initiated_contacts(session, channel.id, now - timedelta(hours=24))
            room = max(0, limit - used)
            wanted = sum(
                n
                for state, _reason, channel_id, needs, n in repo.state_counts(session, item.id)
                if state == RecipientState.WAITING and channel_id == channel.id and needs
            )
            over = max(0, wanted - room)
            if over:
                repo.exclude_past_limit(session, item, channel.id, room)
            limits.append(LimitCheck(channel.id, limit, used, room, over))
    return limits


@dataclass
class Counts:
    audience: int = 0
    recipients: int = 0
    excluded: int = 0
    skipped: int = 0
    by_channel: dict[int, int] = field(default_factory=dict)
    templates_by_channel: dict[int, int] = field(default_factory=dict)
    excluded_by_reason: dict[str, int] = field(default_factory=dict)


def counts_of(session: Session, broadcast_id: int) -> Counts:
    counts = Counts()
    for state, reason, channel_id, needs_template, n in repo.state_counts(session, broadcast_id):
        counts.audience += n
        if state == RecipientState.EXCLUDED:
            counts.excluded += n
            key = reason or "unknown"
            counts.excluded_by_reason[key] = counts.excluded_by_reason.get(key, 0) + n
            continue
        if state == RecipientState.SKIPPED:
            counts.skipped += n
            continue
        counts.recipients += n
        if channel_id is not None:
            counts.by_channel[channel_id] = counts.by_channel.get(channel_id, 0) + n
            if needs_template:
                counts.templates_by_channel[channel_id] = counts.templates_by_channel.get(channel_id, 0) + n
    return counts
