"""Pages of the shortcut and incoming-webhook triggers.

- The "Run shortcut" menu (`GET /workflows/shortcuts/menu?contact_id=`), an htmx fragment the inbox's
  contact panel and the contact's page load: the workspace's published shortcut workflows, each
  with its form. Posting one (`POST /workflows/{id}/shortcut/{contact id}`) answers the menu again, with the
  errors beside the fields or a line saying the run started. Agents may use it (`edit_contacts`).
- The incoming-webhook card of a workflow's page (`GET /workflows/{id}/hook`, a fragment): its URL,
  a curl example to copy, and regenerating the secret (`POST /workflows/{id}/hook/regenerate`).
- The contact page's "Workflows" card (`GET /workflows/contacts/{contact id}/runs`, a fragment): the
  contact's runs with their last log lines, and a Stop button for each one in progress
  (`POST /workflows/contacts/{contact id}/runs/{run id}/stop`, "stop the workflow for this contact").
  Managers and owners only (`manage_workflows`, as the API's contact runs): a run's log speaks of
  the workflow's steps, which agents do not see elsewhere, so the contact page has no card for them.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query
from starlette.responses import Response

from tertulia.contacts import repository as contacts_repo
from tertulia.kit.errors import Conflict, DomainError, NotFound
from tertulia.kit.http import CheckedInputRoute, check_form_text, check_form_text_named
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors
from tertulia.workflows import hooks, service, shortcuts
from tertulia.workflows.models import RunStatus
from tertulia.workflows.trigger_kinds import MAX_FORM_FIELDS
from tertulia.workflows.views import RUN_STATUS_LABELS, STEP_LABELS

router = APIRouter(prefix="/workflows", include_in_schema=False, route_class=CheckedInputRoute)

STARTED = i18n.lazy("The shortcut started.")
RUN_STOPPED = i18n.lazy("The workflow was stopped for this contact.")
# The card is a glance: the full log is on the workflow's page.
CARD_LOGS = 3
Answer = Annotated[str, Form(max_length=2000)]


def _menu(
    ctx: WebContext,
    contact_id: int,
    conversation_id: int | None,
    *,
    open_id: int | None = None,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    done: str | None = None,
    status_code: int = 200,
) -> Response:
    ctx.actor.require(Permission.EDIT_CONTACTS)
    contact = contacts_repo.contact_by_id(ctx.session, ctx.actor.workspace_id, contact_id)
    if contact is None:
        raise NotFound("Contact not found.")
    context = {
        "contact": contact,
        "conversation_id": conversation_id,
        "shortcuts": shortcuts.published_shortcuts(ctx.session, ctx.actor),
        "open_id": open_id,
        "typed": typed or {},
        "errors": errors or {},
        "done": done,
    }
    return ctx.render("workflows/_shortcuts.html", context, status_code=status_code)


@router.get("/shortcuts/menu")
def shortcuts_menu(
    ctx: UserPage, contact_id: Annotated[ID, Query()], conversation_id: Annotated[ID | None, Query()] = None
) -> Response:
    return _menu(ctx, contact_id, conversation_id)


@router.post("/{workflow_id}/shortcut/{contact_id}")
def run_shortcut(
    ctx: UserPage,
    workflow_id: ID,
    contact_id: ID,
    conversation_id: Annotated[str, Form(max_length=30)] = "",
    answer_0: Answer = "",
    answer_1: Answer = "",
    answer_2: Answer = "",
    answer_3: Answer = "",
    answer_4: Answer = "",
) -> Response:
    given = (answer_0, answer_1, answer_2, answer_3, answer_4)[:MAX_FORM_FIELDS]
    conversation = int(conversation_id) if conversation_id.isdigit() and len(conversation_id) < 19 else None
    typed: dict[str, str] = {}
    try:
        ctx.actor.require(Permission.EDIT_CONTACTS)
        contact = contacts_repo.contact_by_id(ctx.session, ctx.actor.workspace_id, contact_id)
        if contact is None:
            raise NotFound("Contact not found.")
        form = next(
            (s.form for s in shortcuts.published_shortcuts(ctx.session, ctx.actor) if s.workflow.id == workflow_id), ()
        )
        answers: dict[str, Any] = {item.name: given[index] for index, item in enumerate(form)}
        typed = dict(answers)
        # A refusal of the form's text (NUL) names the input; the page shows it beside its field.
        names = {f"answer_{index}": f"answers.{item.name}" for index, item in enumerate(form)}
        check_form_text_named(ctx.request, names)
        shortcuts.do_run_shortcut(ctx.session, ctx.actor, workflow_id, contact, answers, conversation_id=conversation)
    except DomainError as exc:
        if isinstance(exc, NotFound) and not typed:
            raise
        ctx.session.rollback()
        errors = field_errors(ctx, exc)
        return _menu(ctx, contact_id, conversation, open_id=workflow_id, typed=typed, errors=errors, status_code=422)
    return _menu(ctx, contact_id, conversation, done=ctx.fmt.gettext(STARTED))


@router.get("/{workflow_id}/hook")
def hook_card(ctx: UserPage, workflow_id: ID) -> Response:
    return _hook(ctx, workflow_id)


def _hook(ctx: WebContext, workflow_id: int, *, regenerated: bool = False) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    trigger = (service.current_definition(ctx.session, workflow).get("trigger") or {}).get("type")
    if trigger != "incoming_webhook":
        return Response(status_code=200)  # the page's slot stays empty
    info = hooks.hook_info(ctx.session, ctx.actor, workflow, ctx.request.app.state.settings.base_url)
    return ctx.render("workflows/_hook.html", {"workflow": workflow, "hook": info, "regenerated": regenerated})


@router.post("/{workflow_id}/hook/regenerate")
def regenerate_hook(ctx: UserPage, workflow_id: ID) -> Response:
    check_form_text(ctx.request)
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    hooks.do_regenerate(ctx.session, ctx.actor, workflow)
    if ctx.is_htmx:
        return _hook(ctx, workflow_id, regenerated=True)
    return ctx.redirect(f"/workflows/{workflow_id}")


# ----- a contact's runs on the contact page ----------------------------------------------------------


def _contact_runs(
    ctx: WebContext,
    contact_id: int,
    *,
    done: str | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)
    contact = contacts_repo.contact_by_id(ctx.session, ctx.actor.workspace_id, contact_id)
    if contact is None:
        raise NotFound("Contact not found.")
    runs = service.contact_runs(ctx.session, ctx.actor, contact.id)
    for run in runs:
        run["last_logs"] = run["last_logs"][-CARD_LOGS:]
    context = {
        "contact": contact,
        "runs": runs,
        "active": RunStatus.ACTIVE,
        "run_labels": {k: ctx.fmt.gettext(v) for k, v in RUN_STATUS_LABELS.items()},
        "step_labels": {k: ctx.fmt.gettext(v) for k, v in STEP_LABELS.items()},
        "done": done,
        "errors": errors or {},
    }
    return ctx.render("workflows/_contact_runs.html", context, status_code=status_code)


@router.get("/contacts/{contact_id}/runs")
def contact_runs(ctx: UserPage, contact_id: ID) -> Response:
    return _contact_runs(ctx, contact_id)


@router.post("/contacts/{contact_id}/runs/{run_id}/stop")
def stop_contact_run(ctx: UserPage, contact_id: ID, run_id: ID) -> Response:
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)
    check_form_text(ctx.request)
    contact = contacts_repo.contact_by_id(ctx.session, ctx.actor.workspace_id, contact_id)
    if contact is None:
        raise NotFound("Contact not found.")
    try:
        run = service.access_contact_run(ctx.session, ctx.actor, contact.id, run_id, lock=True)
        service.do_stop_run(ctx.session, ctx.actor, run)
    except Conflict as exc:  # already ended (by itself or by someone else): the card shows it as it is
        ctx.session.rollback()
        return _contact_runs(ctx, contact_id, errors=field_errors(ctx, exc), status_code=409)
    if not ctx.is_htmx:
        return ctx.redirect(f"/contacts/{contact_id}", flash=ctx.fmt.gettext(RUN_STOPPED))
    return _contact_runs(ctx, contact_id, done=ctx.fmt.gettext(RUN_STOPPED))
