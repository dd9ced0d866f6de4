"""The API's shapes for reports."""

from pydantic import BaseModel

Cell = str | int | float | None


class TableOut(BaseModel):
    columns: list[str]
    rows: list[list[Cell]]


class ReportOut(BaseModel):
    report: str
    timezone: str
    range: dict[str, str]  # preset, from, to
    previous: dict[str, str]  # from, to
    grain: str
    filters: dict[str, int | str]
    tables: dict[str, TableOut]
