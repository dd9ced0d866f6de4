"""The workflows a broadcast may name to run for each contact who replies to it: those whose
trigger is a broadcast reply, in the version that is published or being drafted (a draft one is
listed so it can be chosen before it is published; it starts nothing until then)."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.broadcasts.hooks import ReplyWorkflow
from tertulia.workflows.models import VersionState, Workflow, WorkflowStatus, WorkflowVersion

TRIGGER = "broadcast_replied"


def reply_workflows(session: Session, workspace_id: int) -> Sequence[ReplyWorkflow]:
    rows = session.execute(
        select(Workflow.id, Workflow.name, Workflow.status)
        .where(
            Workflow.workspace_id == workspace_id,
            Workflow.id.in_(
                select(WorkflowVersion.workflow_id).where(
                    WorkflowVersion.workspace_id == workspace_id,
                    WorkflowVersion.trigger_type == TRIGGER,
                    WorkflowVersion.state.in_((VersionState.PUBLISHED, VersionState.DRAFT)),
                )
            ),
        )
        .order_by(Workflow.name, Workflow.id)
    ).all()
    return [ReplyWorkflow(id, name, status == WorkflowStatus.PUBLISHED) for id, name, status in rows]
