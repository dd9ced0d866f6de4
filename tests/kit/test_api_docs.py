"""The API docs page loads Swagger UI from this server only, under a CSP without inline scripts."""

import re

from fastapi.testclient import TestClient


def test_api_docs_are_self_hosted_under_a_csp(client: TestClient) -> None:
    page = client.get("/api/docs")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert "cdn" not in page.text
    assert "<script>" not in page.text  # no inline script
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(sources) == 4  # the icon too: without it the browser asks for /favicon.ico, a 404
    for source in sources:
        assert source.startswith("/"), source
        assert client.get(source).status_code == 200, source
    assert "/api/openapi.json" in client.get("/api/docs/start.js").text
