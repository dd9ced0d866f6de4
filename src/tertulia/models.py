"""Imports every domain's models so `Base.metadata` is complete (Alembic, tests)."""

from tertulia.assistant import models as assistant_models
from tertulia.broadcasts import models as broadcasts_models
from tertulia.channels import models as channels_models
from tertulia.contacts import import_models as contacts_import_models
from tertulia.contacts import models as contacts_models
from tertulia.conversations import models as conversations_models
from tertulia.events import models as events_models
from tertulia.kit.models import Base
from tertulia.mail import models as mail_models
from tertulia.notifications import models as notifications_models
from tertulia.reports import export_models as reports_export_models
from tertulia.reports import models as reports_models
from tertulia.segments import models as segments_models
from tertulia.users import models as users_models
from tertulia.webhooks import models as webhooks_models
from tertulia.workflows import models as workflows_models
from tertulia.workspaces import models as workspaces_models

__all__ = [
    "Base",
    "assistant_models",
    "broadcasts_models",
    "channels_models",
    "contacts_import_models",
    "contacts_models",
    "conversations_models",
    "events_models",
    "mail_models",
    "notifications_models",
    "reports_export_models",
    "reports_models",
    "segments_models",
    "users_models",
    "webhooks_models",
    "workflows_models",
    "workspaces_models",
]
