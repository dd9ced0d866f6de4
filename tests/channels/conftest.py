from tests.conversations.conftest import immediate_queue

__all__ = ["immediate_queue"]
