"""Configuration: one pydantic model per section of config.toml.

The model defaults *are* the packaged defaults, so `journey` runs with no file at all;
tests check that the repository's config.toml says the same thing.
"""
from __future__ import annotations

import os
import tomllib
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from .limits import MAX_SPAN_DAYS
from .policies.model import DEFAULT_POLICIES, ContactRules, PolicySpec
from .vocabulary import Section


class LifecycleRules(Section):
    rules_version: str = "2026-11-v1"
    # Spans stay below a century: added to any accepted time they stay far from year 9999.
    window_days: int = Field(365, gt=0, le=MAX_SPAN_DAYS)
    loyal_min_purchases: int = Field(4, ge=1)
    loyal_min_recent_purchases: int = Field(2, ge=0)
    advocate_min_nps: int = Field(9, ge=0, le=10)
    advocate_min_rating: int = Field(4, ge=1, le=5)
    at_risk_min_days: int = Field(60, gt=0, le=MAX_SPAN_DAYS)
    at_risk_gap_factor: float = Field(2.0, gt=0, le=100)
    lapsed_days: int = Field(365, gt=0, le=MAX_SPAN_DAYS)

    # The same spans as timedeltas, built once (the lifecycle walk adds them all the time).
    @cached_property
    def window(self) -> timedelta:
        return timedelta(days=self.window_days)

    @cached_property
    def lapsed(self) -> timedelta:
        return timedelta(days=self.lapsed_days)


class IngestSettings(Section):
    future_tolerance_hours: float = Field(24.0, ge=0, le=8784)     # at most a year ahead
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
    snapshot_interval: int = Field(200, gt=0)
    cache_customers: int = Field(20000, ge=0)
    postgres: PostgresSettings = PostgresSettings()


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "journey"             # topics <prefix>.touchpoints, .dead-letter, .stage-changed, .actions
    partitions: int = Field(4, ge=1)          # of journey.touchpoints, keyed by customer id
    batch_size: int = Field(500, ge=1)        # touchpoints a worker takes per transaction
    batch_seconds: float = Field(0.05, gt=0)  # ...or whatever arrived within this time
    fetch_max_wait_ms: int = Field(100, ge=1)  # longest a worker's fetch waits on the broker for news


class RedisSettings(Section):
    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "journey"                   # every key this engine writes starts with it
    stream_maxlen: int = Field(100_000, ge=1)  # approximate length bound of the Redis streams


class PrivacySettings(Section):
    # Names (or glob patterns, any case) of traits and properties that identify a person, at any
    # depth; always encrypted per customer (engine.privacy).
    pii_fields: tuple[str, ...] = (
        "name", "first_name", "last_name", "full_name", "*email*", "*phone*", "*mobile*", "*address*",
        "street", "postcode", "zip", "zip_code", "birth_date", "*birthday*", "ssn", "*passport*",
        "card*", "iban",
    )
    # Free text may hold anything a person wrote (a name, a phone number...): sealed the same way.
    free_text_fields: tuple[str, ...] = (
        "*comment*", "message", "note", "notes", "description", "feedback", "free_text", "body",
    )


FieldType = Literal["string", "integer", "number", "boolean", "datetime"]


class CustomField(Section):
    type: FieldType = "string"
    required: bool = True
    pii: bool = False          # personal: sealed per customer
    free_text: bool = False    # free text, which may hold anything personal: sealed as well


class CustomKind(Section):
    name: str
    fields: dict[str, CustomField] = {}

    @field_validator("name")
    @classmethod
    def dotted(cls, v: str) -> str:
        if "." not in v or v.strip() != v or not v or not v.isprintable() or len(v) > 100:
            raise ValueError("a kind name looks like 'area.verb', e.g. 'webinar.attended'")
        return v


class Config(Section):
    data_dir: str = "./var"
    lifecycle: LifecycleRules = LifecycleRules()
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    privacy: PrivacySettings = PrivacySettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    kinds: tuple[CustomKind, ...] = ()
    contact: ContactRules = ContactRules()
    # Listing [[policies]] in a config file replaces this whole default set.
    policies: tuple[PolicySpec, ...] = DEFAULT_POLICIES

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


class ConfigError(Exception):
    pass


def load_config(path: str | Path | None = None) -> Config:
    """Read `path`, else ./config.toml, else the packaged defaults.

    Environment overrides: JOURNEY_DATA_DIR (data directory), JOURNEY_STORE
    (sqlite|postgres), the libpq variables PGHOST, PGPORT, PGUSER, PGPASSWORD,
    PGDATABASE for the PostgreSQL store, KAFKA_BOOTSTRAP_SERVERS and REDIS_URL.
    """
    if path is None and Path("config.toml").is_file():
        path = "config.toml"
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} not found") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {path} is not valid TOML: {e}") from None
    from_env = _apply_env(raw)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            where = ".".join(map(str, err["loc"]))
            var = from_env.get(where)
            lines.append(f"  {where}: {err['msg']}" + (f" (set by the environment variable {var})" if var else ""))
        raise ConfigError(f"config file {path or '(defaults)'} is invalid:\n" + "\n".join(lines)) from None


def _apply_env(raw: dict) -> dict[str, str]:
    """Put the environment's overrides into the raw config; returns which setting came from which
    variable, so that an invalid one is named by the variable that set it."""
    used: dict[str, str] = {}
    for var, section, key in (("JOURNEY_DATA_DIR", None, "data_dir"), ("KAFKA_BOOTSTRAP_SERVERS", "kafka",
                              "bootstrap_servers"), ("REDIS_URL", "redis", "url"), ("JOURNEY_STORE", "store", "backend")):
        if os.environ.get(var):
            (raw.setdefault(section, {}) if section else raw)[key] = os.environ[var]
            used[f"{section}.{key}" if section else key] = var
    pg = raw.setdefault("store", {}).setdefault("postgres", {})
    for var, key in (("PGHOST", "host"), ("PGPORT", "port"), ("PGUSER", "user"),
                     ("PGPASSWORD", "password"), ("PGDATABASE", "dbname")):
        if os.environ.get(var):
            pg[key] = os.environ[var]
            used[f"store.postgres.{key}"] = var
    return used


def dump_toml(config: Config) -> str:
    """The config as TOML that load_config reads back to an equal Config (for worker processes)."""
    lines: list[str] = []

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + " }"
        return "[" + ", ".join(value(x) for x in v) + "]"  # type: ignore[union-attr]

    def section(name: str, data: dict) -> None:
        scalars = {k: v for k, v in data.items() if v is not None and not isinstance(v, dict)
                   and not (isinstance(v, (list, tuple)) and v and isinstance(v[0], dict) and not name)}
        if name:
            lines.append(f"[{name}]")
        lines.extend(f"{k} = {value(v)}" for k, v in scalars.items())
        for k, v in data.items():
            if isinstance(v, dict):
                section(f"{name}.{k}" if name else k, v)
        if not name:
            for k, v in data.items():
                if isinstance(v, (list, tuple)) and v and isinstance(v[0], dict):
                    for item in v:
                        lines.append(f"[[{k}]]")
                        lines.extend(f"{ik} = {value(iv)}" for ik, iv in item.items() if iv is not None)

    section("", config.model_dump(by_alias=True, mode="json"))
    return "\n".join(lines) + "\n"
