"""Workflows in the web app (Owners and Managers, as the API): the list with each workflow's status,
runs in progress and last error, and a workflow's page with its JSON definition (edited as JSON
until the visual builder arrives), what is wrong with it, a simulation on a contact, publish and
stop, and its runs with their logs.
"""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form
from starlette.datastructures import UploadFile
from starlette.responses import Response

from tertulia.contacts import service as contacts_service
from tertulia.kit.errors import DomainError, ValidationFailed
from tertulia.kit.http import CheckedInputRoute, check_form_text
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.web import i18n
from tertulia.web.context import UserPage, WebContext
from tertulia.web.forms import field_errors, submit
from tertulia.workflows import repository as repo
from tertulia.workflows import service
from tertulia.workflows.models import Workflow
from tertulia.workflows.simulate import Simulation, simulate

router = APIRouter(prefix="/workflows", include_in_schema=False, route_class=CheckedInputRoute)

STATUS_LABELS: dict[str, str] = {
    "draft": i18n.lazy("Draft"),
    "published": i18n.lazy("Published"),
    "stopped": i18n.lazy("Stopped"),
}
RUN_STATUS_LABELS: dict[str, str] = {
    "running": i18n.lazy("Running"),
    "acting": i18n.lazy("Running"),
    "waiting": i18n.lazy("Waiting"),
    "finished": i18n.lazy("Finished"),
    "failed": i18n.lazy("Failed"),
    "stopped": i18n.lazy("Stopped"),
}
MAX_DEFINITION = 400_000
STARTER: dict[str, Any] = {
    "trigger": {"type": "conversation_opened", "config": {"sources": ["contact"]}},
    "steps": [{"id": "welcome", "type": "send_message", "config": {"text": 'Hola {{contact.first_name | ""}} 👋'}}],
}


def _require(ctx: WebContext) -> None:
    ctx.actor.require(Permission.MANAGE_WORKFLOWS)


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ValidationFailed.field("definition", f"not JSON: {exc}") from exc


@router.get("")
def workflows_page(ctx: UserPage) -> Response:
    return _list(ctx)


def _list(
    ctx: WebContext,
    *,
    typed: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    import_errors: dict[str, str] | None = None,
) -> Response:
    _require(ctx)
    items = service.list_workflows(ctx.session, ctx.actor)
    counts = repo.active_run_counts(ctx.session, ctx.actor.workspace_id)
    context = {
        "workflows": items,
        "counts": counts,
        "status_labels": {k: ctx.fmt.gettext(v) for k, v in STATUS_LABELS.items()},
        "typed": typed or {"name": "", "definition": json.dumps(STARTER, indent=2, ensure_ascii=False)},
        "errors": errors or {},
        "import_errors": import_errors or {},
    }
    failed = errors or import_errors
    return ctx.render("workflows/list.html", context, active="workflows", status_code=422 if failed else 200)


@router.post("")
def create_workflow(
    ctx: UserPage,
    name: Annotated[str, Form(max_length=500)] = "",
    definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
) -> Response:
    _require(ctx)
    typed = {"name": name.replace("\x00", "\ufffd"), "definition": definition.replace("\x00", "\ufffd")}

    def create() -> Workflow:
        return service.do_create_workflow(ctx.session, ctx.actor, name, _parse(definition))

    return submit(
        ctx,
        create,
        again=lambda exc: _list(ctx, typed=typed, errors=field_errors(ctx, exc)),
        done=lambda workflow: ctx.redirect(f"/workflows/{workflow.id}"),
    )


# Before "/{workflow_id}": the path would match it first.
@router.post("/import")
def import_workflow(ctx: UserPage) -> Response:
    """A workflow from an exported JSON file: a new draft, or the list with the errors beside the
    upload (each at the path of the step and field at fault)."""
    _require(ctx)
    # The CSRF check has already parsed the multipart body.
    form = getattr(ctx.request.state, "form", None)
    file = form.get("file") if form is not None else None
    if not isinstance(file, UploadFile) or not file.filename:
        return _list(ctx, import_errors={"file": ctx._("Choose a JSON file exported from a workflow.")})
    file.file.seek(0)
    data = file.file.read(MAX_IMPORT_BYTES + 1)
    try:
        if len(data) > MAX_IMPORT_BYTES:
            raise ValidationFailed.field("file", ctx._("The file is too big."))
        try:
            document = json.loads(data.decode("utf-8"))
        except ValueError as exc:
            raise ValidationFailed.field("file", ctx._("The file is not JSON.")) from exc
        if not isinstance(document, dict) or not isinstance(document.get("definition"), dict):
            raise ValidationFailed.field("file", ctx._("The file is not an exported workflow."))
        workflow = service.do_create_workflow(ctx.session, ctx.actor, document.get("name"), document["definition"])
    except DomainError as exc:
        ctx.session.rollback()
        return _list(ctx, import_errors=field_errors(ctx, exc))
    return ctx.redirect(f"/workflows/{workflow.id}")


def _page(
    ctx: WebContext,
    workflow: Workflow,
    *,
    typed: str | None = None,
    errors: dict[str, str] | None = None,
    simulation: Simulation | None = None,
    contact: str = "",
    status_code: int = 200,
) -> Response:
    definition = service.current_definition(ctx.session, workflow)
    draft = repo.version(ctx.session, workflow.draft_version_id)
    shown = (
        draft
        or repo.version(ctx.session, workflow.published_version_id)
        or repo.latest_version(ctx.session, workflow.id)
    )
    assert shown is not None
    problems = service.definition_errors(ctx.session, workflow, shown)
    runs = service.runs_with_logs(ctx.session, workflow, limit=50)
    context = {
        "workflow": workflow,
        "definition": typed if typed is not None else json.dumps(definition, indent=2, ensure_ascii=False),
        "problems": problems,
        "errors": errors or {},
        "has_draft": draft is not None,
        "runs": runs,
        "in_progress": repo.active_run_counts(ctx.session, ctx.actor.workspace_id).get(workflow.id, 0),
        "status_labels": {k: ctx.fmt.gettext(v) for k, v in STATUS_LABELS.items()},
        "run_labels": {k: ctx.fmt.gettext(v) for k, v in RUN_STATUS_LABELS.items()},
        "simulation": simulation,
        "contact": contact,
    }
    return ctx.render("workflows/workflow.html", context, active="workflows", status_code=status_code)


@router.get("/{workflow_id}")
def workflow_page(ctx: UserPage, workflow_id: ID) -> Response:
    return _page(ctx, service.access_workflow(ctx.session, ctx.actor, workflow_id))


@router.post("/{workflow_id}")
def save_workflow(
    ctx: UserPage,
    workflow_id: ID,
    name: Annotated[str, Form(max_length=500)] = "",
    definition: Annotated[str, Form(max_length=MAX_DEFINITION)] = "",
) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    typed = definition.replace("\x00", "\ufffd")
    return submit(
        ctx,
        lambda: service.do_update_workflow(ctx.session, ctx.actor, workflow, name, _parse(definition)),
        again=lambda exc: _page(ctx, workflow, typed=typed, errors=field_errors(ctx, exc), status_code=422),
        redirect=f"/workflows/{workflow.id}",
        flash="settings_saved",
    )


def _action(ctx: WebContext, workflow_id: int, do: Any) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    return submit(
        ctx,
        lambda: do(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect=f"/workflows/{workflow.id}",
    )


@router.post("/{workflow_id}/publish")
def publish_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    return _action(ctx, workflow_id, service.do_publish)


@router.post("/{workflow_id}/stop")
def stop_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    return _action(ctx, workflow_id, service.do_stop)


@router.post("/{workflow_id}/simulate")
def simulate_workflow(
    ctx: UserPage,
    workflow_id: ID,
    contact: Annotated[str, Form(max_length=300)] = "",
    answers: Annotated[str, Form(max_length=10_000)] = "",
) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    typed = contact.replace("\x00", "\ufffd")
    try:
        check_form_text(ctx.request)
        found = contacts_service.access_contact(ctx.session, ctx.actor, contact.strip() or "id:0")
        checked = service.check_definition(
            ctx.session, ctx.actor.workspace_id, service.current_definition(ctx.session, workflow), workflow.id
        )
        given = [line.strip() for line in answers.splitlines() if line.strip()]
        result = simulate(ctx.session, checked, found, answers=given)
    except DomainError as exc:
        errors = field_errors(ctx, exc)
        if "identifier" in errors:
            errors = {"contact": errors.pop("identifier"), **errors}
        elif "__all__" in errors and exc.code == "not_found":
            errors = {"contact": errors.pop("__all__")}
        return _page(ctx, workflow, errors=errors, contact=typed, status_code=422)
    return _page(ctx, workflow, simulation=result, contact=typed)


@router.post("/{workflow_id}/runs/{run_id}/stop")
def stop_run(ctx: UserPage, workflow_id: ID, run_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    return submit(
        ctx,
        lambda: service.do_stop_run(
            ctx.session, ctx.actor, service.access_run(ctx.session, ctx.actor, workflow, run_id, lock=True)
        ),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect=f"/workflows/{workflow.id}",
    )


# ----- clone, delete, export, import ----------------------------------------------------------------

MAX_IMPORT_BYTES = MAX_DEFINITION


@router.post("/{workflow_id}/clone")
def clone_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    return submit(
        ctx,
        lambda: service.do_clone(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=422),
        done=lambda copy: ctx.redirect(f"/workflows/{copy.id}"),
    )


@router.post("/{workflow_id}/delete")
def delete_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id, lock=True)
    return submit(
        ctx,
        lambda: service.do_delete(ctx.session, ctx.actor, workflow),
        again=lambda exc: _page(ctx, workflow, errors=field_errors(ctx, exc), status_code=409),
        redirect="/workflows",
    )


@router.get("/{workflow_id}/export")
def export_workflow(ctx: UserPage, workflow_id: ID) -> Response:
    workflow = service.access_workflow(ctx.session, ctx.actor, workflow_id)
    body = json.dumps(service.export_dict(ctx.session, workflow), indent=2, ensure_ascii=False)
    return Response(
        body.encode(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="workflow-{workflow.id}.json"'},
    )
