"""What broadcasts need from the workflows above them: which workflows a broadcast may name to run
for each contact who replies. Workflows sit above broadcasts (they are fed by the event log a
broadcast's replies write to), so broadcasts cannot import them; the composition module
(`tertulia.consumers.install`) sets the lister once per process. Until then no workflow can be
named."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ReplyWorkflow:
    """A workflow whose trigger is a broadcast reply (in its published or its draft version)."""

    id: int
    name: str
    published: bool  # only a published workflow starts runs


# Called as lister(session, workspace_id): the workspace's workflows a broadcast may name, by name.
ReplyWorkflows = Callable[[Session, int], Sequence[ReplyWorkflow]]


_reply_workflows: ReplyWorkflows | None = None


def set_reply_workflows(lister: ReplyWorkflows) -> None:
    global _reply_workflows
    _reply_workflows = lister


def reply_workflows(session: Session, workspace_id: int) -> Sequence[ReplyWorkflow]:
    return () if _reply_workflows is None else _reply_workflows(session, workspace_id)
