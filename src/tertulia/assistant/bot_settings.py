"""Per-channel settings of the assistant's bot: on or off, the confidence below which it hands off,
the words that make a customer's message a hand-off request, the hand-off message, and how many
answers it gives in one conversation before handing off, whether it works always or only outside
business hours, and whether a pause lasts into the contact's next conversation. The bot
(`assistant.bot`) reads them through `settings_for` and `asks_for_a_person`."""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.assistant import retrieval
from tertulia.assistant.models import ChannelBotSettings
from tertulia.channels.service import access_channel
from tertulia.kit.errors import ValidationFailed
from tertulia.kit.text import fold
from tertulia.users.permissions import Actor, Permission

DEFAULT_KEYWORDS = ("agente", "humano", "persona", "asesor", "agent", "human", "person")
DEFAULT_MESSAGE = "Te comunico con una persona del equipo, en un momento te responde."
DEFAULT_MAX_ANSWERS = 5
MAX_KEYWORDS = 50
MAX_KEYWORD = 50
MAX_MESSAGE = 1000
MAX_ANSWERS = 100
HOURS = ("always", "outside")


@dataclass(frozen=True)
class BotValues:
    enabled: bool
    # None: the assistant's default (retrieval.DEFAULT_THRESHOLD), which moves when it is measured
    # again; a number only when a person set one.
    threshold: float | None
    handoff_keywords: list[str]
    handoff_message: str
    max_bot_answers: int
    hours: str = "always"
    keep_paused: bool = False

    @property
    def applied_threshold(self) -> float:
        return retrieval.DEFAULT_THRESHOLD if self.threshold is None else self.threshold


DEFAULTS = BotValues(False, None, list(DEFAULT_KEYWORDS), DEFAULT_MESSAGE, DEFAULT_MAX_ANSWERS)


def values_of(row: ChannelBotSettings | None) -> BotValues:
    if row is None:
        return DEFAULTS
    return BotValues(
        row.enabled,
        row.threshold,
        list(row.handoff_keywords or []),
        row.handoff_message,
        row.max_bot_answers,
        row.hours or "always",
        bool(row.keep_paused),
    )


def check_values(raw: Mapping[str, Any], current: BotValues = DEFAULTS) -> BotValues:
    """Every field's problem at once; a field left out keeps its current value."""
    errors: dict[str, str] = {}
    enabled = raw.get("enabled", current.enabled)
    if not isinstance(enabled, bool):
        errors["enabled"] = "Must be true or false."
    threshold = raw.get("threshold", current.threshold)  # None: the default
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1
    ):
        errors["threshold"] = "Enter a confidence between 0 and 1."
    keywords: list[str] = []
    for word in raw.get("handoff_keywords", current.handoff_keywords) or []:
        text = " ".join(str(word).split())
        if not text or fold(text) in {fold(k) for k in keywords}:
            continue
        if len(text) > MAX_KEYWORD:
            errors["handoff_keywords"] = "A keyword can have 50 characters at most."
        keywords.append(text)
    if len(keywords) > MAX_KEYWORDS:
        errors["handoff_keywords"] = "At most 50 keywords."
    message = str(raw.get("handoff_message", current.handoff_message) or "").strip()
    if not message:
        errors["handoff_message"] = "Enter the message the customer gets when a person takes over."
    elif len(message) > MAX_MESSAGE:
        errors["handoff_message"] = "The message is too long (1,000 characters at most)."
    answers = raw.get("max_bot_answers", current.max_bot_answers)
    if isinstance(answers, bool) or not isinstance(answers, int) or not 1 <= answers <= MAX_ANSWERS:
        errors["max_bot_answers"] = "Enter a number of answers between 1 and 100."
    hours = raw.get("hours", current.hours)
    if hours not in HOURS:
        errors["hours"] = "Choose always or only outside business hours."
    keep_paused = raw.get("keep_paused", current.keep_paused)
    if not isinstance(keep_paused, bool):
        errors["keep_paused"] = "Must be true or false."
    if errors:
        raise ValidationFailed("The assistant's settings are not valid.", details=errors)
    return BotValues(
        bool(enabled),
        None if threshold is None else float(threshold),
        keywords,
        message,
        int(answers),
        str(hours),
        bool(keep_paused),
    )


def _row(session: Session, channel_id: int) -> ChannelBotSettings | None:
    return session.scalar(select(ChannelBotSettings).where(ChannelBotSettings.channel_id == channel_id))


def settings_for(session: Session, workspace_id: int, channel_id: int) -> BotValues:
    """The bot's settings on a channel of the workspace (the defaults when never saved)."""
    row = _row(session, channel_id)
    return values_of(row if row is not None and row.workspace_id == workspace_id else None)


def get_settings(session: Session, actor: Actor, channel_id: int) -> BotValues:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    channel = access_channel(session, actor, channel_id)
    return values_of(_row(session, channel.id))


def do_save_settings(session: Session, actor: Actor, channel_id: int, raw: Mapping[str, Any]) -> BotValues:
    actor.require(Permission.MANAGE_KNOWLEDGE)
    channel = access_channel(session, actor, channel_id)
    row = _row(session, channel.id)
    values = check_values(raw, values_of(row))
    if row is None:
        row = ChannelBotSettings(workspace_id=actor.workspace_id, channel_id=channel.id)
        session.add(row)
    row.enabled = values.enabled
    row.threshold = values.threshold
    row.handoff_keywords = values.handoff_keywords
    row.handoff_message = values.handoff_message
    row.max_bot_answers = values.max_bot_answers
    row.hours = values.hours
    row.keep_paused = values.keep_paused
    session.flush()
    return values


def asks_for_a_person(text: str, keywords: list[str]) -> bool:
    """Whether a customer's message contains one of the hand-off keywords as whole words (case and
    accents aside): "quiero hablar con un humano" yes, "humanitario" no."""
    folded = fold(text)
    return any(re.search(rf"(?<!\w){re.escape(fold(k))}(?!\w)", folded) for k in keywords if k.strip())
