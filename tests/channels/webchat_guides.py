"""The help centre's web chat guides (docs/channels/webchat-*.md) as tests read them: their code
blocks, and what the widget itself expects of the tag a site writes (read from widget.js)."""

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "channels"
WIDGET_JS = ROOT / "src" / "tertulia" / "channels" / "static" / "widget.js"
PLATFORMS = ("wordpress", "shopify", "wix", "squarespace")
# The guides' placeholders: the Tertulia server's address and the widget's key in each language.
BASE_URL = "https://tertulia.example.com"
KEYS = {"English": "YOUR-WIDGET-KEY", "Español": "CLAVE-DEL-WIDGET"}

_BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    language: str
    code: str


def guide(platform: str) -> str:
    return (DOCS / f"webchat-{platform}.md").read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """One language's half of a guide: from its `## heading` to the next `## ` heading."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str, language: str | None = None) -> list[Block]:
    found = [Block(match.group(1), match.group(2)) for match in _BLOCK.finditer(text)]
    return [block for block in found if language is None or block.language == language]


def widget_attributes() -> set[str]:
    """The data attributes widget.js reads from its own tag."""
    source = WIDGET_JS.read_text(encoding="utf-8")
    listed = re.search(r"\[([^\]]*)\]\.forEach\(function \(attribute\)", source)
    assert listed, "widget.js no longer lists the attributes it reads the way this test expects"
    return {f"data-{name}" for name in re.findall(r'"([a-z-]+)"', listed.group(1))}


def widget_path() -> re.Pattern[str]:
    """The path widget.js recognises as its own (where it reads its key from)."""
    source = WIDGET_JS.read_text(encoding="utf-8")
    found = re.search(r"source\.pathname\.match\(/(.*?)/\)", source)
    assert found, "widget.js no longer matches its own path the way this test expects"
    return re.compile(found.group(1).replace("\\/", "/"))
