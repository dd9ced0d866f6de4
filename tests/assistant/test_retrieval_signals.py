"""The retrieval's signals on their own, without a database: the character n-gram similarity, the
question words that are kept, and a confidence that does not drift with the knowledge base's size."""

from collections.abc import Sequence

import pytest

from tertulia.assistant.models import KnowledgeEntry
from tertulia.assistant.retrieval import CharGrams, WorkspaceIndex


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
