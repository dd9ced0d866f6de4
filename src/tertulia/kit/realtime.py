"""The realtime hub: events published after commit reach every subscribed socket, in any process.

- `memory://` (default): in-process fan-out; one `tertulia serve` process.
- `redis://...`: every process publishes to one Redis pub/sub channel and delivers what it
  receives to its own sockets, so several `tertulia serve` processes behind one port share events.

`publish` is synchronous and thread-safe (it is called from `on_commit` callbacks in request
threads and queue workers). Inside `batched()` (kit.db runs every after-commit callback of a
transaction in one) the events are collected and published together when the block ends, in order:
one Redis PUBLISH and one wake-up per event loop per transaction, not per event (a batch of inbound
messages commits dozens of events at once). Delivery to a socket happens on that socket's event loop. A
subscriber only receives events of its workspace; the socket endpoint then re-checks each event
against the receiving user's permissions before sending it. A subscriber that falls too far
behind is marked overflowed and its socket is closed, so the client reconnects and reloads
instead of silently missing events.
"""

import asyncio
import contextlib
import json
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
import redis.asyncio as aioredis
import structlog

log = structlog.get_logger()

Event = dict[str, Any]
Accepts = Callable[[Event], bool]
QUEUE_SIZE = 2000
MAX_EVENTS_PER_PUBLISH = 200
# An event with "topics" also reaches subscribers of those topics (e.g. one web-chat visitor's
# socket subscribes to "contact:<id>" only, instead of sifting through the whole workspace).
TOPICS = "topics"


class Subscription:
    """One socket's inbox of events. `topic=None` receives every event of the workspace;
    `accepts`, when given, runs on the socket's loop before queueing, so an event this socket
    would drop never wakes it."""

    def __init__(self, hub: "Hub", workspace_id: int, topic: str | None, accepts: Accepts | None) -> None:
        self.hub = hub
        self.workspace_id = workspace_id
        self.topics: set[str | None] = {topic}
        self.accepts = accepts
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.overflowed = False

    def offer(self, event: Event) -> None:
        """Runs on the subscriber's loop."""
        if self.accepts is not None and event.get("type") != "overflow" and not self.accepts(event):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            # Wake the reader so it notices and closes the socket.
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
            self.queue.put_nowait({"type": "overflow"})

    def add_topic(self, topic: str) -> None:
        self.hub.add_topic(self, topic)

    async def get(self) -> Event:
        return await self.queue.get()

    def close(self) -> None:
        self.hub.unsubscribe(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _offer_all(deliveries: list[tuple[Event, list[Subscription]]]) -> None:
    for event, subscriptions in deliveries:
        for subscription in subscriptions:
            subscription.offer(event)


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[int, str | None], set[Subscription]] = defaultdict(set)

    def subscribe(self, workspace_id: int, topic: str | None = None, accepts: Accepts | None = None) -> Subscription:
        subscription = Subscription(self, workspace_id, topic, accepts)
        with self._lock:
            self._by_key[(workspace_id, topic)].add(subscription)
        return subscription

    def add_topic(self, subscription: Subscription, topic: str) -> None:
        with self._lock:
            subscription.topics.add(topic)
            self._by_key[(subscription.workspace_id, topic)].add(subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            for topic in subscription.topics:
                key = (subscription.workspace_id, topic)
                subscribers = self._by_key.get(key)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._by_key[key]

    def deliver_local(self, event: Event) -> None:
        self.deliver_local_many([event])

    def deliver_local_many(self, events: Sequence[Event]) -> None:
        """Offer each event to its subscribers, in order. One wake-up per event loop for the whole
        sequence, not per socket or per event: with hundreds of sockets on one loop, a
        call_soon_threadsafe each was most of the cost of an event."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Event, list[Subscription]]]] = {}
        with self._lock:
            for event in events:
                workspace_id = event.get("workspace_id")
                if not isinstance(workspace_id, int):
                    continue
                keys = [(workspace_id, None)] + [(workspace_id, str(topic)) for topic in event.get(TOPICS) or ()]
                # A subscription following two of the event's topics gets it once.
                found: dict[Subscription, None] = {}
                for key in keys:
                    for subscription in self._by_key.get(key, ()):
                        found[subscription] = None
                per_loop: dict[asyncio.AbstractEventLoop, list[Subscription]] = {}
                for subscription in found:
                    per_loop.setdefault(subscription.loop, []).append(subscription)
                for loop, subscriptions in per_loop.items():
                    by_loop.setdefault(loop, []).append((event, subscriptions))
        for loop, deliveries in by_loop.items():
            try:
                loop.call_soon_threadsafe(_offer_all, deliveries)
            except RuntimeError:
                # The sockets' loop has closed under them; forget the subscribers.
                for subscription in {s for _, subscriptions in deliveries for s in subscriptions}:
                    self.unsubscribe(subscription)

    def publish(self, event: Event) -> None:
        self.publish_many([event])

    def publish_many(self, events: Sequence[Event]) -> None:
        self.deliver_local_many(events)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class MemoryHub(Hub):
    pass


class RedisHub(Hub):
    def __init__(self, url: str, prefix: str = "tertulia") -> None:
        super().__init__()
        self.url = url
        self.channel = f"{prefix}:events"
        # Publishing happens in request threads: a Redis that does not answer costs a second (the
        # failure is logged, the data is committed, clients reload), not a TCP timeout.
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def publish_many(self, events: Sequence[Event]) -> None:
        # Every process, this one included, delivers what comes back from Redis: one path, one copy.
        # One message per call: an event, or a list of events for a transaction's batch.
        body = events[0] if len(events) == 1 else list(events)
        self._redis.publish(self.channel, json.dumps(body, separators=(",", ":"), default=str))

    async def start(self) -> None:
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), timeout=10)

    async def _listen(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.url)
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._ready.set()
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    try:
                        body = json.loads(message["data"])
                    except (ValueError, TypeError):
                        continue
                    if isinstance(body, dict):
                        self.deliver_local_many([body])
                    elif isinstance(body, list):
                        self.deliver_local_many([event for event in body if isinstance(event, dict)])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a Redis restart must not end realtime for this process
                log.warning("realtime_redis_reconnect", error=str(exc))
                await asyncio.sleep(1)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                    await client.aclose()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._redis.close()


def make_hub(url: str, prefix: str = "tertulia") -> Hub:
    if url.startswith(("redis://", "rediss://")):
        return RedisHub(url, prefix)
    if url in ("", "memory://"):
        return MemoryHub()
    raise ValueError(f"Unsupported TERTULIA_REALTIME_URL {url!r}: use memory:// or redis://host")


_current: Hub = MemoryHub()
_batch = threading.local()


def set_hub(hub: Hub) -> None:
    """The hub `publish` uses in this process (set by the app at startup)."""
    global _current
    _current = hub


def get_hub() -> Hub:
    return _current


def publish(event: Event) -> None:
    pending: list[Event] | None = getattr(_batch, "events", None)
    if pending is not None:
        pending.append(event)
        return
    _publish_now([event])


@contextlib.contextmanager
def batched() -> Iterator[None]:
    """Collect what this thread publishes inside the block and publish it together, in order, when
    the block ends (also when it raises: what was published before stays published). Nested
    blocks join the outermost one."""
    if getattr(_batch, "events", None) is not None:
        yield
        return
    events: list[Event] = []
    _batch.events = events
    try:
        yield
    finally:
        _batch.events = None
        if events:
            _publish_now(events)


def _publish_now(events: list[Event]) -> None:
    # A huge transaction (a bulk change) goes in slices, so no single message or loop callback is huge.
    for start in range(0, len(events), MAX_EVENTS_PER_PUBLISH):
        chunk = events[start : start + MAX_EVENTS_PER_PUBLISH]
        try:
            _current.publish_many(chunk)
        except Exception as exc:  # realtime is best effort: the data is committed, clients reload
            log.warning("realtime_publish_failed", error=str(exc), event_type=chunk[0].get("type"), events=len(chunk))
