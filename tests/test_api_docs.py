"""docs/api.md's curl examples name operations that exist, with bodies that are JSON: the examples
cannot drift from the API unnoticed."""

import json
import re
import shlex
from pathlib import Path

from tertulia.app import create_app

API_DOC = Path(__file__).parent.parent / "docs" / "api.md"


def _curl_commands() -> list[list[str]]:
    text = API_DOC.read_text(encoding="utf-8").replace("\\\n", " ")
    return [shlex.split(line.removeprefix("$ ")) for line in text.splitlines() if line.startswith("$ curl ")]


def _template(path: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$")


def test_every_curl_example_names_a_real_operation_with_a_json_body() -> None:
    spec = create_app().openapi()
    operations = [(_template(path), method.upper()) for path, methods in spec["paths"].items() for method in methods]
    commands = _curl_commands()
    assert len(commands) >= 25  # the parser found the examples
    for argv in commands:
        method = argv[argv.index("-X") + 1] if "-X" in argv else "GET"
        url = next(arg for arg in argv if arg.startswith("$TERTULIA/"))
        path = url.removeprefix("$TERTULIA").split("?", 1)[0]
        assert any(pattern.match(path) and method == op for pattern, op in operations), f"{method} {path}"
        if "-d" in argv:
            json.loads(argv[argv.index("-d") + 1])
