"""Workflows, their versions, their runs (a run's state is a row, not a queued job), each run's log
and the record of the side effects each run has made (by idempotency key)."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tertulia.kit.models import Base, BigID, IdMixin, JSONType, TimestampMixin


class WorkflowStatus:
    DRAFT = "draft"  # never published
    PUBLISHED = "published"  # its published version starts runs
    STOPPED = "stopped"  # starts nothing; its runs were ended when it stopped


class VersionState:
    DRAFT = "draft"  # being edited; at most one per workflow
    PUBLISHED = "published"  # the version new runs start on; at most one per workflow
    RETIRED = "retired"  # replaced by a newer published version; its runs finish on it
    STOPPED = "stopped"  # the workflow was stopped while this version was published


class RunStatus:
    RUNNING = "running"  # has something to do now (due_at)
    ACTING = "acting"  # an action (an HTTP request) is under way
    WAITING = "waiting"  # for a time (due_at) or for the contact to write
    FINISHED = "finished"
    FAILED = "failed"  # an error with no failure branch, or runaway protection
    STOPPED = "stopped"  # by a person, or because the workflow stopped
    ACTIVE = (RUNNING, ACTING, WAITING)


class Workflow(IdMixin, TimestampMixin, Base):
    __tablename__ = "workflows"
    __table_args__ = (Index("ix_workflows_workspace_id_id", "workspace_id", "id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default=WorkflowStatus.DRAFT)
    # No foreign keys: a version points back at its workflow, and the pair would be a cycle.
    draft_version_id: Mapped[int | None] = mapped_column(BigID)
    published_version_id: Mapped[int | None] = mapped_column(BigID)
    # The last user each assign step with round robin gave a conversation to: {step id: user id}.
    round_robin: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    last_error_at: Mapped[datetime | None]


class WorkflowVersion(IdMixin, Base):
    """One definition of a workflow. Published versions are never edited: editing a published
    workflow makes a new draft version, and runs keep the version they started on."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "number", name="uq_workflow_versions_workflow_id_number"),
        Index("ix_workflow_versions_workspace_id_state_trigger_type", "workspace_id", "state", "trigger_type"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    trigger_type: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), default=VersionState.DRAFT)
    created_at: Mapped[datetime]
    published_at: Mapped[datetime | None]


class WorkflowRun(IdMixin, Base):
    """One contact's way through one version. `state` is the engine's RunState; `inbox` the inputs
    waiting to be fed to it (the start, what the contact wrote) in order; `due_at` when a worker
    should look at it next (None: only when the contact writes)."""

    __tablename__ = "workflow_runs"
    __table_args__ = (
        # One run per contact and workflow at a time: `active_contact_id` is the contact while the
        # run is active and NULL afterwards (NULLs never collide in a unique index).
        UniqueConstraint("workflow_id", "active_contact_id", name="uq_workflow_runs_workflow_id_active_contact_id"),
        UniqueConstraint("workflow_id", "trigger_event_id", name="uq_workflow_runs_workflow_id_trigger_event_id"),
        Index("ix_workflow_runs_due_at", "due_at"),
        Index("ix_workflow_runs_workflow_id_contact_id", "workflow_id", "contact_id"),
        Index("ix_workflow_runs_contact_id_status", "contact_id", "status"),
        Index("ix_workflow_runs_workflow_id_id", "workflow_id", "id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflow_versions.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    active_contact_id: Mapped[int | None] = mapped_column(BigID)
    conversation_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("conversations.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.RUNNING)
    state: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    inbox: Mapped[list[Any]] = mapped_column(JSONType, default=list)
    # The action under way outside a transaction (an HTTP request): its key, kind and parameters.
    pending_action: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    due_at: Mapped[datetime | None]
    # The event that started it (an event fed twice starts nothing twice) and the newest event fed
    # to it (a message fed twice is one answer).
    trigger_event_id: Mapped[int | None] = mapped_column(BigID)
    last_event_id: Mapped[int] = mapped_column(BigID, default=0)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]


class WorkflowRunLog(IdMixin, Base):
    __tablename__ = "workflow_run_logs"
    __table_args__ = (
        Index("ix_workflow_run_logs_run_id_id", "run_id", "id"),
        Index("ix_workflow_run_logs_workflow_id_id", "workflow_id", "id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    step_type: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(String(1000))
    at: Mapped[datetime]


class WorkflowEffect(IdMixin, Base):
    """A side effect a run has made, by its idempotency key (the engine's action key): written in
    the transaction that makes it, so a retried run sees what is already done."""

    __tablename__ = "workflow_effects"
    __table_args__ = (UniqueConstraint("run_id", "key", name="uq_workflow_effects_run_id_key"),)

    run_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(32))
    step_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    ok: Mapped[bool] = mapped_column(default=True)
    result: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    at: Mapped[datetime]


class WorkflowQueueEntry(IdMixin, Base):
    """A run whose assign step found nobody who qualifies and waits in the queue (workflows/queue.py).
    `pool` says who may take it (runs with the same pool are served first come, first served, by
    `queued_at`); `attempted_at` is its last try, so a sweep can tell whether someone came online
    since. The row exists exactly while the run's state waits in the queue (written with it)."""

    __tablename__ = "workflow_queue"
    __table_args__ = (
        UniqueConstraint("run_id", name="uq_workflow_queue_run_id"),
        Index("ix_workflow_queue_workspace_id_pool_queued_at", "workspace_id", "pool", "queued_at"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflow_runs.id", ondelete="CASCADE"))
    step_id: Mapped[str] = mapped_column(String(64))
    pool: Mapped[str] = mapped_column(String(200))
    queued_at: Mapped[datetime]
    attempted_at: Mapped[datetime]


class WorkflowHook(IdMixin, Base):
    """A regenerated incoming-webhook secret (hooks.py). The secret itself is never stored: it is
    an HMAC of the workflow's id and this nonce under the installation's secret key, so the page
    can show it again and a copied database does not reveal it. No row: the first secret."""

    __tablename__ = "workflow_hooks"
    __table_args__ = (UniqueConstraint("workflow_id", name="uq_workflow_hooks_workflow_id"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    nonce: Mapped[str] = mapped_column(String(64))
    rotated_at: Mapped[datetime]


class WorkflowDateFire(IdMixin, Base):
    """One occurrence of a date trigger that fired for a contact (dates.py). The unique key is what
    makes the sweep fire each occurrence at most once; a new date in the field is a new occurrence."""

    __tablename__ = "workflow_date_fires"
    __table_args__ = (
        UniqueConstraint(
            "workflow_id", "contact_id", "occurrence", name="uq_workflow_date_fires_workflow_id_contact_id_occurrence"
        ),
        Index("ix_workflow_date_fires_contact_id", "contact_id"),
    )

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    workflow_id: Mapped[int] = mapped_column(BigID, ForeignKey("workflows.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(BigID, ForeignKey("contacts.id", ondelete="CASCADE"))
    # The date (or instant) the occurrence is about, ISO: "2027-03-14" for a yearly birthday.
    occurrence: Mapped[str] = mapped_column(String(40))
    fire_at: Mapped[datetime]
    # The run it started; None when it started none (the contact was in the workflow already).
    run_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("workflow_runs.id", ondelete="SET NULL"))
    at: Mapped[datetime]


class WorkflowDateSweep(Base):
    """How far the date sweep has looked for a workflow: fire times up to `swept_until` are done.
    Moved in the transaction that starts the runs, so a crash repeats the same window."""

    __tablename__ = "workflow_date_sweeps"

    workflow_id: Mapped[int] = mapped_column(
        BigID, ForeignKey("workflows.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    swept_until: Mapped[datetime]


class WorkflowHttpHost(IdMixin, Base):
    """A host the workspace's HTTP request steps may call although it is private or local
    (http_hosts.py): a host name (`crm.internal`, `*.corp.example`), an IP address or a network
    (`10.20.0.0/16`), stored normalised. Edited by owners and managers as one list."""

    __tablename__ = "workflow_http_hosts"
    __table_args__ = (UniqueConstraint("workspace_id", "host", name="uq_workflow_http_hosts_workspace_id_host"),)

    workspace_id: Mapped[int] = mapped_column(BigID, ForeignKey("workspaces.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
