"""JSON endpoints for workflows (`manage_workflows`: owners, managers and API tokens).

GET/POST /api/v1/workflows                      list; create from JSON (422 names the step and field)
GET/PATCH /api/v1/workflows/{id}                one workflow; a new name and/or definition
POST /api/v1/workflows/{id}/publish             publish its draft
POST /api/v1/workflows/{id}/stop                stop it and end its runs
POST /api/v1/workflows/{id}/simulate            run it on a contact without doing anything
GET  /api/v1/workflows/{id}/runs                its runs with their logs, newest first
POST /api/v1/workflows/{id}/runs/{run}/stop     stop one run
GET  /api/v1/workflow-templates[/{id}]          the templates; POST .../{id}/workflows: a draft from one
POST /api/v1/workflows/{id}/run                 run a shortcut on a contact (edit_contacts)
GET  /api/v1/workflows/{id}/hook                its incoming-webhook URL and secret (made on first use)
POST /api/v1/workflows/{id}/hook/regenerate     a new secret; the old URL stops working
GET  /api/v1/workflows/{id}/export              the JSON that POST /api/v1/workflows creates it from
POST /api/v1/workflows/{id}/clone               a new draft "Copy of ..." with its definition
DELETE /api/v1/workflows/{id}                   delete it with its runs (those in progress end)
GET  /api/v1/contacts/{identifier}/workflow-runs        a contact's runs, newest first, with their last logs
POST /api/v1/contacts/{identifier}/workflow-runs/{run}/stop   stop one (the workflow for this contact)
GET/PUT /api/v1/workflow-settings/http-hosts    the private hosts HTTP request steps may call (PUT:
                                                manage_workspace, so owners and managers, not tokens)

Importing is creating: POST /api/v1/workflows with an exported JSON, checked like any definition.
"""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from tertulia.contacts import service as contacts_service
from tertulia.contacts.schemas import Identifier
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession, writes
from tertulia.kit.types import ID
from tertulia.users.permissions import Permission
from tertulia.users.session_auth import SessionOrTokenActor as ApiActor
from tertulia.workflows import catalogue, hooks, http_hosts, service, shortcuts
from tertulia.workflows import repository as repo
from tertulia.workflows.models import Workflow
from tertulia.workflows.schemas import (
    ContactRunOut,
    ContactRunPage,
    FromTemplateBody,
    FromTemplateOut,
    HookOut,
    HttpHostsBody,
    HttpHostsOut,
    RunOut,
    RunPage,
    RunShortcutBody,
    SimulateBody,
    SimulationOut,
    StopOut,
    WorkflowBody,
    WorkflowExport,
    WorkflowOut,
    WorkflowPatch,
    WorkflowTemplateOut,
)
from tertulia.workflows.simulate import simulate, trigger_values

TemplateId = Annotated[str, Path(max_length=64, description="A template id, e.g. assign_agent.")]
router = APIRouter(prefix="/api/v1", tags=["workflows"], route_class=CheckedInputRoute, responses=API_ERRORS)


def _out(session: DbSession, workflow: Workflow) -> WorkflowOut:
    return WorkflowOut(**service.workflow_dict(session, workflow))


@router.get("/workflows", response_model=list[WorkflowOut])
def list_workflows(session: DbSession, actor: ApiActor) -> list[WorkflowOut]:
    counts = repo.active_run_counts(session, actor.workspace_id)
    return [
        WorkflowOut(**service.workflow_dict(session, w, counts.get(w.id, 0)))
        for w in service.list_workflows(session, actor)
    ]


@router.post("/workflows", response_model=WorkflowOut, status_code=201)
def create_workflow(session: DbSession, actor: ApiActor, body: WorkflowBody) -> WorkflowOut:
    return _out(session, service.do_create_workflow(session, actor, body.name, body.definition))


@router.get("/workflows/{workflow_id}", response_model=WorkflowOut)
def get_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> WorkflowOut:
    return _out(session, service.access_workflow(session, actor, workflow_id))


@router.patch("/workflows/{workflow_id}", response_model=WorkflowOut)
def update_workflow(session: DbSession, actor: ApiActor, workflow_id: ID, body: WorkflowPatch) -> WorkflowOut:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    return _out(session, service.do_update_workflow(session, actor, workflow, body.name, body.definition))


@router.post("/workflows/{workflow_id}/publish", response_model=WorkflowOut)
def publish_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> WorkflowOut:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    return _out(session, service.do_publish(session, actor, workflow))


@router.post("/workflows/{workflow_id}/stop", response_model=StopOut)
def stop_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> StopOut:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    stopped = service.do_stop(session, actor, workflow)
    return StopOut(workflow=_out(session, workflow), runs_stopped=stopped)


@router.post("/workflows/{workflow_id}/simulate", response_model=SimulationOut)
def simulate_workflow(session: DbSession, actor: ApiActor, workflow_id: ID, body: SimulateBody) -> SimulationOut:
    workflow = service.access_workflow(session, actor, workflow_id)
    contact = contacts_service.access_contact(session, actor, body.contact, Permission.VIEW_CONTACTS)
    checked = service.check_definition(
        session, actor.workspace_id, service.current_definition(session, workflow), workflow.id
    )
    given = trigger_values(checked, body.form, actor.user_id)
    result = simulate(session, checked, contact, answers=body.answers, trigger_values=given, now=body.at)
    return SimulationOut.model_validate(result, from_attributes=True)


@router.get("/workflows/{workflow_id}/runs", response_model=RunPage)
def list_runs(
    session: DbSession,
    actor: ApiActor,
    workflow_id: ID,
    before: Annotated[ID | None, Query(description="A run id: older ones.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> RunPage:
    workflow = service.access_workflow(session, actor, workflow_id)
    items = service.runs_with_logs(session, workflow, before_id=before, limit=limit + 1)
    page = items[:limit]
    return RunPage(
        items=[RunOut(**service.run_dict(item)) for item in page],
        next_cursor=page[-1].run.id if len(items) > limit else None,
    )


@router.post("/workflows/{workflow_id}/runs/{run_id}/stop", response_model=RunOut)
def stop_run(session: DbSession, actor: ApiActor, workflow_id: ID, run_id: ID) -> RunOut:
    workflow = service.access_workflow(session, actor, workflow_id)
    run = service.do_stop_run(session, actor, service.access_run(session, actor, workflow, run_id, lock=True))
    return RunOut(**service.run_dict(service.RunWithLogs(run, repo.logs_of(session, [run.id])[run.id])))


# ----- templates (workflows/catalogue.py; docs/workflows-templates.md) ------------------------------
# GET  /api/v1/workflow-templates                       the gallery, both languages
# GET  /api/v1/workflow-templates/{id}                  one template
# POST /api/v1/workflow-templates/{id}/workflows        a draft from it (201, with what to fix)


@router.get("/workflow-templates", response_model=list[WorkflowTemplateOut])
def list_templates(actor: ApiActor) -> list[WorkflowTemplateOut]:
    actor.require(Permission.MANAGE_WORKFLOWS)
    return [WorkflowTemplateOut(**catalogue.template_dict(t)) for t in catalogue.templates()]


@router.get("/workflow-templates/{template_id}", response_model=WorkflowTemplateOut)
def get_template(actor: ApiActor, template_id: TemplateId) -> WorkflowTemplateOut:
    actor.require(Permission.MANAGE_WORKFLOWS)
    return WorkflowTemplateOut(**catalogue.template_dict(catalogue.template(template_id)))


@router.post("/workflow-templates/{template_id}/workflows", response_model=FromTemplateOut, status_code=201)
def create_from_template(
    session: DbSession, actor: ApiActor, template_id: TemplateId, body: FromTemplateBody
) -> FromTemplateOut:
    created = catalogue.do_create_from_template(
        session, actor, template_id, values=body.values, language=body.language, name=body.name
    )
    return FromTemplateOut(**service.workflow_dict(session, created.workflow), problems=created.problems)


@router.post("/workflows/{workflow_id}/run", response_model=RunOut, status_code=201)
def run_shortcut(session: DbSession, actor: ApiActor, workflow_id: ID, body: RunShortcutBody) -> RunOut:
    contact = contacts_service.access_contact(session, actor, body.contact, Permission.EDIT_CONTACTS)
    run = shortcuts.do_run_shortcut(
        session, actor, workflow_id, contact, body.answers, conversation_id=body.conversation_id
    )
    return RunOut(**service.run_dict(service.RunWithLogs(run, [])))


def _hook_out(session: DbSession, request: Request, actor: ApiActor, workflow: Workflow) -> HookOut:
    info = hooks.hook_info(session, actor, workflow, request.app.state.settings.base_url)
    return HookOut(url=info.url, secret=info.secret, header=info.header, curl=info.curl)


@router.get("/workflows/{workflow_id}/hook", response_model=HookOut)
@writes
def get_hook(session: DbSession, request: Request, actor: ApiActor, workflow_id: ID) -> HookOut:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    return _hook_out(session, request, actor, workflow)


@router.post("/workflows/{workflow_id}/hook/regenerate", response_model=HookOut)
def regenerate_hook(session: DbSession, request: Request, actor: ApiActor, workflow_id: ID) -> HookOut:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    hooks.do_regenerate(session, actor, workflow)
    return _hook_out(session, request, actor, workflow)


@router.get("/workflows/{workflow_id}/export", response_model=WorkflowExport)
def export_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> WorkflowExport:
    workflow = service.access_workflow(session, actor, workflow_id)
    return WorkflowExport(**service.export_dict(session, workflow))


@router.post("/workflows/{workflow_id}/clone", response_model=WorkflowOut, status_code=201)
def clone_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> WorkflowOut:
    workflow = service.access_workflow(session, actor, workflow_id)
    return _out(session, service.do_clone(session, actor, workflow))


@router.delete("/workflows/{workflow_id}", status_code=204, response_class=Response)
def delete_workflow(session: DbSession, actor: ApiActor, workflow_id: ID) -> Response:
    workflow = service.access_workflow(session, actor, workflow_id, lock=True)
    service.do_delete(session, actor, workflow)
    return Response(status_code=204)


@router.get("/contacts/{identifier}/workflow-runs", response_model=ContactRunPage)
def contact_runs(session: DbSession, actor: ApiActor, identifier: Identifier) -> ContactRunPage:
    contact = contacts_service.access_contact(session, actor, identifier, Permission.VIEW_CONTACTS)
    return ContactRunPage(items=[ContactRunOut(**item) for item in service.contact_runs(session, actor, contact.id)])


@router.post("/contacts/{identifier}/workflow-runs/{run_id}/stop", response_model=ContactRunOut)
def stop_contact_run(session: DbSession, actor: ApiActor, identifier: Identifier, run_id: ID) -> ContactRunOut:
    contact = contacts_service.access_contact(session, actor, identifier, Permission.VIEW_CONTACTS)
    run = service.access_contact_run(session, actor, contact.id, run_id, lock=True)
    service.do_stop_run(session, actor, run)
    return ContactRunOut(**service.contact_run_dict(session, run))


@router.get("/workflow-settings/http-hosts", response_model=HttpHostsOut)
def get_http_hosts(session: DbSession, actor: ApiActor) -> HttpHostsOut:
    return HttpHostsOut(hosts=http_hosts.http_hosts(session, actor))


@router.put("/workflow-settings/http-hosts", response_model=HttpHostsOut)
def put_http_hosts(session: DbSession, actor: ApiActor, body: HttpHostsBody) -> HttpHostsOut:
    return HttpHostsOut(hosts=http_hosts.do_set_http_hosts(session, actor, body.hosts))
