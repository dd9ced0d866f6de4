"""The demo workspace's integrations: an outgoing webhook with its delivery log, the WhatsApp
channel's message templates, and a contacts import with a few rejected rows.

None of them reaches anything outside the machine once the server starts:
- the webhook endpoint is switched off (as a person would while the receiving system is migrated),
  so the event consumer writes no delivery for it; its log holds what was delivered before, each
  row finished (delivered, one after a failed attempt and a retry), so nothing is due;
- the templates are stored by the same function the sync stores what Meta lists, from a list in
  Meta's shape, instead of asking Meta (the channel's credentials are placeholders);
- the import is a file uploaded and started as the import page does; the runner takes it from the
  queue when the server starts (at once where the queue is immediate), as it builds the export.
"""

import random
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.channels.message_templates import do_store_templates
from tertulia.channels.models import Channel
from tertulia.channels.protocol import ProviderTemplate
from tertulia.contacts.import_jobs import do_create_import, do_start_import, guessed_mapping, preview_file
from tertulia.contacts.import_models import ImportJob
from tertulia.contacts.import_runner import data_path
from tertulia.events.models import EventRecord
from tertulia.events.service import write_pending
from tertulia.kit.clock import travel, utcnow
from tertulia.users.permissions import Actor
from tertulia.webhooks import repository as webhooks_repository
from tertulia.webhooks.catalogue import webhook_events
from tertulia.webhooks.fanout import ordering_key
from tertulia.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tertulia.webhooks.payloads import envelope, event_data, message_id
from tertulia.webhooks.service import check_endpoint_values, do_create_endpoint, do_set_enabled

# ----- an outgoing webhook ------------------------------------------------------------------------

WEBHOOK_URL = "https://erp.tacoselguero.example/hooks/tertulia"
WEBHOOK_EVENTS = ["contact.created", "conversation.closed"]
WEBHOOK_DESCRIPTION = "ERP de pedidos: da de alta clientes nuevos y registra las conversaciones cerradas"
WEBHOOK_DELIVERIES = 8
# The answers the receiving ERP gave: a JSON acknowledgement, once a gateway's 503 (then retried).
ACK = '{"ok":true}'
GATEWAY_DOWN = (
    "<html><body><h1>503 Service Unavailable</h1>No server is available to handle this request.</body></html>"
)


def seed_webhook(session: Session, actor: Actor, rng: random.Random) -> WebhookEndpoint:
    """An endpoint created a month ago that received the workspace's new contacts and closed
    conversations of the last weeks, then switched off by a person. Its log is the last events it
    was sent, each with its attempts (one failed with a 503 and went through on the retry)."""
    now = utcnow()
    with _clock_at(now - timedelta(days=30)):
        values = check_endpoint_values(WEBHOOK_URL, WEBHOOK_EVENTS, WEBHOOK_DESCRIPTION, allow_private=False)
        endpoint, _secret = do_create_endpoint(session, actor, values)
    write_pending(session)  # the events the seed emitted so far, to read back from the log
    events = _recent_events(session, actor.workspace_id)
    retried = len(events) // 2
    rows: list[dict[str, Any]] = []
    attempts: list[tuple[str, list[tuple[datetime, int, str, int]]]] = []
    for index, (event, name) in enumerate(events):
        sent_at = event.created_at + timedelta(seconds=rng.uniform(0.3, 2.0))
        tries = [(sent_at, 200, ACK, rng.randint(80, 400))]
        if index == retried:
            # Failed, then retried ~10 s later as the retry policy would (base 10 s, jittered).
            tries = [
                (sent_at, 503, GATEWAY_DOWN, rng.randint(30, 90)),
                (sent_at + timedelta(seconds=rng.uniform(9, 11)), 200, ACK, rng.randint(80, 400)),
            ]
        message = message_id(event.id, name, primary=True)
        last_at, last_status, _body, _ms = tries[-1]
        rows.append(
            {
                "workspace_id": actor.workspace_id,
                "endpoint_id": endpoint.id,
                "event_id": event.id,
                "message_id": message,
                "event_type": name,
                "ordering_key": ordering_key(event),
                "body": envelope(message, name, event.created_at, event.workspace_id, event_data(session, event, name)),
                "state": DeliveryState.DELIVERED,
                "attempts": len(tries),
                "next_attempt_at": last_at,
                "first_attempt_at": sent_at,
                "last_attempt_at": last_at,
                "last_status": last_status,
                "delivered_at": last_at,
                "created_at": sent_at,
            }
        )
        attempts.append((message, tries))
    webhooks_repository.insert_deliveries(session, rows)
    written = {
        d.message_id: d.id
        for d in session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    }
    for message, tries in attempts:
        for number, (at, status, body, duration) in enumerate(tries, start=1):
            session.add(
                WebhookAttempt(
                    delivery_id=written[message],
                    attempt=number,
                    at=at,
                    status=status,
                    response_excerpt=body,
                    error=None if status < 300 else f"HTTP {status}",
                    duration_ms=duration,
                )
            )
    endpoint.last_success_at = max(row["delivered_at"] for row in rows) if rows else None
    session.flush()
    # Off since yesterday: the events of the demo's own history are not sent anywhere.
    with _clock_at(now - timedelta(days=1)):
        do_set_enabled(session, actor, endpoint, False)
    return endpoint


def _recent_events(session: Session, workspace_id: int) -> list[tuple[EventRecord, str]]:
    """The newest events of the log the endpoint subscribes to, oldest first, from before it was
    switched off (a day ago)."""
    found: list[tuple[EventRecord, str]] = []
    cutoff = utcnow() - timedelta(days=1)
    query = (
        select(EventRecord)
        .where(EventRecord.workspace_id == workspace_id, EventRecord.created_at < cutoff)
        .order_by(EventRecord.id.desc())
    )
    for event in session.scalars(query):
        names = [name for name in webhook_events(event.type, event.payload) if name in WEBHOOK_EVENTS]
        if names:
            found.append((event, names[0]))
        if len(found) == WEBHOOK_DELIVERIES:
            break
    return found[::-1]


# ----- WhatsApp message templates ---------------------------------------------------------------

# As `GET /{waba-id}/message_templates` lists them (developers.facebook.com/docs/graph-api/reference/
# whats-app-business-account/message_templates/), parsed into what the sync stores.
WHATSAPP_TEMPLATES = (
    ProviderTemplate(
        provider_template_id="1042000000000001",
        name="confirmacion_pedido",
        language="es_MX",
        category="UTILITY",
        status="APPROVED",
        parameter_format="POSITIONAL",
        components=[
            {"type": "HEADER", "format": "TEXT", "text": "Pedido #{{1}}", "example": {"header_text": ["4821"]}},
            {
                "type": "BODY",
                "text": "¡Hola {{1}}! Recibimos tu pedido por {{2}}. Te avisamos en cuanto salga a ruta.",
                "example": {"body_text": [["Lucía", "$1,250 MXN"]]},
            },
            {"type": "FOOTER", "text": "Tacos El Güero · Tienda en línea"},
            {
                "type": "BUTTONS",
                "buttons": [{"type": "URL", "text": "Ver pedido", "url": "https://tienda.example.com/pedidos/{{1}}"}],
            },
        ],
        quality="GREEN",
    ),
    ProviderTemplate(
        provider_template_id="1042000000000002",
        name="envio_en_camino",
        language="es_MX",
        category="UTILITY",
        status="APPROVED",
        parameter_format="NAMED",
        components=[
            {
                "type": "BODY",
                "text": "Hola {{first_name}}, tu pedido va en camino con {{carrier}}. Número de guía: {{tracking}}.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "first_name", "example": "Diego"},
                        {"param_name": "carrier", "example": "Estafeta"},
                        {"param_name": "tracking", "example": "7781-2290"},
                    ]
                },
            },
            {"type": "FOOTER", "text": "Responde a este mensaje si necesitas ayuda."},
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Ya lo recibí"},
                    {"type": "QUICK_REPLY", "text": "Hablar con alguien"},
                ],
            },
        ],
        quality="GREEN",
    ),
    ProviderTemplate(
        provider_template_id="1042000000000003",
        name="promo_buen_fin",
        language="es_MX",
        category="MARKETING",
        status="APPROVED",
        parameter_format="POSITIONAL",
        components=[
            {"type": "HEADER", "format": "IMAGE", "example": {"header_handle": ["4::aW1hZ2UvanBlZw==:ARb"]}},
            {
                "type": "BODY",
                "text": "{{1}}, este Buen Fin tienes {{2}} de descuento en toda la tienda. ¡Solo hasta el lunes!",
                "example": {"body_text": [["Valentina", "20%"]]},
            },
            {"type": "FOOTER", "text": "Responde BAJA para no recibir promociones."},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Me interesa"}]},
        ],
        quality="YELLOW",
    ),
    ProviderTemplate(
        provider_template_id="1042000000000004",
        name="codigo_verificacion",
        language="es_MX",
        category="AUTHENTICATION",
        status="APPROVED",
        parameter_format="POSITIONAL",
        components=[
            {"type": "BODY", "add_security_recommendation": True, "text": "Tu código de verificación es {{1}}."},
            {"type": "FOOTER", "code_expiration_minutes": 10, "text": "Este código caduca en 10 minutos."},
            {"type": "BUTTONS", "buttons": [{"type": "OTP", "otp_type": "COPY_CODE", "text": "Copiar código"}]},
        ],
    ),
    ProviderTemplate(
        provider_template_id="1042000000000005",
        name="order_update",
        language="en_US",
        category="UTILITY",
        status="APPROVED",
        parameter_format="NAMED",
        components=[
            {
                "type": "BODY",
                "text": "Hi {{first_name}}, your order {{order_number}} has shipped and arrives on {{date}}.",
                "example": {
                    "body_text_named_params": [
                        {"param_name": "first_name", "example": "Emma"},
                        {"param_name": "order_number", "example": "4821"},
                        {"param_name": "date", "example": "Friday"},
                    ]
                },
            },
            {"type": "FOOTER", "text": "Tacos El Güero online shop"},
        ],
        quality="GREEN",
    ),
    ProviderTemplate(
        provider_template_id="1042000000000006",
        name="encuesta_satisfaccion",
        language="es_MX",
        category="MARKETING",
        status="PENDING",
        parameter_format="POSITIONAL",
        components=[
            {
                "type": "BODY",
                "text": "Hola {{1}}, ¿cómo calificarías la atención que recibiste?",
                "example": {"body_text": [["Sofía"]]},
            },
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "QUICK_REPLY", "text": "Excelente"},
                    {"type": "QUICK_REPLY", "text": "Regular"},
                    {"type": "QUICK_REPLY", "text": "Mala"},
                ],
            },
        ],
    ),
    ProviderTemplate(
        provider_template_id="1042000000000007",
        name="oferta_relampago",
        language="es_MX",
        category="MARKETING",
        status="REJECTED",
        parameter_format="POSITIONAL",
        components=[{"type": "BODY", "text": "¡{{1}}{{2}} OFERTA! Compra ya antes de que se acabe."}],
        reason="INVALID_FORMAT",
    ),
)


def seed_templates(session: Session, channel: Channel) -> None:
    """The WhatsApp channel's templates as the last sync (an hour ago) stored them."""
    with _clock_at(utcnow() - timedelta(hours=1)):
        do_store_templates(session, channel, list(WHATSAPP_TEMPLATES))


# ----- a contacts import ------------------------------------------------------------------------

IMPORT_FILENAME = "clientes-feria-cdmx.csv"
# Contacts met at a fair, typed in by hand: most rows are fine; one email and one phone are
# mistyped and one row has no way to reach the person, so the report lists three rejected rows.
IMPORT_CSV = """Nombre,Apellido,Correo,Teléfono,País,Empresa
Gabriela,Fuentes,gabriela.fuentes@example.com,+52 55 4821 3390,MX,Florería Gaby
Rodrigo,Salinas,rodrigo.salinas@example.com,+52 33 1298 4410,MX,
Carmen,Ibarra,carmen.ibarra@example.com,,MX,Cafetería La Esquina
Tomás,Quintero,tomas.quintero@example,+52 81 2231 0098,MX,
Elena,Vidal,elena.vidal@example.com,+34 612 345 678,ES,Vidal Diseño
Hugo,Benítez,,+52 55 12,MX,
Natalia,Rosales,natalia.rosales@example.com,+57 310 555 2281,CO,
Fernando,Aguilar,fernando.aguilar@example.com,+52 55 3378 2109,MX,Aguilar Hermanos
,,,,MX,Papelería Luna
Pablo,Domínguez,pablo.dominguez@example.com,+54 9 11 4455 6677,AR,Distribuidora Sur
"""
IMPORT_REJECTED = 3


def seed_import(session: Session, actor: Actor) -> ImportJob:
    """The file uploaded and started as the import page does, with the guessed mapping."""
    job = do_create_import(session, actor, IMPORT_FILENAME, IMPORT_CSV.encode())
    headers = preview_file(data_path(job.file_path), rows=0).headers
    mapping = guessed_mapping(session, actor, headers)
    return do_start_import(session, actor, job, mapping, update_existing=False)


def _clock_at(at: datetime) -> AbstractContextManager[None]:
    return travel(at - utcnow())
