"""Server time of the web app's pages at scale, on SQLite and PostgreSQL.

`python -m bench pages`. Requests go through the whole app in-process (Starlette's TestClient: routing,
session and CSRF checks, queries, template rendering), so the figure is the server's time without the
network. TERTULIA_BENCH_CONTACTS picks N (default 1,000,000; e.g. 20000 for a quick run);
TERTULIA_BENCH_DATABASES ("sqlite,postgresql") and TERTULIA_BENCH_SQLITE / TERTULIA_BENCH_POSTGRES
as in `bench segments`, whose datasets are reused. Target: under 150 ms per page.
"""

import os

os.environ.setdefault("TERTULIA_SECRET_KEY", "bench-secret-key")

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from bench.bench_segments import RESULTS, contacts_wanted, database_urls, ensure_postgres_database, timed
from bench.dataset import build_dataset
from tertulia.app import create_app
from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings
from tertulia.segments.models import Segment
from tertulia.users.sessions import SESSION_COOKIE, do_sign_in

TARGET_MS = 150.0


def run_one(name: str, url: str, n: int) -> dict[str, Any]:
    if name == "postgresql":
        ensure_postgres_database(url)
    else:
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
    info = build_dataset(url, n)
    print(f"-- {name}: {n} contacts ({'reused' if info.reused else 'built'})", flush=True)
    db = Database(url)
    results: dict[str, Any] = {"contacts": n}
    try:
        with db.transaction() as session:
            signed_in = do_sign_in(session, "bench-owner@example.com", "bench-password", client_ip=None)
            newest = session.scalar(select(func.max(Contact.id)).where(Contact.workspace_id == info.workspace_id))
            oldest = session.scalar(select(func.min(Contact.id)).where(Contact.workspace_id == info.workspace_id))
            segments = list(session.scalars(select(Segment.id).where(Segment.workspace_id == info.workspace_id)))
        if newest is None or oldest is None or not segments:
            raise SystemExit("the bench workspace has no contacts or no segments")
        middle = (newest + oldest) // 2
        app = create_app(Settings(api_rate_limit_per_minute=1_000_000), db)
        with TestClient(app, raise_server_exceptions=True) as client:
            client.cookies.set(SESSION_COOKIE, signed_in.token)

            def page(path: str) -> None:
                response = client.get(path)
                if response.status_code != 200:
                    raise SystemExit(f"{path}: HTTP {response.status_code}")

            def forget_counts() -> None:
                # As after a minute without anyone looking: every cached count is too old to show.
                with db.transaction() as session:
                    session.execute(
                        update(Segment).where(Segment.workspace_id == info.workspace_id).values(count_computed_at=None)
                    )

            def cold_sidebar() -> None:
                forget_counts()
                page("/contacts/segments/sidebar")

            def all_counts() -> None:
                # What the browser asks right after a cold sidebar: one count request per segment.
                forget_counts()
                for segment_id in segments:
                    page(f"/contacts/segments/{segment_id}/count")

            cases = {
                "contacts list (first page)": lambda: page("/contacts"),
                "contacts list (a page deep in the list)": lambda: page(f"/contacts?after={middle}"),
                "contacts search (name prefix)": lambda: page("/contacts?q=garc"),
                f"segment list with counts ({len(segments)} segments, cached counts)": lambda: page(
                    "/contacts/segments/sidebar"
                ),
                f"segment list ({len(segments)} segments, counts too old: shown loading)": cold_sidebar,
                "one segment's count, recounted (plus clearing the cache)": lambda: (
                    forget_counts(),
                    page(f"/contacts/segments/{segments[len(segments) // 2]}/count"),
                ),
                f"all {len(segments)} counts recounted, one request each (total)": all_counts,
                "a contact page": lambda: page(f"/contacts/{middle}"),
                "a segment's contacts (first page)": lambda: page(f"/contacts/segments/{segments[0]}"),
            }
            for label, action in cases.items():
                figures = timed(action)
                figures["under_target"] = figures["p95_ms"] < TARGET_MS
                results[label] = figures
                print(f"   {label}: median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms", flush=True)
    finally:
        db.dispose()
    return results


def main() -> None:
    n = contacts_wanted()
    results = {name: run_one(name, url, n) for name, url in database_urls(n).items()}
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"pages-{n}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")
