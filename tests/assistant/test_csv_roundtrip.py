"""The export and the import's reader agree: any entries written by `export_csv` read back cell for
cell, whatever the text (formula starts, separators, quotes, new lines, accents)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tertulia.assistant.csvio import SEPARATOR, export_csv, read_rows
from tertulia.assistant.models import KnowledgeEntry

# Text as the service leaves it: no NUL or surrogates; phrasings and buttons never contain the
# separator (it splits them) nor stand empty.
text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
tricky = st.sampled_from(["'=x", "''=1", "'-1", "=1+2", "-5", "+34 600 123 456", "@here", "'@", "'"])
line = st.one_of(text.map(lambda s: " ".join(s.split())).filter(bool), tricky)
part = line.filter(lambda s: SEPARATOR not in s)
entries = st.lists(
    st.builds(
        lambda q, alts, answer, topic, lang, buttons, active: KnowledgeEntry(
            question=q,
            alternatives=alts,
            answer=answer,
            topic=topic,
            language=lang,
            buttons=buttons,
            active=active,
        ),
        line,
        st.lists(part, max_size=3),
        text.map(str.strip).filter(bool),
        st.one_of(st.just(""), line),
        st.sampled_from(["es", "en"]),
        st.lists(part, max_size=2),
        st.booleans(),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(entries)
def test_exported_entries_read_back_unchanged(batch: list[KnowledgeEntry]) -> None:
    header, rows = read_rows(export_csv(batch).encode())
    assert header == ["question", "alternatives", "answer", "topic", "language", "buttons", "active"]
    assert len(rows) == len(batch)
    for (_, values), entry in zip(rows, batch, strict=True):
        assert values["question"] == entry.question
        assert [a for a in values["alternatives"].split(SEPARATOR) if a] == entry.alternatives
        assert values["answer"] == entry.answer
        assert values["topic"] == entry.topic
        assert values["language"] == entry.language
        assert [b for b in values["buttons"].split(SEPARATOR) if b] == entry.buttons
        assert values["active"] == ("true" if entry.active else "false")
