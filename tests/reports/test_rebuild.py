"""Rebuilding a workspace's report data from the event log (`reports.rebuild`, `tertulia reports
rebuild`): what the rebuild writes is what the live consumer wrote, for any history hypothesis
plays; twice is once; a range touches only its days; a rebuild while the consumer runs counts each
event once; the command's errors."""

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from typing import Any

import pytest
from babel.numbers import format_decimal
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from tertulia.cli import app
from tertulia.events.models import ConsumerPosition, EventRecord
from tertulia.kit import db as kit_db
from tertulia.kit import queue
from tertulia.kit import settings as kit_settings
from tertulia.kit.db import Database
from tertulia.kit.errors import NotFound, ValidationFailed
from tertulia.kit.settings import Settings
from tertulia.reports import rebuild, repository, rollups
from tertulia.reports.models import ConversationFact, ReportCursor, ReportItem, Rollup
from tertulia.reports.rollups import CONSUMER_NAME
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.plays import CUSTOMERS, Step, play, steps
from tests.reports.support import (
    MONDAY,
    NINE_TO_SEVEN,
    REPLY_DAY,
    TUESDAY,
    Shop,
    at,
    feed,
    make_shop,
    reassignments_and_reopenings,
    set_hours,
    weekend,
)
from tests.web.helpers import sign_in_as

# The scenarios happen in November 2026: no retention window may cut them off, whatever today is.
KEEP_EVERYTHING = 100_000.0

Snapshot = dict[str, Any]


def _rollups(session: Session, workspace_id: int) -> dict[tuple[Any, ...], tuple[int, float]]:
    rows = session.scalars(select(Rollup).where(Rollup.workspace_id == workspace_id))
    # Sums of seconds added in another order may differ in their last binary digits.
    return {tuple(getattr(r, c) for c in repository.KEY_COLUMNS): (r.count, round(r.total, 6)) for r in rows}


def _items(session: Session, workspace_id: int) -> list[tuple[Any, ...]]:
    rows = session.scalars(select(ReportItem).where(ReportItem.workspace_id == workspace_id))
    return sorted(
        (
            (
                r.conversation_id,
                r.metric,
                r.period,
                r.channel_id,
                r.team_id,
                r.user_id,
                r.category_id,
                r.source,
                r.label,
                r.bucket,
                None if r.seconds is None else round(r.seconds, 6),
                r.at,
            )
            for r in rows
        ),
        key=repr,
    )


def _facts(session: Session, workspace_id: int) -> dict[int, dict[str, Any]]:
    columns = [c.key for c in ConversationFact.__table__.columns]
    rows = session.scalars(select(ConversationFact).where(ConversationFact.workspace_id == workspace_id))
    return {r.conversation_id: {c: getattr(r, c) for c in columns} for r in rows}


def snapshot(db: Database, workspace_id: int) -> Snapshot:
    with db.transaction(write=False) as session:
        return {
            "rollups": _rollups(session, workspace_id),
            "items": _items(session, workspace_id),
            "facts": _facts(session, workspace_id),
        }


def on_days(found: Snapshot, days: set[str], *, inside: bool) -> Snapshot:
    """The rollups and items of those local days (or of every other day); the facts as they are."""
    return {
        "rollups": {k: v for k, v in found["rollups"].items() if (k[2][:10] in days) == inside},
        "items": [i for i in found["items"] if (i[2][:10] in days) == inside],
        "facts": found["facts"],
    }


def wipe(db: Database, workspace_id: int) -> None:
    """The report data lost: nothing of the workspace left."""
    with db.transaction() as session:
        for table in (Rollup, ReportItem, ConversationFact):
            session.execute(delete(table).where(table.workspace_id == workspace_id))


def replay_live_from_scratch(db: Database) -> None:
    """The live consumer applying the whole log again, for every workspace, from nothing."""
    with db.transaction() as session:
        for table in (Rollup, ReportItem, ConversationFact, ReportCursor):
            session.execute(delete(table))
        session.execute(update(ConsumerPosition).where(ConsumerPosition.name == CONSUMER_NAME).values(last_event_id=0))
    feed(db)


def run(
    db: Database, workspace_id: int, since: date | None = None, until: date | None = None
) -> rebuild.RebuildSummary:
    return rebuild.rebuild(db, workspace_id, since, until, retention_days=KEEP_EVERYTHING, batch_size=7)


@pytest.fixture
def fed_by_hand() -> Iterator[None]:
    queue.huey.immediate = False  # the consumer runs only when fed
    try:
        yield
    finally:
        queue.huey.flush()
        queue.huey.immediate = True


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    # No shrinking: each example plays a workspace through the inbox (see test_tag_filter).
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(plan=steps)
def test_a_rebuild_writes_what_the_consumer_wrote_for_any_history(
    db: Database,
    make_tenant: Callable[..., Tenant],
    fakehttp_adapter: FakeHttpAdapter,
    fed_by_hand: None,
    plan: list[Step],
) -> None:
    tenant = make_tenant(default_country="MX", timezone="America/Mexico_City")
    with at(f"{REPLY_DAY} 08:00"):  # business hours, so the _bh rows differ from the calendar's
        set_hours(db, tenant, NINE_TO_SEVEN)
    with fake_provider() as provider:
        # A customer writes first, so every history has something to rebuild.
        history = [Step(0, "write", 67), *plan]
        play(make_shop(db, tenant, provider.url), tenant, history, set(range(CUSTOMERS)))
        feed(db)
    live = snapshot(db, tenant.workspace_id)
    assert live["facts"]

    wipe(db, tenant.workspace_id)
    summary = run(db, tenant.workspace_id)
    assert snapshot(db, tenant.workspace_id) == live
    assert summary.replayed == summary.in_range > 0
    assert summary.batches == summary.replayed // 7 + 1

    # Twice is once: the second rebuild deletes what the first wrote and writes it again.
    run(db, tenant.workspace_id)
    assert snapshot(db, tenant.workspace_id) == live

    # A range: its days rebuilt, the others left as they were (here: wrong on purpose).
    days = sorted({key[2][:10] for key in live["rollups"]})
    chosen = days[len(days) // 2]
    with db.transaction() as session:
        session.execute(update(Rollup).where(Rollup.workspace_id == tenant.workspace_id).values(count=Rollup.count + 7))
        session.execute(delete(ReportItem).where(ReportItem.workspace_id == tenant.workspace_id))
    spoilt = snapshot(db, tenant.workspace_id)
    run(db, tenant.workspace_id, date.fromisoformat(chosen), date.fromisoformat(chosen))
    after = snapshot(db, tenant.workspace_id)
    assert on_days(after, {chosen}, inside=True) == on_days(live, {chosen}, inside=True)
    assert on_days(after, {chosen}, inside=False) == on_days(spoilt, {chosen}, inside=False)
    with db.transaction(write=False) as session:
        assert repository.rebuild_of(session, tenant.workspace_id) is None


def _applied_afresh(db: Database, apply: Callable[[list[EventRecord]], None]) -> None:
    """Every workspace's report data and the cursor removed, then the whole log applied by `apply`."""
    with db.transaction() as session:
        for table in (Rollup, ReportItem, ConversationFact, ReportCursor):
            session.execute(delete(table))
        events = list(
            session.scalars(
                select(EventRecord).where(EventRecord.type.in_(sorted(rollups.TYPES))).order_by(EventRecord.id)
            )
        )
        session.expunge_all()
    apply(events)


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # no shrinking (see test_tag_filter)
)
@given(plan=steps, sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5), overlap=st.integers(0, 3))
# Two replies timed alike in one hour: increments of one key from two events, added up in the batch.
@example(plan=[Step(1, "write", 67), Step(0, "reply", 67), Step(1, "reply", 67)], sizes=[40], overlap=0)
def test_the_consumer_writes_the_same_one_event_at_a_time_as_in_batches(
    db: Database,
    make_tenant: Callable[..., Tenant],
    fakehttp_adapter: FakeHttpAdapter,
    fed_by_hand: None,
    plan: list[Step],
    sizes: list[int],
    overlap: int,
) -> None:
    """A batch reads its fact rows once and writes its increments merged by key: the same numbers
    as the events applied one by one, whatever the batches' sizes, and a batch delivered again in
    part (the log is at least once) applies only its new events."""
    tenant = make_tenant(default_country="MX", timezone="America/Mexico_City")
    with at(f"{REPLY_DAY} 08:00"):
        set_hours(db, tenant, NINE_TO_SEVEN)
    with fake_provider() as provider:
        play(make_shop(db, tenant, provider.url), tenant, [Step(0, "write", 67), *plan], set(range(CUSTOMERS)))

    def one_by_one(events: list[EventRecord]) -> None:
        assert all(rollups.apply_event(db, event) for event in events)

    def in_batches(events: list[EventRecord]) -> None:
        start, turn = 0, 0
        while start < len(events):
            end = min(len(events), start + sizes[turn % len(sizes)])
            # The batch starts a few events back: those were applied by the batch before.
            again = max(0, start - overlap)
            assert rollups.apply_events(db, events[again:end]) == end - start
            start, turn = end, turn + 1

    _applied_afresh(db, one_by_one)
    alone = snapshot(db, tenant.workspace_id)
    assert alone["facts"]
    _applied_afresh(db, in_batches)
    assert snapshot(db, tenant.workspace_id) == alone


def _merge_day(shop: Shop) -> None:
    """On TUESDAY two customers write, the second is merged into the first (their conversations
    folded), and the first is answered."""
    with at(f"{TUESDAY} 10:00"):
        first = shop.customer_writes("+5215550000301")
    with at(f"{TUESDAY} 10:01"):
        second = shop.customer_writes("+5215550000302")
    with at(f"{TUESDAY} 10:05"):
        shop.merge(shop.contact_of(first), shop.contact_of(second))
    with at(f"{TUESDAY} 10:10"):
        shop.reply(first, shop.tenant.actor())


def test_a_rebuild_while_the_consumer_runs_counts_every_event_once(
    db: Database,
    make_tenant: Callable[..., Tenant],
    fakehttp_adapter: FakeHttpAdapter,
    fed_by_hand: None,
    no_background_work: None,
) -> None:
    tenant = make_tenant(default_country="MX", timezone="America/Mexico_City")
    neighbour = make_tenant(default_country="MX", timezone="America/Mexico_City")
    with at(f"{REPLY_DAY} 08:00"):
        set_hours(db, tenant, NINE_TO_SEVEN)
    with fake_provider() as provider:
        shop, next_door = make_shop(db, tenant, provider.url), make_shop(db, neighbour, provider.url)
        reassignments_and_reopenings(shop)
        reassignments_and_reopenings(next_door)
        feed(db)
        began = rebuild.start(db, tenant.workspace_id, retention_days=KEEP_EVERYTHING)
        assert began.deleted_rollups > 0
        assert began.deleted_items > 0
        assert began.deleted_facts == 2
        # The consumer moves on: past this workspace's events (the rebuild's), applying the other's.
        weekend(shop, tenant)
        weekend(next_door, neighbour)
        assert feed(db) > 0
        assert snapshot(db, tenant.workspace_id)["facts"] == {}
        first = rebuild.next_batch(db, tenant.workspace_id, batch_size=5)
        assert (first.replayed, first.done) == (5, False)
        _merge_day(shop)
        feed(db)
        batches = 1
        while not rebuild.next_batch(db, tenant.workspace_id, batch_size=5).done:
            batches += 1
            if batches == 3:
                with at(f"{TUESDAY} 11:00"):
                    shop.customer_writes("+5215550000303")  # a customer writing mid-rebuild
                feed(db)
        with db.transaction(write=False) as session:
            assert repository.rebuild_of(session, tenant.workspace_id) is None
            assert repository.rebuilding_workspaces(session) == frozenset()
        # After the rebuild the consumer applies this workspace's events again, on the rebuilt facts.
        with at(f"{TUESDAY} 11:30"):
            shop.reply(shop.customer_writes("+5215550000303", "¿hola?"), tenant.actor())
        assert feed(db) > 0
    found = {w: snapshot(db, w) for w in (tenant.workspace_id, neighbour.workspace_id)}
    replay_live_from_scratch(db)
    expected = {w: snapshot(db, w) for w in (tenant.workspace_id, neighbour.workspace_id)}
    assert found == expected
    days = {key[2][:10] for key in expected[tenant.workspace_id]["rollups"]}
    assert {REPLY_DAY, MONDAY, TUESDAY} <= days

    # The weekend's first response is days on the calendar and minutes in business hours: both kept.
    def seconds(metric: str) -> float:
        rows = expected[tenant.workspace_id]["rollups"].items()
        return sum(total for key, (_, total) in rows if key[1] == "D" and key[3] == metric)

    assert seconds("first_response") > 2 * 86400 > seconds("first_response_bh") > 0


def test_a_rebuild_stopped_half_way_is_started_over_with_its_days(
    db: Database, make_tenant: Callable[..., Tenant], fakehttp_adapter: FakeHttpAdapter, fed_by_hand: None
) -> None:
    tenant = make_tenant(default_country="MX", timezone="America/Mexico_City")
    with fake_provider() as provider:
        shop = make_shop(db, tenant, provider.url)
        reassignments_and_reopenings(shop)
        weekend(shop, tenant)
        feed(db)
    live = snapshot(db, tenant.workspace_id)
    reply_day = date.fromisoformat(REPLY_DAY)
    rebuild.start(db, tenant.workspace_id, reply_day, reply_day, retention_days=KEEP_EVERYTHING)
    assert not rebuild.next_batch(db, tenant.workspace_id, batch_size=3).done
    # Stopped there: REPLY_DAY is part rebuilt. A rebuild of MONDAY rebuilds both.
    summary = run(db, tenant.workspace_id, date.fromisoformat(MONDAY), date.fromisoformat(MONDAY))
    assert (summary.start.first_day, summary.start.last_day) == (reply_day, date.fromisoformat(MONDAY))
    assert snapshot(db, tenant.workspace_id) == live


def test_bad_ranges_and_unknown_workspaces_are_refused(
    db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter, fed_by_hand: None
) -> None:
    with fake_provider() as provider, at(f"{REPLY_DAY} 09:00"):
        make_shop(db, tenant, provider.url).customer_writes("+5215550000401")
    feed(db)
    live = snapshot(db, tenant.workspace_id)
    with pytest.raises(NotFound):
        rebuild.rebuild(db, tenant.workspace_id + 1000, retention_days=KEEP_EVERYTHING)
    with pytest.raises(ValidationFailed) as backwards:
        rebuild.rebuild(db, tenant.workspace_id, date(2026, 11, 5), date(2026, 11, 4), retention_days=KEEP_EVERYTHING)
    assert "until" in backwards.value.details
    # With 30 days of retention on 2026-11-28 the log holds whole days from 2026-10-30 on (here the
    # oldest event is later, and the days after it are whole too).
    now = date(2026, 11, 28)
    with pytest.raises(ValidationFailed) as pruned:
        rebuild.rebuild(
            db,
            tenant.workspace_id,
            date(2026, 10, 29),
            retention_days=30,
            now=at_noon(now),
        )
    assert "2026-10-30" in pruned.value.details["since"]
    with db.transaction(write=False) as session:
        assert rebuild.earliest_day(session, tenant.workspace_id, 30, at_noon(now)) == date(2026, 10, 30)
        # A year later: only the day after the oldest event left is surely whole.
        assert rebuild.earliest_day(session, tenant.workspace_id, 30, at_noon(date(2027, 11, 28))) == date(2026, 11, 3)
        assert repository.rebuild_of(session, tenant.workspace_id) is None
    assert snapshot(db, tenant.workspace_id) == live  # nothing was touched


def at_noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


@pytest.fixture
def cli_db(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    monkeypatch.setenv("TERTULIA_DATABASE_URL", db.url)
    monkeypatch.setenv("TERTULIA_EVENT_RETENTION_DAYS", str(KEEP_EVERYTHING))
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()
    yield db
    kit_db.get_database().dispose()
    kit_settings.get_settings.cache_clear()
    kit_db.get_database.cache_clear()


def test_the_command_rebuilds_and_says_what_it_did(
    cli_db: Database, tenant: Tenant, fakehttp_adapter: FakeHttpAdapter, fed_by_hand: None
) -> None:
    with fake_provider() as provider:
        reassignments_and_reopenings(make_shop(cli_db, tenant, provider.url))
    feed(cli_db)
    live = snapshot(cli_db, tenant.workspace_id)
    wipe(cli_db, tenant.workspace_id)
    result = CliRunner().invoke(
        app, ["reports", "rebuild", "--workspace", str(tenant.workspace_id), "--batch-size", "10"]
    )
    assert result.exit_code == 0, result.output
    assert "events replayed" in result.output
    assert "events/s" in result.output
    assert snapshot(cli_db, tenant.workspace_id) == live
    # By name, and a range.
    result = CliRunner().invoke(
        app, ["reports", "rebuild", "--workspace", tenant.name, "--since", REPLY_DAY, "--until", REPLY_DAY]
    )
    assert result.exit_code == 0, result.output
    assert f"{REPLY_DAY} to {REPLY_DAY}" in " ".join(result.output.split())
    assert snapshot(cli_db, tenant.workspace_id) == live


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workspace", "999999"], "No workspace named '999999'"),
        (["--workspace", "Nadie"], "No workspace named 'Nadie'"),
        (["--since", "2026-13-01"], "--since takes a date as YYYY-MM-DD, got '2026-13-01'"),
        (["--until", "ayer"], "--until takes a date as YYYY-MM-DD, got 'ayer'"),
        (["--since", "2026-11-05", "--until", "2026-11-04"], "2026-11-04 is before --since 2026-11-05"),
    ],
)
def test_the_command_refuses_bad_input_with_exit_code_2(
    cli_db: Database, tenant: Tenant, arguments: list[str], message: str
) -> None:
    if "--workspace" not in arguments:
        arguments = ["--workspace", str(tenant.workspace_id), *arguments]
    result = CliRunner().invoke(app, ["reports", "rebuild", *arguments])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_the_command_refuses_days_the_log_no_longer_holds(
    cli_db: Database, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERTULIA_EVENT_RETENTION_DAYS", "30")
    kit_settings.get_settings.cache_clear()
    result = CliRunner().invoke(
        app, ["reports", "rebuild", "--workspace", str(tenant.workspace_id), "--since", "2000-01-01"]
    )
    assert result.exit_code == 2, result.output
    assert "the event log holds whole days from" in " ".join(result.output.split())


@pytest.fixture
def settings() -> Settings:
    return Settings(api_rate_limit_per_minute=100_000, presence_sweep_seconds=0, event_retention_days=KEEP_EVERYTHING)


def _token(page: str) -> str:
    return page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_settings_rebuilds_the_report_data_in_the_background_with_its_progress(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    queue.huey.immediate = False
    try:
        with fake_provider() as provider:
            reassignments_and_reopenings(make_shop(db, tenant, provider.url))
        feed(db)
    finally:
        queue.huey.flush()
        queue.huey.immediate = True  # from here the rebuild's task runs once the request commits
    live = snapshot(db, tenant.workspace_id)
    wipe(db, tenant.workspace_id)
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/data-export")
    assert page.status_code == 200
    assert 'data-testid="rebuild-reports-button"' in page.text
    assert 'data-status="running"' not in page.text
    # A rebuild stopped half way shows its progress, polled, and can be started again.
    rebuild.start(db, tenant.workspace_id, retention_days=KEEP_EVERYTHING)
    stopped = rebuild.next_batch(db, tenant.workspace_id, batch_size=3)
    card = client.get("/settings/data-export/reports/rebuild")
    assert 'data-status="running"' in card.text
    assert 'hx-trigger="every 2s"' in card.text
    # Written as the page writes numbers (grouped: the log's ids pass 1,000 in a long test run).
    position, upto = (format_decimal(n, locale="en") for n in (stopped.position, stopped.upto))
    assert f"Event {position} of {upto}" in card.text
    assert "Start the rebuild again" in card.text
    client.cookies.set("tertulia_lang", "es")
    assert "Reconstruyendo los datos de los informes" in client.get("/settings/data-export").text
    started = client.post(
        "/settings/data-export/reports/rebuild", data={"csrf_token": _token(page.text)}, follow_redirects=False
    )
    assert started.status_code == 303, started.text
    card = client.get("/settings/data-export/reports/rebuild")
    assert 'data-status="running"' not in card.text
    assert "Reconstruir los datos de los informes" in card.text
    assert snapshot(db, tenant.workspace_id) == live
    # An agent may not open the section.
    own_token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/settings/data-export/reports/rebuild").status_code == 403
    refused = client.post("/settings/data-export/reports/rebuild", data={"csrf_token": own_token})
    assert refused.status_code == 403
    with db.transaction(write=False) as session:
        assert repository.rebuild_of(session, tenant.workspace_id) is None
