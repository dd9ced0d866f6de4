"""What notifications say, in the reader's language (the web catalogue)."""

from sqlalchemy.orm import Session

from tertulia.notifications.models import Notification, NotificationKind
from tertulia.users.models import User
from tertulia.web import i18n

TITLES: dict[str, str] = {
    NotificationKind.ASSIGNED: i18n.lazy("Conversation with %(contact)s assigned to you"),
    NotificationKind.MENTIONED: i18n.lazy("%(name)s mentioned you"),
    NotificationKind.NEW_MESSAGE: i18n.lazy("New message from %(contact)s"),
    NotificationKind.UNASSIGNED_IN_TEAM: i18n.lazy("New conversation with %(contact)s waiting in %(team)s"),
    NotificationKind.BROADCAST_FINISHED: i18n.lazy("Broadcast %(name)s finished sending"),
    NotificationKind.BROADCAST_FAILED: i18n.lazy("Broadcast %(name)s failed"),
    NotificationKind.WAITING: i18n.lazy("%(contact)s has waited %(minutes)s minutes for a reply"),
    NotificationKind.CHANNEL_ERROR: i18n.lazy("Channel %(name)s stopped working"),
    NotificationKind.CHANNEL_RECOVERED: i18n.lazy("Channel %(name)s works again"),
}
KIND_LABELS: dict[str, str] = {
    NotificationKind.ASSIGNED: i18n.lazy("Assigned to me"),
    NotificationKind.MENTIONED: i18n.lazy("Mentioned"),
    NotificationKind.NEW_MESSAGE: i18n.lazy("New message in my conversations"),
    NotificationKind.UNASSIGNED_IN_TEAM: i18n.lazy("New unassigned conversation in my teams"),
    NotificationKind.BROADCAST_FINISHED: i18n.lazy("A broadcast finished"),
    NotificationKind.BROADCAST_FAILED: i18n.lazy("A broadcast failed"),
    NotificationKind.WAITING: i18n.lazy("A customer waiting for a reply"),
    NotificationKind.CHANNEL_ERROR: i18n.lazy("A channel stopped working"),
    NotificationKind.CHANNEL_RECOVERED: i18n.lazy("A channel works again"),
}


# Who wrote a note that no person wrote, by the event's actor ("workflow", "bot", ...).
AUTHORS: dict[str, str] = {
    "workflow": i18n.lazy("A workflow"),
    "bot": i18n.lazy("The assistant"),
}
SOMEONE = i18n.lazy("Someone")


def title(notification: Notification, fmt: i18n.Formatter) -> str:
    params = {key: str(value) for key, value in (notification.params or {}).items()}
    if "by" in params:
        params["name"] = fmt.gettext(AUTHORS.get(params["by"], SOMEONE))
    template = fmt.gettext(TITLES.get(notification.kind, notification.kind))
    try:
        return template % params
    except (KeyError, ValueError, TypeError):
        return template


def formatter_for(session: Session, user_id: int) -> i18n.Formatter:
    user = session.get(User, user_id)
    language = user.language if user is not None and user.language in i18n.LANGUAGES else i18n.DEFAULT_LANGUAGE
    return i18n.Formatter(language or i18n.DEFAULT_LANGUAGE, i18n.safe_zone(user.timezone if user else None))
