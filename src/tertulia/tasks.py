"""The composition of background work: imports every module that registers queued or periodic tasks,
so a consumer knows all of them, and installs the event consumers and merge hooks
(`tertulia.consumers`).

Both queue consumers import this: the one embedded in `tertulia serve` (through the app's lifespan)
and `tertulia worker`.
"""

from tertulia import consumers
from tertulia.conversations import tasks as conversations_tasks
from tertulia.events import tasks as events_tasks
from tertulia.mail import periodic as mail_periodic
from tertulia.segments import tasks as segments_tasks

consumers.install()

__all__ = ["conversations_tasks", "events_tasks", "mail_periodic", "segments_tasks"]
