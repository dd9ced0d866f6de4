"""Import (upload, mapping, background run, summary, rejected rows) and export in the web app."""

import csv
import io
import re
import time
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tertulia.contacts.import_jobs import MAX_IMPORT_BYTES
from tertulia.contacts.import_models import ImportJob, ImportStatus
from tertulia.contacts.importer import MAX_COLUMNS
from tertulia.contacts.models import Contact, CustomField, FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.segments.service import do_create_segment
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as

CSV = (
    "Nombre,Correo,Plan,Notas\r\n"
    "Ana,ana@example.com,Pro,first\r\n"
    "Bad,not-an-email,Free,second\r\n"
    "<script>alert(1)</script>,x@example.com,Free,third\r\n"
)


def _upload(client: TestClient, token: str, body: bytes, name: str = "people.csv") -> int:
    response = client.post(
        "/contacts/import", data={"csrf_token": token}, files={"file": (name, body, "text/csv")}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/contacts/import/(\d+)", response.headers["location"])
    assert match
    return int(match.group(1))


def _wait(db: Database, job_id: int) -> ImportJob:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
        with db.transaction(write=False) as session:
            job = session.get(ImportJob, job_id)
            assert job is not None
            if job.status in (ImportStatus.DONE, ImportStatus.FAILED):
                session.expunge(job)
                return job
    raise AssertionError("the import did not finish")


def test_import_maps_columns_runs_in_background_and_reports_rejected_rows(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    with db.transaction() as session:
        do_create_custom_field(session, tenant.actor(), "plan", "Plan", FieldType.TEXT)
    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    job_id = _upload(client, token, CSV.encode())

    mapping = client.get(f"/contacts/import/{job_id}")
    assert mapping.status_code == 200
    # The guess: Nombre -> first name, Correo -> email, Plan -> the custom field; Notas is ignored.
    selects = dict(re.findall(r'name="(col-\d)".*?<option value="([^"]+)" selected', mapping.text, re.S))
    assert selects == {"col-0": "first_name", "col-1": "email", "col-2": "custom:plan", "col-3": "ignore"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in mapping.text
    assert "<script>alert(1)</script>" not in mapping.text

    twice = client.post(
        f"/contacts/import/{job_id}/start",
        data={"col-0": "email", "col-1": "email", "col-2": "ignore", "col-3": "ignore", "csrf_token": token},
    )
    assert twice.status_code == 422
    assert "more than one column maps to this field" in twice.text

    started = client.post(
        f"/contacts/import/{job_id}/start",
        data={
            "col-0": "first_name",
            "col-1": "email",
            "col-2": "custom:plan",
            "col-3": "ignore",
            "mode": "create",
            "csrf_token": token,
        },
        follow_redirects=False,
    )
    assert started.status_code == 303
    job = _wait(db, job_id)
    assert job.status == ImportStatus.DONE, job.error
    assert (job.created_count, job.rejected_count, job.processed_rows) == (2, 1, 3)

    summary = client.get(f"/contacts/import/{job_id}")
    assert 'data-status="done"' in summary.text
    assert f"/contacts/import/{job_id}/rejected.csv" in summary.text
    rejected = client.get(f"/contacts/import/{job_id}/rejected.csv")
    assert rejected.status_code == 200
    assert "attachment" in rejected.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(rejected.text)))
    assert rows[0] == ["Nombre", "Correo", "Plan", "Notas", "error"]
    assert rows[1][:4] == ["Bad", "not-an-email", "Free", "second"]
    assert rows[1][4].startswith("line 3: email")
    with db.transaction(write=False) as session:
        contacts = {c.email: c for c in session.scalars(select(Contact))}
        assert set(contacts) == {"ana@example.com", "x@example.com"}
        assert contacts["ana@example.com"].custom == {"plan": "Pro"}

    # A started job cannot be started again.
    again = client.post(f"/contacts/import/{job_id}/start", data={"col-1": "email", "csrf_token": token})
    assert again.status_code == 422


def test_upload_errors_are_shown_beside_the_file_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    empty = client.post("/contacts/import", data={"csrf_token": token}, files={"file": ("x.csv", b"", "text/csv")})
    assert empty.status_code == 422
    assert "field-error" in empty.text
    wrong = client.post(
        "/contacts/import", data={"csrf_token": token}, files={"file": ("x.exe", b"a,b\n1,2\n", "application/x")}
    )
    assert wrong.status_code == 422
    big = client.post(
        "/contacts/import",
        data={"csrf_token": token},
        files={"file": ("x.csv", b"a\n" + b"1" * MAX_IMPORT_BYTES, "text/csv")},
    )
    assert big.status_code == 422
    with db.transaction(write=False) as session:
        assert session.scalar(select(ImportJob.id)) is None


def test_agents_may_not_import_or_export(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/contacts/import").status_code == 403
    assert client.get("/contacts/export").status_code == 403
    refused = client.post(
        "/contacts/import", data={"csrf_token": token}, files={"file": ("a.csv", b"email\n", "text/csv")}
    )
    assert refused.status_code == 403
    page = client.get("/contacts")
    assert 'href="/contacts/import"' not in page.text
    assert 'href="/contacts/export"' not in page.text


def test_imports_of_another_workspace_are_not_found(client: TestClient, db: Database, make_tenant: object) -> None:
    first = make_tenant()  # type: ignore[operator]
    second = make_tenant()  # type: ignore[operator]
    token = sign_in_as(client, db, first.owner_id, "owner-password")
    job_id = _upload(client, token, b"email\na@example.com\n")
    client.cookies.clear()
    sign_in_as(client, db, second.owner_id, "owner-password")
    assert client.get(f"/contacts/import/{job_id}").status_code == 404


def test_export_all_contacts_and_a_segment(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        actor = tenant.actor()
        for n in range(3):
            contact = do_create_contact(session, actor, {"email": f"c{n}@example.com", "first_name": f"=cmd{n}"})
            if n == 0:
                do_add_tags(session, actor, contact, ["vip"])
        segment = do_create_segment(
            session,
            actor,
            "VIP",
            {"groups": [{"conditions": [{"category": "tag", "operator": "has_any_of", "value": ["vip"]}]}]},
        )
        segment_id = segment.id
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    everything = client.get("/contacts/export")
    assert everything.status_code == 200
    assert everything.headers["content-type"].startswith("text/csv")
    assert "attachment" in everything.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(everything.content.decode("utf-8-sig"))))
    assert sorted(r["email"] for r in rows) == ["c0@example.com", "c1@example.com", "c2@example.com"]
    # Formula-looking cells are neutralised for spreadsheets.
    assert all(not r["first_name"].startswith("=") for r in rows)
    only_vip = client.get(f"/contacts/export?segment={segment_id}")
    vip_rows = list(csv.DictReader(io.StringIO(only_vip.content.decode("utf-8-sig"))))
    assert [r["email"] for r in vip_rows] == ["c0@example.com"]
    assert client.get("/contacts/export?segment=999999").status_code == 404
    with db.transaction(write=False) as session:
        assert session.scalar(select(CustomField.id)) is None


def test_an_import_whose_process_died_shows_as_failed(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    job_id = _upload(client, token, b"email\na@example.com\n")
    with db.transaction() as session:
        job = session.get(ImportJob, job_id)
        assert job is not None
        job.status = ImportStatus.RUNNING
        session.flush()
        session.execute(
            update(ImportJob).where(ImportJob.id == job_id).values(updated_at=utcnow() - timedelta(minutes=11))
        )
    page = client.get(f"/contacts/import/{job_id}")
    assert 'data-status="failed"' in page.text
    assert 'hx-trigger="every 1s"' not in page.text


def test_a_bad_row_is_rejected_alone_and_the_rejected_rows_file_holds_no_formula(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    """On PostgreSQL one NUL byte used to fail the whole import (0 rows); on SQLite it was stored. Now
    the row is rejected in the report on both, and the rejected-rows file, which a manager opens in
    a spreadsheet, neutralises formulas like the export does."""
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    body = (
        b"Nombre,Correo,Notas\r\n"
        b"Ana,ana@example.com,ok\r\n"
        b"Be\x00a,bea@example.com,ok\r\n"
        b'=HYPERLINK("http://x"),not-an-email,@SUM(1+1)\r\n'
        b"Carla,carla@example.com,ok\r\n"
    )
    job_id = _upload(client, token, body)
    started = client.post(
        f"/contacts/import/{job_id}/start",
        data={"col-0": "first_name", "col-1": "email", "col-2": "ignore", "mode": "create", "csrf_token": token},
        follow_redirects=False,
    )
    assert started.status_code == 303, started.text
    job = _wait(db, job_id)
    assert job.status == ImportStatus.DONE, job.error
    assert (job.created_count, job.rejected_count) == (2, 2)
    with db.transaction(write=False) as session:
        assert set(session.scalars(select(Contact.email))) == {"ana@example.com", "carla@example.com"}
    rows = list(csv.reader(io.StringIO(client.get(f"/contacts/import/{job_id}/rejected.csv").text)))
    assert rows[1][0] == "Be\ufffda"
    assert rows[1][3] == "line 3: first_name: must not contain NUL characters or unpaired surrogates"
    assert rows[2][:3] == ['\'=HYPERLINK("http://x")', "not-an-email", "'@SUM(1+1)"]


def test_a_file_with_too_many_columns_is_refused_at_upload(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    columns = MAX_COLUMNS + 1
    wide = (",".join(f"c{i}" for i in range(columns)) + "\r\n" + ",".join("x" * columns) + "\r\n").encode()
    response = client.post("/contacts/import", data={"csrf_token": token}, files={"file": ("w.csv", wide, "text/csv")})
    assert response.status_code == 422
    assert f"has {columns} columns; at most {MAX_COLUMNS} can be imported" in response.text
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(ImportJob)) == 0


def test_a_form_starlette_cannot_parse_is_an_error_page(client: TestClient, db: Database, tenant: Tenant) -> None:
    token = sign_in_as(client, db, tenant.owner_id, "owner-password")
    fields = {f"col-{i}": "ignore" for i in range(1200)}  # more fields than a form may carry
    response = client.post("/contacts/import/1/start", data={**fields, "csrf_token": token})
    assert response.status_code == 400
    assert "text/html" in response.headers["content-type"]
