"""SMS consent: our own record of who may be texted, per SMS channel and number.

Carriers and providers expect a business to stop texting someone who answered STOP, and some
providers enforce it on their side (Twilio refuses with 21610); others leave it to us. So whatever
the provider, the keywords a customer texts (channels/adapters/sms.py marks them in the message's
payload as `sms_keyword`) update `SmsConsent` for (channel, number), with the message as evidence:
an opt-out keyword (STOP, BAJA, ...) opts the number out, an opt-in (START, ALTA, ...) back in.
The outbox asks `refusal` before it calls the provider for a channel whose rules keep consent
(`ChannelRules.keyword_consent`), and fails the message with the reason instead of sending it.
See ../shared/reference/channels.md section 11.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.channels.protocol import InboundMessage, StatusUpdate
from tertulia.conversations.models import SmsConsent
from tertulia.kit.clock import utcnow
from tertulia.kit.db import race_guard

if TYPE_CHECKING:
    # Only a type here: inbound imports the outbox, which imports this module.
    from tertulia.conversations.inbound import Received

log = structlog.get_logger()

OPT_OUT = "opt_out"
OPT_IN = "opt_in"


def do_record_keywords(session: Session, received: Sequence[tuple[Channel, InboundMessage, "Received"]]) -> int:
    """Record the consent keywords among newly stored messages, in the order they arrived; how many
    changed a number's consent. A repeated callback (a duplicate message) changes nothing."""
    changed = 0
    for channel, inbound, result in received:
        keyword = (inbound.payload or {}).get("sms_keyword")
        if keyword not in (OPT_OUT, OPT_IN) or result.duplicate:
            continue
        word = (inbound.text or keyword).strip()[:32]
        if _record(session, channel, inbound.sender_id, keyword == OPT_OUT, word, result.message.id):
            changed += 1
            log.info(
                "sms_consent_changed",
                channel_id=channel.id,
                opted_out=keyword == OPT_OUT,
                keyword=word,
                evidence_message_id=result.message.id,
            )
    return changed


def do_record_status_opt_outs(session: Session, statuses: Sequence[tuple[Channel, StatusUpdate]]) -> int:
    """The provider says a recipient opted out (Vonage's delivery receipt err-code 9): recorded with
    the provider's word as the keyword and no message as evidence."""
    changed = 0
    for channel, status in statuses:
        recorded = status.opted_out and status.recipient_id
        if recorded and _record(session, channel, str(status.recipient_id), True, "provider: opted out", None):
            changed += 1
            log.info("sms_consent_changed", channel_id=channel.id, opted_out=True, keyword="provider")
    return changed


def _record(
    session: Session, channel: Channel, recipient: str, opted_out: bool, keyword: str, evidence: int | None
) -> bool:
    row = session.scalar(
        select(SmsConsent).where(SmsConsent.channel_id == channel.id, SmsConsent.recipient == recipient)
    )
    if row is None:
        if not opted_out:
            return False  # never opted out: nothing to lift
        try:
            with race_guard(session):
                session.add(
                    SmsConsent(
                        workspace_id=channel.workspace_id,
                        channel_id=channel.id,
                        recipient=recipient,
                        opted_out=True,
                        keyword=keyword,
                        evidence_message_id=evidence,
                        changed_at=utcnow(),
                    )
                )
        except IntegrityError:
            return _record(session, channel, recipient, opted_out, keyword, evidence)
        return True
    if row.opted_out == opted_out:
        return False
    row.opted_out, row.keyword, row.evidence_message_id, row.changed_at = opted_out, keyword, evidence, utcnow()
    session.flush()
    return True


def refusal(session: Session, channel: Channel, recipient: str) -> str | None:
    """Why a message to `recipient` on `channel` may not be sent; None when it may."""
    row = session.scalar(
        select(SmsConsent).where(
            SmsConsent.channel_id == channel.id, SmsConsent.recipient == recipient, SmsConsent.opted_out.is_(True)
        )
    )
    if row is None:
        return None
    return (
        f"{recipient} opted out of messages from this number ({row.keyword}, "
        f"{row.changed_at:%Y-%m-%d %H:%M} UTC): nothing is sent until they text START or ALTA"
    )
