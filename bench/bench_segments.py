"""Segment speed at scale, on SQLite and PostgreSQL.

`python -m bench segments`. TERTULIA_BENCH_CONTACTS picks N (default 1,000,000; e.g. 20000 for a
quick run); TERTULIA_BENCH_SQLITE / TERTULIA_BENCH_POSTGRES override the database URLs and
TERTULIA_BENCH_DATABASES ("sqlite,postgresql") which ones run. Datasets are built once and reused.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import select, update

from bench.dataset import build_dataset, complex_filter
from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.segments import repository as repo
from tertulia.segments import service
from tertulia.segments.compiler import compile_filter
from tertulia.segments.models import Segment
from tertulia.users.models import Role
from tertulia.users.permissions import Actor

REPEATS = int(os.environ.get("TERTULIA_BENCH_REPEATS", "7"))
RESULTS = Path(__file__).parent / "results"


def contacts_wanted() -> int:
    return int(os.environ.get("TERTULIA_BENCH_CONTACTS", "1000000"))


def database_urls(n: int) -> dict[str, str]:
    urls = {
        "sqlite": os.environ.get("TERTULIA_BENCH_SQLITE", f"sqlite:///{Path('data/bench').resolve()}/contacts-{n}.db"),
        "postgresql": os.environ.get(
            "TERTULIA_BENCH_POSTGRES", f"postgresql+psycopg://postgres@127.0.0.1:5432/tertulia_bench_{n}"
        ),
    }
    chosen = os.environ.get("TERTULIA_BENCH_DATABASES", "sqlite,postgresql").split(",")
    return {name: url for name, url in urls.items() if name in chosen}


def ensure_postgres_database(url: str) -> None:
    base, name = url.rsplit("/", 1)
    admin = base.replace("postgresql+psycopg://", "postgresql://", 1) + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


def timed(action: Callable[[], Any], repeats: int = REPEATS) -> dict[str, float]:
    action()  # warm caches: a benchmark of a server that just started measures the disk
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]
    return {"median_ms": round(statistics.median(samples), 2), "p95_ms": round(p95, 2)}


def run_one(name: str, url: str, n: int) -> dict[str, Any]:
    if name == "postgresql":
        ensure_postgres_database(url)
    else:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    info = build_dataset(url, n)
    print(f"-- {name}: {n} contacts ({'reused' if info.reused else 'built'} in {info.built_seconds:.1f} s)", flush=True)
    db = Database(url)
    actor = Actor(workspace_id=info.workspace_id, kind="user", user_id=info.owner_id, role=Role.OWNER)
    results: dict[str, Any] = {"contacts": n, "built_seconds": round(info.built_seconds, 1)}
    try:
        with db.transaction(write=False) as session:
            segments = repo.segments(session, info.workspace_id)
            defaults = [s for s in segments if not s.name.startswith("Bench segment")]
            ctx = service.eval_context(session, actor)
            for segment in defaults:
                clause = compile_filter(service.checked_segment_filter(session, actor, segment), ctx)
                count = repo.count_contacts(session, clause)

                def count_once(c: Any = clause) -> int:
                    return repo.count_contacts(session, c)

                results[f"count: {segment.name}"] = timed(count_once) | {"count": count}
            checked = service.check_ad_hoc_filter(session, actor, complex_filter())
            clause = compile_filter(checked, ctx)
            results["complex filter count"] = timed(lambda: repo.count_contacts(session, clause)) | {
                "count": repo.count_contacts(session, clause)
            }
            results["complex filter first page (50)"] = timed(
                lambda: service.contacts_page(session, actor, checked, after_id=None, limit=50)
            )

        def list_cold() -> None:
            with db.transaction() as writer:
                writer.execute(update(Segment).values(count_computed_at=None, contact_count=None))
            with db.transaction(write=False) as reader:
                service.list_segments(reader, actor)

        def list_warm() -> None:
            with db.transaction(write=False) as reader:
                service.list_segments(reader, actor)

        results["segment list, 50 counts, all recomputed"] = timed(list_cold, repeats=max(1, REPEATS // 3))
        list_warm()
        results["segment list, 50 counts, cached (<60 s old)"] = timed(list_warm)

        with db.transaction(write=False) as session:
            ids = list(session.scalars(select(Contact.id).where(Contact.workspace_id == info.workspace_id).limit(5000)))
        rng = random.Random(7)
        sample = rng.sample(ids, min(200, len(ids)))
        picks = iter(sample * 10)

        def contact_segments() -> None:
            with db.transaction(write=False) as reader:
                contact = reader.get(Contact, next(picks))
                assert contact is not None
                service.segments_of_contact(reader, actor, contact)

        results["contact -> segments (50 segments)"] = timed(contact_segments, repeats=max(REPEATS, 50))
        results["memberships agree with SQL (200 contacts x 50 segments)"] = check_agreement(db, actor, sample)
    finally:
        db.dispose()
    return results


def check_agreement(db: Database, actor: Actor, sample: list[int]) -> bool:
    """The in-memory answer for each sampled contact equals the SQL membership, for every segment."""
    with db.transaction(write=False) as session:
        ctx = service.eval_context(session, actor)
        by_sql: dict[int, set[int]] = {contact_id: set() for contact_id in sample}
        for segment in repo.segments(session, actor.workspace_id):
            clause = compile_filter(service.checked_segment_filter(session, actor, segment), ctx)
            for contact_id in session.scalars(select(Contact.id).where(clause, Contact.id.in_(sample))):
                by_sql[contact_id].add(segment.id)
        for contact_id in sample:
            contact = session.get(Contact, contact_id)
            assert contact is not None
            in_memory = {s.id for s in service.segments_of_contact(session, actor, contact)}
            if in_memory != by_sql[contact_id]:
                print(f"!! contact {contact_id}: memory {sorted(in_memory)} sql {sorted(by_sql[contact_id])}")
                return False
    return True


def main() -> None:
    n = contacts_wanted()
    report: dict[str, Any] = {}
    for name, url in database_urls(n).items():
        report[name] = run_one(name, url, n)
        for label, figures in report[name].items():
            print(f"{name:10} {label:58} {figures}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"segments-{n}.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
