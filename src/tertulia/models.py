"""Imports every domain's models so `Base.metadata` is complete (Alembic, tests)."""

from tertulia.contacts import models as contacts_models
from tertulia.kit.models import Base
from tertulia.mail import models as mail_models
from tertulia.users import models as users_models
from tertulia.workspaces import models as workspaces_models

__all__ = ["Base", "contacts_models", "mail_models", "users_models", "workspaces_models"]
