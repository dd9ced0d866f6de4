"""CSV import: decoding, separators, mapping, modes, the row-by-row report. Every `db` test runs on
SQLite and on PostgreSQL."""

import io
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tertulia.contacts import service
from tertulia.contacts.importer import (
    ImportOptions,
    ImportReport,
    guess_mapping,
    import_contacts,
    parse_mapping_option,
    write_rejected_csv,
)
from tertulia.contacts.models import Contact, ContactActivity, ContactTag, CustomField, FieldType, Tag
from tertulia.contacts.schemas import ContactOut
from tertulia.kit.db import Database
from tertulia.kit.errors import PermissionDenied, ValidationFailed
from tertulia.users.models import Role, User
from tests.conftest import Tenant


def run(db: Database, tenant: Tenant, data: bytes | str, **options: Any) -> ImportReport:
    raw = data.encode() if isinstance(data, str) else data
    with db.transaction() as session:
        return import_contacts(session, tenant.actor(), raw, ImportOptions(workers=0, **options))


def contacts(db: Database, tenant: Tenant) -> list[ContactOut]:
    with db.transaction(write=False) as session:
        rows = session.scalars(select(Contact).where(Contact.workspace_id == tenant.workspace_id).order_by(Contact.id))
        return service.contacts_out(session, list(rows))


def counts(db: Database) -> tuple[int, ...]:
    with db.transaction(write=False) as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in (Contact, ContactTag, Tag, ContactActivity)
        )


def add_fields(db: Database, tenant: Tenant) -> None:
    actor = tenant.actor()
    with db.transaction() as session:
        service.do_create_custom_field(session, actor, "plan", "Plan", FieldType.LIST, ["Gratis", "Pro"])
        service.do_create_custom_field(session, actor, "points", "Puntos", FieldType.NUMBER)
        service.do_create_custom_field(session, actor, "birthday", "Cumpleaños", FieldType.DATE)
        service.do_create_custom_field(session, actor, "newsletter", "Boletín", FieldType.CHECKBOX)


def seed(db: Database, tenant: Tenant, **values: Any) -> int:
    with db.transaction() as session:
        return service.do_create_contact(session, tenant.actor(), values).id


# ----- mapping ------------------------------------------------------------------------------


def test_guess_mapping_knows_spanish_english_and_custom_headers() -> None:
    fields = [
        CustomField(key="plan", label="Plan contratado", type=FieldType.TEXT),
        CustomField(key="points", label="Puntos", type=FieldType.NUMBER),
    ]
    headers = [
        "Nombre",
        "Apellido(s)",
        "Correo electrónico",
        "Teléfono",
        "Celular",
        "País",
        "Idioma",
        "Etiquetas",
        "Plan contratado",
        "points",
        "custom:points",
        "Notas",
        "ID",
    ]
    assert guess_mapping(headers, fields) == {
        "Nombre": "first_name",
        "Apellido(s)": "last_name",
        "Correo electrónico": "email",
        "Teléfono": "phone",
        "Celular": "ignore",  # phone is already taken by the first phone-like column
        "País": "country",
        "Idioma": "language",
        "Etiquetas": "tags",
        "Plan contratado": "custom:plan",
        "points": "custom:points",
        "custom:points": "ignore",
        "Notas": "ignore",
        "ID": "id",
    }
    english = guess_mapping(["First Name", "Last name", "E-mail", "Mobile", "Country", "Tags", "Assignee"], [])
    assert english == {
        "First Name": "first_name",
        "Last name": "last_name",
        "E-mail": "email",
        "Mobile": "phone",
        "Country": "country",
        "Tags": "tags",
        "Assignee": "assignee_email",
    }


def test_parse_mapping_option() -> None:
    assert parse_mapping_option("Nombre=first_name, Plan = custom:plan") == {
        "Nombre": "first_name",
        "Plan": "custom:plan",
    }
    with pytest.raises(ValidationFailed) as raised:
        parse_mapping_option("Nombre")
    assert "mapping" in raised.value.details


def test_mapping_errors_are_reported_before_anything_is_written(db: Database, tenant: Tenant) -> None:
    data = "Nombre,Correo,Extra\nAna,ana@example.com,x\n"
    before = counts(db)
    with pytest.raises(ValidationFailed) as raised:
        run(db, tenant, data, mapping={"Extra": "nickname", "Missing": "email", "Nombre": "custom:nope"})
    assert set(raised.value.details) == {"mapping.Extra", "mapping.Missing", "mapping.Nombre"}
    assert counts(db) == before
    # The explicit mapping takes `email` from the guessed "Correo" column, so "x" is the email now.
    report = run(db, tenant, data, mapping={"Extra": "email"})
    assert report.mapping == {"Nombre": "first_name", "Extra": "email"}
    assert report.ignored_headers == ["Correo"]
    assert [list(r.reasons) for r in report.rejected] == [["email"]]
    assert counts(db) == before


def test_explicit_mapping_overrides_the_guess(db: Database, tenant: Tenant) -> None:
    report = run(db, tenant, "Nombre,Correo,Alias\nAna,ana@example.com,Anita\n", mapping={"Alias": "first_name"})
    assert report.mapping == {"Alias": "first_name", "Correo": "email"}
    assert [(c.first_name, c.email) for c in contacts(db, tenant)] == [("Anita", "ana@example.com")]


def test_two_columns_for_one_field_is_an_error(db: Database, tenant: Tenant) -> None:
    with pytest.raises(ValidationFailed) as raised:
        run(db, tenant, "A,B\n1,2\n", mapping={"A": "email", "B": "email"})
    assert "mapping.email" in raised.value.details
    with pytest.raises(ValidationFailed) as nothing:
        run(db, tenant, "Foo,Bar\n1,2\n")
    assert "mapping" in nothing.value.details
    assert contacts(db, tenant) == []


# ----- decoding and separators --------------------------------------------------------------


def test_utf8_bom_semicolons_and_spanish_headers(db: Database, tenant: Tenant) -> None:
    data = (
        "\ufeffNombre;Apellido(s);Correo;Teléfono;País;Idioma;Etiquetas\r\n"
        "José;Núñez García;Jose@Example.com;55 1234 5678;mx;ES;vip, Cliente\r\n"
        "Emma;Smith;emma@example.co.uk;+44 7911 123456;GB;en;\r\n"
    ).encode()
    report = run(db, tenant, data)
    assert (report.encoding, report.delimiter, report.created, report.rejected) == ("utf-8", ";", 2, [])
    jose, emma = contacts(db, tenant)
    assert (jose.first_name, jose.last_name, jose.email, jose.phone) == (
        "José",
        "Núñez García",
        "jose@example.com",
        "+525512345678",
    )
    assert (jose.country, jose.language, jose.tags) == ("MX", "es", ["Cliente", "vip"])
    assert (emma.phone, emma.tags) == ("+447911123456", [])


def test_latin1_file(db: Database, tenant: Tenant) -> None:
    data = "Nombre;Apellido;Correo\nJosé;Núñez;jose@example.com\nIñaki;Muñoz;inaki@example.com\n".encode("cp1252")
    report = run(db, tenant, data)
    assert report.encoding == "cp1252"
    assert [(c.first_name, c.last_name) for c in contacts(db, tenant)] == [("José", "Núñez"), ("Iñaki", "Muñoz")]


def test_quoted_newlines_and_separators_keep_line_numbers(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        service.do_create_custom_field(session, tenant.actor(), "notes", "Notes", FieldType.TEXT)
    data = (
        "Name,Email,Notes\n"
        + '"Ana, la de ventas",ana@example.com,"line one\nline two\nline three"\n'
        + "Bad,not-an-email,x\n"
        + '"Luis",luis@example.com,"a ""quoted"" word"\n'
    )
    report = run(db, tenant, data)
    assert report.created == 2
    assert [(r.line, list(r.reasons)) for r in report.rejected] == [(5, ["email"])]
    ana, luis = contacts(db, tenant)
    assert ana.first_name == "Ana, la de ventas"
    assert ana.custom_fields["notes"] == "line one\nline two\nline three"
    assert luis.custom_fields["notes"] == 'a "quoted" word'


def test_empty_file_and_header_only(db: Database, tenant: Tenant) -> None:
    for empty in (b"", b"\xef\xbb\xbf", b"\n\n  \n"):
        with pytest.raises(ValidationFailed) as raised:
            run(db, tenant, empty)
        assert "file" in raised.value.details
    report = run(db, tenant, "first_name,email\r\n")
    assert (report.total_rows, report.created, report.rejected) == (0, 0, [])
    blank_lines = run(db, tenant, "first_name,email\n\n,\n , \n")
    assert (blank_lines.total_rows, blank_lines.created, blank_lines.rejected) == (0, 0, [])


def test_unreadable_path_is_a_file_error(db: Database, tenant: Tenant, tmp_path: Any) -> None:
    with db.transaction() as session, pytest.raises(ValidationFailed) as raised:
        import_contacts(session, tenant.actor(), tmp_path / "missing.csv", ImportOptions(workers=0))
    assert "file" in raised.value.details


# ----- rows ---------------------------------------------------------------------------------


def test_every_bad_field_is_reported_and_only_valid_rows_are_written(db: Database, tenant: Tenant) -> None:
    data = (
        "first_name,email,phone,country,language,avatar_url\n"
        "Ana,ana@example.com,55 1111 2222,MX,es,https://example.com/a.png\n"
        "Bea,bad-email,12,XX,zz,ftp://nope\n"
        ",,,,,\n"
        ",,,MX,,\n"
        "Carla,carla@example.com,,,,\n"
    )
    before = counts(db)
    report = run(db, tenant, data)
    assert report.created == 2
    assert [r.line for r in report.rejected] == [3, 5]
    assert set(report.rejected[0].reasons) == {"email", "phone", "country", "language", "avatar_url"}
    assert report.rejected[0].values == ["Bea", "bad-email", "12", "XX", "zz", "ftp://nope"]
    assert report.rejected[1].reasons == {"first_name": "a name, email or phone is required"}
    assert [c.first_name for c in contacts(db, tenant)] == ["Ana", "Carla"]
    assert counts(db)[0] == before[0] + 2
    out = io.StringIO()
    assert write_rejected_csv(report, out) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == "first_name,email,phone,country,language,avatar_url,error"
    assert lines[1].startswith("Bea,bad-email,12,XX,zz,ftp://nope,")
    assert "line 3: email:" in lines[1]


def test_custom_field_types(db: Database, tenant: Tenant) -> None:
    add_fields(db, tenant)
    data = (
        "Nombre;Plan;Puntos;Cumpleaños;Boletín\n"
        "Ana;pro;1234,5;31/12/1990;sí\n"
        "Bea;Oro;mucho;31/02/1990;quizá\n"
        "Carla;;7;1991-01-02;no\n"
    )
    report = run(db, tenant, data)
    assert report.created == 2
    assert set(report.rejected[0].reasons) == {
        "custom_fields.plan",
        "custom_fields.points",
        "custom_fields.birthday",
        "custom_fields.newsletter",
    }
    ana, carla = contacts(db, tenant)
    assert ana.custom_fields == {"plan": "Pro", "points": 1234.5, "birthday": "1990-12-31", "newsletter": True}
    assert carla.custom_fields == {"points": 7, "birthday": "1991-01-02", "newsletter": False}
    with db.transaction(write=False) as session:
        folded = session.scalar(select(Contact.custom_folded).where(Contact.id == ana.id))
    # Segment filters on custom text read the folded copy; the bulk insert keeps it like the service does.
    assert folded is not None
    assert folded["plan"] == "pro"


def test_tags_column_accepts_comma_semicolon_and_pipe(db: Database, tenant: Tenant) -> None:
    data = 'name,tags\nAna,"vip; lead|Cliente, VIP ,,"\nBea,' + "x" * 101 + "\n"
    report = run(db, tenant, data)
    assert report.created == 1
    assert list(report.rejected[0].reasons) == ["tags[0]"]
    (ana,) = contacts(db, tenant)
    assert ana.tags == ["Cliente", "lead", "vip"]


def test_very_long_rows(db: Database, tenant: Tenant) -> None:
    long_name = "A" * 200_000
    many = ",".join(f"c{i}" for i in range(400))  # with the two above, under the 500-column cap
    data = (
        f"first_name,email,{many}\n"
        f"{long_name},long@example.com,{','.join('v' for _ in range(400))}\n"
        f"Ok,ok@example.com,{','.join('v' for _ in range(400))}\n"
        "Extra,extra@example.com," + ",".join("v" for _ in range(600)) + "\n"
    )
    report = run(db, tenant, data)
    assert report.created == 1
    assert [(r.line, list(r.reasons)) for r in report.rejected] == [(2, ["first_name"]), (4, ["row"])]


def test_assignee_by_email_or_id(db: Database, tenant: Tenant) -> None:
    with db.transaction(write=False) as session:
        agent_email = session.scalar(select(User.email).where(User.id == tenant.agent_id))
    data = f"name,assignee\nAna,{agent_email.upper() if agent_email else ''}\nBea,nobody@example.com\n"
    report = run(db, tenant, data)
    assert report.created == 1
    assert report.rejected[0].reasons == {"assignee_email": "no active user with this email in this workspace"}
    by_id = run(db, tenant, f"name,assignee_id\nCarla,{tenant.agent_id}\nDora,999999\nEva,abc\nFe,²\n")
    assert by_id.created == 1
    assert [list(r.reasons) for r in by_id.rejected] == [["assignee_id"]] * 3
    assert [c.assignee_id for c in contacts(db, tenant)] == [tenant.agent_id, tenant.agent_id]


def test_formula_protection_quote_is_removed(db: Database, tenant: Tenant) -> None:
    run(db, tenant, "name,phone\n'=Ana,'+525512345678\n'plain,\n")
    assert [(c.first_name, c.phone) for c in contacts(db, tenant)] == [("=Ana", "+525512345678"), ("'plain", None)]


# ----- duplicates and modes -----------------------------------------------------------------


def test_duplicates_inside_the_file_in_create_mode_are_rejected(db: Database, tenant: Tenant) -> None:
    data = (
        "name,email,phone\n"
        "Ana,ana@example.com,55 1111 2222\n"
        "Ana again,ANA@example.com,\n"
        "Other,other@example.com,+52 55 1111 2222\n"
    )
    report = run(db, tenant, data)
    assert report.created == 1
    assert [(r.line, r.reasons) for r in report.rejected] == [
        (3, {"email": "duplicate: already used by line 2 of this file"}),
        (4, {"phone": "duplicate: already used by line 2 of this file"}),
    ]


def test_create_mode_rejects_existing_contacts(db: Database, tenant: Tenant) -> None:
    existing = seed(db, tenant, first_name="Ana", email="ana@example.com", phone="+525511112222")
    data = (
        f"id,name,email,phone\n,Ana,ana@example.com,\n,X,,5511112222\n{existing},Y,y@example.com,\n"
        "99999999999999999999999,Z,z@example.com,\n"
    )
    report = run(db, tenant, data)
    assert report.created == 0
    assert [r.reasons for r in report.rejected] == [
        {"email": f"duplicate: already used by contact id:{existing}"},
        {"phone": f"duplicate: already used by contact id:{existing}"},
        {"id": f"contact id:{existing} already exists"},
        {"id": "must be a contact id (a number)"},
    ]


def test_update_existing_matches_by_id_then_email_then_phone(db: Database, tenant: Tenant) -> None:
    add_fields(db, tenant)
    by_id = seed(db, tenant, first_name="Ana", email="ana@example.com", tags=["vip"])
    by_email = seed(db, tenant, first_name="Bea", email="bea@example.com", custom_fields={"points": 1})
    by_phone = seed(db, tenant, first_name="Carla", phone="+525533334444")
    same = seed(db, tenant, first_name="Dora", email="dora@example.com")
    data = (
        "id,name,email,phone,Puntos,tags\n"
        f"{by_id},Ana María,ana.maria@example.com,,,VIP|lead\n"
        ",,bea@example.com,,5,\n"
        ",Carla,,55 3333 4444,,nueva\n"
        ",Dora,dora@example.com,,,\n"
        "999999,Eva,eva@example.com,,,\n"
        f",Clash,bea@example.com,55 3333 4444,,\n"
    )
    report = run(db, tenant, data, update_existing=True)
    assert (report.updated, report.unchanged, report.created, report.merged) == (3, 1, 1, 0)
    assert [(r.line, r.reasons) for r in report.rejected] == [(7, {"phone": f"already used by contact id:{by_phone}"})]
    found = {c.id: c for c in contacts(db, tenant)}
    assert (found[by_id].first_name, found[by_id].email, found[by_id].tags) == (
        "Ana María",
        "ana.maria@example.com",
        ["lead", "vip"],
    )
    assert (found[by_email].first_name, found[by_email].custom_fields) == ("Bea", {"points": 5})
    assert found[by_phone].tags == ["nueva"]
    assert found[same].first_name == "Dora"
    assert len(found) == 5
    with db.transaction(write=False) as session:
        logged = session.execute(
            select(ContactActivity.action, ContactActivity.field, ContactActivity.new_value)
            .where(ContactActivity.contact_id == by_id, ContactActivity.actor_user_id == tenant.owner_id)
            .order_by(ContactActivity.id)
        ).all()
    assert ("updated", "email", "ana.maria@example.com") in logged
    assert ("tag_added", "tags", "lead") in logged


def test_duplicates_inside_the_file_in_update_mode_merge_into_the_first(db: Database, tenant: Tenant) -> None:
    existing = seed(db, tenant, first_name="Old", email="old@example.com")
    data = (
        "name,last,email,phone,tags\n"
        "Ana,,ana@example.com,,a\n"
        "Ana,López,ANA@example.com,55 1111 2222,b\n"
        ",,,+525511112222,c\n"
        "New,,old@example.com,,x\n"
        ",,new@example.com,,\n"
    )
    report = run(db, tenant, data, update_existing=True, batch_size=2)
    assert (report.created, report.updated, report.merged, report.rejected) == (2, 1, 2, [])
    ana = next(c for c in contacts(db, tenant) if c.first_name == "Ana")
    assert (ana.last_name, ana.email, ana.phone, ana.tags) == (
        "López",
        "ana@example.com",
        "+525511112222",
        ["a", "b", "c"],
    )
    # Line 6 has no name and its email is new: it creates a contact (only old@ was released, not new@).
    assert any(c.email == "new@example.com" for c in contacts(db, tenant))
    assert next(c for c in contacts(db, tenant) if c.id == existing).first_name == "New"


def test_dry_run_writes_nothing_and_reports_what_a_real_run_does(db: Database, tenant: Tenant) -> None:
    seed(db, tenant, first_name="Ana", email="ana@example.com")
    data = (
        "name,email,phone,tags\n"
        "Ana,ana@example.com,,vip\n"
        "Bea,bea@example.com,55 1111 2222,new-tag\n"
        "Bea 2,bea@example.com,,\n"
        "Bad,bad,,\n"
    )
    before = counts(db)
    dry = run(db, tenant, data, update_existing=True, dry_run=True)
    assert counts(db) == before
    real = run(db, tenant, data, update_existing=True)
    assert (dry.created, dry.updated, dry.unchanged, dry.merged) == (1, 1, 0, 1)
    assert (real.created, real.updated, real.unchanged, real.merged) == (1, 1, 0, 1)
    assert [r.reasons for r in dry.rejected] == [r.reasons for r in real.rejected]
    assert dry.written_through_line == 0
    assert real.written_through_line == 5


def test_batches_are_handed_to_the_caller_to_commit(db: Database, tenant: Tenant) -> None:
    data = "name\n" + "".join(f"P{i}\n" for i in range(7))
    seen: list[int] = []
    progress: list[tuple[int, int]] = []
    session = db.session()

    def on_batch_written(report: ImportReport) -> None:
        session.commit()
        seen.append(report.written_through_line)

    try:
        report = import_contacts(
            session,
            tenant.actor(),
            data.encode(),
            ImportOptions(batch_size=3, workers=0),
            on_progress=lambda done, total: progress.append((done, total)),
            on_batch_written=on_batch_written,
        )
        session.rollback()  # the last batch was committed by the callback already
    finally:
        session.close()
    assert report.created == 7
    assert seen == [4, 7, 8]
    assert progress == [(0, 7), (3, 7), (6, 7), (7, 7)]
    assert len(contacts(db, tenant)) == 7


def test_a_crash_keeps_whole_committed_batches_and_nothing_else(db: Database, tenant: Tenant) -> None:
    data = "name,tags\n" + "".join(f"P{i},t{i}\n" for i in range(7))
    committed: list[int] = []
    session = db.session()

    def on_batch_written(report: ImportReport) -> None:
        if committed:
            raise RuntimeError("the process died here")
        session.commit()
        committed.append(report.written_through_line)

    try:
        with pytest.raises(RuntimeError):
            import_contacts(
                session,
                tenant.actor(),
                data.encode(),
                ImportOptions(batch_size=3, workers=0),
                on_batch_written=on_batch_written,
            )
        session.rollback()
    finally:
        session.close()
    assert committed == [4]
    written = contacts(db, tenant)
    assert [(c.first_name, c.tags) for c in written] == [("P0", ["t0"]), ("P1", ["t1"]), ("P2", ["t2"])]
    with db.transaction(write=False) as check:
        actions = check.scalars(
            select(ContactActivity.action).where(ContactActivity.contact_id.in_([c.id for c in written]))
        ).all()
    assert sorted(actions) == ["imported"] * 3


def test_agents_cannot_import(db: Database, tenant: Tenant) -> None:
    with db.transaction() as session, pytest.raises(PermissionDenied):
        import_contacts(session, tenant.actor(Role.AGENT), b"name\nAna\n")


def test_worker_processes_give_the_same_result(db: Database, tenant: Tenant, make_tenant: Any) -> None:
    other = make_tenant(default_country="MX")
    data = "name,email,phone\n" + "".join(f"P{i},p{i}@example.com,55 1234 {i:04d}\n" for i in range(30)) + "X,bad,1\n"
    with db.transaction() as session:
        in_process = import_contacts(session, tenant.actor(), data.encode(), ImportOptions(workers=0, batch_size=7))
    with db.transaction() as session:
        parallel = import_contacts(session, other.actor(), data.encode(), ImportOptions(workers=1, batch_size=7))
    assert (parallel.created, [r.reasons for r in parallel.rejected]) == (
        in_process.created,
        [r.reasons for r in in_process.rejected],
    )
    assert [(c.first_name, c.email, c.phone) for c in contacts(db, other)] == [
        (c.first_name, c.email, c.phone) for c in contacts(db, tenant)
    ]


EMAILS = ["ana@example.com", "bea@example.com", "carla@example.com", "bad-email", ""]
PHONES = ["55 1111 2222", "+525533334444", "55 5555 6666", "12", ""]
record = st.tuples(
    st.sampled_from(["Ana", "Bea", "", "Zoe"]),
    st.sampled_from(EMAILS),
    st.sampled_from(PHONES),
    st.sampled_from(["", "vip", "lead|vip"]),
)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(record, min_size=1, max_size=12),
    update_existing=st.booleans(),
    seeded=st.booleans(),
    batch_size=st.integers(min_value=1, max_value=5),
)
def test_outcome_depends_on_neither_dry_run_nor_batch_size(
    db: Database,
    make_tenant: Any,
    rows: list[tuple[str, str, str, str]],
    update_existing: bool,
    seeded: bool,
    batch_size: int,
) -> None:
    data = "name,email,phone,tags\n" + "".join(",".join(row) + "\n" for row in rows)
    tenants = [make_tenant(default_country="MX") for _ in range(3)]
    if seeded:
        for tenant in tenants:
            seed(db, tenant, first_name="Seed", email="bea@example.com", tags=["vip"])
            seed(db, tenant, first_name="Seed 2", phone="+525555556666")

    def summary(report: ImportReport) -> tuple[Any, ...]:
        # Contact ids differ between the workspaces; which seeded contact is named is what matters.
        rejected = [(r.line, {k: re.sub(r"id:\d+", "id:N", v) for k, v in r.reasons.items()}) for r in report.rejected]
        return report.created, report.updated, report.unchanged, report.merged, rejected

    dry = run(db, tenants[0], data, update_existing=update_existing, dry_run=True, batch_size=batch_size)
    one_batch = run(db, tenants[1], data, update_existing=update_existing, batch_size=100)
    small_batches = run(db, tenants[2], data, update_existing=update_existing, batch_size=batch_size)
    assert summary(dry) == summary(one_batch) == summary(small_batches)

    def state(tenant: Tenant) -> list[tuple[Any, ...]]:
        return [(c.first_name, c.email, c.phone, c.tags) for c in contacts(db, tenant)]

    assert state(tenants[1]) == state(tenants[2])
    assert len(state(tenants[1])) == len(state(tenants[0])) + one_batch.created
