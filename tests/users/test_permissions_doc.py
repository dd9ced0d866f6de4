"""docs/permissions.md and users/permissions.py describe the same matrix."""

import re
from pathlib import Path

from tertulia.users.models import Role
from tertulia.users.permissions import API_TOKEN_PERMISSIONS, ROLE_PERMISSIONS, Actor, Permission

DOC = Path(__file__).resolve().parents[2] / "docs" / "permissions.md"
COLUMNS = {"Owner": Role.OWNER, "Manager": Role.MANAGER, "Agent": Role.AGENT, "API token": "api"}
YES, NO = "✓", "—"


def parse_matrix(text: str) -> dict[str, dict[str, bool]]:
    """The markdown table whose header starts with `Permission`: {column: {permission: allowed}}."""
    lines = [line.strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if re.match(r"^\|\s*Permission\s*\|", line))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    columns = header[1:]
    matrix: dict[str, dict[str, bool]] = {column: {} for column in columns}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        name = cells[0].strip("`")
        assert len(cells) == len(header), f"row {name!r} has {len(cells)} cells, header has {len(header)}"
        for column, cell in zip(columns, cells[1:], strict=True):
            assert cell in (YES, NO), f"{name}/{column}: {cell!r} is neither {YES} nor {NO}"
            assert name not in matrix[column], f"{name} listed twice"
            matrix[column][name] = cell == YES
    return matrix


def test_doc_table_matches_code() -> None:
    matrix = parse_matrix(DOC.read_text(encoding="utf-8"))
    assert set(matrix) == set(COLUMNS)
    every = {p.value for p in Permission}
    for column, role in COLUMNS.items():
        assert set(matrix[column]) == every, f"{column}: the doc must list every permission exactly once"
        granted = API_TOKEN_PERMISSIONS if role == "api" else ROLE_PERMISSIONS[Role(role)]
        documented = {name for name, allowed in matrix[column].items() if allowed}
        assert documented == {p.value for p in granted}, column


def test_doc_describes_every_permission() -> None:
    text = DOC.read_text(encoding="utf-8")
    for permission in Permission:
        assert re.search(rf"^- `{permission.value}`: \S", text, re.MULTILINE), permission.value


def test_parser_notices_a_wrong_cell() -> None:
    text = DOC.read_text(encoding="utf-8")
    broken = text.replace("| `delete_contacts` | ✓ | ✓ | — |", "| `delete_contacts` | ✓ | ✓ | ✓ |")
    assert broken != text
    assert parse_matrix(broken)["Agent"]["delete_contacts"] is True
    assert Permission.DELETE_CONTACTS not in ROLE_PERMISSIONS[Role.AGENT]


def test_actor_kinds_use_their_column() -> None:
    api = Actor(workspace_id=1, kind="api", token_id=1)
    assert api.permissions == API_TOKEN_PERMISSIONS
    assert not api.is_owner
    for role in Role:
        actor = Actor(workspace_id=1, kind="user", user_id=1, role=role)
        assert actor.permissions == ROLE_PERMISSIONS[role]
        assert actor.is_owner is (role == Role.OWNER)
    assert Actor.system(1).is_owner
