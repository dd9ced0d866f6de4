"""The mail outbox: an email is a row written in the caller's transaction, delivered after commit.

A rolled-back change therefore never sends its email, and a committed one is never lost: if the
after-commit delivery (a queued `mail.tasks.deliver_task`) does not happen (crash, SMTP down),
the periodic `mail.tasks.deliver_pending_task` sends it.
"""

from sqlalchemy.orm import Session

from tertulia.kit.db import on_commit
from tertulia.kit.errors import ValidationFailed
from tertulia.mail import tasks
from tertulia.mail.models import OutgoingEmail
from tertulia.mail.texts import render

MAX_SUBJECT = 300


def queue_email(session: Session, to: str, subject: str, body: str) -> OutgoingEmail:
    """Write one outbox row; delivery starts once the caller's transaction commits."""
    address = to.strip()
    if not address or "\n" in address or "\r" in address or len(address) > 254:
        raise ValidationFailed.field("to", "is not a usable email address")
    # Header injection and folding problems both come from line breaks in the subject.
    clean_subject = " ".join(subject.split())[:MAX_SUBJECT]
    row = OutgoingEmail(to_address=address, subject=clean_subject, body=body, attempts=0)
    session.add(row)
    session.flush()
    email_id = row.id
    on_commit(session, lambda: tasks.enqueue_delivery([email_id]))
    return row


def queue_template(session: Session, to: str, template: str, language: str, **values: object) -> OutgoingEmail:
    """Queue one of the texts in `mail.texts`, in English or Spanish."""
    subject, body = render(template, language, **values)
    return queue_email(session, to, subject, body)
