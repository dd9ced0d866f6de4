"""The retrieval's signals on their own, without a database: the character n-gram similarity, the
question words that are kept, a confidence that does not drift with the knowledge base's size, and
typo correction that leaves the language's own words alone."""

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rapidfuzz.distance import Levenshtein

from tertulia.assistant.models import KnowledgeEntry
from tertulia.assistant.retrieval import CharGrams, WorkspaceIndex, language_words


def _entry(entry_id: int, question: str, answer: str, alternatives: Sequence[str] = ()) -> KnowledgeEntry:
    return KnowledgeEntry(
        id=entry_id,
        question=question,
        alternatives=list(alternatives),
        answer=answer,
        buttons=[],
        topic="",
        language="es",
        active=True,
    )


def _index(entries: Sequence[KnowledgeEntry]) -> WorkspaceIndex:
    return WorkspaceIndex.build((1, ""), entries, [])


def test_character_grams_score_a_misspelt_word_closest_to_its_document() -> None:
    grams = CharGrams([["devolucion"], ["envio", "gratis"], ["horario", "tienda"]])
    exact = grams.similarity(["devolucion"])
    assert exact[0] == pytest.approx(1.0)
    assert exact[1] == 0.0
    # Two edits, the first letter among them: typo correction would not take it.
    misspelt = grams.similarity(["debolusion"])
    assert misspelt[0] > 0.1
    assert misspelt[1] == misspelt[2] == 0.0
    assert not grams.similarity(["zzzz"]).any()
    assert not grams.similarity([]).any()


def test_character_grams_of_an_empty_knowledge_base_are_empty() -> None:
    assert CharGrams([]).similarity(["envio"]).shape == (0,)


def test_a_misspelt_first_letter_still_tells_two_entries_apart() -> None:
    index = _index(
        [
            _entry(1, "¿Venden bicicletas usadas?", "Sí, revisadas por el taller."),
            _entry(2, "¿Venden cascos usados?", "No, por seguridad."),
        ]
    )
    # "vicicletas": typo correction keeps the first letter, so only the character n-grams see it.
    assert index.answer("venden vicicletas usadas?", "es", threshold=0.0).entry_id == 1
    assert index.answer("venden cascos usados?", "es", threshold=0.0).entry_id == 2


def test_where_and_when_tell_apart_two_questions_about_the_same_thing() -> None:
    index = _index(
        [
            _entry(1, "¿Dónde retiro mi pedido?", "En la tienda, Calle Ciprés 42."),
            _entry(2, "¿Cuándo puedo retirar mi pedido?", "Dos horas después de la compra."),
        ]
    )
    assert index.answer("cuando lo retiro?", "es", threshold=0.0).entry_id == 2
    assert index.answer("donde retiro el pedido", "es", threshold=0.0).entry_id == 1


def _filler(count: int) -> list[KnowledgeEntry]:
    # Entries whose words no question here uses, so only the size of the knowledge base changes.
    return [_entry(100 + n, f"Consulta número {n} sobre el artículo x{n}", f"Respuesta x{n}.") for n in range(count)]


def test_the_confidence_with_an_unknown_word_does_not_drift_with_the_knowledge_size() -> None:
    electric = _entry(1, "¿Tienen bicicletas eléctricas?", "Sí, de varias marcas.")
    question = "tienen electricas para motos"
    small = _index([electric, *_filler(50)]).answer(question, "es", threshold=0.0)
    large = _index([electric, *_filler(3000)]).answer(question, "es", threshold=0.0)
    assert small.entry_id == large.entry_id == 1
    # "motos" is in no entry: it weighs the same share of the question at either size.
    assert large.confidence == pytest.approx(small.confidence, abs=0.01)
    assert small.confidence < 0.56


def _english(entry_id: int, question: str, answer: str) -> KnowledgeEntry:
    return KnowledgeEntry(
        id=entry_id,
        question=question,
        alternatives=[],
        answer=answer,
        buttons=[],
        topic="",
        language="en",
        active=True,
    )


def test_a_real_word_the_knowledge_lacks_is_not_taken_for_a_typo_of_one_it_has() -> None:
    index = _index(
        [
            _entry(1, "Me robaron la bici, ¿qué hago?", "Haz la denuncia y escríbenos.", ["Denuncia de robo"]),
            _entry(2, "¿Cómo hago una devolución?", "Desde tu cuenta, en Pedidos."),
            _english(3, "What are your opening times?", "Monday to Saturday, 10:00 to 20:00."),
        ]
    )
    # "rojo" and "tires" are one edit from "robo" and "times": words of the language, not typos.
    assert index.answer("lo tienen en rojo?", "es", threshold=0.0).reason == "no_match"
    assert index.answer("tires", "en", threshold=0.0).reason == "no_match"
    # A word that is no word at all is still corrected.
    assert index.answer("debolucion", "es", threshold=0.0).entry_id == 2


_SMALL_KNOWLEDGE = _index(
    [
        _entry(1, "¿Cuál es el horario de la tienda?", "De lunes a viernes, de 10:00 a 20:00."),
        _entry(2, "¿Cuánto cuesta el envío?", "El envío cuesta 4,90 €.", ["Precio del envío"]),
        _entry(3, "¿Hacen devoluciones?", "Sí, dentro de 30 días."),
        _entry(4, "Me robaron la bici", "Haz la denuncia.", ["Denuncia de robo", "¿Venden candados?"]),
    ]
)
_SPANISH = _SMALL_KNOWLEDGE.languages["es"]


def _unknown_but_close_to_a_known_word(word: str) -> bool:
    """A word the knowledge does not have (nor its stem) that lies within an edit (two for longer
    words) of one it has: what typo correction would have rewritten."""
    tokens = _SPANISH.analyzer.tokens(word)
    vocabulary = _SPANISH.retriever.vocab_dict if _SPANISH.retriever is not None else {}
    if not tokens or any(t in vocabulary for t in tokens):
        return False
    limit = 1 if len(word) <= 6 else 2
    return any(k[0] == word[0] and Levenshtein.distance(word, k) <= limit for k in _SPANISH.known_words)


_CLOSE_WORDS = sorted(w for w in language_words("es") if len(w) >= 4 and _unknown_but_close_to_a_known_word(w))


def test_the_knowledge_has_real_words_within_an_edit_of_its_own() -> None:
    # So that the property below has something to find ("rojo" is one edit from "robo").
    assert "rojo" in _CLOSE_WORDS
    assert len(_CLOSE_WORDS) >= 50


@given(st.sampled_from(_CLOSE_WORDS))
@settings(max_examples=100, deadline=None)
def test_a_spanish_word_the_knowledge_lacks_never_answers_alone(word: str) -> None:
    # However close a known word, a word of the language stays itself, and shares no word with any
    # entry.
    assert _SMALL_KNOWLEDGE.answer(word, "es", threshold=0.0).reason == "no_match"
