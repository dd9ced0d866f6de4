"""A workspace's allowed private hosts for HTTP request steps: refused without the list, allowed
with it, refused in another workspace; the list's checks, its API, its settings page and who may
edit it. The target is a real HTTP server on 127.0.0.1; the installation does not allow private
addresses in these tests (Policy(allow_private=False))."""

import socket
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.models import Channel
from tertulia.contacts import service as contacts_service
from tertulia.contacts.models import Contact
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.webhooks.addresses import AddressRefused
from tertulia.workflows import http_hosts, runner
from tertulia.workflows.http_hosts import HostList
from tertulia.workflows.models import WorkflowRunLog
from tests.conftest import Tenant
from tests.web.helpers import sign_in_as
from tests.webhooks.support import receiver
from tests.workflows.support import channel_on_fake, customer_writes, dispatch, publish, runs

pytestmark = pytest.mark.usefixtures("no_background_work")

CLOSED = runner.Policy(allow_private=False)


def _flow(url: str) -> dict[str, Any]:
    return {
        "trigger": {"type": "tag_added", "config": {"tags": ["go"]}},
        "steps": [
            {
                "id": "call",
                "type": "http_request",
                "config": {"url": url, "body": '{"id": "{{contact.id}}"}', "status_variable": "code"},
                "on": {"failure": "failed"},
            },
            {"id": "failed", "type": "add_tags", "config": {"tags": ["failed"]}},
        ],
    }


def _tag(db: Database, tenant: Tenant, contact_id: int) -> None:
    with db.transaction() as session:
        contact = session.get(Contact, contact_id)
        assert contact is not None
        contacts_service.do_add_tags(session, tenant.actor(), contact, ["go"])


def _set_hosts(db: Database, tenant: Tenant, hosts: list[str]) -> list[str]:
    with db.transaction() as session:
        return http_hosts.do_set_http_hosts(session, tenant.actor(), hosts)


def _run_once(db: Database, tenant: Tenant, channel: Channel, workflow_id: int, sender: str) -> tuple[str, Any]:
    """A contact triggers the workflow; the run's last log line and its status variable."""
    contact_id = customer_writes(db, channel, sender, "hola")
    _tag(db, tenant, contact_id)
    dispatch(db)
    runner.run_due(db, policy=CLOSED)
    run = runs(db, workflow_id)[-1]
    with db.transaction(write=False) as session:
        line = session.scalar(
            select(WorkflowRunLog).where(WorkflowRunLog.run_id == run.id, WorkflowRunLog.step_id == "call")
        )
        assert line is not None
        said = f"{line.outcome} {line.error or ''}"
    return said, run.state["vars"].get("code")


def test_a_listed_address_is_called_an_unlisted_one_refused_and_not_in_another_workspace(
    db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant], channel: Channel, fakehttp_adapter: Any
) -> None:
    other = make_tenant()
    with receiver() as server, channel_on_fake(db, other) as (other_channel, _provider):
        url = f"{server.url.rstrip('/')}/hook"
        assert url.startswith("http://127.0.0.1:")
        workflow_id = publish(db, tenant, _flow(url))
        other_workflow_id = publish(db, other, _flow(url))

        outcome, code = _run_once(db, tenant, channel, workflow_id, "a1")
        assert server.requests == []
        assert "refused" in outcome
        assert "private" in outcome
        assert "Workflow HTTP hosts" in outcome
        assert code is None

        _set_hosts(db, tenant, ["127.0.0.1"])
        outcome, code = _run_once(db, tenant, channel, workflow_id, "a2")
        assert len(server.requests) == 1
        assert code == 200
        assert server.requests[0].headers["host"] == url.split("/")[2]

        # The same URL from a workspace that lists nothing is still refused.
        outcome, code = _run_once(db, other, other_channel, other_workflow_id, "b1")
        assert "refused" in outcome
        assert len(server.requests) == 1

        # A network covers the address too; emptying the list closes it again.
        _set_hosts(db, tenant, ["127.0.0.0/8"])
        _run_once(db, tenant, channel, workflow_id, "a3")
        assert len(server.requests) == 2
        _set_hosts(db, tenant, [])
        outcome, _code = _run_once(db, tenant, channel, workflow_id, "a4")
        assert "refused" in outcome
        assert len(server.requests) == 2


def test_names_are_checked_on_the_addresses_they_resolve_to(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {name: ["10.1.2.3"] for name in ("crm.internal", "api.crm.internal", "evil.example")}

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    # A listed name that resolves to a private address is allowed, and the checked address is
    # where the request goes (plain http: the workspace named the host).
    target = http_hosts.target("http://crm.internal:8080/x", ["crm.internal"], allow_private=False)
    assert (target.host, target.address, target.port) == ("crm.internal", "10.1.2.3", 8080)
    assert http_hosts.target("https://api.crm.internal/", ["*.crm.internal"], allow_private=False).address == "10.1.2.3"
    # An unlisted name resolving to the same private address is refused.
    with pytest.raises(AddressRefused, match="private"):
        http_hosts.target("https://evil.example/", ["crm.internal"], allow_private=False)
    with pytest.raises(AddressRefused):
        http_hosts.target("https://crm.internal/", ["*.crm.internal"], allow_private=False)  # not the bare name
    # Rebinding: the name now answers a loopback address the list does not cover.
    answers["crm.internal"] = ["10.1.2.3", "127.0.0.1"]
    with pytest.raises(AddressRefused, match=r"127\.0\.0\.1"):
        http_hosts.target("https://crm.internal/", ["10.1.2.0/24"], allow_private=False)
    assert http_hosts.target("https://evil.example/", ["10.1.2.0/24"], allow_private=False).address == "10.1.2.3"
    # Plain http to a public, unlisted host stays refused, as before.
    answers["public.example"] = ["93.184.216.34"]
    with pytest.raises(ValueError, match="https"):
        http_hosts.target("http://public.example/", ["crm.internal"], allow_private=False)
    assert http_hosts.target("https://public.example/", [], allow_private=False).address == "93.184.216.34"


def test_entries_are_normalised_and_bad_ones_named() -> None:
    assert http_hosts.clean_hosts(
        [" CRM.Internal. ", "*.Corp.Example", "10.0.0.5", "10.20.3.4/16", "[::1]", "", "crm.internal", "bücher.de"]
    ) == ["crm.internal", "*.corp.example", "10.0.0.5", "10.20.0.0/16", "::1", "xn--bcher-kva.de"]
    with pytest.raises(Exception) as refused:
        http_hosts.clean_hosts(["ok.internal", "http://x.internal/", "10.0.0.0/4", "300.1.1.1", "a b"])
    assert refused.value.details == {  # type: ignore[attr-defined]
        "hosts[1]": "'http://x.internal/' is not a host name, an IP address or a network",
        "hosts[2]": "'10.0.0.0/4' is too wide a network (at most /8)",
        "hosts[3]": "'300.1.1.1' is not a host name, an IP address or a network",
        "hosts[4]": "'a b' is not a host name, an IP address or a network",
    }
    with pytest.raises(Exception) as too_many:
        http_hosts.clean_hosts([f"h{n}.internal" for n in range(51)])
    assert too_many.value.details == {"hosts": "at most 50 hosts"}  # type: ignore[attr-defined]
    hosts = HostList.of(["crm.internal", "*.corp.example", "10.0.0.0/8", "::1"])
    assert [hosts.lists(h) for h in ("crm.internal", "a.corp.example", "10.9.9.9", "::1")] == [True] * 4
    assert [hosts.lists(h) for h in ("corp.example", "11.0.0.1", "other.internal", "::2")] == [False] * 4


def test_api_edits_the_list_owners_and_managers_only(
    client: TestClient, db: Database, tenant: Tenant, make_tenant: Callable[..., Tenant]
) -> None:
    path = "/api/v1/workflow-settings/http-hosts"
    assert client.get(path, headers=tenant.headers).json() == {"hosts": []}
    # A token reads the list (it builds workflows) but may not open the private network.
    token_put = client.put(path, headers=tenant.headers, json={"hosts": ["10.0.0.5"]})
    assert token_put.status_code == 403
    csrf = sign_in_as(client, db, tenant.agent_id, "agent-password")
    agent = client.put(path, headers={"X-CSRF-Token": csrf}, json={"hosts": ["10.0.0.5"]})
    assert agent.status_code == 403
    assert agent.json()["error"]["code"] == "forbidden"
    assert client.get(path).status_code == 403
    csrf = sign_in_as(client, db, tenant.manager_id, "manager-password")
    bad = client.put(path, headers={"X-CSRF-Token": csrf}, json={"hosts": ["crm.internal", "not a host", "0.0.0.0/0"]})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "validation_failed"
    assert error["details"] == {
        "hosts[1]": "'not a host' is not a host name, an IP address or a network",
        "hosts[2]": "'0.0.0.0/0' is too wide a network (at most /8)",
    }
    assert client.put(path, headers={"X-CSRF-Token": csrf}, json={"hosts": "crm.internal"}).status_code == 422
    saved = client.put(path, headers={"X-CSRF-Token": csrf}, json={"hosts": ["CRM.internal", "10.20.0.0/16"]})
    assert saved.status_code == 200
    assert saved.json() == {"hosts": ["crm.internal", "10.20.0.0/16"]}
    assert client.get(path, headers=tenant.headers).json() == {"hosts": ["crm.internal", "10.20.0.0/16"]}
    other = make_tenant()
    assert client.get(path, headers=other.headers).json() == {"hosts": []}
    with db.transaction(write=False) as session:
        assert http_hosts.allowed_hosts(session, other.workspace_id) == ()
    with db.transaction() as session, pytest.raises(Exception, match="permission"):
        http_hosts.do_set_http_hosts(session, tenant.actor(Role.AGENT), ["10.0.0.1"])


def test_settings_page_shows_each_bad_line_beside_the_field(client: TestClient, db: Database, tenant: Tenant) -> None:
    page_path = "/settings/workflow-http-hosts"
    csrf = sign_in_as(client, db, tenant.agent_id, "agent-password")
    assert client.get(page_path).status_code == 403
    assert client.post(page_path, data={"csrf_token": csrf, "hosts": "10.0.0.1"}).status_code == 403
    csrf = sign_in_as(client, db, tenant.owner_id, "owner-password")
    page = client.get(page_path)
    assert page.status_code == 200
    assert "Workflow HTTP hosts" in page.text
    refused = client.post(page_path, data={"csrf_token": csrf, "hosts": "crm.internal\nhttp://nope/\n10.0.0.0/2"})
    assert refused.status_code == 422
    assert "Line 2: «http://nope/» is not a host name, an IP address or a network" in refused.text
    assert "Line 3: «10.0.0.0/2» is too wide a network (at most /8)" in refused.text
    assert 'id="hosts-error"' in refused.text
    assert "http://nope/" in refused.text  # what was typed is kept
    with db.transaction(write=False) as session:
        assert http_hosts.allowed_hosts(session, tenant.workspace_id) == ()
    client.post("/language", data={"language": "es", "next": page_path, "csrf_token": csrf})
    spanish = client.post(page_path, data={"csrf_token": csrf, "hosts": "a b"})
    assert spanish.status_code == 422
    assert "Línea 1: «a b» no es un nombre de host, una dirección IP ni una red" in spanish.text
    assert "Hosts HTTP de los flujos" in spanish.text
    saved = client.post(page_path, data={"csrf_token": csrf, "hosts": "crm.internal\n\n10.0.0.5\n"})
    assert saved.status_code == 200
    assert "crm.internal\n10.0.0.5" in saved.text
    with db.transaction(write=False) as session:
        assert http_hosts.allowed_hosts(session, tenant.workspace_id) == ("crm.internal", "10.0.0.5")
