"""WhatsApp's sending side against a local Graph API (tests/channels/whatsapp_graph.py): files uploaded
to the media endpoint and sent by media id, Meta's file and interactive limits refused before any
provider call, reply buttons and lists, quotes and link previews, and the outbox's pace (80 a second
per number, one every 6 s per customer) kept by queueing."""

import heapq
import itertools
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tertulia.channels.adapters.whatsapp import WhatsAppAdapter
from tertulia.channels.models import Channel
from tertulia.channels.protocol import DeliveryStatus, InboundMessage
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import Contact, ContactIdentity
from tertulia.conversations.inbound import do_receive_many
from tertulia.conversations.models import Direction, Message
from tertulia.conversations.outbox import HEADROOM, Turn, pace_turn, process_outbound
from tertulia.kit import queue
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tests.channels import whatsapp_samples as wa
from tests.channels.test_whatsapp import _connected, _post
from tests.channels.whatsapp_graph import FakeGraph, fake_graph
from tests.conftest import Tenant

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
WEBP_STATIC = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40


class Clock:
    """A clock the test moves; the outbox judges the pace by it and the fake Graph API stamps requests with it."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def _drain(db: Database, clock: Clock, message_ids: list[int]) -> Counter[int]:
    """The queue, run by hand: each task at its due time, a paced one queued again for when it may go
    with the slot it was given (other retries are left waiting). How often each message was tried."""
    order = itertools.count()
    due: list[tuple[datetime, int, int, float | None]] = [(clock.now, next(order), m, None) for m in message_ids]
    heapq.heapify(due)
    tries: Counter[int] = Counter()
    while due:
        when, _, message_id, slot = heapq.heappop(due)
        clock.now = max(clock.now, when)
        tries[message_id] += 1
        outcome = process_outbound(db, message_id, clock, slot)
        if outcome.state == "retry" and outcome.reason == "paced":
            retry_at = clock.now + timedelta(seconds=outcome.retry_in or 0)
            heapq.heappush(due, (retry_at, next(order), message_id, outcome.slot))
    return tries


@pytest.fixture
def clock() -> Iterator[Clock]:
    yield Clock()
    queue.huey.flush()


@pytest.fixture
def graph(clock: Clock) -> Iterator[FakeGraph]:
    with fake_graph(clock) as running:
        yield running


def _customer(client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, **config: Any) -> tuple[Channel, str]:
    """A connected number whose customer (Sheena) has just written: the window is open. From here on
    sends wait in the queue, which nobody consumes: the test runs them by its own clock (`_drain`)."""
    channel = _connected(db, tenant, api_base_url=graph.base_url, **config)
    _post(client, channel, wa.TEXT)
    queue.huey.immediate = False
    queue.huey.flush()
    with db.transaction(write=False) as session:
        contact_id = session.scalar(select(Message.contact_id).where(Message.provider_message_id == wa.TEXT_ID))
    return channel, f"/api/v1/contacts/id:{contact_id}/messages"


def _upload(client: TestClient, tenant: Tenant, name: str, data: bytes, content_type: str) -> int:
    uploaded = client.post("/api/v1/files", files={"file": (name, data, content_type)}, headers=tenant.headers)
    assert uploaded.status_code == 201, uploaded.text
    return int(uploaded.json()["id"])


def _send(client: TestClient, tenant: Tenant, url: str, channel: Channel, **message: Any) -> Any:
    return client.post(url, headers=tenant.headers, json={"channel_id": channel.id, "message": message})


def _sent(db: Database, clock: Clock, *responses: Any) -> list[int]:
    """The messages the API accepted, delivered through the outbox (paced like the queue would)."""
    ids = []
    for response in responses:
        assert response.status_code == 201, response.text
        ids.append(int(response.json()["id"]))
    _drain(db, clock, ids)
    return ids


def _message(db: Database, message_id: int) -> Message:
    with db.transaction(write=False) as session:
        found = session.get(Message, message_id)
        assert found is not None
        return found


# ----- files ----------------------------------------------------------------------------------------


def test_a_file_is_uploaded_to_the_media_endpoint_and_sent_by_its_id(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    photo = _upload(client, tenant, "azul.png", PNG, "image/png")
    invoice = _upload(client, tenant, "factura 42.pdf", b"%PDF-1.4 factura", "application/pdf")
    sticker = _upload(client, tenant, "hola.webp", WEBP_STATIC, "image/webp")
    first, *_ = _sent(
        db,
        clock,
        _send(client, tenant, url, channel, type="text", text="¿Así en azul?", attachments=[photo]),
        _send(client, tenant, url, channel, type="file", text="Su factura", attachments=[invoice]),
        _send(client, tenant, url, channel, type="image", attachments=[sticker]),
    )

    uploads = [r for r in graph.received if r.kind == "media"]
    assert [u.path for u in uploads] == [f"/v26.0/{wa.PHONE_NUMBER_ID}/media"] * 3
    assert [(u.body["messaging_product"], u.body["type"]) for u in uploads] == [
        ("whatsapp", "image/png"),
        ("whatsapp", "application/pdf"),
        ("whatsapp", "image/webp"),
    ]
    assert uploads[0].files["file"] == ("azul.png", PNG, "image/png")
    image, document, webp = (r.body for r in graph.sent())
    ids = list(graph.media)
    assert (image["type"], image["image"]) == ("image", {"id": ids[0], "caption": "¿Así en azul?"})
    assert (document["type"], document["document"]) == (
        "document",
        {"id": ids[1], "caption": "Su factura", "filename": "factura 42.pdf"},
    )
    assert (webp["type"], webp["sticker"]) == ("sticker", {"id": ids[2]})  # stickers carry no caption
    assert image["to"] == "16505551234"
    assert _message(db, first).status == DeliveryStatus.SENT


def test_files_whatsapp_would_refuse_are_refused_before_any_call(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    before = len(graph.received)
    big_photo = _upload(client, tenant, "grande.png", PNG + b"\x00" * (5 * 1024 * 1024), "image/png")
    archive = _upload(client, tenant, "pedidos.csv", b"id,total\n1,20\n", "text/csv")
    big_sticker = _upload(client, tenant, "s.webp", WEBP_STATIC + b"\x00" * (500 * 1024), "image/webp")
    voice = _upload(client, tenant, "nota.ogg", b"OggS voice", "audio/ogg")
    photo = _upload(client, tenant, "azul.png", PNG, "image/png")
    cases = [
        ({"type": "image", "attachments": [big_photo]}, "message.attachments[0]", "image files of at most 5 MB"),
        (
            {"type": "file", "attachments": [archive]},
            "message.attachments[0]",
            "cannot send files of type text/csv",
        ),
        ({"type": "image", "attachments": [big_sticker]}, "message.attachments[0]", "sticker files of at most 500 KB"),
        ({"type": "text", "text": "escucha", "attachments": [voice]}, "message.text", "audio files without a caption"),
        ({"type": "text", "text": "x" * 1025, "attachments": [photo]}, "message.text", "caption is at most 1024"),
        ({"type": "image", "attachments": [photo, photo]}, "message.attachments", "one file per message"),
    ]
    for message, field, rule in cases:
        refused = _send(client, tenant, url, channel, **message)
        assert refused.status_code == 422, (message, refused.text)
        error = refused.json()["error"]
        assert rule in error["details"][field], error
    assert len(graph.received) == before  # nothing reached Meta
    with db.transaction(write=False) as session:
        assert session.scalar(select(Message.id).where(Message.direction == Direction.OUTGOING)) is None


def test_upload_errors_are_retried_or_final_like_send_errors(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    photo = _upload(client, tenant, "azul.png", PNG, "image/png")
    graph.fail_next("media", 400, wa.graph_error(131053, "(#131053) Media upload error"))
    graph.fail_next("media", 400, wa.graph_error(130429, "(#130429) Rate limit hit"))
    final, later = _sent(
        db,
        clock,
        _send(client, tenant, url, channel, type="image", attachments=[photo]),
        _send(client, tenant, url, channel, type="image", attachments=[photo]),
    )
    failed = _message(db, final)
    assert (failed.status, failed.status_reason) == (DeliveryStatus.FAILED, "(#131053) Media upload error")
    waiting = _message(db, later)
    assert (waiting.status, waiting.attempts) == (DeliveryStatus.PENDING, 1)  # retried, not failed
    assert graph.sent() == []  # no message went out without its file


# ----- reply buttons, lists, quotes, previews ---------------------------------------------------------


def test_reply_buttons_lists_quotes_and_link_previews(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    with db.transaction(write=False) as session:
        quoted = session.scalar(select(Message.id).where(Message.provider_message_id == wa.TEXT_ID))
    buttons = {"buttons": [{"id": "azul", "title": "Azul"}, {"id": "rojo", "title": "Rojo"}], "footer": "Tienda"}
    rows = [{"id": f"talla_{n}", "title": f"Talla {n}", "description": "En existencia"} for n in ("S", "M")]
    listed = {"list": {"button": "Ver tallas", "sections": [{"title": "Tallas", "rows": rows}]}, "header": "Tallas"}
    link = "Mire https://tienda.example/azul"
    _sent(
        db,
        clock,
        _send(
            client,
            tenant,
            url,
            channel,
            type="quick_reply",
            text="¿Qué color?",
            quick_reply=buttons,
            reply_to_message_id=quoted,
        ),
        _send(client, tenant, url, channel, type="quick_reply", text="Elija", quick_reply=listed),
        _send(client, tenant, url, channel, type="text", text=link, preview_url=True),
    )

    with_buttons, with_list, with_preview = (r.body for r in graph.sent())
    assert with_buttons["type"] == "interactive"
    assert with_buttons["interactive"] == {
        "type": "button",
        "body": {"text": "¿Qué color?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "azul", "title": "Azul"}},
                {"type": "reply", "reply": {"id": "rojo", "title": "Rojo"}},
            ]
        },
        "footer": {"text": "Tienda"},
    }
    assert with_buttons["context"] == {"message_id": wa.TEXT_ID}  # the customer's message, quoted
    assert with_list["interactive"] == {
        "type": "list",
        "body": {"text": "Elija"},
        "action": {"button": "Ver tallas", "sections": [{"title": "Tallas", "rows": rows}]},
        "header": {"type": "text", "text": "Tallas"},
    }
    assert with_preview["text"] == {"body": link, "preview_url": True}


def test_meta_s_limits_on_buttons_and_lists_are_422s_naming_the_rule(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    before = len(graph.received)
    four = [{"id": f"b{n}", "title": f"Opción {n}"} for n in range(4)]
    eleven = [{"id": f"r{n}", "title": f"Fila {n}"} for n in range(11)]
    cases = [
        ({"buttons": four}, "message.quick_reply.buttons", "at most 3 reply buttons"),
        ({"buttons": [{"id": "x", "title": "Un título de veintiún c"}]}, "message.quick_reply.buttons[0].title", "20"),
        (
            {"buttons": [{"id": "x", "title": "A"}, {"id": "x", "title": "B"}]},
            "message.quick_reply.buttons[1].id",
            "different",
        ),
        (
            {"list": {"button": "Ver", "sections": [{"rows": eleven}]}},
            "message.quick_reply.list.sections",
            "at most 10 rows",
        ),
        (
            {"list": {"button": "Ver todas las opciones ya", "sections": [{"rows": eleven[:2]}]}},
            "message.quick_reply.list.button",
            "20",
        ),
        ({"buttons": four[:1], "header": "h" * 61}, "message.quick_reply.header", "60"),
        (
            {"buttons": four[:1], "list": {"button": "Ver", "sections": [{"rows": eleven[:1]}]}},
            "message.quick_reply",
            "either",
        ),
    ]
    for quick_reply, field, rule in cases:
        refused = _send(client, tenant, url, channel, type="quick_reply", text="Elija", quick_reply=quick_reply)
        assert refused.status_code == 422, (quick_reply, refused.text)
        assert rule in refused.json()["error"]["details"][field], refused.json()
    not_here = _send(client, tenant, url, channel, type="text", text="hola", reply_to_message_id=999_999)
    assert not_here.status_code == 422
    assert "no message 999999" in not_here.json()["error"]["details"]["message.reply_to_message_id"]
    shape = _send(client, tenant, url, channel, type="text", text="hola", quick_reply={"buttons": four[:1]})
    assert shape.status_code == 422  # quick_reply only with its type
    assert len(graph.received) == before


def test_channels_without_quick_replies_refuse_them(client: TestClient, db: Database, tenant: Tenant) -> None:
    with db.transaction() as session:
        channel_id = do_create_channel(session, tenant.actor(), "webchat", "Web", {}).id
        contact = Contact(workspace_id=tenant.workspace_id, first_name="Ana", custom={}, last_incoming_at=utcnow())
        session.add(contact)
        session.flush()
        session.add(
            ContactIdentity(
                workspace_id=tenant.workspace_id,
                contact_id=contact.id,
                channel="webchat",
                external_id=f"{channel_id}:v:ana",
            )
        )
        contact_id = contact.id
    body = {"type": "quick_reply", "text": "¿Sí?", "quick_reply": {"buttons": [{"id": "si", "title": "Sí"}]}}
    refused = client.post(
        f"/api/v1/contacts/id:{contact_id}/messages",
        headers=tenant.headers,
        json={"channel_id": channel_id, "message": body},
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"]["message.type"] == "webchat cannot send quick_reply messages"


# ----- the pace: queued, never failed --------------------------------------------------------------


def test_a_burst_to_one_customer_goes_out_six_seconds_apart(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    channel, url = _customer(client, db, tenant, graph)
    ids = _sent(db, clock, *[_send(client, tenant, url, channel, type="text", text=f"mensaje {n}") for n in range(4)])
    times = [r.at for r in graph.sent()]
    assert [r.body["text"]["body"] for r in graph.sent()] == [f"mensaje {n}" for n in range(4)]
    assert all(later - earlier >= timedelta(seconds=6) for earlier, later in itertools.pairwise(times))
    # Queued for their turn (6 s and the outbox's headroom apart), not pushed further back.
    assert times[-1] - times[0] < timedelta(seconds=3 * 6 * (1 + HEADROOM) + 1)
    with db.transaction(write=False) as session:
        rows = list(session.scalars(select(Message).where(Message.id.in_(ids))))
    assert {(m.status, m.attempts) for m in rows} == {(DeliveryStatus.SENT, 1)}  # waiting is not an attempt


def test_sends_reuse_one_kept_alive_connection_to_graph(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    """A new client per call cost a TCP connection and an SSL context (CA bundle load) per message."""
    channel, url = _customer(client, db, tenant, graph)
    photo = _upload(client, tenant, "azul.png", PNG, "image/png")
    _sent(
        db,
        clock,
        _send(client, tenant, url, channel, type="text", text="uno"),
        _send(client, tenant, url, channel, type="image", attachments=[photo]),
        _send(client, tenant, url, channel, type="text", text="tres"),
    )
    assert [r.kind for r in graph.received] == ["messages", "media", "messages", "messages"]
    assert len(set(graph.client_ports)) == 1


def test_a_burst_to_many_customers_never_passes_the_number_s_rate(
    client: TestClient, db: Database, tenant: Tenant, graph: FakeGraph, clock: Clock
) -> None:
    # A low rate keeps the test small; the same code holds 80 (the default) or Meta's higher tiers.
    channel, _ = _customer(client, db, tenant, graph, messages_per_second="5")
    # 23 customers who have just written on this number: each one's reply window is open.
    with db.transaction() as session:
        stored = session.get(Channel, channel.id)
        assert stored is not None
        received = do_receive_many(
            session,
            [
                (stored, InboundMessage(sender_id=f"52155{n:08d}", provider_message_id=f"wamid.c{n}", text="hola"))
                for n in range(23)
            ],
        )
        contact_ids = [item.contact.id for item in received]
    urls = [f"/api/v1/contacts/id:{contact_id}/messages" for contact_id in contact_ids]
    posted = [_send(client, tenant, url, channel, type="text", text="oferta") for url in urls]
    assert {response.status_code for response in posted} == {201}
    tries = _drain(db, clock, [int(response.json()["id"]) for response in posted])
    times = sorted(r.at for r in graph.sent())
    assert len(times) == 23
    for index, start in enumerate(times):  # every one-second span, starting at each send
        assert sum(1 for t in times[index:] if t - start < timedelta(seconds=1)) <= 5
    assert times[-1] - times[0] < timedelta(seconds=5)  # and the rate is used, not wasted
    # A message that had to wait was given its turn and went at it, not turned away again and again.
    assert sorted(tries.values()) == [1] * 5 + [2] * 18


def test_the_pace_is_shared_through_the_database(db: Database) -> None:
    """Two transactions stand for two worker processes: what one sent, the other counts."""
    channel = Channel(key="shared-pace", type="whatsapp", config={})
    rules = WhatsAppAdapter.rules
    now = utcnow()
    with db.transaction() as session:
        assert pace_turn(session, rules, channel, "16505551234", lambda: now).wait == 0
    with db.transaction() as session:
        later = pace_turn(session, rules, channel, "16505551234", lambda: now + timedelta(seconds=2))
        # The customer waits out the 6 s (with the outbox's headroom); no channel slot is held for it.
        assert later == Turn(pytest.approx(6 * (1 + HEADROOM) - 2))
        assert pace_turn(session, rules, channel, "5215500000000", lambda: now + timedelta(seconds=2)).wait == 0
    with db.transaction() as session:
        after = now + timedelta(seconds=6 * (1 + HEADROOM))
        assert pace_turn(session, rules, channel, "16505551234", lambda: after).wait == 0


def test_the_channel_s_rate_is_a_whole_number_meta_allows() -> None:
    adapter = WhatsAppAdapter()
    base = {"phone_number_id": wa.PHONE_NUMBER_ID, "business_account_id": wa.BUSINESS_ACCOUNT_ID}
    secrets = {"access_token": "t", "app_secret": "s"}
    assert adapter.clean_config({**base, "messages_per_second": "250"}, secrets)[0]["messages_per_second"] == 250
    for bad in ("0", "1001", "muchos"):
        with pytest.raises(Exception, match="messages_per_second"):
            adapter.clean_config({**base, "messages_per_second": bad}, secrets)
