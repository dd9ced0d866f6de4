"""Settings > Workflow HTTP hosts: the private hosts the workspace's HTTP request steps may call
(workflows/http_hosts.py holds the rules; this page shows each bad entry beside the list, in the
reader's language, with what was typed kept)."""

from typing import Annotated

from fastapi import APIRouter, Form
from starlette.responses import Response

from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import submit
from tertulia.web.sections import Section, open_section, render_section, section_page
from tertulia.workflows import http_hosts

router = APIRouter(include_in_schema=False, route_class=CheckedInputRoute)

HTTP_HOSTS = Section("workflow-http-hosts", i18n.lazy("Workflow HTTP hosts"), Permission.MANAGE_WORKSPACE)

# The service's wordings, marked here so the catalogues translate them where the page shows them.
INVALID = i18n.lazy("%(entry)s is not a host name, an IP address or a network")
TOO_WIDE = i18n.lazy("%(entry)s is too wide a network (at most /8)")
TOO_MANY = i18n.lazy("at most %(max)d hosts")
LINE = i18n.lazy("Line %(line)d: %(problem)s")
assert (INVALID, TOO_WIDE, TOO_MANY) == (http_hosts.INVALID, http_hosts.TOO_WIDE, http_hosts.TOO_MANY)


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _errors(ctx: WebContext, text: str, exc: DomainError) -> list[str]:
    """Each bad line's message, in the reader's language; the error's own wording otherwise (text
    the form may not carry, such as a NUL character)."""
    details = exc.details if isinstance(exc.details, dict) else {}
    if any(str(key).startswith("hosts[") for key in details) or details.get("hosts", "").startswith("at most"):
        cleaned, found = http_hosts.problems(_lines(text))
        if found:
            return [
                ctx.fmt.gettext(LINE)
                % {"line": p.index + 1, "problem": ctx.fmt.gettext(p.message) % {"entry": f"«{p.entry}»"}}
                for p in found
            ]
        if len(cleaned) > http_hosts.MAX_HOSTS:
            return [ctx.fmt.gettext(TOO_MANY) % {"max": http_hosts.MAX_HOSTS}]
    messages = [ctx.fmt.gettext(str(value)) for value in details.values() if isinstance(value, str)]
    return messages or [ctx.fmt.gettext(exc.message)]


@section_page(router, "/settings/workflow-http-hosts", HTTP_HOSTS)
def _http_hosts(ctx: WebContext, *, typed: str | None = None, errors: list[str] | None = None) -> Response:
    if typed is None:
        typed = "\n".join(http_hosts.allowed_hosts(ctx.session, ctx.actor.workspace_id))
    context = {"typed": typed, "errors": errors or [], "max_hosts": http_hosts.MAX_HOSTS}
    return render_section(
        ctx, HTTP_HOSTS, "workflows/settings/http_hosts.html", context, status_code=422 if errors else 200
    )


@router.post("/settings/workflow-http-hosts")
def save_http_hosts(ctx: UserPage, hosts: Annotated[str, Form()] = "") -> Response:
    open_section(ctx, HTTP_HOSTS)
    return submit(
        ctx,
        lambda: http_hosts.do_set_http_hosts(ctx.session, ctx.actor, _lines(hosts)),
        again=lambda exc: _http_hosts(ctx, typed=hosts, errors=_errors(ctx, hosts, exc)),
        redirect="/settings/workflow-http-hosts",
        flash="settings_saved",
        catch=(ValidationFailed,),
    )


__all__ = ["HTTP_HOSTS", "router"]
