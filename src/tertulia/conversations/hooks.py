"""Synchronous hooks through which higher domains take part in a customer's messages arriving
(broadcasts: a reply within a broadcast's reply window, an unsubscribe keyword). They run inside the
receive transaction, after the messages are written, so what they record commits with the message or
not at all; a message delivered twice reaches them once (duplicates are not passed).

Set once per process by the composition module (`tertulia.consumers.install`); until then none run.
A hook costs every batch of inbound messages: it must stay a query or two per batch.
"""

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

from tertulia.conversations.models import Message

# Called as hook(session, messages) with the batch's newly written incoming messages.
ReceivedHook = Callable[[Session, Sequence[Message]], object]
_received_hooks: tuple[ReceivedHook, ...] = ()


def set_received_hooks(hooks: Sequence[ReceivedHook]) -> None:
    global _received_hooks
    _received_hooks = tuple(hooks)


def received_hooks() -> tuple[ReceivedHook, ...]:
    return _received_hooks
