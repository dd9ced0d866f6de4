"""A jump step may allow at most the run's cap of 10 jumps: more is refused when saved, beside the
step's field, in the reader's language. Jump steps whose caps add up to more than 10 are saved:
the run's cap is a budget they share (the engine's tests show which comes first)."""

import json
from typing import Any

from fastapi.testclient import TestClient

from tertulia.kit.db import Database
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.workflows.test_template_header_media import builder_data


def jumps(*caps: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"id": "tag", "type": "add_tags", "config": {"tags": ["x"]}, "next": "j0"}]
    for index, cap in enumerate(caps):
        step = {"id": f"j{index}", "type": "jump_to", "config": {"target": "tag", "max_jumps": cap}}
        if index + 1 < len(caps):
            step["next"] = f"j{index + 1}"
        steps.append(step)
    return {"trigger": {"type": "manual"}, "steps": steps}


def test_a_jump_step_allowing_more_than_the_runs_ten_is_refused_beside_it(
    client: TestClient, db: Database, tenant: Tenant
) -> None:
    refused = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "J", "definition": jumps(3, 11)})
    assert refused.status_code == 422, refused.text
    assert list(refused.json()["error"]["details"]) == ["steps[2].config.max_jumps"]

    # Caps adding up to more than 10 (7 + 6) share the run's ten: saved.
    shared = client.post("/api/v1/workflows", headers=tenant.headers, json={"name": "J", "definition": jumps(7, 6)})
    assert shared.status_code == 201, shared.text

    token = sign_in_as(client, db, tenant.manager_id, "manager-password")
    workflow_id = shared.json()["id"]
    for language, message in (("es", "Debe ser 10 o menos"), ("en", "Must be 10 or less")):
        client.post("/language", data={"language": language, "next": "/workflows", "csrf_token": token})
        page = client.post(
            f"/workflows/{workflow_id}",
            data={"name": "J", "definition": json.dumps(jumps(3, 11)), "csrf_token": token},
        )
        assert page.status_code == 422, page.text
        assert builder_data(page.text)["errors"] == {"steps[2].config.max_jumps": message}
