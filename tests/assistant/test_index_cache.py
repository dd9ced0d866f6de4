"""The in-memory index of a workspace is built once per knowledge version and rebuilt when another
process changes the knowledge (seen through the version row alone), on both databases."""

from sqlalchemy import update

from tertulia.assistant import retrieval, service
from tertulia.assistant.models import KnowledgeVersion
from tertulia.kit.db import Database
from tests.conftest import Tenant


def _add(db: Database, tenant: Tenant, question: str, answer: str) -> int:
    with db.transaction() as session:
        raw = {"question": question, "answer": answer, "language": "es"}
        values = service.check_entry_values(session, tenant.workspace_id, raw)
        return service.do_create_entry(session, tenant.actor(), values).id


def test_the_index_is_reused_until_the_knowledge_changes(db: Database, tenant: Tenant) -> None:
    hours = _add(db, tenant, "¿A qué hora abren?", "De 9 a 18.")
    with db.transaction(write=False) as session:
        first = retrieval.index_for(session, tenant.workspace_id)
        assert retrieval.index_for(session, tenant.workspace_id) is first
        assert first.answer("horario abren", "es").entry_id == hours
    # Another process adds an entry: this one notices on its next question.
    shipping = _add(db, tenant, "¿Cuánto cuesta el envío?", "4,90 €.")
    with db.transaction(write=False) as session:
        second = retrieval.index_for(session, tenant.workspace_id)
        assert second is not first
        assert retrieval.answer(session, tenant.workspace_id, "precio del envio", "es").entry_id == shipping
    # The same count with another stamp (a workspace id used again) is another knowledge too.
    with db.transaction() as session:
        session.execute(
            update(KnowledgeVersion).where(KnowledgeVersion.workspace_id == tenant.workspace_id).values(stamp="other")
        )
    with db.transaction(write=False) as session:
        assert retrieval.index_for(session, tenant.workspace_id) is not second
