"""Which transaction a request gets: a write one for anything but a read, and for the GETs whose work
writes (`kit.http.writes`); who may ask stays the method's business (a read-only token may GET)."""

from starlette.requests import Request

from tertulia.broadcasts.views import broadcast_page, dry_run_page, excluded_csv
from tertulia.kit.http import _writes, is_read
from tertulia.segments.views import filter_panel_update
from tertulia.workflows.api import get_hook, get_workflow


def _request(method: str, endpoint: object) -> Request:
    return Request({"type": "http", "method": method, "path": "/", "headers": [], "endpoint": endpoint})


def test_a_get_whose_work_writes_gets_a_write_transaction_and_stays_a_read_for_tokens() -> None:
    # A broadcast's dry run, its draft's previews and its excluded contacts write the snapshot in a
    # savepoint; on SQLite a read transaction turning into a write one fails at once ("database is
    # locked") when another writer committed since it began.
    for endpoint in (dry_run_page, broadcast_page, excluded_csv, get_hook):
        request = _request("GET", endpoint)
        assert _writes(request)
        assert is_read(request)


def test_plain_reads_and_read_only_posts_stay_reads() -> None:
    assert not _writes(_request("GET", get_workflow))
    assert not _writes(_request("POST", filter_panel_update))
    assert _writes(_request("POST", get_workflow))
