"""All SQL for channels. Every query is scoped to a workspace, except the lookup by public key
(the key is the unguessable handle callbacks and the widget arrive with)."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.models import Channel
from tertulia.contacts.models import ContactIdentity


def channel_by_id(session: Session, workspace_id: int, channel_id: int) -> Channel | None:
    return session.scalar(select(Channel).where(Channel.workspace_id == workspace_id, Channel.id == channel_id))


def list_channels(session: Session, workspace_id: int) -> list[Channel]:
    return list(session.scalars(select(Channel).where(Channel.workspace_id == workspace_id).order_by(Channel.id)))


def channel_by_key(session: Session, key: str, channel_type: str | None = None) -> Channel | None:
    """The active channel with this public key (and of this type, when given)."""
    query = select(Channel).where(Channel.key == key, Channel.active.is_(True))
    if channel_type is not None:
        query = query.where(Channel.type == channel_type)
    return session.scalar(query)


def identities_on(session: Session, channel: Channel, contact_id: int) -> list[str]:
    """The contact's external ids of this channel's type, newest first."""
    return list(
        session.scalars(
            select(ContactIdentity.external_id)
            .where(
                ContactIdentity.workspace_id == channel.workspace_id,
                ContactIdentity.contact_id == contact_id,
                ContactIdentity.channel == channel.type,
            )
            .order_by(ContactIdentity.id.desc())
        )
    )
