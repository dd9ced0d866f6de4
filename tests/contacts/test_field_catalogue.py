"""The standard field catalogue (contacts/fields.py) names real columns, and the lists read from it
are the ones the importer, the exporter and the filter language have always used."""

from tertulia.contacts.exporter import DEFAULT_FIELDS, STANDARD_EXPORT_FIELDS
from tertulia.contacts.fields import KIND_BY_TYPE, SETTABLE_FIELDS, STANDARD_FIELDS
from tertulia.contacts.importer import TARGETS
from tertulia.contacts.models import Contact, FieldType
from tertulia.segments.language import STANDARD_FIELDS as FILTER_FIELDS
from tertulia.segments.language import FieldRef

COLUMNS = set(Contact.__table__.columns.keys())
# Named in files and the API but not stored under that name: resolved to assignee_id, or kept in contact_tags.
NOT_COLUMNS = {"assignee_email", "tags"}


def test_every_field_is_stored_where_the_catalogue_says() -> None:
    for field in STANDARD_FIELDS:
        assert field.name in COLUMNS or field.name in NOT_COLUMNS, field.name
        assert set(field.columns) <= COLUMNS, field.name
        assert field.filter is None or field.filter.column in COLUMNS, field.name
        assert not field.exported_by_default or field.exported, field.name


def test_the_lists_read_from_the_catalogue() -> None:
    assert SETTABLE_FIELDS == (
        "first_name",
        "last_name",
        "email",
        "phone",
        "language",
        "country",
        "avatar_url",
        "assignee_id",
    )
    assert set(TARGETS) == {*SETTABLE_FIELDS, "assignee_email", "tags", "id", "ignore"}
    assert DEFAULT_FIELDS == (
        "id",
        "first_name",
        "last_name",
        "email",
        "phone",
        "language",
        "country",
        "avatar_url",
        "assignee_email",
        "created_at",
        "updated_at",
    )
    assert set(STANDARD_EXPORT_FIELDS) == {
        *SETTABLE_FIELDS,
        "id",
        "phone_raw",
        "assignee_email",
        "created_at",
        "updated_at",
        "last_incoming_at",
        "last_outgoing_at",
        "blocked",
    }
    assert dict(FILTER_FIELDS) == {
        "first_name": FieldRef("column", "first_name_folded", "text"),
        "last_name": FieldRef("column", "last_name_folded", "text"),
        "email": FieldRef("column", "email", "text"),
        "phone": FieldRef("column", "phone", "text"),
        "language": FieldRef("column", "language", "code"),
        "country": FieldRef("column", "country", "code"),
        "created_at": FieldRef("column", "created_at", "datetime"),
        "updated_at": FieldRef("column", "updated_at", "datetime"),
        "assignee": FieldRef("column", "assignee_id", "assignee"),
        "blocked": FieldRef("column", "blocked", "checkbox"),
    }
    # The filter panel offers them in this order.
    order = [
        "first_name",
        "last_name",
        "email",
        "phone",
        "language",
        "country",
        "created_at",
        "updated_at",
        "assignee",
        "blocked",
    ]
    assert list(FILTER_FIELDS) == order


def test_every_custom_field_type_has_a_kind() -> None:
    assert set(KIND_BY_TYPE) == set(FieldType)
