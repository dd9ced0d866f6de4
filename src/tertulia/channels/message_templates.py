"""A channel's message templates (WhatsApp): kept in step with the provider, and the rules a template
message must follow before it is written.

Where they come from: `sync_templates` reads every template of the channel's business account
(`TemplateCatalogue.fetch_templates`, outside any transaction) and makes the table say the same in
one transaction (new ones added, changed ones updated, ones the provider no longer lists removed).
It runs as a queued task (channels/tasks.py) when a channel is connected, when a manager asks
(Settings > Channels > Templates) and periodically. Between syncs the provider's webhooks move a
template's status, category or quality (`do_apply_template_changes`) and the number's quality and
messaging limit (`do_apply_quality_changes`); the callback task calls them.

What a template message must be (`check_template_message`): a template this channel has, in that
language, APPROVED, with exactly the parameters its header and body ask for: as many as there are
`{{1}}`, `{{2}}`... for a POSITIONAL template, one per `{{name}}` (each `parameter_name`) for a NAMED
one, none empty; a header that is an image, a video or a document takes that file by its https link
(or an uploaded media id); a LOCATION header takes a place: a latitude in [-90, 90] and a longitude
in [-180, 180] (numbers or decimal strings, sent as decimal strings, the way Meta's location
templates page writes them: developers.facebook.com/documentation/business-messaging/whatsapp/
templates/utility-templates/location-templates), and optionally its name and address. Each
refusal is a 422 whose code names the rule.
"""

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel, MessageTemplate
from tertulia.channels.protocol import ChannelError, ProviderTemplate, QualityChange, TemplateCatalogue, TemplateChange
from tertulia.channels.registry import get_adapter
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.errors import ValidationFailed

log = structlog.get_logger("tertulia.channels")

APPROVED = "APPROVED"
MAX_SYNC_ERROR = 1000
# Header formats that carry a file or a place rather than text: one parameter of that kind.
MEDIA_HEADERS = {"IMAGE": "image", "VIDEO": "video", "DOCUMENT": "document", "LOCATION": "location"}
# Those whose parameter is a file, given by its URL (`link`) or an uploaded media's `id`.
FILE_KINDS = ("image", "video", "document")
MAX_LINK = 2000
# A place's name and address: Meta documents no limit; longer than this is a mistake, not a place.
MAX_PLACE_TEXT = 500
PLACE_KEYS = ("latitude", "longitude", "name", "address")
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$")
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def is_https_url(value: Any) -> bool:
    """Whether `value` is an absolute https URL with a host and no spaces: what Meta fetches a
    header's file from."""
    if not isinstance(value, str) or not value or len(value) > MAX_LINK or value != value.strip():
        return False
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme.lower() == "https" and bool(parts.hostname)


class PlaceRefused(ValueError):
    """A header's place that Meta would not take: `field` is the key at fault (`latitude`, ...,
    or "" for the place as a whole), `rule` what it must be (`latitude`, `longitude`, `text`,
    `unknown`, `shape`), for each sender to say it in its own words."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field or 'location'}: {rule}")
        self.field = field
        self.rule = rule


def coordinate(value: Any, limit: int) -> str | None:
    """A latitude (limit 90) or longitude (limit 180) as the decimal string Meta is sent, or None
    when it is not a finite number in [-limit, limit]: a number or a decimal string (no exponent,
    no NaN, no infinity, no thousands separator)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40 or not _DECIMAL.fullmatch(text):
            return None
        number = Decimal(text)
    elif isinstance(value, float):
        if not math.isfinite(value):
            return None
        number = Decimal(repr(value))
    else:
        if abs(value) > limit:  # before a huge integer becomes a Decimal
            return None
        number = Decimal(value)
    if abs(number) > limit:
        return None
    return format(number, "f")


def place(value: Any) -> dict[str, str]:
    """A LOCATION header's place in Meta's form (`latitude`, `longitude` as decimal strings, `name`
    and `address` when given), or PlaceRefused naming what is wrong."""
    if not isinstance(value, dict):
        raise PlaceRefused("", "shape")
    unknown = [key for key in value if key not in PLACE_KEYS]
    if unknown:
        raise PlaceRefused(str(unknown[0]), "unknown")
    found: dict[str, str] = {}
    for key, limit in (("latitude", 90), ("longitude", 180)):
        written = coordinate(value.get(key), limit)
        if written is None:
            raise PlaceRefused(key, key)
        found[key] = written
    for key in ("name", "address"):
        text = value.get(key)
        if text is None:
            continue
        if not isinstance(text, str) or len(text) > MAX_PLACE_TEXT or any(ord(ch) < 32 and ch != "\n" for ch in text):
            raise PlaceRefused(key, "text")
        if text.strip():
            found[key] = text.strip()
    return found


def language_key(code: str) -> str:
    """Meta's list says `en_US`, its webhooks `en-US`: one spelling to compare them."""
    return code.replace("-", "_").strip().lower()


# ----- reading -------------------------------------------------------------------------------------


def templates_of(session: Session, channel: Channel, *, approved_only: bool = False) -> list[MessageTemplate]:
    query = select(MessageTemplate).where(
        MessageTemplate.workspace_id == channel.workspace_id, MessageTemplate.channel_id == channel.id
    )
    if approved_only:
        query = query.where(MessageTemplate.status == APPROVED)
    return list(session.scalars(query.order_by(MessageTemplate.name, MessageTemplate.language)))


def find_template(session: Session, channel: Channel, name: str, language: str) -> MessageTemplate | None:
    wanted = language_key(language)
    for template in session.scalars(
        select(MessageTemplate).where(MessageTemplate.channel_id == channel.id, MessageTemplate.name == name)
    ):
        if language_key(template.language) == wanted:
            return template
    return None


@dataclass(frozen=True)
class Slot:
    """A parameter a component asks for: its component (`header`, `body`), its key (`1`, `2`, or a
    name) and, for a media header, the kind of parameter (`image`, ...; else `text`)."""

    component: str
    key: str
    kind: str = "text"


def component_text(template: MessageTemplate, kind: str) -> str | None:
    for component in template.components:
        if str(component.get("type", "")).upper() == kind.upper():
            text = component.get("text")
            return str(text) if text is not None else None
    return None


def slots(template: MessageTemplate) -> list[Slot]:
    """Every parameter the template's header and body ask for, in order (a name asked twice once)."""
    found: list[Slot] = []
    for component in template.components:
        kind = str(component.get("type", "")).upper()
        if kind not in ("HEADER", "BODY"):
            continue
        media = MEDIA_HEADERS.get(str(component.get("format", "")).upper()) if kind == "HEADER" else None
        if media is not None:
            found.append(Slot(kind.lower(), "1", media))
            continue
        keys = dict.fromkeys(_PLACEHOLDER.findall(str(component.get("text") or "")))
        found.extend(Slot(kind.lower(), key) for key in keys)
    return found


def file_header(template: MessageTemplate | None) -> Slot | None:
    """The parameter of a header that is a file (an image, a video or a document), given by its link
    or media id; None for a header of text, a place, or none."""
    if template is None:
        return None
    return next((s for s in slots(template) if s.component == "header" and s.kind in FILE_KINDS), None)


def as_dict(template: MessageTemplate) -> dict[str, Any]:
    """The API's and the composer's shape: what to show and what to fill in."""
    return {
        "id": template.id,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "status": template.status,
        "reason": template.reason,
        "quality": template.quality,
        "parameter_format": template.parameter_format,
        "header": component_text(template, "HEADER"),
        "body": component_text(template, "BODY"),
        "footer": component_text(template, "FOOTER"),
        "parameters": [{"component": s.component, "key": s.key, "kind": s.kind} for s in slots(template)],
        "components": template.components,
    }


# ----- keeping them in step with the provider ---------------------------------------------------


def sync_templates(db: Database, channel_id: int) -> int | None:
    """Read the channel's templates from its provider and store them; how many it has, or None when
    the provider could not be asked (the reason is kept on the channel for Settings to show)."""
    with db.transaction(write=False) as session:
        channel = session.get(Channel, channel_id)
        if channel is None or not channel.active:
            return None
        adapter = get_adapter(channel.type)
        if not isinstance(adapter, TemplateCatalogue):
            return None
        session.expunge(channel)
    try:
        listed = adapter.fetch_templates(channel)
    except ChannelError as exc:
        log.warning("templates_sync_failed", channel_id=channel_id, reason=exc.reason)
        with db.transaction() as session:
            stored = session.get(Channel, channel_id)
            if stored is not None:
                stored.templates_sync_error = exc.reason[:MAX_SYNC_ERROR]
        return None
    with db.transaction() as session:
        stored = session.get(Channel, channel_id)
        if stored is None:
            return None
        do_store_templates(session, stored, listed)
    return len(listed)


def do_store_templates(session: Session, channel: Channel, listed: Sequence[ProviderTemplate]) -> None:
    """Make the channel's stored templates what the provider listed."""
    now = utcnow()
    current = {(t.name, language_key(t.language)): t for t in templates_of(session, channel)}
    kept: set[int] = set()
    for item in listed:
        template = current.get((item.name, language_key(item.language)))
        if template is None:
            template = MessageTemplate(
                workspace_id=channel.workspace_id, channel_id=channel.id, name=item.name, language=item.language
            )
            session.add(template)
        elif template.status != item.status:
            template.status_changed_at = now
        template.provider_template_id = item.provider_template_id
        template.category = item.category
        template.status = item.status
        template.parameter_format = item.parameter_format
        template.components = item.components
        template.quality = item.quality
        template.reason = item.reason
        session.flush()
        kept.add(template.id)
    gone = [t.id for t in current.values() if t.id not in kept]
    if gone:
        session.execute(delete(MessageTemplate).where(MessageTemplate.id.in_(gone)))
    channel.templates_synced_at = now
    channel.templates_sync_error = None
    session.flush()


def _template_changed(session: Session, channel: Channel, change: TemplateChange) -> MessageTemplate | None:
    """The stored template a webhook names: by the provider's id, else by name and language."""
    if change.provider_template_id:
        found = session.scalar(
            select(MessageTemplate).where(
                MessageTemplate.channel_id == channel.id,
                MessageTemplate.provider_template_id == change.provider_template_id,
            )
        )
        if found is not None:
            return found
    if change.name and change.language:
        return find_template(session, channel, change.name, change.language)
    return None


def do_apply_template_changes(session: Session, channel: Channel, changes: Sequence[TemplateChange]) -> int:
    """Apply the provider's template webhooks; how many templates were new to us. A template we have
    not synced yet is added from what the webhook says; its text and parameters come with a sync,
    which the caller queues when this returns more than zero."""
    added = 0
    for change in changes:
        template = _template_changed(session, channel, change)
        if template is None:
            if not (change.name and change.language and change.status):
                log.info("template_change_unknown", channel_id=channel.id, template=change.name)
                continue
            template = MessageTemplate(
                workspace_id=channel.workspace_id,
                channel_id=channel.id,
                provider_template_id=change.provider_template_id,
                name=change.name[:512],
                language=change.language.replace("-", "_")[:15],
                category=(change.category or "UNKNOWN")[:32],
                status=change.status[:32],
                parameter_format="POSITIONAL",
                components=[],
            )
            session.add(template)
            added += 1
        if change.status and change.status != template.status:
            template.status = change.status[:32]
            template.status_changed_at = change.at or utcnow()
            template.reason = change.reason
        elif change.status and change.reason:
            template.reason = change.reason
        if change.category and change.category != template.category:
            template.previous_category = template.category
            template.category = change.category[:32]
        if change.quality:
            template.quality = change.quality[:16]
    session.flush()
    return added


def do_apply_quality_changes(session: Session, channel: Channel, changes: Sequence[QualityChange]) -> None:
    """Keep the newest of the provider's words on the number (events may arrive out of order)."""
    for change in sorted(changes, key=lambda c: c.at or utcnow()):
        at = change.at or utcnow()
        if channel.quality_changed_at is not None and at < channel.quality_changed_at:
            continue
        channel.quality_event = change.event
        if change.messaging_limit:
            channel.messaging_limit = change.messaging_limit
        channel.quality_changed_at = at
    session.flush()


# ----- what a template message must be --------------------------------------------------------------


def _refuse(code: str, path: str, message: str) -> ValidationFailed:
    return ValidationFailed(f"{path}: {message}", code=code, details={path: message})


def check_template_message(session: Session, channel: Channel, given: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The template message as it will be sent (Meta's shape, components in order) and its text as
    the customer will read it; ValidationFailed naming the rule it breaks. `given` is
    `{"name", "language": {"code"}, "components": [...]}` with text parameters already rendered."""
    name = str(given.get("name") or "")
    language = str((given.get("language") or {}).get("code") or "")
    template = find_template(session, channel, name, language)
    if template is None:
        raise _refuse(
            "template_unknown",
            "message.template.name",
            f"this channel has no template {name!r} in {language!r} (sync the templates if it is new)",
        )
    if template.status != APPROVED:
        raise _refuse(
            "template_not_approved",
            "message.template.name",
            f"template {name!r} is {template.status}: only APPROVED templates can be sent",
        )
    wanted = slots(template)
    given_components = [c for c in given.get("components") or [] if isinstance(c, dict)]
    values: dict[tuple[str, str], dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    named = template.parameter_format == "NAMED"
    for index, component in enumerate(given_components):
        kind = str(component.get("type", "")).lower()
        path = f"message.template.components[{index}]"
        if kind not in ("header", "body"):
            kept.append(component)  # buttons: Meta checks their index and payload
            continue
        asked = [s for s in wanted if s.component == kind]
        parameters = [p for p in component.get("parameters") or [] if isinstance(p, dict)]
        if not asked:
            raise _refuse("template_parameters", path, f"template {name!r} takes no {kind} parameters")
        if len(parameters) != len(asked):
            raise _refuse(
                "template_parameters",
                f"{path}.parameters",
                f"the {kind} of {name!r} takes {len(asked)} parameter(s), {len(parameters)} given",
            )
        sent: list[dict[str, Any]] = []
        for position, (parameter, slot) in enumerate(zip(parameters, asked, strict=True)):
            where = f"{path}.parameters[{position}]"
            if slot.kind != "text":
                if parameter.get("type") != slot.kind:
                    raise _refuse("template_parameters", where, f"the header of {name!r} takes {_a(slot.kind)}")
                if slot.kind in FILE_KINDS and not _file_given(parameter.get(slot.kind)):
                    raise _refuse(
                        "template_parameters",
                        f"{where}.{slot.kind}",
                        f"the header of {name!r} takes {_a(slot.kind)}: give its https:// link or a media id",
                    )
                taken = parameter
                if slot.kind == "location":
                    taken = {"type": "location", "location": _place_given(parameter.get("location"), name, where)}
                values[(kind, slot.key)] = taken
                sent.append(taken)
                continue
            key = slot.key
            if named:
                key = str(parameter.get("parameter_name") or "")
                if key not in {s.key for s in asked}:
                    expected = ", ".join(s.key for s in asked)
                    raise _refuse("template_parameters", where, f"parameter_name must be one of: {expected}")
                if (kind, key) in values:
                    raise _refuse("template_parameters", where, f"parameter {key!r} is given twice")
            elif parameter.get("parameter_name"):
                raise _refuse("template_parameters", where, f"{name!r} takes positional parameters, not names")
            if parameter.get("type", "text") != "text" or not str(parameter.get("text") or "").strip():
                raise _refuse("template_parameters", where, "must be a text parameter that is not empty")
            values[(kind, key)] = parameter
            sent.append({**parameter, "type": "text"})  # Meta refuses a parameter without its type
        kept.append({**component, "type": kind, "parameters": sent})
    missing = [s for s in wanted if (s.component, s.key) not in values]
    if missing:
        first = missing[0]
        raise _refuse(
            "template_parameters",
            "message.template.components",
            f"the {first.component} of {name!r} needs parameter {first.key!r}",
        )
    message = {"name": template.name, "language": {"code": template.language}, "components": kept}
    return message, rendered_text(template, values)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in ("a", "e", "i", "o", "u") else f"a {kind}"


PLACE_RULES = {
    "shape": "give its latitude and longitude",
    "unknown": "a place has a latitude, a longitude, a name and an address only",
    "latitude": "the latitude must be a number from -90 to 90",
    "longitude": "the longitude must be a number from -180 to 180",
    "text": f"must be text of at most {MAX_PLACE_TEXT} characters, without control characters",
}


def _place_given(value: Any, name: str, where: str) -> dict[str, str]:
    try:
        return place(value)
    except PlaceRefused as exc:
        path = f"{where}.location" + (f".{exc.field}" if exc.field else "")
        raise _refuse(
            "template_parameters", path, f"the header of {name!r} takes a place: {PLACE_RULES[exc.rule]}"
        ) from None


def _file_given(media: Any) -> bool:
    """A header file as Meta takes it: `{"link": "https://..."}` or `{"id": "..."}`."""
    if not isinstance(media, dict):
        return False
    if "link" in media:
        return is_https_url(media["link"])
    found = media.get("id")
    return isinstance(found, str) and bool(found.strip())


def rendered_text(template: MessageTemplate, values: dict[tuple[str, str], dict[str, Any]]) -> str:
    """The template's header, body and footer with its parameters filled in, as the customer reads it."""

    def fill(kind: str, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            parameter = values.get((kind, match.group(1)))
            return str(parameter.get("text", "")) if parameter else match.group(0)

        return _PLACEHOLDER.sub(one, text)

    parts = []
    for kind in ("header", "body", "footer"):
        text = component_text(template, kind)
        if text:
            parts.append(fill(kind, text))
    return "\n\n".join(parts) or template.name
