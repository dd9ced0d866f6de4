"""Channels' queued work: reading a channel's message templates from its provider.

`sync_templates_task(channel_id)` is queued after the commit that connects a channel (or reconnects
it) and when a manager presses "Sync templates"; `sync_all_templates_task` refreshes every active
channel whose provider has templates, every six hours, so a template approved in Meta's dashboard
shows up even when its webhook was missed.
"""

import structlog
from huey import crontab
from sqlalchemy import select

from tertulia.channels.message_templates import sync_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import TemplateCatalogue
from tertulia.channels.registry import get_adapter, registered_types
from tertulia.kit.queue import expiring_lock, huey, task_database

log = structlog.get_logger("tertulia.channels")

# A sync reads at most 60 pages; a lock older than this belongs to a worker that died mid-sync.
LOCK_TTL_SECONDS = 600.0


@huey.task(name="channels.sync_templates")  # type: ignore[untyped-decorator]
def sync_templates_task(channel_id: int) -> int | None:
    with expiring_lock(f"channels.sync_templates.{channel_id}", LOCK_TTL_SECONDS) as held:
        if not held:
            return None  # another worker is reading this channel's templates right now
        return sync_templates(task_database(), channel_id)


def enqueue_template_sync(channel_id: int) -> None:
    try:
        sync_templates_task(channel_id)
    except Exception as exc:  # the periodic sync catches up
        log.warning("templates_sync_enqueue_failed", channel_id=channel_id, error=str(exc))


def has_templates(channel_type: str) -> bool:
    try:
        return isinstance(get_adapter(channel_type), TemplateCatalogue)
    except LookupError:
        return False


@huey.periodic_task(crontab(minute="23", hour="*/6"), name="channels.sync_all_templates")  # type: ignore[untyped-decorator]
def sync_all_templates_task() -> int:
    types = [t for t in registered_types() if has_templates(t)]
    with task_database().transaction(write=False) as session:
        ids = list(session.scalars(select(Channel.id).where(Channel.active.is_(True), Channel.type.in_(types))))
    for channel_id in ids:
        enqueue_template_sync(channel_id)
    return len(ids)
