"""Background refresh of segment counts ("stale while revalidate", bounded by a hard limit).

A read that finds a cached count between REFRESH_AFTER (30 s) and COUNT_MAX_AGE (60 s) old shows it
and queues `refresh_counts_task(workspace_id)` after its transaction commits; only counts older
than COUNT_MAX_AGE are recomputed while the reader waits. So someone who keeps a segment list open
never waits for a recount, and no count shown is ever more than a minute old.
"""

import threading
import time

import structlog

from tertulia.kit.queue import expiring_lock, huey, task_database
from tertulia.segments.counts import refresh_counts

log = structlog.get_logger("tertulia.segments")

# One enqueue per workspace per this many seconds and process: readers arrive in bursts.
ENQUEUE_EVERY_SECONDS = 10.0
# A refresh takes seconds; a lock older than this belongs to a worker that died mid-refresh.
LOCK_TTL_SECONDS = 300.0
_last_enqueued: dict[int, float] = {}
_lock = threading.Lock()


@huey.task(name="segments.refresh_counts")  # type: ignore[untyped-decorator]
def refresh_counts_task(workspace_id: int) -> int:
    with expiring_lock(f"segments.refresh_counts.{workspace_id}", LOCK_TTL_SECONDS) as held:
        if not held:
            return 0  # another worker is refreshing this workspace right now
        return refresh_counts(task_database(), workspace_id)


def enqueue_refresh(workspace_id: int) -> None:
    now = time.monotonic()
    with _lock:
        if now - _last_enqueued.get(workspace_id, float("-inf")) < ENQUEUE_EVERY_SECONDS:
            return
        _last_enqueued[workspace_id] = now
    try:
        refresh_counts_task(workspace_id)
    except Exception as exc:  # a missed refresh only means a reader recounts later
        log.warning("segment_refresh_enqueue_failed", workspace_id=workspace_id, error=str(exc))
