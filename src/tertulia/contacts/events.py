"""Hooks other domains register to take part in contact changes (e.g. conversations on merge)."""

from collections.abc import Callable

from sqlalchemy.orm import Session

# Called as hook(session, survivor_id, merged_id) inside the merge transaction, before the merged
# contact is deleted: move your rows from merged_id to survivor_id.
MergeHook = Callable[[Session, int, int], None]
MERGE_HOOKS: list[MergeHook] = []


def on_merge(hook: MergeHook) -> MergeHook:
    MERGE_HOOKS.append(hook)
    return hook
