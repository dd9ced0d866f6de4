"""A demo workspace with realistic contacts in Spanish and English, custom fields and tags, and an
inbox with conversations on every kind of channel (`demo_inbox.py`)."""

import random
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia import demo_workflows
from tertulia.assistant import service as knowledge
from tertulia.broadcasts.service import DraftFields, do_create_broadcast
from tertulia.channels.models import Channel
from tertulia.channels.service import do_create_channel
from tertulia.contacts.models import FieldType
from tertulia.contacts.service import do_add_tags, do_create_contact, do_create_custom_field
from tertulia.conversations.away import do_set_away_message
from tertulia.demo_inbox import seed_inbox
from tertulia.demo_integrations import seed_import, seed_webhook
from tertulia.kit.clock import travel, utcnow
from tertulia.kit.errors import Conflict, ValidationFailed
from tertulia.kit.settings import get_settings
from tertulia.provisioning import NewWorkspace, do_create_workspace_with_owner
from tertulia.reports.exports import do_create_export
from tertulia.segments.service import do_create_segment
from tertulia.users.models import Role
from tertulia.users.permissions import Actor
from tertulia.users.service import do_add_member, do_create_user
from tertulia.workspaces.service import do_set_business_hours

DEMO_WORKSPACE = "Demo"
DEMO_OWNER_EMAIL = "owner@demo.example.com"
DEMO_MANAGER_EMAIL = "gerente@demo.example.com"
DEMO_AGENT_EMAIL = "agente@demo.example.com"
DEMO_PASSWORD = "tertulia-demo"  # noqa: S105 (documented demo login)

FIRST_NAMES_ES = [
    "María",
    "José",
    "Lucía",
    "Sofía",
    "Martín",
    "Mateo",
    "Valentina",
    "Camila",
    "Diego",
    "Alejandro",
    "Ximena",
    "Andrés",
    "Paula",
    "Jorge",
    "Renata",
    "Iñaki",
]
LAST_NAMES_ES = [
    "García",
    "Martínez",
    "López",
    "Hernández",
    "González",
    "Pérez",
    "Rodríguez",
    "Sánchez",
    "Ramírez",
    "Núñez",
    "Jiménez",
    "Muñoz",
    "Ortega",
    "Castañeda",
]
FIRST_NAMES_EN = ["Emma", "Olivia", "Liam", "Noah", "Ava", "James", "Mia", "Ethan", "Chloe", "Jack"]
LAST_NAMES_EN = ["Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Clarke"]
ES_COUNTRIES = [
    ("MX", "+52 55 {:04d} {:04d}"),
    ("ES", "+34 6{:02d} {:03d} {:03d}"),
    ("CO", "+57 31{:02d} {:03d} {:03d}"),  # a mobile: 3xx xxx xxxx
    ("AR", "+54 9 11 {:04d} {:04d}"),
]
EN_COUNTRIES = [("US", "+1 415 555 {:04d}"), ("GB", "+44 7700 9{:05d}")]
TAGS = ["vip", "lead", "cliente", "mayorista", "newsletter", "soporte", "churn-risk", "evento-2026"]
PLANS = ["Gratis", "Básico", "Pro", "Empresa"]
# Before the oldest conversation of the inbox's history (demo_inbox's past weeks).
HOURS_SAVED_DAYS_AGO = 90


def _phone(pattern: str, rng: random.Random) -> str:
    parts = pattern.count("{")
    if parts == 1:
        return pattern.format(rng.randrange(10_000) if "555" in pattern else rng.randrange(100_000))
    if parts == 2:
        return pattern.format(rng.randrange(1000, 10_000), rng.randrange(10_000))
    return pattern.format(rng.randrange(100), rng.randrange(1000), rng.randrange(1000))


def seed_demo(session: Session, contacts: int = 200, seed: int = 7) -> NewWorkspace:
    rng = random.Random(seed)
    created = do_create_workspace_with_owner(
        session,
        DEMO_WORKSPACE,
        DEMO_OWNER_EMAIL,
        DEMO_PASSWORD,
        default_country="MX",
        timezone="America/Mexico_City",
        default_language="es",
        owner_first_name="Olga",
    )
    workspace = created.workspace
    agent = do_create_user(session, DEMO_AGENT_EMAIL, DEMO_PASSWORD, first_name="Ana", last_name="Agente")
    do_add_member(session, workspace.id, agent.id, Role.AGENT)
    # A manager too, so each role's view of the product can be tried (docs/permissions.md).
    manager = do_create_user(session, DEMO_MANAGER_EMAIL, DEMO_PASSWORD, first_name="Marco", last_name="Gerente")
    do_add_member(session, workspace.id, manager.id, Role.MANAGER)
    actor = Actor(workspace_id=workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
    do_create_custom_field(session, actor, "plan", "Plan", FieldType.LIST, PLANS)
    do_create_custom_field(session, actor, "lifetime_value", "Valor de vida (MXN)", FieldType.NUMBER)
    do_create_custom_field(session, actor, "birthday", "Cumpleaños", FieldType.DATE)
    do_create_custom_field(session, actor, "newsletter", "Newsletter", FieldType.CHECKBOX)
    do_create_custom_field(session, actor, "company", "Empresa", FieldType.TEXT)
    do_create_custom_field(session, actor, "website", "Sitio web", FieldType.URL)
    now = utcnow()
    used_emails: set[str] = set()
    for index in range(contacts):
        spanish = rng.random() < 0.7
        first = rng.choice(FIRST_NAMES_ES if spanish else FIRST_NAMES_EN)
        last = rng.choice(LAST_NAMES_ES if spanish else LAST_NAMES_EN)
        country, phone_pattern = rng.choice(ES_COUNTRIES if spanish else EN_COUNTRIES)
        email = f"{first}.{last}{index}@example.com".lower()
        email = email.translate(str.maketrans("áéíóúñ", "aeioun"))
        used_emails.add(email)
        values: dict[str, object] = {
            "first_name": first,
            "last_name": last,
            "email": email if rng.random() < 0.85 else None,
            "phone": _phone(phone_pattern, rng) if rng.random() < 0.8 else None,
            "language": ("es" if spanish else "en") if rng.random() < 0.9 else None,
            "country": country if rng.random() < 0.9 else None,
            "custom_fields": {
                "plan": rng.choice(PLANS),
                "lifetime_value": round(rng.lognormvariate(7, 1), 2),
                "newsletter": rng.random() < 0.4,
                "birthday": f"{rng.randint(1960, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                "company": rng.choice(["Tacos El Güero", "Acme Ltd", "Panadería Núñez", "", "Northwind"]),
            },
        }
        try:
            contact = do_create_contact(session, actor, values)
        except (ValidationFailed, Conflict):  # a generated phone that collides or is invalid
            values["phone"] = None
            contact = do_create_contact(session, actor, values)
        if rng.random() < 0.3:
            contact.assignee_id = rng.choice([created.owner.id, agent.id])
        if rng.random() < 0.75:
            contact.last_incoming_at = now - timedelta(minutes=rng.randrange(60 * 24 * 90))
            contact.last_outgoing_at = contact.last_incoming_at + timedelta(minutes=rng.randrange(1, 120))
        contact.created_at = now - timedelta(days=rng.randrange(0, 365), minutes=rng.randrange(1440))
        tags = rng.sample(TAGS, k=rng.choice([0, 0, 1, 1, 2, 3]))
        if tags:
            do_add_tags(session, actor, contact, tags)
    # A web-chat channel, so Settings > Channels and its embed snippet show something to try on a
    # page served from the demo's own address.
    do_create_channel(
        session,
        actor,
        "webchat",
        "Sitio web",
        {
            "allowed_origins": demo_origins(),
            "theme": {"color": "#0e9384", "greeting": "¡Hola! ¿En qué te ayudamos?"},
            "ask_name": True,
        },
    )
    # The knowledge first: the web chat's bot answers from it in the inbox's history. The business
    # hours next, in force since before the history: the welcome workflow reads them.
    seed_knowledge(session, actor)
    seed_hours(session, actor)
    seed_inbox(session, actor, agent.id, rng, manager_id=manager.id, automations=demo_workflows.automations(actor))
    seed_away_message(session, actor)
    seed_broadcasts(session, actor)
    demo_workflows.run_spam_shortcut(session, actor)
    # A data export of the last 30 days, built in the background (Settings > Data export).
    today = utcnow().date()
    do_create_export(session, actor, today - timedelta(days=30), today)
    seed_webhook(session, actor, rng)
    # Run by the import's own runner when the server starts, as the export is built.
    seed_import(session, actor)
    session.flush()
    demo_workflows.skip_history(session)
    return created


def demo_origins() -> list[str]:
    """The demo's own address (TERTULIA_BASE_URL, which `tertulia demo --port` follows), and its
    localhost twin, so a page served from it can embed the web chat."""
    address = urlsplit(get_settings().base_url)
    origins = [f"{address.scheme}://{address.netloc}"]
    if address.hostname == "127.0.0.1":
        origins.append(f"{address.scheme}://localhost" + (f":{address.port}" if address.port else ""))
    return origins


def seed_hours(session: Session, actor: Actor) -> None:
    """Business hours of a shop in Mexico City with two holidays, saved before the inbox's history
    begins (so that the hours in force at each of its moments are these)."""
    weekday = [{"start": "09:00", "end": "14:00"}, {"start": "16:00", "end": "19:00"}]
    with travel(-timedelta(days=HOURS_SAVED_DAYS_AGO)):
        _save_hours(session, actor, weekday)


def _save_hours(session: Session, actor: Actor, weekday: list[dict[str, str]]) -> None:
    do_set_business_hours(
        session,
        actor,
        {
            "enabled": True,
            "timezone": "America/Mexico_City",
            "week": {
                **dict.fromkeys(("monday", "tuesday", "wednesday", "thursday", "friday"), weekday),
                "saturday": [{"start": "10:00", "end": "14:00"}],
            },
            "holidays": [
                {"date": "2026-12-25", "name": "Navidad"},
                {"date": "2027-01-01", "name": "Año Nuevo"},
            ],
        },
    )


def seed_away_message(session: Session, actor: Actor) -> None:
    """The away message on, after the inbox is seeded, so the seeded conversations got none."""
    do_set_away_message(
        session,
        actor,
        enabled=True,
        text='¡Hola {{contact.first_name | ""}}! Ahora estamos cerrados; te respondemos en cuanto abramos '
        "(lunes a viernes de 9 a 14 y de 16 a 19 h, sábados de 10 a 14 h).",
    )


def seed_broadcasts(session: Session, actor: Actor) -> None:
    """Two drafts to open in the broadcast editor: a promotion to the Pro plan on each contact's last
    channel, and a WhatsApp-only notice that leaves out the contacts already tagged VIP."""
    pro = do_create_segment(
        session,
        actor,
        "Plan Pro",
        {
            "match": "all",
            "groups": [
                {
                    "match": "all",
                    "conditions": [
                        {
                            "category": "contact_field",
                            "field": "plan",
                            "operator": "is_any_of",
                            "value": ["Pro"],
                        }
                    ],
                }
            ],
        },
    )
    vip = do_create_segment(
        session,
        actor,
        "VIP",
        {
            "match": "all",
            "groups": [
                {"match": "all", "conditions": [{"category": "tag", "operator": "has_any_of", "value": ["VIP"]}]}
            ],
        },
    )
    do_create_broadcast(
        session,
        actor,
        DraftFields(
            name="Buen Fin: 20% en el plan anual",
            labels=["promo", "buen-fin"],
            segment_id=pro.id,
            channel_mode="last_interacted",
            content={
                "default": {
                    "text": 'Hola {{contact.first_name | "cliente"}}, este Buen Fin tu plan anual tiene 20% de '
                    "descuento. ¿Te interesa? Responde SÍ y te contactamos. Para no recibir más avisos, responde BAJA."
                },
            },
        ),
    )
    whatsapp = session.scalar(
        select(Channel).where(Channel.workspace_id == actor.workspace_id, Channel.type == "whatsapp")
    )
    do_create_broadcast(
        session,
        actor,
        DraftFields(
            name="Aviso de horario de diciembre",
            labels=["avisos"],
            audience="all",
            exclude_segment_id=vip.id,
            channel_id=whatsapp.id if whatsapp is not None else None,
            content={
                "whatsapp": {
                    "text": 'Hola {{contact.first_name | "cliente"}}: del 24 al 26 de diciembre atendemos de 10 a '
                    "14 h. ¡Felices fiestas!"
                }
            },
            reply_window_hours=48,
        ),
    )


DEMO_KNOWLEDGE = [
    {
        "question": "¿Cuál es su horario de atención?",
        "alternatives": ["¿A qué hora abren?", "¿Atienden los sábados?"],
        "answer": (
            'Hola {{contact.first_name | "👋"}}, atendemos de lunes a viernes de 9:00 a 18:00 '
            "y los sábados de 10:00 a 14:00."
        ),
        "topic": "atención",
        "language": "es",
    },
    {
        "question": "¿Cuánto cuesta el plan Pro?",
        "alternatives": ["Precio del plan Pro", "¿Qué incluye el plan Pro?"],
        "answer": "El plan Pro cuesta 29 USD al mes por agente e incluye canales ilimitados y reportes.",
        "buttons": ["Quiero el plan Pro", "Hablar con ventas"],
        "topic": "planes",
        "language": "es",
    },
    {
        "question": "¿Cómo cambio mi contraseña?",
        "alternatives": ["Olvidé mi contraseña", "No puedo entrar a mi cuenta"],
        "answer": "Entra en Perfil > Contraseña, o pulsa «¿Olvidaste tu contraseña?» en la página de acceso.",
        "topic": "cuenta",
        "language": "es",
    },
    {
        "question": "What are your support hours?",
        "alternatives": ["When are you open?"],
        "answer": "We answer Monday to Friday, 9:00 to 18:00 (Mexico City time).",
        "topic": "support",
        "language": "en",
    },
]


def seed_knowledge(session: Session, actor: Actor) -> None:
    """A few knowledge entries and a synonym group, to try on Settings > Assistant > Knowledge."""
    batch = [knowledge.check_entry_values(session, actor.workspace_id, raw) for raw in DEMO_KNOWLEDGE]
    knowledge.do_upsert_entries(session, actor, batch)
    groups = knowledge.check_synonyms([{"language": "es", "terms": ["contraseña", "clave", "password"]}])
    knowledge.do_replace_synonyms(session, actor, groups)
