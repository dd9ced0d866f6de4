"""The distinct counts can use the partial index made for them (migration 0610). SQLite uses a
partial index only when the query repeats its condition (a `metric = ?` is not enough), which a
refactoring of the query could silently stop doing; PostgreSQL proves the condition from the metric
itself, and is checked alike."""

from typing import Any

from sqlalchemy import Select, text
from sqlalchemy.orm import Session

from tertulia.kit.db import Database
from tertulia.reports import repository
from tertulia.reports.repository import Filters


def _plan(session: Session, query: Select[Any]) -> str:
    compiled = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
    if session.get_bind().dialect.name == "postgresql":
        # The tables are empty: forbid the scans a planner prefers on them, so the plan says which
        # index the query can use at all.
        session.execute(text("SET LOCAL enable_seqscan = off"))
        session.execute(text("SET LOCAL enable_bitmapscan = off"))
        return "\n".join(session.scalars(text(f"EXPLAIN {compiled}")))
    return "\n".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))


def test_the_distinct_counts_read_the_labelled_index(db: Database) -> None:
    for metric in repository.DETAILED_ONLY:
        query = repository._label_pairs(1, "d", "2026-01-01", "2026-12-31", metric, Filters(user_id=3), "user_id")
        with db.transaction(write=False) as session:
            plan = _plan(session, query)
        assert "ix_report_rollups_labelled_counts" in plan, plan


def test_a_metric_without_labels_does_not_claim_the_labelled_index(db: Database) -> None:
    query = repository._label_pairs(1, "d", "2026-01-01", "2026-12-31", "closed", Filters(), "user_id")
    with db.transaction(write=False) as session:
        plan = _plan(session, query)
    assert "ix_report_rollups_labelled_counts" not in plan, plan
