"""The API against its own OpenAPI schema, with schemathesis, on SQLite and PostgreSQL.

Bounded so it runs with the suite: a fixed seed, three cases per operation and mode (valid and
invalid input: about 180 per database, 360 in all), no shrinking. Every answer must be no 5xx, a
status code the schema declares for that operation, a content type it declares, and a body matching
the declared schema (the error body included). A security review's schemathesis run found 5xx from
integers beyond 64 bits and undocumented 401/403/404/409/429 answers; this keeps both from coming
back.
"""

from typing import Any

import pytest
import schemathesis
from fastapi import routing
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from schemathesis.python.asgi import ASGIClient

from tertulia.app import create_app
from tertulia.kit.http import API_ERRORS, CheckedInputRoute
from tertulia.kit.settings import Settings
from tests.conftest import Tenant

SEED = 20261126
CASES_PER_OPERATION = 3

CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        # Conformance, not speed: a write (a hook's secret made on first read) can wait its turn for
        # SQLite's one writer well past the default 10 s when the machine runs other suites beside.
        "request-timeout": 60,
        "generation": {"max-examples": CASES_PER_OPERATION, "database": "none", "mode": "all", "no-shrink": True},
        "phases": {"examples": {"enabled": False}, "coverage": {"enabled": False}, "stateful": {"enabled": False}},
        "checks": {
            "enabled": False,
            "not_a_server_error": {"enabled": True},
            "status_code_conformance": {"enabled": True},
            "content_type_conformance": {"enabled": True},
            "response_schema_conformance": {"enabled": True},
        },
    }
)

# The schema is the app's own; it does not depend on the database, so it is read once at collection.
SCHEMA = create_app(Settings()).openapi()
api = schemathesis.openapi.from_dict(SCHEMA, config=CONFIG)


@api.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_the_api_keeps_to_its_schema(case: Any, client: TestClient, tenant: Tenant) -> None:
    # In process, through the app the suite's client started (its lifespan, its database).
    case.call_and_validate(session=ASGIClient(client.app), headers=tenant.headers)


API_PREFIXES = ("/api/", "/widget/")


def test_every_api_operation_declares_the_error_responses() -> None:
    expected = {str(status) for status in API_ERRORS}
    missing = {
        f"{method.upper()} {path}": sorted(expected - set(operation["responses"]))
        for path, item in SCHEMA["paths"].items()
        for method, operation in item.items()
        if path.startswith(API_PREFIXES) and expected - set(operation["responses"])
    }
    assert missing == {}
    error = SCHEMA["paths"]["/api/v1/contacts"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}


def test_every_route_checks_its_input_text() -> None:
    """kit.http.CheckedInputRoute is what applies the NUL / unpaired-surrogate rule; a router made
    without it would let such text through to the database."""
    app = create_app(Settings())
    # Every route, those of included routers too (app.routes lists only the top-level entries).
    routes = [context.original_route for context in routing.iter_route_contexts(app.routes)]
    api_routes = [route for route in routes if isinstance(route, APIRoute)]
    assert len(api_routes) > 150
    unchecked = [route.path for route in api_routes if not isinstance(route, CheckedInputRoute)]
    assert unchecked == []


def _property(model: str, name: str) -> dict[str, Any]:
    schema: dict[str, Any] = SCHEMA["components"]["schemas"][model]["properties"][name]
    return next((branch for branch in schema.get("anyOf", []) if branch.get("type") != "null"), schema)


def test_the_schema_describes_what_fields_accept() -> None:
    """Lengths, patterns and formats are in the schema, so schemathesis draws values within them (and
    just outside them, in its negative mode) instead of arbitrary strings."""
    assert _property("ContactWrite", "first_name")["maxLength"] == 200
    assert _property("ContactWrite", "email") == {"type": "string", "maxLength": 254, "format": "email"}
    assert _property("ContactWrite", "country")["pattern"] == r"^\s*[A-Za-z]{2}\s*$"
    assert _property("ContactWrite", "avatar_url")["format"] == "uri"
    assert _property("ContactWrite", "tags")["items"]["maxLength"] == 100
    assert _property("CustomFieldCreate", "key")["pattern"] == r"^[a-z][a-z0-9_]{0,63}$"
    assert _property("CustomFieldCreate", "options")["maxItems"] == 1000
    assert _property("SegmentCreate", "name")["maxLength"] == 120
    [identifier] = [
        parameter
        for parameter in SCHEMA["paths"]["/api/v1/contacts/{identifier}"]["get"]["parameters"]
        if parameter["name"] == "identifier"
    ]
    assert identifier["schema"]["pattern"].startswith("^(id:[0-9]{1,19}|")
    # The inbox's routes that name a contact take the same identifier.
    for path, method in (("/api/v1/contacts/{identifier}/messages", "post"), ("/api/v1/conversations", "get")):
        parameters = SCHEMA["paths"][path][method]["parameters"]
        [named] = [p for p in parameters if p["name"] in ("identifier", "contact")]
        schema = named["schema"] if "pattern" in named["schema"] else named["schema"]["anyOf"][0]
        assert schema["pattern"] == identifier["schema"]["pattern"]


@pytest.mark.parametrize("path", ["/api/v1/files/{file_id}"])
def test_file_downloads_declare_what_they_answer(path: str) -> None:
    content = SCHEMA["paths"][path]["get"]["responses"]["200"]["content"]
    assert "application/json" not in content
