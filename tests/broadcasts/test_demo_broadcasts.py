"""The demo workspace's broadcast drafts are ready for a manager to dry-run and preview as they are."""

from sqlalchemy import select

from tertulia.broadcasts import service
from tertulia.broadcasts.models import Broadcast
from tertulia.demo import seed_demo
from tertulia.kit.db import Database
from tertulia.users.models import Role
from tertulia.users.permissions import Actor


def test_the_demo_broadcasts_dry_run(db: Database) -> None:
    with db.transaction() as session:
        created = seed_demo(session, contacts=20)
        owner = Actor(workspace_id=created.workspace.id, kind="user", user_id=created.owner.id, role=Role.OWNER)
    with db.transaction() as session:
        broadcasts = list(session.scalars(select(Broadcast).where(Broadcast.workspace_id == owner.workspace_id)))
        # One sent days ago (results to look at), two drafts to try.
        assert sorted(b.status for b in broadcasts) == ["completed", "draft", "draft"]
        drafts = [b for b in broadcasts if b.status == "draft"]
        for item in drafts:
            result = service.dry_run(session, owner, item)
            assert result.counts.audience > 0, item.name
            service.preview(session, owner, item)
