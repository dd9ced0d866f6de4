"""Who is calling the inbox endpoints: an API token or a signed-in browser (users/session_auth.py)."""

from tertulia.users.session_auth import SessionOrTokenActor

InboxActor = SessionOrTokenActor
