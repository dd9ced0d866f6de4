"""The event-log consumer that tells people what concerns them (the `notifications` consumer).

Which events notify whom:
- `conversation.assigned` to a person: that person (`assigned`), unless they assigned it themselves;
  to a team with no one on it: the team's members (`unassigned_in_team`), but whoever moved it.
- `conversation.opened` with a team and no assignee: the team's members (`unassigned_in_team`).
- `comment.added`: each teammate @mentioned in the note (`mentioned`), never its author.
- `message.received`: the conversation's assignee (`new_message`).
- `broadcast.completed` / `broadcast.failed`: whoever created the broadcast (`broadcast_finished`,
  `broadcast_failed`).
- `channel.errored` / `channel.recovered`: the workspace's owners and managers (`channel_error`,
  `channel_recovered`); a recovery also marks the channel's unread `channel_error` notifications
  read, since what they told of is over. channels/health.py emits each once per change of state.
Only active members of the event's workspace are told. A notification's key is its event and kind,
unique per person, so the log's at-least-once delivery writes each one once.
"""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tertulia.broadcasts.models import Broadcast
from tertulia.contacts.models import Contact
from tertulia.conversations.models import Conversation
from tertulia.events.dispatcher import Consumer
from tertulia.events.models import EventRecord
from tertulia.events.types import EventType
from tertulia.kit.db import on_commit
from tertulia.kit.queue import task_database
from tertulia.notifications import tasks
from tertulia.notifications.models import Notification, NotificationKind
from tertulia.notifications.service import EXCERPT, Draft, do_mark_ended, do_notify_many, wants_email
from tertulia.users.models import Membership, Role, Team, TeamMember, User

CONSUMER_NAME = "notifications"
TYPES = frozenset(
    {
        EventType.CONVERSATION_ASSIGNED,
        EventType.CONVERSATION_OPENED,
        EventType.COMMENT_ADDED,
        EventType.MESSAGE_RECEIVED,
        EventType.BROADCAST_COMPLETED,
        EventType.BROADCAST_FAILED,
        EventType.CHANNEL_ERRORED,
        EventType.CHANNEL_RECOVERED,
    }
)
CHANNEL_KINDS = {
    EventType.CHANNEL_ERRORED: NotificationKind.CHANNEL_ERROR,
    EventType.CHANNEL_RECOVERED: NotificationKind.CHANNEL_RECOVERED,
}
# Who looks after channels: the roles that may connect them again.
CHANNEL_KEEPERS = (Role.OWNER, Role.MANAGER)


def _actor_user(event: EventRecord) -> int | None:
    actor = event.actor or ""
    if actor.startswith("user:") and actor[5:].isdigit():
        return int(actor[5:])
    return None


class _Reads:
    """What a read of the log looks up once, held for the whole read (the session's identity map
    holds its objects weakly, so `session.get` would read them again): the conversations of its
    customers' messages, the names of their contacts, and each workspace's active members."""

    def __init__(self, session: Session, events: list[EventRecord]) -> None:
        self._session = session
        wanted = sorted(
            {e.conversation_id for e in events if e.type == EventType.MESSAGE_RECEIVED and e.conversation_id}
        )
        self._conversations = {
            c.id: c for c in session.scalars(select(Conversation).where(Conversation.id.in_(wanted)))
        }
        contact_ids = sorted({c.contact_id for c in self._conversations.values()})
        self._contacts = {c.id: c for c in session.scalars(select(Contact).where(Contact.id.in_(contact_ids)))}
        self._members: dict[int, set[int]] = {}

    def conversation(self, conversation_id: int) -> Conversation | None:
        if conversation_id not in self._conversations:
            found = self._session.get(Conversation, conversation_id)
            if found is None:
                return None
            self._conversations[conversation_id] = found
        return self._conversations[conversation_id]

    def contact_name(self, contact_id: int | None) -> str:
        if contact_id is None:
            return "?"
        contact = self._contacts.get(contact_id) or self._session.get(Contact, contact_id)
        if contact is None:
            return f"#{contact_id}"
        self._contacts[contact_id] = contact
        return contact.full_name or f"#{contact.id}"

    def members(self, workspace_id: int, user_ids: set[int]) -> set[int]:
        """The active members of the workspace among `user_ids`."""
        if not user_ids:
            return set()
        if workspace_id not in self._members:
            self._members[workspace_id] = set(
                self._session.scalars(
                    select(Membership.user_id).where(Membership.workspace_id == workspace_id, Membership.active)
                )
            )
        return user_ids & self._members[workspace_id]


def _link(conversation_id: int | None) -> str:
    return f"/messages/{conversation_id}" if conversation_id is not None else "/messages"


def _team_members(session: Session, team_id: int) -> tuple[str, set[int]]:
    team = session.get(Team, team_id)
    members = set(session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team_id)))
    return (team.name if team is not None else f"#{team_id}"), members


def _channel_link(channel_id: object) -> str:
    return f"/settings/channels/{channel_id}" if isinstance(channel_id, int) else "/settings/channels"


def _channel_keepers(session: Session, workspace_id: int) -> list[int]:
    return list(
        session.scalars(
            select(Membership.user_id)
            .where(Membership.workspace_id == workspace_id, Membership.active, Membership.role.in_(CHANNEL_KEEPERS))
            .order_by(Membership.user_id)
        )
    )


def drafts_for(session: Session, event: EventRecord, reads: _Reads | None = None) -> list[Draft]:
    reads = reads or _Reads(session, [event])
    payload: dict[str, Any] = event.payload or {}
    by = _actor_user(event)
    drafts: list[Draft] = []
    conversation: dict[str, Any] = payload.get("conversation") or {}
    if event.type in (EventType.CONVERSATION_ASSIGNED, EventType.CONVERSATION_OPENED):
        conversation_id = conversation.get("id")
        contact = reads.contact_name(conversation.get("contact_id"))
        assignee = conversation.get("assignee_id")
        team_id = conversation.get("team_id")
        if event.type == EventType.CONVERSATION_ASSIGNED and isinstance(assignee, int) and assignee != by:
            drafts.append(
                Draft(
                    assignee, NotificationKind.ASSIGNED, {"contact": contact}, _link(conversation_id), conversation_id
                )
            )
        elif assignee is None and isinstance(team_id, int):
            team, members = _team_members(session, team_id)
            drafts.extend(
                Draft(
                    user_id,
                    NotificationKind.UNASSIGNED_IN_TEAM,
                    {"contact": contact, "team": team},
                    _link(conversation_id),
                    conversation_id,
                )
                for user_id in sorted(members - {by} if by else members)
            )
    elif event.type == EventType.COMMENT_ADDED:
        message: dict[str, Any] = payload.get("message") or {}
        author = message.get("sender_user_id")
        mentioned = [u for u in (message.get("payload") or {}).get("mentions") or [] if isinstance(u, int)]
        writer = session.get(User, author) if isinstance(author, int) else None
        excerpt = str(message.get("text") or "")[:EXCERPT]
        # A note no person wrote (a workflow's comment step) is said to be by its kind of author,
        # named in the reader's language when the notification is shown.
        written_by = {"name": writer.full_name} if writer is not None else {"name": "", "by": event.actor or ""}
        drafts.extend(
            Draft(
                user_id,
                NotificationKind.MENTIONED,
                {**written_by, "excerpt": excerpt},
                _link(event.conversation_id),
                event.conversation_id,
            )
            for user_id in dict.fromkeys(mentioned)
            if user_id != author
        )
    elif event.type == EventType.MESSAGE_RECEIVED and event.conversation_id is not None:
        message = payload.get("message") or {}
        row = reads.conversation(event.conversation_id)
        if row is not None and row.assignee_id is not None:
            drafts.append(
                Draft(
                    row.assignee_id,
                    NotificationKind.NEW_MESSAGE,
                    {
                        "contact": reads.contact_name(row.contact_id),
                        "excerpt": str(message.get("text") or "")[:EXCERPT],
                    },
                    _link(row.id),
                    row.id,
                )
            )
    elif event.type in (EventType.BROADCAST_COMPLETED, EventType.BROADCAST_FAILED):
        broadcast_id = payload.get("broadcast_id")
        broadcast = session.get(Broadcast, broadcast_id) if isinstance(broadcast_id, int) else None
        if broadcast is not None and broadcast.created_by_user_id is not None:
            kind = (
                NotificationKind.BROADCAST_FINISHED
                if event.type == EventType.BROADCAST_COMPLETED
                else NotificationKind.BROADCAST_FAILED
            )
            drafts.append(
                Draft(
                    broadcast.created_by_user_id,
                    kind,
                    {"name": str(payload.get("name") or broadcast.name), "excerpt": str(payload.get("reason") or "")},
                    f"/broadcasts/{broadcast.id}",
                )
            )
    elif event.type in CHANNEL_KINDS:
        params = {"name": str(payload.get("name") or ""), "excerpt": str(payload.get("error") or "")[:EXCERPT]}
        drafts.extend(
            Draft(user_id, CHANNEL_KINDS[EventType(event.type)], params, _channel_link(payload.get("channel_id")))
            for user_id in _channel_keepers(session, event.workspace_id)
        )
    allowed = reads.members(event.workspace_id, {d.user_id for d in drafts})
    return [d for d in drafts if d.user_id in allowed]


def handle(event: EventRecord) -> None:
    handle_batch([event])


def handle_batch(events: list[EventRecord]) -> None:
    """A read of the log in one transaction (all or nothing, as the dispatcher's batches must be):
    at hundreds of customers' messages a second, a transaction and a read of the reader's
    preferences, language and unread count for each was most of the worker's time after writing
    the messages themselves."""
    with task_database().transaction() as session:
        batch: list[tuple[int, int | None, list[Draft]]] = []
        written: list[Notification] = []
        reads = _Reads(session, events)
        for event in events:
            if event.type == EventType.CHANNEL_RECOVERED:
                # What the read told before the recovery is written first, so that an error told
                # earlier in the same read is marked ended too, as one event at a time would.
                written += do_notify_many(session, batch)
                batch = []
                link = _channel_link((event.payload or {}).get("channel_id"))
                do_mark_ended(session, event.workspace_id, NotificationKind.CHANNEL_ERROR, link)
            batch.append((event.workspace_id, event.id, drafts_for(session, event, reads)))
        written += do_notify_many(session, batch)
        if wants_email(written):
            on_commit(session, tasks.queue_emails)


CONSUMER = Consumer(name=CONSUMER_NAME, handle=handle, types=TYPES, handle_batch=handle_batch)
