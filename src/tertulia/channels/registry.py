"""The adapter for each channel type.

The table is built from `channels.adapters.ADAPTERS`, the one list of the adapters a running
instance offers, so every process (web, worker, CLI) sees the same adapters without anything
registering itself on import. Tests that need a made-up provider add it with `registered(...)`,
which removes it again when the block ends.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from tertulia.channels.adapters import ADAPTERS
from tertulia.channels.protocol import ChannelAdapter

_ADAPTERS: dict[str, ChannelAdapter] = {adapter.type: adapter for adapter in ADAPTERS}


def get_adapter(channel_type: str) -> ChannelAdapter:
    adapter = _ADAPTERS.get(channel_type)
    if adapter is None:
        raise LookupError(f"no adapter for channel type {channel_type!r}")
    return adapter


def registered_types() -> list[str]:
    return sorted(_ADAPTERS)


@contextmanager
def registered(adapter: ChannelAdapter) -> Iterator[ChannelAdapter]:
    """Offer `adapter` for the duration of the block (tests and benchmarks of made-up providers)."""
    if adapter.type in _ADAPTERS:
        raise ValueError(f"an adapter for {adapter.type!r} is already registered")
    _ADAPTERS[adapter.type] = adapter
    try:
        yield adapter
    finally:
        del _ADAPTERS[adapter.type]
