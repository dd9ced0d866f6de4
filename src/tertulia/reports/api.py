"""JSON endpoints for reports (owners and managers; an agent gets their own numbers).

GET /api/v1/reports/{name}                 conversations, responses, messages, resolutions, assignments,
                                           contacts, users, leaderboard, broadcasts: every table as JSON
GET /api/v1/reports/{name}/{table}.csv     one table of it as CSV, the same numbers
GET /api/v1/reports/{name}/list            the conversations behind one bar (conversations, responses):
                                           metric, and period or bucket (docs/reports.md, Drill-down)
GET /api/v1/reports/{name}/list.csv        the same list as CSV, every row (the JSON has the first 500),
                                           with contact and channel names, times in the workspace's zone
GET /api/v1/dashboard                      the Dashboard's numbers (docs/reports.md, Dashboard);
                                           business_hours as the reports
POST /api/v1/exports, GET /api/v1/exports[/{id}[/download]]   data exports (docs/data-export.md)

Parameters: range (today, yesterday, last_7_days, last_14_days, last_30_days, this_month,
last_month, custom), from and to (dates, for custom), channel_id, team_id, user_id, category_id,
source, tag_id or tag (a contact tag, by id or name: the conversations whose contact has it now;
every report but contacts and broadcasts), business_hours (times within business hours only, in the
reports that show times); for the leaderboard, metric and by.
"""

from collections.abc import Iterator
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field
from starlette.responses import FileResponse, StreamingResponse

from tertulia.kit.errors import NotFound
from tertulia.kit.http import API_ERRORS, CheckedInputRoute, DbSession
from tertulia.kit.types import ID
from tertulia.reports import csvfile, dashboard, exports, service
from tertulia.reports.export_runner import FILES
from tertulia.reports.repository import Filters
from tertulia.reports.schemas import DashboardOut, DrillDownOut, ReportOut
from tertulia.users.session_auth import SessionOrTokenActor as ApiActor

router = APIRouter(prefix="/api/v1", tags=["reports"], route_class=CheckedInputRoute, responses=API_ERRORS)


class ReportQuery:
    def __init__(
        self,
        range: Annotated[str, Query(description="A preset, or custom with from and to.")] = "last_7_days",
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: Annotated[date | None, Query()] = None,
        channel_id: Annotated[ID | None, Query()] = None,
        team_id: Annotated[ID | None, Query()] = None,
        user_id: Annotated[ID | None, Query()] = None,
        category_id: Annotated[ID | None, Query()] = None,
        source: Annotated[str | None, Query(max_length=16)] = None,
        tag_id: Annotated[
            ID | None, Query(description="Conversations whose contact has this tag now (conversation reports).")
        ] = None,
        tag: Annotated[str | None, Query(max_length=100, description="The tag by name, instead of tag_id.")] = None,
        metric: Annotated[str | None, Query(max_length=24, description="The leaderboard's metric.")] = None,
        by: Annotated[str | None, Query(max_length=8, description="The leaderboard's rows: user or team.")] = None,
        business_hours: Annotated[
            bool,
            Query(
                description="Times count only the workspace's business hours (reports with times; "
                "a 422 in a workspace without business hours)."
            ),
        ] = False,
    ) -> None:
        self.preset = range
        self.start = from_
        self.end = to
        self.filters = Filters(channel_id, team_id, user_id, category_id, source, tag_id)
        self.tag = tag
        self.metric = metric
        self.by = by
        self.business_hours = business_hours


Params = Annotated[ReportQuery, Depends()]


def _build(session: DbSession, actor: ApiActor, name: str, params: ReportQuery) -> dict[str, Any]:
    return service.build_report(
        session,
        actor,
        name,
        preset=params.preset,
        start=params.start,
        end=params.end,
        filters=service.with_tag_named(session, actor.workspace_id, params.filters, params.tag),
        metric=params.metric,
        by=params.by,
        business_hours=params.business_hours,
    )


@router.get("/dashboard", response_model=DashboardOut)
def get_dashboard(
    session: DbSession,
    actor: ApiActor,
    business_hours: Annotated[
        bool,
        Query(
            description="Waiting times and today's median times count only the business hours (a 422 in a "
            "workspace without business hours)."
        ),
    ] = False,
) -> dict[str, Any]:
    return dashboard.build_dashboard(session, actor, business_hours=business_hours)


@router.get("/reports/{name}", response_model=ReportOut, response_model_by_alias=True)
def get_report(session: DbSession, actor: ApiActor, name: str, params: Params) -> dict[str, Any]:
    return _build(session, actor, name, params)


Period = Annotated[str | None, Query(max_length=13, description="A day or hour of the range.")]
Bucket = Annotated[str | None, Query(max_length=16, description="A column of a times table (<30s ... >1h).")]


def _bar_arguments(
    session: DbSession, actor: ApiActor, params: ReportQuery, period: str | None, bucket: str | None
) -> dict[str, Any]:
    """One bar's parameters, as the list and its CSV both pass them to the service."""
    return {
        "metric": params.metric or "",
        "period": period or None,
        "bucket": bucket or None,
        "preset": params.preset,
        "start": params.start,
        "end": params.end,
        "filters": service.with_tag_named(session, actor.workspace_id, params.filters, params.tag),
        "business_hours": params.business_hours,
    }


def _drill_down(
    session: DbSession, actor: ApiActor, name: str, params: ReportQuery, period: str | None, bucket: str | None
) -> dict[str, Any]:
    return service.drill_down(session, actor, name, **_bar_arguments(session, actor, params, period, bucket))


@router.get("/reports/{name}/list", response_model=DrillDownOut)
def get_drill_down(
    session: DbSession, actor: ApiActor, name: str, params: Params, period: Period = None, bucket: Bucket = None
) -> dict[str, Any]:
    """The occurrences behind one bar (`metric`: the bar's number, with `period` or `bucket`), with
    the report's range, filters and business-hours toggle; the page's list as JSON."""
    return _drill_down(session, actor, name, params, period, bucket)


LIST_COLUMNS = ("conversation_id", "at", "contact", "channel_id", "channel", "seconds")


# Declared before the tables' CSV route, which would take "list" for a table's name.
@router.get(
    "/reports/{name}/list.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def get_drill_down_csv(
    session: DbSession, actor: ApiActor, name: str, params: Params, period: Period = None, bucket: Bucket = None
) -> Response:
    """The same list as CSV, every item (not the first 500): one row per item, with its contact and
    channel names and its time in the workspace's time zone, read in pages and written whole before
    it is sent: a database error while reading is an error answer (500, the error JSON), never a
    file cut short that looks complete; the answer says its length (Content-Length)."""
    head, pages = service.drill_down_pages(
        session, actor, name, **_bar_arguments(session, actor, params, period, bucket)
    )
    zone = ZoneInfo(head["timezone"])

    def rows(page: list[dict[str, Any]]) -> Iterator[list[Any]]:
        for item in page:
            yield [
                item["conversation_id"],
                csvfile.local_time(item["at"], zone),
                item["contact"],
                item["channel_id"],
                item["channel"],
                item["seconds"],
            ]

    file, size = csvfile.spooled(LIST_COLUMNS, (rows(page) for page in pages))
    filename = f"{name}-{head['metric']}-list-{head['range']['from']}-{head['range']['to']}.csv"
    return StreamingResponse(
        csvfile.chunks(file),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Content-Length": str(size)},
    )


@router.get(
    "/reports/{name}/{table}.csv",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def get_report_csv(session: DbSession, actor: ApiActor, name: str, table: str, params: Params) -> Response:
    report = _build(session, actor, name, params)
    chosen = report["tables"].get(table)
    if chosen is None:
        raise NotFound(f"No table {table!r} in the {name} report.", details={"tables": sorted(report["tables"])})
    filename = f"{name}-{table}-{report['range']['from']}-{report['range']['to']}.csv"
    return Response(
        csvfile.render(chosen["columns"], chosen["rows"]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


# ----- data exports (docs/data-export.md) -----------------------------------------------------


class ExportIn(BaseModel):
    from_: date = Field(alias="from")
    to: date
    files: list[str] | None = Field(default=None, max_length=len(FILES), description=f"Any of {', '.join(FILES)}")


class ExportOut(BaseModel):
    id: int
    status: str  # queued, running, done, failed, expired
    from_: str = Field(alias="from")
    to: str
    files: list[str]
    percent: int
    processed_rows: int
    total_rows: int
    size_bytes: int | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    download_url: str | None

    model_config = {"populate_by_name": True}


@router.post("/exports", response_model=ExportOut, status_code=202, response_model_by_alias=True)
def create_export(session: DbSession, actor: ApiActor, body: ExportIn) -> dict[str, Any]:
    """Start an export; 409 `export_running` while another of the workspace is queued or running."""
    export = exports.do_create_export(session, actor, body.from_, body.to, body.files)
    return exports.summary(export)


@router.get("/exports", response_model=list[ExportOut], response_model_by_alias=True)
def list_exports(session: DbSession, actor: ApiActor) -> list[dict[str, Any]]:
    return [exports.summary(export) for export in exports.recent_exports(session, actor)]


@router.get("/exports/{export_id}", response_model=ExportOut, response_model_by_alias=True)
def get_export(session: DbSession, actor: ApiActor, export_id: ID) -> dict[str, Any]:
    return exports.summary(exports.access_export(session, actor, export_id))


@router.get(
    "/exports/{export_id}/download",
    response_class=FileResponse,
    responses={200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
)
def download_export(session: DbSession, actor: ApiActor, export_id: ID) -> FileResponse:
    """The zip while it has not expired (7 days after it was finished); 404 `export_expired` after."""
    path, filename = exports.download_file(session, actor, export_id)
    return FileResponse(path, media_type="application/zip", filename=filename, headers={"Cache-Control": "no-store"})
