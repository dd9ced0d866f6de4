"""Synchronous hooks through which other domains take part in contact changes (e.g. conversations
on merge). They run inside the change's transaction, unlike event-log consumers, which run later.

The hooks are set once per process by the composition module (`tertulia.consumers.install`), never
by importing a module for its side effect. A merge before that fails loudly instead of leaving
the other domains' rows behind.
"""

from collections.abc import Callable, Sequence

from sqlalchemy.orm import Session

# Called as hook(session, survivor_id, merged_id) inside the merge transaction, before the merged
# contact is deleted: move your rows from merged_id to survivor_id.
MergeHook = Callable[[Session, int, int], None]
_merge_hooks: tuple[MergeHook, ...] | None = None


def set_merge_hooks(hooks: Sequence[MergeHook]) -> None:
    global _merge_hooks
    _merge_hooks = tuple(hooks)


def merge_hooks() -> tuple[MergeHook, ...]:
    if _merge_hooks is None:
        raise RuntimeError("contact merge hooks are not installed: call tertulia.consumers.install() at start")
    return _merge_hooks
