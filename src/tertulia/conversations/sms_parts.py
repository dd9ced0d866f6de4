"""Long SMS that arrive in parts become one message.

A provider that hands over a long SMS part by part (Vonage's SMS API: `concat-ref`, `concat-total`,
`concat-part`) gives each part payload `sms_part` {"ref", "total", "part"}. The callback task passes
the messages it is about to store through `do_reassemble`: each part is kept as an `SmsPart` row
(a part delivered twice is kept once), and the part that completes the set is replaced by one message
with the parts' text in order, the first part's provider id and the keyword the whole text is, if any.
Until then nothing is shown: the parts wait in the table, in the same transaction as the messages.
A set still incomplete PART_WAIT after its first part arrived is shown as it is, the missing parts
named in its payload (`stale_messages`, from the periodic callback sweep), and a part that arrives
after that is shown on its own: a customer's text is never held back for good.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.channels.adapters import sms
from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage
from tertulia.conversations.models import SmsPart
from tertulia.kit.db import race_guard

log = structlog.get_logger()
MAX_PARTS = 255  # a concatenated SMS counts its parts in one byte
# How long the first part of a set waits for the others; providers deliver a set's parts within
# seconds, and retry a failed one for hours (Vonage: 24 h), so a set this old is shown as it is.
PART_WAIT = timedelta(minutes=30)


def do_reassemble(
    session: Session, items: Sequence[tuple[Channel, InboundMessage]]
) -> list[tuple[Channel, InboundMessage]]:
    """`items` with every part replaced by nothing, except the part completing its message, which
    becomes the whole message."""
    kept: list[tuple[Channel, InboundMessage]] = []
    for channel, message in items:
        part = (message.payload or {}).get("sms_part")
        if not isinstance(part, dict):
            kept.append((channel, message))
            continue
        whole = _add_part(session, channel, message, part)
        if whole is not None:
            kept.append((channel, whole))
    return kept


def _add_part(
    session: Session, channel: Channel, message: InboundMessage, part: dict[str, Any]
) -> InboundMessage | None:
    ref, total, number = str(part.get("ref") or ""), part.get("total"), part.get("part")
    if not ref or not isinstance(total, int) or not isinstance(number, int) or not 1 <= number <= total <= MAX_PARTS:
        log.warning("sms_part_malformed", channel_id=channel.id, part=part)
        return replace(message, payload={k: v for k, v in message.payload.items() if k != "sms_part"})
    known = session.scalar(
        select(SmsPart.id).where(
            SmsPart.channel_id == channel.id,
            SmsPart.sender == message.sender_id,
            SmsPart.ref == ref,
            SmsPart.part == number,
        )
    )
    if known is not None:
        return None  # this part was here already
    try:
        # The check above decides the race on SQLite; on PostgreSQL the savepoint recovers from it.
        with race_guard(session):
            session.add(
                SmsPart(
                    workspace_id=channel.workspace_id,
                    channel_id=channel.id,
                    sender=message.sender_id,
                    ref=ref,
                    part=number,
                    total=total,
                    provider_message_id=message.provider_message_id or "",
                    text=message.text or "",
                )
            )
    except IntegrityError:
        return None  # this part was here already
    parts = list(
        session.scalars(
            select(SmsPart)
            .where(SmsPart.channel_id == channel.id, SmsPart.sender == message.sender_id, SmsPart.ref == ref)
            .order_by(SmsPart.part)
        )
    )
    if any(p.assembled for p in parts):
        # The set was shown without this part (it came too late): shown on its own.
        return replace(
            message, payload={**{k: v for k, v in message.payload.items() if k != "sms_part"}, "sms_late_part": number}
        )
    if len(parts) < total:
        return None
    for row in parts:
        row.assembled = True
    text = "".join(row.text for row in parts)
    payload = {k: v for k, v in message.payload.items() if k != "sms_part"}
    payload["sms_parts"] = [row.provider_message_id for row in parts]
    found = sms.keyword(text)
    if found is not None:
        payload["sms_keyword"] = found.value
    return replace(message, provider_message_id=parts[0].provider_message_id, text=text or None, payload=payload)


def stale_messages(session: Session, now: datetime) -> list[tuple[Channel, InboundMessage]]:
    """The sets whose first part arrived more than PART_WAIT ago and are still incomplete, each as one
    message of the parts there are (marked shown), the missing part numbers in `sms_parts_missing`."""
    groups = session.execute(
        select(SmsPart.channel_id, SmsPart.sender, SmsPart.ref)
        .where(SmsPart.assembled.is_(False), SmsPart.received_at < now - PART_WAIT)
        .distinct()
    ).all()
    found: list[tuple[Channel, InboundMessage]] = []
    for channel_id, sender, ref in groups:
        channel = session.get(Channel, channel_id)
        parts = list(
            session.scalars(
                select(SmsPart)
                .where(SmsPart.channel_id == channel_id, SmsPart.sender == sender, SmsPart.ref == ref)
                .order_by(SmsPart.part)
            )
        )
        for row in parts:
            row.assembled = True
        if channel is None or not channel.active:
            continue
        present = {row.part for row in parts}
        missing = [number for number in range(1, parts[0].total + 1) if number not in present]
        text = "".join(row.text for row in parts)
        message = InboundMessage(
            sender_id=sender,
            provider_message_id=parts[0].provider_message_id,
            text=text or None,
            payload={"sms_parts": [row.provider_message_id for row in parts], "sms_parts_missing": missing},
            phone=sms.e164(sender),
        )
        log.warning("sms_parts_incomplete", channel_id=channel_id, ref=ref, missing=missing)
        found.append((channel, message))
    session.flush()
    return found
