"""The assistant's background work: `assistant.release_stale_reservations` (every five minutes)
gives back the tokens of language-model reservations whose process died before settling them
(`model_settings.release_stale_reservations`), so a crash mid-call does not shrink a budget for the
rest of the month."""

from huey import crontab

from tertulia.assistant import model_settings
from tertulia.kit.queue import huey, task_database


@huey.periodic_task(crontab(minute="*/5"), name="assistant.release_stale_reservations")  # type: ignore[untyped-decorator]
def release_stale_reservations_task() -> int:
    return model_settings.release_stale_reservations(task_database())
