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

The same aggregation's items (`report_items`), one fact row and one contact per conversation, and a
tag on a tenth of the contacts are loaded too, so the reports a tag filters are also measured with
it (`..._tag_ms`), in the same run as without. TERTULIA_BENCH_REPORTS (every report by default)
names the reports to build, comma-separated.

TERTULIA_BENCH_REPORTS_REUSE=1 keeps the database a previous run generated at the same URL (its
size is not checked: keep TERTULIA_BENCH_CONVERSATIONS alike) instead of generating it again, for
measuring two versions of the code on the same rows, one after the other.

Last, a drill-down list's CSV over the year (every opening, read in pages and written whole before
it is sent, as `list.csv` does): its rows, time and the peak of memory it allocates
(`list_csv_365d_...`).
"""

import os
import random
import statistics
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import psycopg
from sqlalchemy import insert, text

from tertulia.contacts.models import Contact, ContactTag, Tag
from tertulia.kit.db import Database
from tertulia.migrations import upgrade
from tertulia.provisioning import do_create_workspace_with_owner
from tertulia.reports import csvfile, histogram
from tertulia.reports.models import ConversationFact, ReportItem, Rollup
from tertulia.reports.repository import KEY_COLUMNS, Filters
from tertulia.reports.rollups import Changes
from tertulia.reports.service import REPORTS, TAG_REPORTS, TIMED_REPORTS, build_report, drill_down_pages
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
TAGGED_SHARE = 0.1  # of the contacts, who have the tag the filtered reports ask for
CHOSEN = [r for r in os.environ.get("TERTULIA_BENCH_REPORTS", ",".join(REPORTS)).split(",") if r]
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


def _replied(changes: Changes, fact: ConversationFact, user_id: int) -> None:
    """A person's reply as the consumer counts it: one reply, and its conversation (one label per
    conversation, so a range can count the different conversations replied to)."""
    changes.count("replies", fact, user_id=user_id)
    changes.count("replied_conversation", fact, user_id=user_id, label=str(fact.conversation_id))


def generate(
    workspace_id: int, n: int, seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], int]:
    """The rollup rows of `n` conversations over the year before END, their items, their fact rows
    (conversation i + 1 of contact i + 1), and how many messages. The contact closed is labelled
    with the conversation's number, which is its contact's."""
    rng = random.Random(seed)
    zone = ZoneInfo(ZONE)
    # Every duration is also kept in business hours (an office week), as the consumer does.
    office = parse_hours(OFFICE)

    def both(start: datetime, end: datetime) -> tuple[float, float]:
        return (end - start).total_seconds(), business_seconds(office, start, end)

    totals: dict[tuple[Any, ...], list[float]] = {}
    items: list[dict[str, Any]] = []
    facts: list[dict[str, Any]] = []
    messages = 0

    def add(at: datetime, record: Any) -> None:
        changes = Changes(workspace_id, at, zone)
        record(changes)
        items.extend(changes.items)
        for row in changes.as_rows():
            key = tuple(row[c] for c in KEY_COLUMNS if c != "workspace_id")  # one workspace here
            have = totals.setdefault(key, [0, 0.0])
            have[0] += row["count"]
            have[1] += row["total"]

    for number in range(1, n + 1):
        opened = END - timedelta(seconds=rng.random() * 365 * 86400)
        fact = ConversationFact(
            conversation_id=number,
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
            add(reply, lambda c, f=fact, u=agent: _replied(c, f, u))
            messages += 1
            if rng.random() < 0.01:
                add(reply, lambda c, f=fact: c.count("failed", f, label=rng.choice(["131047", "rejected", "timeout"])))
            reply += timedelta(seconds=_seconds(rng, 200))
        if rng.random() < 0.9:
            closed = reply + timedelta(seconds=_seconds(rng, 3600))
            fact.category_id = rng.randint(1, CATEGORIES)
            add(closed, lambda c, f=fact: c.count("closed", f))
            add(closed, lambda c, f=fact: c.count("closed_contact", f, label=str(f.conversation_id)))
            add(closed, lambda c, f=fact, s=both(opened, closed): c.duration("resolution", f, *s))
            if rng.random() < 0.1:
                again = closed + timedelta(seconds=_seconds(rng, 86400))
                add(again, lambda c, f=fact: c.count("reopened", f))
        facts.append(
            {
                "conversation_id": number,
                "workspace_id": workspace_id,
                "contact_id": number,
                "opened_at": opened,
                "period_started_at": opened,
            }
        )
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
    return rows, items, facts, messages


def _median_ms(action: Any) -> float:
    action()
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(samples), 1)


REUSE = os.environ.get("TERTULIA_BENCH_REPORTS_REUSE") == "1"


def _reused(url: str) -> tuple[Database, int, int, dict[str, Any]] | None:
    """The workspace and tag of a database a previous run generated, if there is one."""
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None
    db = Database(url)
    try:
        with db.transaction(write=False) as session:
            found = session.execute(text("SELECT workspace_id, id FROM tags WHERE name_key = 'vip'")).first()
            rows = session.scalar(text("SELECT count(*) FROM report_rollups"))
    except Exception:  # no such database or tables: generate it
        db.dispose()
        return None
    if found is None or not rows:
        db.dispose()
        return None
    return db, int(found[0]), int(found[1]), {"conversations": CONVERSATIONS, "rollup_rows": rows, "reused": True}


def _generated(name: str, url: str) -> tuple[Database, int, int, dict[str, Any]]:
    db = _fresh(name, url)
    with db.transaction() as session:
        created = do_create_workspace_with_owner(
            session, "Bench", "owner@bench.example.com", "owner-password", timezone=ZONE
        )
        workspace_id = created.workspace.id
        owner = Actor(workspace_id=workspace_id, kind="user", user_id=created.owner.id, role=Role.OWNER)
        do_set_business_hours(session, owner, OFFICE)
    started = time.perf_counter()
    rows, items, facts, messages = generate(workspace_id, CONVERSATIONS)
    generated = time.perf_counter() - started
    started = time.perf_counter()
    rng = random.Random(11)
    with db.transaction() as session:
        tag = Tag(workspace_id=workspace_id, name="VIP", name_key="vip")
        session.add(tag)
        session.flush()
        tag_id = tag.id
        contacts = [{"id": f["contact_id"], "workspace_id": workspace_id, "custom": {}} for f in facts]
        tagged = [{"contact_id": c["id"], "tag_id": tag_id} for c in contacts if rng.random() < TAGGED_SHARE]
        for model, batch in (
            (Rollup, rows),
            (ReportItem, items),
            (Contact, contacts),
            (ContactTag, tagged),
            (ConversationFact, facts),
        ):
            for at in range(0, len(batch), 20_000):
                session.execute(insert(model), batch[at : at + 20_000])
    loaded = time.perf_counter() - started
    if name == "postgresql":
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("report_rollups", "report_items", "report_conversations", "contacts", "contact_tags"):
                conn.execute(text(f"VACUUM ANALYZE {table}"))
    figures: dict[str, Any] = {
        "conversations": CONVERSATIONS,
        "messages": messages,
        "rollup_rows": len(rows),
        "item_rows": len(items),
        "tagged_contacts": len(tagged),
        "generate_s": round(generated, 1),
        "load_s": round(loaded, 1),
    }
    return db, workspace_id, tag_id, figures


def run(name: str, url: str) -> dict[str, Any]:
    db, workspace_id, tag_id, figures = (REUSE and _reused(url)) or _generated(name, url)
    actor = Actor.system(workspace_id)
    end = (END.astimezone(ZoneInfo(ZONE))).date()
    by_tag = Filters(tag_id=tag_id)
    for days in (90, 365):
        first = end - timedelta(days=days - 1)
        for report in CHOSEN:

            def build(report: str = report, first: Any = first, filters: Filters | None = None) -> None:
                with db.transaction(write=False) as session:
                    build_report(session, actor, report, preset="custom", start=first, end=end, filters=filters)

            figures[f"{report}_{days}d_ms"] = _median_ms(build)
            if report in TAG_REPORTS:
                figures[f"{report}_{days}d_tag_ms"] = _median_ms(partial(build, report, first, by_tag))
            if report in TIMED_REPORTS:

                def build_in_hours(report: str = report, first: Any = first) -> None:
                    with db.transaction(write=False) as session:
                        build_report(session, actor, report, preset="custom", start=first, end=end, business_hours=True)

                figures[f"{report}_{days}d_business_hours_ms"] = _median_ms(build_in_hours)
    # A drill-down list's CSV over the whole year: every opening, read in pages and written whole
    # before it is sent, then sent in pieces, as the API does (`list.csv`), with the rows' count and
    # the peak of memory it allocated.
    first = end - timedelta(days=364)

    def list_csv() -> int:
        with db.transaction(write=False) as session:
            head, pages = drill_down_pages(
                session, actor, "conversations", metric="opened", preset="custom", start=first, end=end
            )
            zone = ZoneInfo(head["timezone"])

            def rows(page: list[dict[str, Any]]) -> list[list[Any]]:
                return [
                    [i["conversation_id"], csvfile.local_time(i["at"], zone), i["contact"], i["channel"]] for i in page
                ]

            file, _size = csvfile.spooled(["conversation_id", "at", "contact", "channel"], (rows(p) for p in pages))
            return sum(chunk.count(b"\n") for chunk in csvfile.chunks(file)) - 1  # the header

    figures["list_csv_365d_rows"] = list_csv()
    figures["list_csv_365d_ms"] = _median_ms(list_csv)
    tracemalloc.start()
    list_csv()
    figures["list_csv_365d_peak_kib"] = round(tracemalloc.get_traced_memory()[1] / 1024)
    tracemalloc.stop()
    db.dispose()
    return figures


def main() -> None:
    assert len(histogram.EDGES) < 300
    for name, url in _urls().items():
        figures = run(name, url)
        print(name, figures, flush=True)


if __name__ == "__main__":
    main()
