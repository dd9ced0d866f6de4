"""Settings come from the environment (`TERTULIA_*`) or a `.env` file; everything is a URL."""

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TERTULIA_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""
    queue_url: str = ""
    realtime_url: str = "memory://"
    base_url: str = "http://127.0.0.1:8000"
    # Used for HMAC of API tokens and one-time links; generated into data_dir when unset.
    secret_key: str = ""
    # Earlier instance secrets (separated by spaces or commas): encrypted columns stored under them can still be read
    # while they are re-encrypted under the current one (kit/crypto.py).
    previous_secret_keys: str = ""
    smtp_url: str = ""
    mail_from: str = "Tertulia <no-reply@localhost>"
    # argon2 cost; tests lower it so the suite stays fast.
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    session_days: int = 14
    # Failed sign-ins per key (account, client address) that cost nothing; then a wait of
    # login_delay_seconds, doubled at each further failure, up to login_lockout_seconds.
    login_max_failures: int = 5
    login_delay_seconds: int = 30
    login_lockout_seconds: int = 900
    api_rate_limit_per_minute: int = 600
    invitation_days: int = 7
    password_reset_hours: int = 2
    # Queue: consumer threads inside `tertulia serve` (SQLite queue) unless run as `tertulia worker`.
    queue_workers: int = 4
    # Separates installations (or test runs) that share one Redis.
    queue_name: str = "tertulia"
    queue_embedded: bool = True
    # Email channels' watchers (IMAP IDLE, or reading every poll_seconds) in every process that
    # consumes the queue; one per mailbox across processes (conversations/ingress/mailbox.py).
    email_watchers: bool = True
    # How often each watcher process says it is alive; the live ones split the mailboxes between them,
    # and one silent for two heartbeats is taken as gone (its mailboxes are taken over).
    email_watch_heartbeat_seconds: float = 30.0
    outbox_max_attempts: int = 8
    outbox_retry_base_seconds: float = 2.0
    # Namespaces realtime pub/sub channels when several installations share one Redis.
    realtime_prefix: str = "tertulia"
    # How often each web process re-derives activity statuses (expired tab leases, inactivity); 0: never.
    presence_sweep_seconds: float = 15.0
    upload_max_bytes: int = 20 * 1024 * 1024
    # Any request body, except on the routes that take files (which allow upload_max_bytes, or the
    # CSV import limit). Keep the reverse proxy's own limit at least as large as the biggest.
    request_max_bytes: int = 1024 * 1024
    # Rows per committed batch of a CSV import run by the queue: each batch commits with the job's
    # counters (what progress shows, and where a resumed import starts). Larger batches import a big
    # file faster; smaller ones show progress and hand a job back on shutdown sooner.
    import_batch_size: int = Field(default=2000, ge=1)
    # A segment filter's count or page is cancelled after this long (each statement), on both databases.
    filter_timeout_seconds: float = 10.0
    # The widget keeps a visitor token (renewed at each visit) and trades it for access tokens, the
    # only credential its requests and socket carry, valid for widget_access_token_seconds.
    widget_token_days: int = 365
    widget_access_token_seconds: int = 3600
    # Threads per process writing inbound messages on PostgreSQL (SQLite always uses one), and how
    # long a writer waits for more messages after a batch's first while they come in together (see
    # conversations/receiver.py): one thread and 15 ms halved the writers' CPU at 700 messages/s.
    inbound_writer_threads: int = 1
    inbound_writer_linger_ms: float = Field(default=15.0, ge=0, le=1000)
    # Public web-chat endpoints: per visitor for messages (over HTTP and sockets together), per
    # client address for new visitors, per channel for messages that open a new conversation.
    widget_messages_per_minute: int = 30
    widget_sessions_per_minute: int = 60
    widget_conversations_per_minute: int = 60
    # Open widget sockets at once: per visitor (their tabs), per client address.
    widget_sockets_per_visitor: int = 5
    widget_sockets_per_ip: int = 50
    # The event log keeps events this long once every registered consumer has processed them.
    event_retention_days: float = 30.0
    # Outgoing webhooks (docs/webhooks.md). Endpoints on private, loopback or link-local addresses
    # (and plain http, which is only allowed for them) are refused unless this is true.
    webhooks_allow_private: bool = False
    # Retries: base * 2^(n-1) seconds (capped at 3 hours) until retry_window_hours after the first attempt.
    webhooks_retry_base_seconds: float = 10.0
    webhooks_retry_window_hours: float = 24.0
    # An endpoint is disabled after this many failures in a row, or after failing for the whole window.
    webhooks_disable_after_failures: int = 100
    webhooks_timeout_seconds: float = 10.0
    # A PEM file of certificate authorities trusted for https endpoints besides the usual public
    # ones (certifi's bundle): endpoints inside a company whose certificates its own CA signed.
    webhooks_ca_file: str | None = None
    # Finished deliveries (and their attempts) are kept this long in the delivery log.
    webhooks_log_retention_days: float = 30.0
    # The assistant's language model (docs/assistant.md): a base URL on a private or local address (a
    # local Ollama or vLLM, and plain http to it) is allowed unless this is false.
    assistant_model_allow_private: bool = True
    log_level: str = "info"
    # "plain" (key=value lines) or "json" (one object per line, for log collectors).
    log_format: Literal["plain", "json"] = "plain"
    sql_echo: bool = Field(default=False)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'tertulia.db'}"

    def resolved_queue_url(self) -> str:
        return self.queue_url or f"sqlite:///{self.data_dir / 'queue.db'}"

    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret.key"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
