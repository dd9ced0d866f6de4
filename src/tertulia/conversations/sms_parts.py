"""Long SMS that arrive in parts become one message.

A provider that hands over a long SMS part by part (Vonage's SMS API: `concat-ref`, `concat-total`,
`concat-part`) gives each part payload `sms_part` {"ref", "total", "part"}. The callback task passes
the messages it is about to store through `do_reassemble`: each part is kept as an `SmsPart` row
(a part delivered twice is kept once), and the part that completes the set is replaced by one message
with the parts' text in order, the first part's provider id and the keyword the whole text is, if any.
Until then nothing is shown: the parts wait in the table, in the same transaction as the messages.
"""

from collections.abc import Sequence
from dataclasses import replace
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
    if len(parts) < total or any(p.assembled for p in parts):
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
