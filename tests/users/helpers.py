import re
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.mail.models import OutgoingEmail


def outbox(db: Database, to: str | None = None) -> list[OutgoingEmail]:
    with db.transaction(write=False) as session:
        query = select(OutgoingEmail).order_by(OutgoingEmail.id)
        if to is not None:
            query = query.where(OutgoingEmail.to_address == to)
        return list(session.scalars(query))


def link_token(body: str, path: str) -> str:
    found = re.findall(rf"https?://\S+{re.escape(path)}/([A-Za-z0-9_-]+)", body)
    assert len(found) == 1, body
    return str(found[0])


def age(db: Database, model: Any, row_id: Any, **columns: timedelta) -> None:
    """Move a row's timestamps into the past, as if time had passed."""
    now = utcnow()
    with db.transaction() as session:
        session.execute(update(model).where(model.id == row_id).values(**{k: now - v for k, v in columns.items()}))
