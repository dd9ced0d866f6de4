from tests.channels.email_support import mail, mail_session
from tests.fakes import fakehttp_adapter, immediate_queue

__all__ = ["fakehttp_adapter", "immediate_queue", "mail", "mail_session"]
