"""A background job held by one runner at a time, fenced by its heartbeat.

Long jobs kept in a table (contact imports, data exports) are claimed by moving them to "running"
with `updated_at` set to now; that timestamp is the runner's fencing token. Every later write goes
through a conditional UPDATE on (id, running, token) that moves the token on, so a runner that was
presumed dead and whose job was taken over by another finds its write refused (`LostClaim`) and
stops instead of writing over the new runner's work. A job whose heartbeat is older than
`stale_after` is presumed abandoned and may be claimed again.
"""

import enum
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import update
from sqlalchemy.orm import Session

from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database

log = structlog.get_logger()


class LostClaim(Exception):
    """Another runner claimed the job: this one must stop without writing."""


def claim_job(
    database: Database,
    model: Any,
    job_id: int,
    *,
    queued: enum.Enum,
    running: enum.Enum,
    stale_after: timedelta,
    **on_claim: Any,
) -> datetime | None:
    """Take the job for this runner: its fencing token, or None if it is not to be run here (done,
    failed, gone, or running elsewhere with a live heartbeat). `on_claim` are more values written
    with the claim (e.g. a run counter)."""
    now = utcnow()
    with database.transaction() as session:
        job = session.get(model, job_id)
        if job is None:
            return None
        runnable = job.status == queued or (job.status == running and job.updated_at < now - stale_after)
        if not runnable:
            return None
        claimed = session.execute(
            update(model)
            .where(model.id == job_id, model.status == job.status, model.updated_at == job.updated_at)
            .values(status=running, updated_at=now, **on_claim)
            .execution_options(synchronize_session=False)
        )
        return now if getattr(claimed, "rowcount", 0) == 1 else None


class FencedRun:
    """One runner's hold on a claimed job: writes that succeed only while the hold is the current
    one."""

    def __init__(
        self, database: Database, model: Any, job_id: int, *, running: enum.Enum, failed: enum.Enum, token: datetime
    ) -> None:
        self.database = database
        self.model = model
        self.job_id = job_id
        self.running = running
        self.failed = failed
        self.token = token

    def write(self, session: Session, **values: Any) -> None:
        """Update the job row in `session` if this runner still holds it, with a new heartbeat; else
        LostClaim. The heartbeat always moves forward, even when the clock has not."""
        now = max(utcnow(), self.token + timedelta(microseconds=1))
        model = self.model
        done = session.execute(
            update(model)
            .where(model.id == self.job_id, model.status == self.running, model.updated_at == self.token)
            .values(updated_at=now, **values)
            .execution_options(synchronize_session=False)
        )
        if getattr(done, "rowcount", 0) != 1:
            raise LostClaim
        self.token = now

    def write_alone(self, **values: Any) -> None:
        """`write` in a transaction of its own."""
        with self.database.transaction() as session:
            self.write(session, **values)

    def fail(self, message: str) -> None:
        """Record the job as failed with `message`, unless it was taken over; never raises."""
        try:
            self.write_alone(status=self.failed, error=message[:2000], finished_at=utcnow())
        except LostClaim:
            pass
        except Exception:
            log.exception("job_failure_not_recorded", table=self.model.__tablename__, job_id=self.job_id)
