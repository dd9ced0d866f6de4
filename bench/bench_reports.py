"""Report server time on a generated year of a busy workspace, on SQLite and PostgreSQL.

`python -m bench reports`. Knobs: TERTULIA_BENCH_CONVERSATIONS (20,000 by default: about a minute
in all; the issue's scale is 1,000,000 conversations with about 10 messages each),
TERTULIA_BENCH_DATABASES (sqlite,postgresql), TERTULIA_BENCH_REPORTS_SQLITE,
TERTULIA_BENCH_REPORTS_POSTGRES (database URLs; the PostgreSQL database is created if missing and
emptied).

The rollups are generated, not fed through the event log: each conversation's events (opening,
assignment, customer messages, replies of people and bots, closing, sometimes a reopening and a
second closing) are turned into rollup rows by `reports.rollups.Changes`, the consumer's own
aggregation, so the tables have the shape and size the consumer would give them. Then each report
is built by `reports.service.build_report` (what the API does, without HTTP) for the last 90 and 365
days; the figure is the median of 5 runs after one warm-up.
"""

import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import psycopg
from sqlalchemy import insert, text

from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports import histogram
from tertulia.reports.models import ConversationFact, Rollup
from tertulia.reports.repository import KEY_COLUMNS
from tertulia.reports.rollups import Changes
from tertulia.reports.service import REPORTS, TIMED_REPORTS, build_report
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.workspaces.hours import business_seconds, parse_hours
from tertulia.workspaces.service import do_set_business_hours

CONVERSATIONS = int(os.environ.get("TERTULIA_BENCH_CONVERSATIONS", "20000"))
ZONE = "America/Mexico_City"
END = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
CHANNELS, TEAMS, USERS, CATEGORIES = 6, 4, 25, 6
SOURCES = ("incoming", "incoming", "incoming", "user", "broadcast")
RUNS = 5
# The workspace's business hours: every duration is also kept within them, and the reports with times
# are measured with the toggle on too.
OFFICE = {
    "timezone": ZONE,
    "week": {d: [{"start": "09:00", "end": "19:00"}] for d in ("monday", "tuesday", "wednesday", "thursday", "friday")},
}


def _urls() -> dict[str, str]:
    urls = {
        "sqlite": os.environ.get(
            "TERTULIA_BENCH_REPORTS_SQLITE", f"sqlite:///{Path('data/bench').resolve()}/reports-{CONVERSATIONS}.db"
        ),
        "postgresql": os.environ.get(
            "TERTULIA_BENCH_REPORTS_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/tertulia_bench_reports"
        ),
    }
    chosen = os.environ.get("TERTULIA_BENCH_DATABASES", "sqlite,postgresql").split(",")
    return {name: url for name, url in urls.items() if name in chosen}


def _fresh(name: str, url: str) -> Database:
    if name == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    else:
        base, database = url.rsplit("/", 1)
        admin = base.replace("postgresql+psycopg://", "postgresql://", 1) + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
    upgrade(url)
    return Database(url)


def _seconds(rng: random.Random, median: float, spread: float = 1.2) -> float:
    return rng.lognormvariate(0, spread) * median


def generate(workspace_id: int, n: int, seed: int = 7) -> tuple[list[dict[str, Any]], int]:
    """The rollup rows of `n` conversations over the year before END, and how many messages."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    # Every duration is also kept in business hours (an office week), as the consumer does.
    office = parse_hours(OFFICE)

    def both(start: datetime, end: datetime) -> tuple[float, float]:
        return (end - start).total_seconds(), business_seconds(office, start, end)

    totals: dict[tuple[Any, ...], list[float]] = {}
    messages = 0

    def add(at: datetime, record: Any) -> None:
        changes = Changes(workspace_id, at, zone)
        record(changes)
        for row in changes.as_rows():
            key = tuple(row[c] for c in KEY_COLUMNS if c != "workspace_id")  # one workspace here
            have = totals.setdefault(key, [0, 0.0])
            have[0] += row["count"]
            have[1] += row["total"]

    for _ in range(n):
        opened = END - timedelta(seconds=rng.random() * 365 * 86400)
        fact = ConversationFact(
            channel_id=rng.randint(1, CHANNELS),
            team_id=rng.randint(0, TEAMS),
            assignee_id=0,
            category_id=0,
            source=rng.choice(SOURCES),
        )
        add(opened, lambda c, f=fact: c.count("opened", f))
        agent = rng.randint(1, USERS)
        assigned = opened + timedelta(seconds=_seconds(rng, 120))
        fact.assignee_id = agent
        add(assigned, lambda c, f=fact, s=both(opened, assigned): c.duration("assignment", f, *s))
        at = opened
        for m in range(rng.randint(1, 8)):
            at += timedelta(seconds=_seconds(rng, 60))
            add(at, lambda c, f=fact: c.count("incoming", f))
            messages += 1
            if m == 0 and rng.random() < 0.3:
                add(at + timedelta(seconds=2), lambda c, f=fact: c.count("outgoing", f, label="bot"))
                messages += 1
        first = opened + timedelta(seconds=_seconds(rng, 300))
        add(
            first,
            lambda c, f=fact, s=both(opened, first), u=agent: c.duration("first_response", f, *s, user_id=u),
        )
        reply = first
        for _ in range(rng.randint(1, 6)):
            add(reply, lambda c, f=fact, u=agent: c.count("outgoing", f, label="user", user_id=u))
            messages += 1
            if rng.random() < 0.01:
                add(reply, lambda c, f=fact: c.count("failed", f, label=rng.choice(["131047", "rejected", "timeout"])))
            reply += timedelta(seconds=_seconds(rng, 200))
        if rng.random() < 0.9:
            closed = reply + timedelta(seconds=_seconds(rng, 3600))
            fact.category_id = rng.randint(1, CATEGORIES)
            add(closed, lambda c, f=fact: c.count("closed", f))
            add(closed, lambda c, f=fact, s=both(opened, closed): c.duration("resolution", f, *s))
            if rng.random() < 0.1:
                again = closed + timedelta(seconds=_seconds(rng, 86400))
                add(again, lambda c, f=fact: c.count("reopened", f))
    rows = [
        dict(
            zip(
                (
                    "grain",
                    "period",
                    "metric",
                    "label",
                    "channel_id",
                    "team_id",
                    "user_id",
                    "category_id",
                    "source",
                    "bucket",
                ),
                key,
                strict=True,
            ),
            workspace_id=workspace_id,
            count=int(value[0]),
            total=value[1],
        )
        for key, value in totals.items()
    ]
    return rows, messages


def _median_ms(action: Any) -> float:
    action()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


def run(name: str, url: str) -> dict[str, Any]:
    db = _fresh(name, url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Bench", "owner@bench.example.com", "owner-password", timezone=ZONE
        )
        workspace_id = created.workspace.id
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        do_set_business_hours(session, owner, OFFICE)
    started = time.perf_counter()
    rows, messages = generate(workspace_id, CONVERSATIONS)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    with db.transaction() as session:
        for at in range(0, len(rows), 20_000):
            session.execute(insert(Rollup), rows[at : at + 20_000])
    loaded = time.perf_counter() - started
    if name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE report_rollups"))
    actor = Actor.system(workspace_id)
    figures: dict[str, Any] = {
        "conversations": CONVERSATIONS,
        "messages": messages,
        "rollup_rows": len(rows),
        "generate_s": round(generated, 1),
        "load_s": round(loaded, 1),
    }
    end = (END.astimezone(ZoneInfo(ZONE))).date()
    for days in (90, 365):
        first = end - timedelta(days=days - 1)
        for report in REPORTS:

            def build(report: str = report, first: Any = first) -> None:
                with db.transaction(write=False) as session:
                    build_report(session, actor, report, preset="custom", start=first, end=end)

            figures[f"{report}_{days}d_ms"] = _median_ms(build)
            if report in TIMED_REPORTS:

                def build_in_hours(report: str = report, first: Any = first) -> None:
                    with db.transaction(write=False) as session:
                        build_report(session, actor, report, preset="custom", start=first, end=end, business_hours=True)

                figures[f"{report}_{days}d_business_hours_ms"] = _median_ms(build_in_hours)
    db.dispose()
    return figures


def main() -> None:
    assert len(histogram.EDGES) < 300
    for name, url in _urls().items():
        figures = run(name, url)
        print(name, figures, flush=True)


if __name__ == "__main__":
    main()
