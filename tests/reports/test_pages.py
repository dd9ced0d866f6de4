"""The Reports page: its tables are the API's, in the reader's language, with a CSV link per table;
the CSV files equal the JSON for every report and a few filter combinations."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tertulia.reports.service import REPORTS
from tests.conftest import Tenant
from tests.fakes import FakeHttpAdapter
from tests.reports.support import BUSY_DAY, as_cell, busy_day, report, report_csv
from tests.web.helpers import sign_in_as


def test_every_csv_equals_its_json_table(
    db: Database, tenant: Tenant, client: TestClient, fakehttp_adapter: FakeHttpAdapter
) -> None:
    shop = busy_day(db, tenant)
    combinations: list[dict[str, Any]] = [
        {"range": "last_30_days"},
        {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY},
        {"range": "custom", "from": "2026-10-20", "to": "2026-11-05", "channel_id": shop.channel_id},
        {"range": "custom", "from": "2026-10-20", "to": "2026-11-05", "user_id": tenant.agent_id, "source": "incoming"},
    ]
    checked = 0
    for params in combinations:
        for name in REPORTS:
            body = report(client, tenant, name, **params)
            for table_name, table in body["tables"].items():
                rows = report_csv(client, tenant, name, table_name, params)
                assert rows[0] == table["columns"]
                assert rows[1:] == [[as_cell(v) for v in row] for row in table["rows"]], (name, table_name, params)
                checked += 1
    assert checked == 4 * 36  # the tables of the nine reports
    # The workspace's totals (read without filters) and the detailed rows (read with a filter every
    # conversation here passes) are two copies of the same numbers.
    for name in REPORTS:
        whole = report(client, tenant, name, range="custom", **{"from": BUSY_DAY, "to": BUSY_DAY})["tables"]
        detailed = report(
            client, tenant, name, range="custom", channel_id=shop.channel_id, **{"from": BUSY_DAY, "to": BUSY_DAY}
        )
        assert detailed["tables"] == whole, name
    # Some numbers really are there (the comparison is not of empty tables).
    day_params = {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY}
    assignments = report(client, tenant, "assignments", **day_params)["tables"]
    assert [row[2:] for row in assignments["by_user"]["rows"]] == [[2, 0], [2, 0]]
    assert report_csv(client, tenant, "assignments", "by_source", day_params)[1] == ["user", "4", "0"]
    resolutions = report(client, tenant, "resolutions", **day_params)["tables"]
    assert resolutions["by_closer"]["rows"][0][:2] == ["user", 3]
    assert report_csv(client, tenant, "contacts", "added_by_source", day_params)[4] == ["incoming", "4"]
    day = report(client, tenant, "messages", range="custom", **{"from": BUSY_DAY, "to": BUSY_DAY})
    assert day["tables"]["by_channel"]["rows"][0][1] == "=Tienda"
    assert (
        report_csv(client, tenant, "messages", "by_channel", {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY})[1][
            1
        ]
        == "'=Tienda"
    )
    assert report_csv(
        client, tenant, "messages", "failed_reasons", {"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY}
    )[1] == [
        "'-1 blocked",
        "1",
    ]


@pytest.mark.parametrize(
    ("language", "heading", "definition"),
    [
        ("es", "Resumen, con el periodo anterior", "Tiempo de primera respuesta"),
        ("en", "Summary, with the previous period", "First response time"),
    ],
)
def test_the_page_in_both_languages_with_tables_and_csv_links(
    db: Database, tenant: Tenant, client: TestClient, language: str, heading: str, definition: str
) -> None:
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.cookies.set("tertulia_lang", language)
    page = client.get("/reports/conversations", params={"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY})
    assert page.status_code == 200, page.text
    assert heading in page.text
    assert definition in page.text
    assert (
        f'href="/api/v1/reports/conversations/summary.csv?range=custom&amp;from={BUSY_DAY}&amp;to={BUSY_DAY}"'
        in page.text
    )
    assert 'id="report-data"' in page.text
    assert "<canvas" in page.text
    bad = client.get("/reports/conversations", params={"range": "custom", "from": BUSY_DAY})
    assert bad.status_code == 200
    assert "field-error" in bad.text
    assert ("Un periodo personalizado necesita" if language == "es" else "A custom range needs") in bad.text
    assert client.get("/reports/nothing").status_code == 404
    assert client.get("/reports", follow_redirects=False).headers["location"] == "/reports/conversations"


def test_an_agent_sees_their_own_numbers_without_the_person_filter(
    db: Database, tenant: Tenant, client: TestClient
) -> None:
    sign_in_as(client, db, tenant.agent_id, "agent-password")
    page = client.get("/reports/responses")
    assert page.status_code == 200, page.text
    assert 'name="user_id"' not in page.text
    assert "You see your own numbers" in page.text or "Ves tus propios números" in page.text
    refused = client.get("/reports/responses", params={"user_id": tenant.owner_id})
    assert refused.status_code == 200
    assert "field-error" in refused.text
    assert 'id="report-data"' not in refused.text


@pytest.mark.parametrize(
    ("name", "language", "expected"),
    [
        (
            "resolutions",
            "es",
            ["Resoluciones", "Cierres según quién cerró", "Cerradas por un bot", "Cierres hechos por el bot."],
        ),
        (
            "resolutions",
            "en",
            ["Resolutions", "Closings by who closed them", "Closed by a bot", "Closings done by the bot."],
        ),
        ("assignments", "es", ["Asignaciones y desasignaciones por origen", "Desasignaciones", "Flujo de trabajo"]),
        ("assignments", "en", ["Assignments and unassignments by source", "Unassignments", "Workflow"]),
        ("contacts", "es", ["Contactos añadidos por origen", "A mano", "solo se aplica el filtro de miembro"]),
        ("contacts", "en", ["Contacts added by source", "By hand", "only the team member filter applies"]),
        ("users", "es", ["Una fila por miembro del equipo", "Tiempo en línea", "Contactos cerrados"]),
        ("users", "en", ["One row per team member", "Time online", "Contacts closed"]),
        ("leaderboard", "es", ["Clasificar por", "A quién clasificar", "Mensajes enviados"]),
        ("leaderboard", "en", ["Rank on", "Who to rank", "Messages sent"]),
        ("broadcasts", "es", ["Una fila por difusión", "Destinatarios", "Solo se aplican los filtros de canal"]),
        ("broadcasts", "en", ["One row per broadcast", "Recipients", "Only the channel and team member"]),
        (
            "responses",
            "es",
            ["Tiempo de cada respuesta", "De la última asignación a la respuesta", "Respuestas por conversación"],
        ),
        (
            "responses",
            "en",
            ["Reply time over time", "Last assignment to response", "Responses per conversation"],
        ),
    ],
)
def test_the_new_reports_render_in_both_languages(
    db: Database, tenant: Tenant, client: TestClient, name: str, language: str, expected: list[str]
) -> None:
    sign_in_as(client, db, tenant.manager_id, "manager-password")
    client.cookies.set("tertulia_lang", language)
    page = client.get(f"/reports/{name}", params={"range": "custom", "from": BUSY_DAY, "to": BUSY_DAY})
    assert page.status_code == 200, page.text
    for text in expected:
        assert text in page.text, text
    for other in REPORTS:
        assert f'data-testid="report-tab-{other}"' in page.text
    first_table = {"users": "summary", "leaderboard": "leaderboard"}.get(name, "series")
    options = "&amp;metric=closed&amp;by=user" if name == "leaderboard" else ""
    csv_link = f"/api/v1/reports/{name}/{first_table}.csv?range=custom&amp;from={BUSY_DAY}&amp;to={BUSY_DAY}{options}"
    assert f'href="{csv_link}"' in page.text
    assert 'data-chart="' in page.text
