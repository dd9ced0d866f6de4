"""CSV files of report tables, safe to open in a spreadsheet: text cells follow the contacts
export's rule against formula injection (`contacts.exporter.safe_cell`: a leading `'` before
= + - @ tab or CR, phone numbers and plain negative numbers left alone); numbers are written as
numbers."""

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from tertulia.contacts.exporter import safe_cell
from tertulia.kit.clock import as_utc


def cell(value: Any) -> Any:
    """One value as a CSV cell: text neutralised, numbers kept, None empty."""
    if value is None:
        return ""
    return safe_cell(value) if isinstance(value, str) else value


def render(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([cell(c) for c in columns])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def render_rows(rows: Iterable[Sequence[Any]]) -> str:
    """Rows without the header: the next part of a CSV sent in pieces."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """A stored time (UTC) as ISO 8601 in the workspace's time zone, with its offset
    (2026-11-27T09:15:00-03:00), to the second: what a spreadsheet shows as the local time."""
    return as_utc(moment).astimezone(zone).isoformat(timespec="seconds")
