"""Imports every module that registers queued or periodic tasks, so a consumer knows all of them.

Both consumers import this: the one embedded in `tertulia serve` and `tertulia worker`.
"""

from tertulia.conversations import tasks as conversations_tasks
from tertulia.mail import periodic as mail_periodic
from tertulia.segments import tasks as segments_tasks

__all__ = ["conversations_tasks", "mail_periodic", "segments_tasks"]
