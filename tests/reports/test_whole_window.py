"""The numbers that add up a whole range (the users report, the leaderboard, the previous period of
every summary) read their cells summed over the range (`whole=True`) instead of by day or hour, and
the different contacts closed and conversations replied to are counted by the database: the same
numbers, from far fewer rows. Here, for random days of work through the real inbox, with some
events applied by the consumer and some still pending (replies and closings of conversations the
rollups already count among them), with and without the tag filter and the business-hours toggle,
both ways of reading give the same cells, counts and reports."""

from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from tertulia.contacts.models import Tag
from tertulia.kit import queue
from tertulia.kit.db import Database
from tertulia.reports import repository, service
from tertulia.reports.repository import Cell, Filters
from tertulia.workspaces.service import do_set_business_hours
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.plays import CUSTOMERS, Step, play, steps, tag_customers
from tests.reports.support import NINE_TO_SEVEN, at, feed, make_shop

# The plans start on 2026-11-04 at 08:00 and last at most a few days: a range by day around them,
# one by the hour (the plan's first day), and their previous periods (read by every summary).
RANGES = ((date(2026, 11, 3), date(2026, 11, 12)), (date(2026, 11, 4), date(2026, 11, 4)))
# Every metric a report reads whole.
METRICS = sorted(
    {
        *service.PER_ROLLUPS,
        *service.PER_REPLY_ROLLUPS,
        *service.RESPONSE_TIMES,
        "opened",
        "reopened",
        "incoming",
        "failed",
        "unassigned",
        "contacts_added",
        "contacts_deleted",
        "contacts_merged",
    }
)
REPORTS = ("users", "leaderboard", "conversations", "responses", "messages", "resolutions", "assignments", "contacts")
RANKINGS = (("closed", "user"), ("first_response", "user"), ("messages_sent", "team"), ("resolution", "team"))


def _sums(cells: list[Cell]) -> dict[tuple[str, str, int, int], tuple[int, float]]:
    """The cells added up over their periods."""
    found: dict[tuple[str, str, int, int], list[float]] = defaultdict(lambda: [0, 0.0])
    for cell in cells:
        sums = found[(cell.metric, cell.label, cell.bucket, cell.key)]
        sums[0] += cell.count
        sums[1] += cell.total
    return {key: (int(count), total) for key, (count, total) in found.items() if count or total}


def _label_counts(read: service._Read, window: service.Range, metric: str, column: str) -> dict[int, int]:
    counts: dict[int, int] = defaultdict(int)
    for key, _label in read.labels_by(window, metric, column):
        counts[key] += 1
    return dict(counts)


def _label_count(read: service._Read, window: service.Range, metric: str, column: str) -> int:
    return len({label for _key, label in read.labels_by(window, metric, column)})


@contextmanager
def _as_before() -> Iterator[None]:
    """The reports as they read before: every cell by period, and every (person, label) pair of
    the different contacts closed and conversations replied to, counted here."""
    by_period = service._Read.cells

    def cells(self: service._Read, *args: Any, whole: bool = False, **kwargs: Any) -> list[Cell]:
        return by_period(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service._Read, "cells", cells)
        patch.setattr(service._Read, "label_counts", _label_counts)
        patch.setattr(service._Read, "label_count", _label_count)
        yield


def _compare(db: Database, tenant: Tenant, tag_id: int) -> int:
    """Both ways of reading, everywhere: how many whole cells were compared (so an empty workspace
    cannot pass for an agreement)."""
    compared = 0
    filters = (Filters(), Filters(tag_id=tag_id), Filters(user_id=tenant.owner_id))
    for first, last in RANGES:
        window = service.Range(first, last, "custom")
        for chosen in filters:
            for business_hours in (False, True):
                with db.transaction(write=False) as session, service._snapshot(session) as snapshot:
                    read = service._Read(snapshot, tenant.workspace_id, window, chosen, None, business_hours)
                    for span in (window, window.previous()):
                        for by in (None, "user_id", "team_id"):
                            whole = read.cells(span, METRICS, by=by, whole=True)
                            assert {cell.period for cell in whole} <= {repository.WHOLE}
                            expected = _sums(read.cells(span, METRICS, by=by))
                            found = _sums(whole)
                            assert found.keys() == expected.keys()
                            for key, (count, total) in found.items():
                                assert count == expected[key][0], key
                                assert total == pytest.approx(expected[key][1], rel=1e-12, abs=1e-9), key
                            compared += len(found)
                        for metric in ("closed_contact", "replied_conversation"):
                            for column in ("user_id", "team_id"):
                                counts = read.label_counts(span, metric, column)
                                assert counts == _label_counts(read, span, metric, column)
                                assert read.label_count(span, metric, column) == _label_count(
                                    read, span, metric, column
                                )
                                compared += len(counts)
    for name in REPORTS:
        for first, last in RANGES:
            for chosen in filters:
                for business_hours in (False, True) if name in service.TIMED_REPORTS else (False,):
                    for metric, by in RANKINGS if name == "leaderboard" else ((None, None),):

                        def build() -> dict[str, Any]:
                            with db.transaction(write=False) as session:
                                return service.build_report(
                                    session,
                                    tenant.actor(),
                                    name,  # noqa: B023 - built and called in the same iteration
                                    preset="custom",
                                    start=first,  # noqa: B023
                                    end=last,  # noqa: B023
                                    filters=chosen,  # noqa: B023
                                    metric=metric,  # noqa: B023
                                    by=by,  # noqa: B023
                                    business_hours=business_hours,  # noqa: B023
                                )

                        found = build()
                        with _as_before():
                            expected = build()
                        assert found == expected, (name, first, chosen, business_hours, metric, by)
    return compared


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
# A customer answered before the consumer ran and again after (the same conversation replied to,
# pending and applied), and another closed twice (the same contact closed, pending and applied).
@example(
    plan=[
        Step(0, "reply", 67),
        Step(1, "write", 67),
        Step(1, "reply", 67),
        Step(1, "close", 67),
        Step(0, "write", 247),
        Step(0, "reply", 67),
        Step(1, "write", 67),
        Step(1, "reply", 67),
        Step(1, "close", 67),
    ],
    applied=5,
    tagged={0, 1},
)
@given(
    plan=steps,
    applied=st.integers(0, 19),
    tagged=st.sets(st.integers(0, CUSTOMERS - 1), min_size=1, max_size=CUSTOMERS),
)
def test_reading_a_range_whole_gives_the_numbers_of_reading_it_by_period(
    db: Database,
    make_tenant: Callable[..., Tenant],
    client: TestClient,
    fakehttp_adapter: FakeHttpAdapter,
    plan: list[Step],
    applied: int,
    tagged: set[int],
) -> None:
    plan = [Step(0, "write", 60), *plan]  # something happens in every example
    tenant = make_tenant(default_country="MX", timezone="America/Mexico_City")
    with at("2026-11-01 08:00"), db.transaction() as session:
        do_set_business_hours(session, tenant.actor(), NINE_TO_SEVEN)
    queue.huey.immediate = False  # the consumer runs only when fed: the plan's tail stays pending
    try:
        with fake_provider() as provider:
            shop = make_shop(db, tenant, provider.url)
            conversations = play(shop, tenant, plan[:applied], set(range(CUSTOMERS)))
            feed(db)
            conversations |= play(shop, tenant, _after(plan, applied), set(range(CUSTOMERS)))
            tag_customers(db, tenant, shop, conversations, tagged)
            tag_id = _vip(db, tenant)
            assert _compare(db, tenant, tag_id) > 0
    finally:
        queue.huey.flush()


def _after(plan: list[Step], applied: int) -> list[Step]:
    """The plan's steps from `applied` on, at their times in the whole plan (`play` starts its
    clock anew); a step for a conversation of the first part is passed over."""
    tail = plan[applied:]
    if not tail:
        return []
    elapsed = sum(step.seconds for step in plan[:applied])
    return [replace(tail[0], seconds=tail[0].seconds + elapsed), *tail[1:]]


def _vip(db: Database, tenant: Tenant) -> int:
    with db.transaction(write=False) as session:
        found = session.scalar(select(Tag.id).where(Tag.workspace_id == tenant.workspace_id, Tag.name_key == "vip"))
    assert found is not None
    return int(found)
