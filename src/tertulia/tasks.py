"""Imports every module that registers queued or periodic tasks, so a consumer knows all of them.

Both consumers import this: the one embedded in `tertulia serve` and `tertulia worker`.
"""

from tertulia.conversations import outbox as conversations_outbox
from tertulia.conversations.ingress import callbacks as conversations_callbacks
from tertulia.mail import periodic as mail_periodic
from tertulia.segments import tasks as segments_tasks

__all__ = ["conversations_callbacks", "conversations_outbox", "mail_periodic", "segments_tasks"]
