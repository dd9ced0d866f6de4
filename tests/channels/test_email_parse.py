"""Reading mail as customers' programs write it: encoded words, charsets, HTML-only mail, quoted
history, auto-replies (no servers needed)."""

from tertulia.channels.adapters.email_parse import normalised_subject, parse, split_quoted


def test_encoded_words_and_a_latin1_body() -> None:
    raw = (
        b"From: =?utf-8?q?Jos=C3=A9_N=C3=BA=C3=B1ez?= <jose@example.com>\r\n"
        b"To: support@shop.example.com\r\n"
        b"Subject: =?iso-8859-1?q?Se=F1al_d=E9bil?=\r\n"
        b"Message-ID: <x1@example.com>\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"La se=F1al es d=E9bil.\r\n"
    )
    mail = parse(raw)
    assert (mail.from_name, mail.from_address) == ("José Núñez", "jose@example.com")
    assert mail.subject == "Señal débil"
    assert mail.text == "La señal es débil."
    assert mail.automatic is None


def test_html_only_mail_becomes_text_and_a_safe_view() -> None:
    raw = (
        b"From: ana@example.com\r\nSubject: Hola\r\nMessage-ID: <h1@example.com>\r\n"
        b"Content-Type: text/html; charset=utf-8\r\n\r\n"
        b"<html><head><style>p{}</style></head><body><p>Primera</p><p>Segunda</p>"
        b"<script>x()</script><form action=/x><input></form></body></html>\r\n"
    )
    mail = parse(raw)
    assert mail.text == "Primera\n\nSegunda"
    assert mail.html is not None
    assert "<script" not in mail.html
    assert "<form" not in mail.html
    assert "<style" not in mail.html


def test_quoted_history_and_signature_are_kept_apart() -> None:
    main, quoted, signature = split_quoted("Gracias.\n\n-- \nAna\n\nEl lun, 1 ene 2026, Soporte escribió:\n> hola\n")
    assert (main, signature) == ("Gracias.", "Ana")
    assert quoted.startswith("El lun, 1 ene 2026, Soporte escribió:")
    assert split_quoted("> solo cita\n> nada nuevo") == ("> solo cita\n> nada nuevo", "", "")


def test_subjects_compare_without_reply_prefixes() -> None:
    assert normalised_subject("RE: Fwd: AW:  Pedido   1234") == normalised_subject("pedido 1234")
    assert normalised_subject("Re[2]: SV: Pedido") == "pedido"


def test_auto_submitted_no_is_a_person() -> None:
    base = b"From: ana@example.com\r\nSubject: x\r\nMessage-ID: <a@b>\r\n"
    assert parse(base + b"Auto-Submitted: no\r\n\r\nhola\r\n").automatic is None
    assert parse(base + b"Auto-Submitted: auto-generated\r\n\r\nhola\r\n").automatic == "auto-reply"
    assert parse(base + b"List-Unsubscribe: <mailto:u@l>\r\n\r\nhola\r\n").automatic == "list"
