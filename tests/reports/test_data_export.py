"""Settings > Data export and /api/v1/exports: the zip holds what the database holds for the range,
cells a spreadsheet would run are neutralised, one export runs at a time per workspace, the file
expires after 7 days, a run killed half-way is finished by the next one with one file, and agents
are refused."""

import csv
import io
import shutil
import zipfile
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation, Message
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.db import Database
from tertulia.reports import export_runner
from tertulia.reports.export_models import DataExport, ExportStatus
from tertulia.reports.exports import do_create_export
from tertulia.users.models import Role
from tertulia.users.service import do_create_api_token
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter, fake_provider
from tests.reports.support import (
    BUSY_DAY,
    FIRST_RESPONSE,
    FRIDAY,
    MONDAY,
    NINE_TO_SEVEN,
    RESOLUTION,
    Shop,
    at,
    busy_day,
    feed,
    make_shop,
    set_hours,
    weekend,
)
from tests.web.helpers import sign_in_as

RANGE = {"from": "2026-11-01", "to": "2026-11-03"}
START, END = export_runner.utc_bounds(date(2026, 11, 1), date(2026, 11, 3), ZoneInfo("America/Mexico_City"))


@pytest.fixture
def exports_folder(tenant: Tenant) -> Iterator[Path]:
    """The workspace's folder of export files, empty at the start (ids repeat across databases)."""
    folder = export_runner.exports_root() / str(tenant.workspace_id)
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _shop_with_formulas(db: Database, tenant: Tenant) -> Shop:
    """The reports' busy day (its channel is named "=Tienda", a reply failed with "-1 blocked"), a
    customer who writes formulas, and a contact outside the range."""
    shop = busy_day(db, tenant)
    with at(f"{BUSY_DAY} 12:00"):
        conversation = shop.customer_writes("+5215550007777", text='=HYPERLINK("http://x")')
    with db.transaction() as session:
        conv = session.get(Conversation, conversation)
        assert conv is not None
        contact = session.get(Contact, conv.contact_id)
        assert contact is not None
        contact.first_name = "@SUM(A1)"
        contact.last_name = "\tTab"
    with at("2026-11-20 12:00"):
        shop.customer_writes("+5215550008888", text="later")
    return shop


def _start(client: TestClient, tenant: Tenant, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/exports", headers=tenant.headers, json={**RANGE, **body})
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


def _zip(client: TestClient, tenant: Tenant, export_id: int) -> dict[str, list[list[str]]]:
    response = client.get(f"/api/v1/exports/{export_id}/download", headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {
            name.removesuffix(".csv"): list(csv.reader(io.StringIO(archive.read(name).decode("utf-8-sig"))))
            for name in archive.namelist()
        }


def test_the_zip_holds_the_ranges_data_with_formulas_neutralised(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, exports_folder: Path
) -> None:
    _shop_with_formulas(db, tenant)
    created = _start(client, tenant)
    # The queue runs the job right after the commit (tests' inline queue): it is done already.
    status = client.get(f"/api/v1/exports/{created['id']}", headers=tenant.headers).json()
    assert status["status"] == "done", status
    assert status["percent"] == 100
    assert status["processed_rows"] == status["total_rows"] > 0
    assert status["download_url"] == f"/api/v1/exports/{created['id']}/download"
    files = _zip(client, tenant, created["id"])
    assert list(files) == ["contacts", "conversations", "messages", "failed_messages"]

    with db.transaction(write=False) as session:
        conversations = list(
            session.scalars(
                select(Conversation)
                .where(Conversation.workspace_id == tenant.workspace_id, Conversation.opened_at < END)
                .order_by(Conversation.id)
            )
        )
        message_count = session.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.workspace_id == tenant.workspace_id, Message.created_at < END)
        )
    header, *rows = files["conversations"]
    assert header[:6] == ["conversation_id", "status", "channel_id", "channel", "contact_id", "contact"]
    assert [int(row[0]) for row in rows] == [c.id for c in conversations]  # the one of Nov 20 is not there
    column = {name: index for index, name in enumerate(header)}
    by_id = {int(row[0]): row for row in rows}
    first = by_id[conversations[0].id]
    assert first[column["channel"]] == "'=Tienda"
    # The scenario's clock travels on while each step is written (over a second on a busy machine),
    # so a duration comes out a little longer or shorter than the scenario's: a few seconds of slack.
    assert float(first[column["resolution_seconds"]]) == pytest.approx(3600, abs=5)
    assert first[column["first_assignee"]].startswith("owner")
    assert first[column["closing_category"]] == "Venta"
    assert first[column["incoming_messages"]] == "1"
    assert first[column["outgoing_messages"]] == "1"
    waits = [float(row[column["first_response_seconds"]]) for row in rows[:4]]
    assert waits == pytest.approx([20, 90, 400, 4000], abs=5)
    assert by_id[conversations[-1].id][column["contact"]] == "'@SUM(A1) \tTab"

    header, *messages = files["messages"]
    assert len(messages) == message_count
    texts = [row[header.index("text")] for row in messages]
    assert '\'=HYPERLINK("http://x")' in texts
    assert "later" not in texts
    header, *failed = files["failed_messages"]
    assert len(failed) == 1
    assert failed[0][header.index("status_reason")] == "'-1 blocked"
    assert failed[0][header.index("status")] == "failed"

    header, *contacts = files["contacts"]
    assert "first_name" in header
    names = [row[header.index("first_name")] for row in contacts]
    assert "'@SUM(A1)" in names
    assert len(contacts) == len(conversations)  # one customer per conversation in the range; Nov 20's is out
    # The file is under the data directory, one per export.
    assert [p.suffix for p in exports_folder.iterdir()] == [".zip"]


def test_one_export_at_a_time_per_workspace(
    db: Database, tenant: Tenant, make_tenant: Any, client: TestClient, exports_folder: Path
) -> None:
    with db.transaction() as session:
        session.add(
            DataExport(
                workspace_id=tenant.workspace_id,
                first_day=date(2026, 11, 1),
                last_day=date(2026, 11, 2),
                files=["contacts"],
                status=ExportStatus.RUNNING,
            )
        )
    refused = client.post("/api/v1/exports", headers=tenant.headers, json=RANGE)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "export_running"
    # The page says so beside its form, in the reader's language.
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get("/settings/data-export")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    client.cookies.set("tertulia_lang", "es")
    again = client.post("/settings/data-export", data={**RANGE, "files": "contacts", "csrf_token": token})
    assert again.status_code == 409
    assert "Ya hay una exportación de este espacio de trabajo en marcha" in again.text
    # Two requests that both passed the check: the index holds the line.
    with pytest.raises(IntegrityError), db.transaction() as session:
        session.add(
            DataExport(
                workspace_id=tenant.workspace_id,
                first_day=date(2026, 11, 1),
                last_day=date(2026, 11, 2),
                files=["contacts"],
                status=ExportStatus.QUEUED,
            )
        )
    # Another workspace is not held up.
    other = make_tenant()
    assert client.post("/api/v1/exports", headers=other.headers, json=RANGE).status_code == 202
    shutil.rmtree(export_runner.exports_root() / str(other.workspace_id), ignore_errors=True)


def test_the_range_and_files_are_checked(db: Database, tenant: Tenant, client: TestClient) -> None:
    cases = [
        ({"from": "2026-11-03", "to": "2026-11-01"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, "to"),
        ({**RANGE, "files": ["contacts", "secrets"]}, "files"),
    ]
    for body, field in cases:
        response = client.post("/api/v1/exports", headers=tenant.headers, json=body)
        assert response.status_code == 422, body
        assert field in response.json()["error"]["details"], response.json()
    sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get("/settings/data-export")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    refused = client.post("/settings/data-export", data={**RANGE, "csrf_token": token})  # no file chosen
    assert refused.status_code == 422
    assert 'id="files-error"' in refused.text
    with db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(DataExport)) == 0


def test_the_file_expires_after_7_days(db: Database, tenant: Tenant, client: TestClient, exports_folder: Path) -> None:
    created = _start(client, tenant, files=["contacts"])
    assert _zip(client, tenant, created["id"])["contacts"][0][0] == "id"
    with travel(timedelta(days=7) - timedelta(minutes=1)):
        assert export_runner.expire_exports(db) == 0
        assert client.get(f"/api/v1/exports/{created['id']}/download", headers=tenant.headers).status_code == 200
    with travel(timedelta(days=7, minutes=1)):
        gone = client.get(f"/api/v1/exports/{created['id']}/download", headers=tenant.headers)
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "export_expired"
        assert export_runner.expire_exports(db) == 1
    assert list(exports_folder.iterdir()) == []
    status = client.get(f"/api/v1/exports/{created['id']}", headers=tenant.headers).json()
    assert (status["status"], status["download_url"]) == ("expired", None)
    # Expired, the workspace may export again.
    assert client.post("/api/v1/exports", headers=tenant.headers, json=RANGE).status_code == 202


class Killed(BaseException):
    """The process dies: nothing after this point runs, no except Exception handler sees it."""


def test_a_run_killed_half_way_is_finished_by_the_next_with_one_file(
    db: Database, tenant: Tenant, client: TestClient, exports_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction() as session:
        for n in range(25):
            session.add(Contact(workspace_id=tenant.workspace_id, first_name=f"Ana {n}", created_at=utcnow()))
    monkeypatch.setattr(export_runner, "PAGE_SIZE", 4)
    today = utcnow().date()
    with db.transaction() as session:
        export = DataExport(
            workspace_id=tenant.workspace_id,
            first_day=today - timedelta(days=1),
            last_day=today + timedelta(days=1),
            files=["contacts", "conversations", "messages", "failed_messages"],
            status=ExportStatus.QUEUED,
        )
        session.add(export)
        session.flush()
        export_id = export.id

    def die_after_two_pages(rows: int) -> None:
        if rows >= 8:
            raise Killed

    with pytest.raises(Killed):
        export_runner.run_export(db, export_id, on_rows=die_after_two_pages)
    with db.transaction(write=False) as session:
        stuck = session.get(DataExport, export_id)
        assert stuck is not None
        assert (stuck.status, stuck.processed_rows, stuck.total_rows) == (ExportStatus.RUNNING, 8, 25)
    assert [p.suffix for p in exports_folder.iterdir()] == [".part"]  # what the dead run left
    # The sweep finds it once its heartbeat is old, and the next run finishes it.
    assert export_id not in export_runner.interrupted_export_ids(db)
    assert export_id in export_runner.interrupted_export_ids(db, stale_after=timedelta(0))
    export_runner.run_export(db, export_id, stale_after=timedelta(0))
    with db.transaction(write=False) as session:
        done = session.get(DataExport, export_id)
        assert done is not None
        assert (done.status, done.processed_rows, done.runs) == (ExportStatus.DONE, 25, 2)
    assert [p.suffix for p in exports_folder.iterdir()] == [".zip"]
    contacts = _zip(client, tenant, export_id)["contacts"]
    assert sorted(row[1] for row in contacts[1:]) == sorted(f"Ana {n}" for n in range(25))


def test_agents_are_refused_and_other_workspaces_exports_are_not_found(
    db: Database, tenant: Tenant, make_tenant: Any, client: TestClient, exports_folder: Path
) -> None:
    created = _start(client, tenant, files=["contacts"])
    other = make_tenant()
    assert client.get(f"/api/v1/exports/{created['id']}", headers=other.headers).status_code == 404
    # A token needs the admin scope: the export is every kind of data at once.
    with db.transaction() as session:
        scoped = do_create_api_token(session, tenant.workspace_id, "crm", scopes=["contacts"]).secret
    refused = client.post("/api/v1/exports", headers={"Authorization": f"Bearer {scoped}"}, json=RANGE)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "token_scope")
    assert client.get(f"/api/v1/exports/{created['id']}/download", headers=other.headers).status_code == 404
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get("/settings/data-export").status_code == 403
    assert client.get(f"/settings/data-export/{created['id']}/download").status_code == 403
    assert client.get(f"/api/v1/exports/{created['id']}").status_code == 403
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    page = client.get("/settings/data-export")
    assert page.status_code == 200
    assert f"/settings/data-export/{created['id']}/download" in page.text
    assert client.get(f"/settings/data-export/{created['id']}/download").status_code == 200


def test_the_actor_role_of_an_agent_cannot_create(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session, pytest.raises(Exception, match="permission"):
        do_create_export(session, tenant.actor(Role.AGENT), date(2026, 11, 1), date(2026, 11, 2))


def test_the_conversations_file_has_business_hours_times_beside_the_calendar_ones(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter, exports_folder: Path
) -> None:
    with at("2026-11-02 08:00"):
        set_hours(db, tenant, NINE_TO_SEVEN)
    with fake_provider() as provider:
        weekend(make_shop(db, tenant, provider.url), tenant)  # Friday 18:55, answered Monday 09:05, closed 09:35
        feed(db)
    created = _start(client, tenant, **{"from": FRIDAY, "to": MONDAY})
    header, *rows = _zip(client, tenant, created["id"])["conversations"]
    times = header.index("first_response_seconds"), header.index("resolution_seconds")
    assert header[times[0] : times[1] + 2] == [
        "first_response_seconds",
        "first_response_business_seconds",
        "resolution_seconds",
        "resolution_business_seconds",
    ]
    [row] = rows
    exported = [float(cell) for cell in row[times[0] : times[1] + 2]]
    assert exported == pytest.approx([FIRST_RESPONSE[0], FIRST_RESPONSE[1], RESOLUTION[0], RESOLUTION[1]], abs=2)
