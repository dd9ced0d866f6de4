"""Email texts in English and Spanish. Plain text only, so nothing a user typed needs escaping."""

from string import Formatter

LANGUAGES = ("en", "es")
DEFAULT_LANGUAGE = "en"

ROLE_NAMES: dict[str, dict[str, str]] = {
    "en": {"owner": "owner", "manager": "manager", "agent": "agent"},
    "es": {"owner": "propietario", "manager": "gerente", "agent": "agente"},
}

# template -> language -> (subject, body); placeholders are str.format fields.
TEXTS: dict[str, dict[str, tuple[str, str]]] = {
    "invitation": {
        "en": (
            "{inviter} invited you to {workspace} on Tertulia",
            "Hello,\n\n"
            "{inviter} invited you to join the workspace {workspace} on Tertulia as {role}.\n\n"
            "Accept the invitation here (the link works once and expires in {days} days):\n"
            "{url}\n\n"
            "If you were not expecting this invitation, you can ignore this email.\n",
        ),
        "es": (
            "{inviter} te invitó a {workspace} en Tertulia",
            "Hola:\n\n"
            "{inviter} te invitó a unirte al espacio de trabajo {workspace} en Tertulia como {role}.\n\n"
            "Acepta la invitación aquí (el enlace sirve una sola vez y caduca en {days} días):\n"
            "{url}\n\n"
            "Si no esperabas esta invitación, puedes ignorar este correo.\n",
        ),
    },
    "password_reset": {
        "en": (
            "Reset your Tertulia password",
            "Hello {name},\n\n"
            "Someone asked to reset the password of your Tertulia account. To choose a new password,\n"
            "open this link (it works once and expires in {hours} hours):\n"
            "{url}\n\n"
            "If you did not ask for this, ignore this email: your password stays the same.\n",
        ),
        "es": (
            "Restablece tu contraseña de Tertulia",
            "Hola, {name}:\n\n"
            "Alguien pidió restablecer la contraseña de tu cuenta de Tertulia. Para elegir una nueva,\n"
            "abre este enlace (sirve una sola vez y caduca en {hours} horas):\n"
            "{url}\n\n"
            "Si no lo pediste tú, ignora este correo: tu contraseña no cambia.\n",
        ),
    },
    "password_changed": {
        "en": (
            "Your Tertulia password was changed",
            "Hello {name},\n\n"
            "The password of your Tertulia account was just changed and every browser was signed out.\n"
            "If this was not you, reset your password at {url} and tell your workspace owner.\n",
        ),
        "es": (
            "Se cambió tu contraseña de Tertulia",
            "Hola, {name}:\n\n"
            "Acabamos de cambiar la contraseña de tu cuenta de Tertulia y cerrar la sesión en todos los\n"
            "navegadores. Si no fuiste tú, restablece tu contraseña en {url} y avisa al propietario de tu\n"
            "espacio de trabajo.\n",
        ),
    },
    "webhook_disabled": {
        "en": (
            "A Tertulia webhook endpoint was disabled",
            "Hello,\n\n"
            "Tertulia stopped sending events to the webhook endpoint {url}.\nReason: {reason}\n\n"
            "Events for it are kept and will be sent when you enable it again. Check that the endpoint\n"
            "answers with a 2xx status, then enable it here:\n"
            "{page}\n",
        ),
        "es": (
            "Se desactivó un webhook de Tertulia",
            "Hola:\n\n"
            "Tertulia dejó de enviar eventos al webhook {url}.\nMotivo: {reason}\n\n"
            "Sus eventos se conservan y se enviarán cuando lo actives de nuevo. Comprueba que el endpoint\n"
            "responde con un estado 2xx y actívalo aquí:\n"
            "{page}\n",
        ),
    },
}


def pick_language(*candidates: str | None) -> str:
    """The first supported language among the candidates, else English."""
    for candidate in candidates:
        if candidate in LANGUAGES:
            return candidate
    return DEFAULT_LANGUAGE


def role_name(role: str, language: str) -> str:
    return ROLE_NAMES[pick_language(language)].get(role, role)


def placeholders(template: str) -> set[str]:
    names: set[str] = set()
    for subject, body in TEXTS[template].values():
        for text in (subject, body):
            names.update(field for _, field, _, _ in Formatter().parse(text) if field)
    return names


def render(template: str, language: str, **values: object) -> tuple[str, str]:
    subject, body = TEXTS[template][pick_language(language)]
    return subject.format(**values), body.format(**values)
