"""Infrastructure settings: ingestion limits, the stores, Kafka, Redis, and which fields are
personal. The domain (aggregates, projections, policies) never reads them (engine.rules)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .vocabulary import Section


class IngestSettings(Section):
    future_tolerance_hours: float = Field(24.0, ge=0, le=8784)  # at most a year ahead
    max_touchpoint_bytes: int = Field(65536, gt=0)
    batch_size: int = Field(500, gt=0)
    # Limits on properties and traits (engine.limits); the store adds a few levels of its own,
    # and every level up to the cap stays storable, snapshottable and replayable.
    max_depth: int = Field(16, ge=1, le=64)
    max_string_chars: int = Field(16_384, ge=1)


class PostgresSettings(Section):
    dbname: str = "postgres"
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    schema_: str = Field("public", alias="schema")


class StoreSettings(Section):
    backend: Literal["sqlite", "postgres"] = "sqlite"
    # Relative to the data directory; the SQLite event store holds one application only.
    sqlite_file: str = "journey.db"
    keys_file: str = "keys.db"
    rejects_file: str = "rejects.db"  # the dead-letter table (engine.rejects)
    snapshot_interval: int = Field(200, gt=0)
    cache_customers: int = Field(20000, ge=0)
    # How long a write waits for a lock another writer holds before it fails (and, behind journey
    # serve, is answered 503 with Retry-After): seconds.
    lock_timeout_seconds: int = Field(30, ge=1, le=3600)
    postgres: PostgresSettings = PostgresSettings()


# A Kafka header on a record of <prefix>.touchpoints: b"id" when it is a duplicate by its event id
# alone, whatever its content (a Segment message from journey serve; engine.ingest's by_id).
KAFKA_DEDUP_HEADER = "journey-dedup"


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "journey"  # topics <prefix>.touchpoints, .dead-letter, .stage-changed, .actions
    partitions: int = Field(4, ge=1)  # of journey.touchpoints, keyed by customer id
    batch_size: int = Field(500, ge=1)  # touchpoints a worker takes per transaction
    batch_seconds: float = Field(0.05, gt=0)  # ...or whatever arrived within this time
    fetch_max_wait_ms: int = Field(100, ge=1)  # longest a worker's fetch waits on the broker for news


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "journey"  # every key this engine writes starts with it
    stream_maxlen: int = Field(100_000, ge=1)  # approximate length bound of the Redis streams


class PrivacySettings(Section):
    # Names (or glob patterns, any case) of traits and properties that identify a person, at any
    # depth; always encrypted per customer (engine.privacy).
    pii_fields: tuple[str, ...] = (
        "name",
        "first_name",
        "last_name",
        "full_name",
        "*email*",
        "*phone*",
        "*mobile*",
        "*address*",
        "street",
        "postcode",
        "zip",
        "zip_code",
        "birth_date",
        "*birthday*",
        "ssn",
        "*passport*",
        "card*",
        "iban",
    )
    # Free text may hold anything a person wrote (a name, a phone number...): sealed the same way.
    free_text_fields: tuple[str, ...] = (
        "*comment*",
        "message",
        "note",
        "notes",
        "description",
        "feedback",
        "free_text",
        "body",
    )


class HttpSettings(Section):
    """`journey serve`: the HTTP edge (api/)."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    # Write keys a client sends as the HTTP Basic user name (or writeKey in the body); also
    # JOURNEY_WRITE_KEYS (comma-separated). None configured: a random one is made in the data
    # directory on first start and printed, never an open endpoint.
    write_keys: tuple[str, ...] = ()
    # Bearer tokens of the read API; also JOURNEY_READ_TOKENS. None configured: one is made like
    # the write key. Only personal_read_tokens see personal traits (names, e-mail addresses...).
    read_tokens: tuple[str, ...] = ()
    personal_read_tokens: tuple[str, ...] = ()
    max_message_bytes: int = Field(32 * 1024, gt=0)  # Segment's limits
    max_batch_bytes: int = Field(500 * 1024, gt=0)
    # The channel of a message whose context says none (a server's): one of the catalog's channels.
    default_channel: str = "web"
    # Further `track` event names and the kinds they become, e.g. {"Webinar Attended" = "webinar.attended"}.
    events: dict[str, str] = {}
    # Where accepted touchpoints go before the answer: "store" (committed to the event store), or
    # "kafka" (acknowledged by every in-sync replica of <kafka.topic_prefix>.touchpoints, where
    # `journey worker`s ingest them: the scale-out path).
    sink: Literal["store", "kafka"] = "store"
    sink_timeout_seconds: float = Field(10, gt=0)  # longest a write waits for Kafka before a 503
    # Per write key: messages per second; per read token: requests per second (over it: 429 with
    # Retry-After). 0: no limit. rate_burst: how many may come at once (0: one second's worth).
    rate_limit: float = Field(0, ge=0)
    rate_burst: int = Field(0, ge=0)
    # Origins whose web pages may call the API from a browser (CORS), e.g. ["https://shop.example"].
    # None: no CORS headers, so browsers refuse cross-origin calls.
    cors_origins: tuple[str, ...] = ()
