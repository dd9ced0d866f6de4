"""Sending deliveries: claim, sign, POST, record.

Guarantees:
- Durable: a delivery is a row written in the same transaction as the fan-out's progress; it is
  claimed (state `sending`, a lease) in one transaction, sent, and its outcome recorded in another.
  A worker that dies after the POST and before the record leaves the row `sending`; once its lease
  expires another worker sends it again. So at least once: receivers dedupe on `webhook-id`.
- Several workers: the claim locks the rows it takes with FOR UPDATE SKIP LOCKED on PostgreSQL (on
  SQLite writes are serialised), and the record only lands while the claimer still holds the lease.
- In order per contact: a delivery is claimable only when no earlier delivery of the same endpoint
  and ordering key (the contact) is open, so a retrying event holds its contact's later events back
  (repository.claimable_ids). Events of different contacts do not wait for each other.
- Retries: base * 2^(attempt-1) seconds (jittered, at most 3 hours apart) for 24 hours after the
  first attempt; then the delivery is `failed` (and no longer holds its contact's later events).
- Safe targets: the host is resolved at send time and the request goes to the address that was
  checked (addresses.py); private, loopback and link-local addresses are refused unless allowed.
- TLS: an https endpoint's certificate is verified against the endpoint's host name and the public
  authorities (httpx's default: certifi's bundle), plus those of `TERTULIA_WEBHOOKS_CA_FILE`. A
  certificate that does not verify is a failed attempt like any other (retried, counted towards
  disabling), recorded with the reason in words ("TLS certificate not trusted: ..."); nothing is
  ever sent without verification.
- Disabling: an endpoint that fails `disable_after_failures` times in a row, or has failed for the
  whole retry window without a success, is disabled and the workspace's owners get an email (the
  mail outbox, in the same transaction). Its open deliveries wait; enabling it again resumes them.
"""

import os
import random
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from tertulia.events.dispatcher import new_owner
from tertulia.kit.clock import utcnow
from tertulia.kit.db import Database
from tertulia.kit.settings import Settings, get_settings
from tertulia.mail.service import queue_template
from tertulia.mail.texts import pick_language
from tertulia.users.models import Membership, Role, User
from tertulia.webhooks import reasons, repository, signing
from tertulia.webhooks.addresses import AddressRefused, resolve
from tertulia.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint

log = structlog.get_logger("tertulia.webhooks")

USER_AGENT = "Tertulia-Webhooks/1"
BATCH_SIZE = 32
MAX_RETRY_SECONDS = 3 * 3600.0
LEASE_MARGIN_SECONDS = 30.0
EXCERPT_CHARS = 1000
_READ_BYTES = 4096
SEND_THREADS = 16

# Called with a delivery id after its POST returned and before its outcome is recorded (tests: a
# worker killed in between).
AFTER_SEND: list[Callable[[int], None]] = []


@dataclass(frozen=True)
class Policy:
    allow_private: bool = False
    retry_base_seconds: float = 10.0
    retry_window: timedelta = timedelta(hours=24)
    disable_after_failures: int = 100
    timeout_seconds: float = 10.0
    base_url: str = "http://127.0.0.1:8000"
    # Certificate authorities trusted besides the public ones (a PEM file), for https endpoints.
    ca_file: str | None = None
    # A claimed delivery whose worker died is claimable again after timeout + this margin.
    lease_margin_seconds: float = LEASE_MARGIN_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> "Policy":
        s = settings or get_settings()
        return cls(
            allow_private=s.webhooks_allow_private,
            retry_base_seconds=s.webhooks_retry_base_seconds,
            retry_window=timedelta(hours=s.webhooks_retry_window_hours),
            disable_after_failures=s.webhooks_disable_after_failures,
            timeout_seconds=s.webhooks_timeout_seconds,
            base_url=s.base_url,
            ca_file=s.webhooks_ca_file,
        )

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.timeout_seconds + self.lease_margin_seconds)


def retry_delay(policy: Policy, attempt: int) -> float:
    """Seconds before the retry that follows failed attempt number `attempt` (1, 2, ...)."""
    delay = min(MAX_RETRY_SECONDS, policy.retry_base_seconds * (2 ** max(0, attempt - 1)))
    return float(delay * random.uniform(0.9, 1.1))


@dataclass(frozen=True)
class Claimed:
    id: int
    endpoint_id: int
    workspace_id: int
    message_id: str
    body: str
    attempt: int
    first_attempt_at: datetime
    url: str
    secrets: list[str]


@dataclass(frozen=True)
class Outcome:
    status: int | None
    excerpt: str | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def claim(db: Database, owner: str, policy: Policy, limit: int = BATCH_SIZE) -> list[Claimed]:
    now = utcnow()
    with db.transaction() as session:
        ids = repository.claimable_ids(session, now, limit)
        if not ids:
            return []
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids))
            .values(
                state=DeliveryState.SENDING,
                lease_owner=owner,
                lease_until=now + policy.lease,
                attempts=WebhookDelivery.attempts + 1,
                first_attempt_at=func.coalesce(WebhookDelivery.first_attempt_at, now),
                last_attempt_at=now,
            )
        )
        rows = session.execute(
            select(WebhookDelivery, WebhookEndpoint)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookDelivery.id.in_(ids))
            .order_by(WebhookDelivery.id)
        ).all()
        now_iso = now.isoformat()
        return [
            Claimed(
                id=d.id,
                endpoint_id=e.id,
                workspace_id=d.workspace_id,
                message_id=d.message_id,
                body=d.body,
                attempt=d.attempts,
                first_attempt_at=d.first_attempt_at or now,
                url=e.url,
                secrets=signing.secrets_in_use(e.secrets or {}, now_iso),
            )
            for d, e in rows
        ]


# ----- HTTP -------------------------------------------------------------------------------------

_client_lock = threading.Lock()
_clients: dict[tuple[str, str | None], httpx.Client] = {}
_pool: ThreadPoolExecutor | None = None
_owner_pid = 0
MAX_CLIENTS = 256


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    context = httpx.create_ssl_context(trust_env=False)  # what the client verifies with by default
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


def _new_client(ca_file: str | None = None) -> httpx.Client:
    return httpx.Client(
        verify=_tls_context(ca_file),
        limits=httpx.Limits(max_connections=16, max_keepalive_connections=8, keepalive_expiry=30.0),
        follow_redirects=False,
        trust_env=False,
    )


def _resources(host: str = "", ca_file: str | None = None) -> tuple[httpx.Client, ThreadPoolExecutor]:
    """The process's send threads and its client for `host`. Requests go to checked addresses, not
    names, and a connection pool is keyed by address: one client per host name keeps a connection
    (and the TLS name it was verified for) from serving another name on the same address. A forked
    child builds its own."""
    global _pool, _owner_pid
    with _client_lock:
        if _pool is None or _owner_pid != os.getpid():
            _clients.clear()  # inherited through fork: left alone, not closed (the parent's sockets)
            _pool = ThreadPoolExecutor(max_workers=SEND_THREADS, thread_name_prefix="webhook-send")
            _owner_pid = os.getpid()
        client = _clients.get((host, ca_file))
        if client is None:
            if len(_clients) >= MAX_CLIENTS:
                _clients.clear()  # not closed: another thread may be sending with one; dropped, they close
            client = _clients[host, ca_file] = _new_client(ca_file)
        return client, _pool


def _address_url(url: str, address: str, port: int) -> tuple[str, str]:
    """(the URL with its host replaced by the checked address, the Host header)."""
    parts = urlsplit(url)
    literal = f"[{address}]" if ":" in address else address
    host_header = parts.hostname or ""
    if ":" in host_header:
        host_header = f"[{host_header}]"
    if parts.port is not None:
        host_header = f"{host_header}:{parts.port}"
    return urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")), host_header


def send(claimed: Claimed, policy: Policy, client: httpx.Client | None = None) -> Outcome:
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        target = resolve(claimed.url, allow_private=policy.allow_private)
    except AddressRefused as exc:
        return Outcome(None, None, str(exc), elapsed())
    body = claimed.body.encode()
    address_url, host_header = _address_url(claimed.url, target.address, target.port)
    headers = {
        "Host": host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        **signing.headers(claimed.secrets, claimed.message_id, int(time.time()), body),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    http = client or _resources(target.host, policy.ca_file)[0]
    try:
        request = http.build_request(
            "POST", address_url, content=body, headers=headers, extensions=extensions, timeout=policy.timeout_seconds
        )
        response = http.send(request, stream=True)
        try:
            raw = b""
            for chunk in response.iter_bytes():
                raw += chunk
                if len(raw) >= _READ_BYTES:
                    break
        finally:
            response.close()
    except httpx.HTTPError as exc:
        return Outcome(None, None, _failure_reason(exc)[:1000], elapsed())
    excerpt = raw.decode("utf-8", errors="replace")[:EXCERPT_CHARS]
    error = None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return Outcome(response.status_code, excerpt, error, elapsed())


def _failure_reason(exc: httpx.HTTPError) -> str:
    """What went wrong, in words a person setting up the endpoint can act on."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            # verify_message: "unable to get local issuer certificate", "Hostname mismatch, ...".
            detail = cause.verify_message or cause.reason or str(cause)
            return f"TLS certificate not trusted: {detail}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or cause}"
        cause = cause.__cause__ or cause.__context__
    return f"{type(exc).__name__}: {exc}"


# ----- recording --------------------------------------------------------------------------------


def record(db: Database, owner: str, policy: Policy, results: list[tuple[Claimed, Outcome]]) -> None:
    """Record a batch's outcomes in one transaction. The attempts are one INSERT, the successes one
    UPDATE per HTTP status (and one endpoint check per endpoint), a failure its own UPDATE: per
    delivery statements made recording the slowest part of the path (docs/benchmarks.md)."""
    now = utcnow()
    with db.transaction() as session:
        session.add_all(
            WebhookAttempt(
                delivery_id=claimed.id,
                attempt=claimed.attempt,
                at=now,
                status=outcome.status,
                response_excerpt=outcome.excerpt,
                error=outcome.error,
                duration_ms=outcome.duration_ms,
            )
            for claimed, outcome in results
        )
        session.flush()
        # Only rows this worker still holds move (a lease that expired was claimed by another).
        held = (WebhookDelivery.lease_owner == owner, WebhookDelivery.state == DeliveryState.SENDING)
        released = {"lease_owner": None, "lease_until": None}
        by_status: dict[int | None, list[Claimed]] = {}
        for claimed, outcome in results:
            if outcome.ok:
                by_status.setdefault(outcome.status, []).append(claimed)
        succeeded_endpoints: set[int] = set()
        for status, claimed_ok in by_status.items():
            moved = set(
                session.scalars(
                    update(WebhookDelivery)
                    .where(WebhookDelivery.id.in_([c.id for c in claimed_ok]), *held)
                    .values(
                        **released, last_status=status, last_error=None, state=DeliveryState.DELIVERED, delivered_at=now
                    )
                    .returning(WebhookDelivery.id)
                    .execution_options(synchronize_session=False)
                )
            )
            for claimed in claimed_ok:
                if claimed.id in moved:
                    succeeded_endpoints.add(claimed.endpoint_id)
                else:
                    log.warning("webhook_lease_lost", delivery_id=claimed.id)
        for endpoint_id in sorted(succeeded_endpoints):
            _succeeded(session, endpoint_id, now)
        for claimed, outcome in results:
            if outcome.ok:
                continue
            values: dict[str, object] = {**released, "last_status": outcome.status, "last_error": outcome.error}
            if now >= claimed.first_attempt_at + policy.retry_window:
                values.update(state=DeliveryState.FAILED)
            else:
                delay = timedelta(seconds=retry_delay(policy, claimed.attempt))
                values.update(state=DeliveryState.PENDING, next_attempt_at=now + delay)
            failed = session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == claimed.id, *held)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if failed.rowcount != 1:  # type: ignore[attr-defined]
                log.warning("webhook_lease_lost", delivery_id=claimed.id)
                continue
            _failed(session, claimed.endpoint_id, now, policy)


def _succeeded(session: Session, endpoint_id: int, now: datetime) -> None:
    # Written only when something changes (or once a minute), so busy endpoints' rows stay cold.
    session.execute(
        update(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint_id,
            or_(
                WebhookEndpoint.consecutive_failures > 0,
                WebhookEndpoint.last_success_at.is_(None),
                WebhookEndpoint.last_success_at < now - timedelta(minutes=1),
            ),
        )
        .values(consecutive_failures=0, failing_since=None, last_success_at=now)
    )


def _failed(session: Session, endpoint_id: int, now: datetime, policy: Policy) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(
            consecutive_failures=WebhookEndpoint.consecutive_failures + 1,
            failing_since=func.coalesce(WebhookEndpoint.failing_since, now),
        )
    )
    endpoint = session.get(WebhookEndpoint, endpoint_id, populate_existing=True)
    if endpoint is None or not endpoint.enabled:
        return
    if endpoint.consecutive_failures >= policy.disable_after_failures:
        reason = reasons.in_a_row(endpoint.consecutive_failures)
    elif endpoint.failing_since is not None and endpoint.failing_since <= now - policy.retry_window:
        reason = reasons.for_hours(policy.retry_window.total_seconds() / 3600)
    else:
        return
    disabled = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled)
        .values(enabled=False, disabled_at=now, disabled_reason=reason)
    )
    if disabled.rowcount == 1:  # type: ignore[attr-defined]
        log.warning("webhook_endpoint_disabled", endpoint_id=endpoint_id, reason=reason)
        _tell_owners(session, endpoint, reason, policy)


def _tell_owners(session: Session, endpoint: WebhookEndpoint, reason: str, policy: Policy) -> None:
    owners = session.execute(
        select(User.email, User.language)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.workspace_id == endpoint.workspace_id,
            Membership.role == Role.OWNER,
            Membership.active,
        )
        .order_by(User.id)
    ).all()
    page = f"{policy.base_url.rstrip('/')}/settings/webhooks/{endpoint.id}"
    for email, language in owners:
        chosen = pick_language(language)
        told = reasons.in_language(reason, chosen)
        queue_template(session, email, "webhook_disabled", chosen, url=endpoint.url, reason=told, page=page)


# ----- the loop ---------------------------------------------------------------------------------


def deliver_batch(db: Database, policy: Policy, owner: str, limit: int = BATCH_SIZE) -> int:
    """Claim, send (in parallel: a batch holds at most one delivery per endpoint and contact) and
    record one batch; how many were attempted."""
    claimed = claim(db, owner, policy, limit)
    if not claimed:
        return 0
    pool = _resources()[1]
    outcomes = list(pool.map(lambda c: send(c, policy), claimed))
    for item in claimed:
        for hook in AFTER_SEND:
            hook(item.id)
    record(db, owner, policy, list(zip(claimed, outcomes, strict=True)))
    return len(claimed)


def deliver_until_idle(db: Database, policy: Policy | None = None, *, budget_seconds: float = 10.0) -> int:
    policy = policy or Policy.from_settings()
    owner = new_owner()
    deadline = time.monotonic() + budget_seconds
    attempted = 0
    while time.monotonic() < deadline:
        done = deliver_batch(db, policy, owner)
        attempted += done
        if done == 0:
            break
    return attempted


def seconds_until_next(db: Database) -> float | None:
    """Seconds until the earliest waiting delivery that is free to go is due (0: now), or None."""
    now = utcnow()
    with db.transaction(write=False) as session:
        due = repository.next_due(session)
    if due is None:
        return None
    return max(0.0, (due - now).total_seconds())


def prune_log(db: Database, retention_days: float, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Delete finished deliveries (delivered or failed) older than `retention_days`, with their
    attempts, a batch per transaction; open ones are kept whatever their age. Oldest first by id, so
    each batch is found at the start of the primary key without an index on the time."""
    cutoff = (now or utcnow()) - timedelta(days=retention_days)
    finished = (DeliveryState.DELIVERED, DeliveryState.FAILED)
    doomed = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.state.in_(finished), WebhookDelivery.created_at < cutoff)
        .order_by(WebhookDelivery.id)
        .limit(batch)
    )
    deleted = 0
    while True:
        with db.transaction() as session:
            ids = list(session.scalars(doomed))
            if ids:
                session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
                session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
        deleted += len(ids)
        if len(ids) < batch:
            return deleted
