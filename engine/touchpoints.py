"""The touchpoint envelope and its validation.

A record is accepted only as a whole; every rejection names the record number, the
field and the reason, and never stops the records around it from being ingested.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from .catalog import Catalog, Channel, Props, json_ready
from .identity import Guards, anonymous_home
from .limits import (
    DuplicateKey,
    Problem,
    check_content,
    exact_parse,
    id_ok,
    id_problem,
    parse_time,
    raw_keys,
    utf8_problem,
)


class Fields(BaseModel):
    """The envelope's fields and types. The hot path validates with these alone (one model per
    kind) and checks the ids in line (engine.limits.id_ok); a record that fails is validated again
    by Envelope, whose validators word the reason."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(strict=True)
    # A touchpoint needs a customer id, an anonymous id, or both (Envelope says so when neither).
    customer_id: str | None = Field(None, strict=True)
    kind: str = Field(min_length=1, strict=True)
    occurred_at: datetime
    channel: Channel
    source: str = Field(strict=True)
    properties: dict[str, Any] = {}
    traits: dict[str, Any] | None = None
    # A browser's or an app's id of the visitor, when the touchpoint has one (identity resolution
    # links it to the customer id: docs/identity.md).
    anonymous_id: str | None = Field(None, strict=True)

    @field_validator("occurred_at", mode="plain")
    @classmethod
    def iso_string(cls, v: Any) -> datetime:
        # Our own parser: it says what is wrong (a leap second, an offset out of range, a year
        # out of range...), and a bare number is not silently read as Unix time. In UTC.
        if not isinstance(v, str):
            raise ValueError("must be an ISO 8601 string with an offset, e.g. 2026-03-01T12:00:00+01:00")
        return parse_time(v)


class Envelope(Fields):
    @field_validator("event_id", "source")
    @classmethod
    def an_id(cls, v: str) -> str:
        problem = id_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("anonymous_id")
    @classmethod
    def an_optional_id(cls, v: str | None) -> str | None:
        return v if v is None else cls.an_id(v)

    @field_validator("customer_id")
    @classmethod
    def pseudonymous(cls, v: str | None) -> str | None:
        if v is None:
            return v
        cls.an_id(v)
        # The id ends up in aggregate ids and feeds, which are never encrypted.
        if "@" in v:
            raise ValueError(
                "looks like an email address; use the pseudonymous customer id "
                "(personal data belongs in traits, which are encrypted)"
            )
        return v


@dataclass(slots=True)  # not frozen: a frozen dataclass costs twice as much to build
class Touchpoint:
    """A validated touchpoint, times in UTC; `digest` identifies its content for idempotency."""

    event_id: str
    # Whose touchpoint it is: the customer id, or for an anonymous visitor its home, `anon@` and a
    # hash of the anonymous id (engine.identity.anonymous_home: `@` is never in a customer id).
    customer_id: str
    kind: str
    occurred_at: datetime
    channel: str
    source: str
    properties: dict[str, Any]
    traits: dict[str, Any] | None
    digest: str
    occurred: str  # occurred_at in its stored form (engine.clock.iso)
    anonymous_id: str | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    record: int  # 1-based record (line) number in the input
    field: str  # dotted path of the offending field, or "" for the whole record
    reason: str
    event_id: str | None = None
    raw: bytes | None = None

    def message(self) -> str:
        where = f"field {self.field!r}: " if self.field else ""
        return f"record {self.record}: {where}{self.reason}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "field": self.field,
            "reason": self.reason,
            "event_id": self.event_id,
            "message": self.message(),
        }


def digest_of(tp: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(tp, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class Validator:
    def __init__(
        self,
        catalog: Catalog,
        future_tolerance: timedelta,
        max_bytes: int,
        max_depth: int = 16,
        max_string_chars: int = 16_384,
        guards: Guards = Guards(),
    ):
        self.catalog = catalog
        self.guards = guards  # identity: placeholder values that are nobody's customer id
        self.future_tolerance = future_tolerance
        self.max_bytes = max_bytes
        self.max_depth = max_depth
        self.max_string_chars = max_string_chars
        # One model per kind, the envelope with that kind's properties: a valid touchpoint is
        # checked in a single pydantic call (two calls and a model in between cost twice as much).
        self.models = {
            kind: create_model(
                f"Touchpoint_{kind}",
                __base__=Fields,
                properties=(schema, Field(default_factory=dict, validate_default=True)),
            )
            for kind, schema in catalog.schemas.items()
        }

    def parse_line(self, raw: bytes | str, record: int, now: datetime) -> Touchpoint | Rejection:
        if isinstance(raw, str):
            try:
                data = raw.encode()
            except UnicodeEncodeError as e:
                return Rejection(
                    record,
                    "",
                    f"is not valid Unicode text: {e.reason} at character {e.start}",
                    raw=raw.encode("utf-8", "replace"),
                )
        else:
            data = raw
        if len(data) > self.max_bytes:
            return Rejection(
                record,
                "",
                f"touchpoint is {len(data):,} bytes; the limit is {self.max_bytes:,} (ingest.max_touchpoint_bytes)",
                raw=data,
            )
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            where = re.sub(r": line 1 column (\d+) \(char \d+\)$", r" (at character \1)", str(e))  # one line a record
            return Rejection(record, "", utf8_problem(data) or f"not valid JSON: {where}", raw=data)
        return self.validate(obj, record, now, raw=data)

    def validate(self, obj: Any, record: int, now: datetime, raw: bytes | None = None) -> Touchpoint | Rejection:
        if not isinstance(obj, dict):
            return Rejection(record, "", f"a touchpoint is a JSON object, not {json_type(obj)}", raw=raw)
        event_id = obj.get("event_id") if isinstance(obj.get("event_id"), str) else None
        try:
            keys, widened = self._check_content(obj)
            if raw is None:
                try:
                    size = len(orjson.dumps(obj))
                except orjson.JSONEncodeError:  # a lone surrogate (a Python str may hold one): say where
                    return self._reject(
                        obj, record, None, None, otherwise="holds a lone surrogate: not valid Unicode text"
                    )
                if size > self.max_bytes:
                    return Rejection(
                        record,
                        "",
                        f"touchpoint is larger than {self.max_bytes:,} bytes (ingest.max_touchpoint_bytes)",
                        event_id,
                    )
            elif widened or raw_keys(raw) != keys:
                # The fast parser keeps the last of two equal keys and turns integers beyond 64
                # bits into floats: parse again exactly, and check what that gives.
                exact = exact_parse(raw)
                self._check_content(exact)
                obj = exact
        except Problem as p:
            return Rejection(record, p.field, p.reason, event_id, raw)
        except DuplicateKey as e:
            return Rejection(record, "", str(e), event_id, raw)
        kind = obj.get("kind")
        model = self.models.get(kind) if isinstance(kind, str) else None
        try:
            env = model.model_validate(obj) if model is not None else None
        except ValidationError:
            env = None
        if (
            env is None
            or not (id_ok(env.event_id) and id_ok(env.source))
            or (env.customer_id is not None and not (id_ok(env.customer_id) and "@" not in env.customer_id))
            or (env.anonymous_id is not None and not id_ok(env.anonymous_id))
            or (env.customer_id is None and env.anonymous_id is None)
        ):  # the envelope first, then the properties: the first problem is named
            return self._reject(obj, record, event_id, raw)
        home = env.customer_id
        if home is not None and (why := self.guards.refusal(home)) is not None:
            # "guest" or "0" for every visitor would make one customer of strangers: with an
            # anonymous id the touchpoint is the visitor's, else it is nobody's
            if env.anonymous_id is None:
                return Rejection(record, "customer_id", f"{why}: send the customer's own id", event_id, raw)
            home = None
        if home is None:
            assert env.anonymous_id is not None  # checked above
            if (why := self.guards.refusal(env.anonymous_id)) is not None:
                return Rejection(record, "anonymous_id", f"{why}: send the visitor's own id", event_id, raw)
            home = anonymous_home(env.anonymous_id)
        zone = (env.traits or {}).get("timezone")
        if zone is not None and not (isinstance(zone, str) and zone_ok(zone)):
            return Rejection(
                record,
                "traits.timezone",
                "is not an IANA time zone (e.g. Europe/Berlin, America/New_York, UTC): quiet hours "
                "are kept in the customer's time zone",
                event_id,
                raw,
            )
        # The kind's model (self.models) holds its properties as the kind's schema, not a dict.
        props = cast(Props, env.properties)
        occurred = env.occurred_at  # in UTC
        if occurred > now + self.future_tolerance:
            hours = self.future_tolerance.total_seconds() / 3600
            return Rejection(
                record,
                "occurred_at",
                f"is more than {hours:g} hours ahead of now (ingest.future_tolerance_hours)",
                event_id,
                raw,
            )
        properties = {k: json_ready(v) for k, v in props.model_dump(exclude_none=True).items()}
        stored = occurred.isoformat(timespec="microseconds")  # engine.clock.iso, already in UTC
        body = {
            "event_id": env.event_id,
            "customer_id": env.customer_id,
            "kind": env.kind,
            "occurred_at": stored,
            "channel": env.channel,
            "source": env.source,
            "properties": properties,
            "traits": env.traits,
        }
        if env.anonymous_id is not None:  # only when there is one: older touchpoints keep their digest
            body["anonymous_id"] = env.anonymous_id
        return Touchpoint(
            env.event_id,
            home,
            env.kind,
            occurred,
            env.channel,
            env.source,
            properties,
            env.traits,
            digest_of(body),
            stored,
            env.anonymous_id,
        )

    def _check_content(self, obj: dict[str, Any]) -> tuple[int, bool]:
        """The limits on properties and traits (engine.limits): the keys counted, and whether a
        float may be a widened integer."""
        keys, widened = len(obj), False
        for name in ("properties", "traits"):
            value = obj.get(name)
            if isinstance(value, (dict, list)):
                n, w = check_content(value, (name,), self.max_depth, self.max_string_chars)
                keys, widened = keys + n, widened or w
        return keys, widened

    def _reject(
        self, obj: dict[str, Any], record: int, event_id: str | None, raw: bytes | None, otherwise: str | None = None
    ) -> Rejection:
        """Every problem of a record, in one rejection: the envelope's, then the kind's or its
        properties' (so that one round of fixes is enough)."""
        found: list[tuple[str, str]] = []
        try:
            Envelope.model_validate(obj)
        except ValidationError as e:
            found += _problems(e)
        if obj.get("customer_id") is None and obj.get("anonymous_id") is None:
            found.insert(0, ("customer_id", "is required: a touchpoint needs a customer_id, an anonymous_id, or both"))
        kind, props = obj.get("kind"), obj.get("properties", {})
        if isinstance(kind, str) and not any(where == "kind" for where, _ in found):
            schema = self.catalog.schema(kind)
            if schema is None:
                # The one value repeated in a reason: a kind names a schema, and says which to declare.
                found.append(("kind", f"unknown kind {kind!r}; declare custom kinds under [[kinds]] in config.toml"))
            elif isinstance(props, dict):
                try:
                    schema.model_validate(props)
                except ValidationError as e:
                    found += _problems(e, prefix="properties")
        if not found and otherwise:
            found.append(("", otherwise))
        if not found:
            raise AssertionError(f"record {record} is valid after all")
        return _rejection(found, record, event_id, raw)


@lru_cache(maxsize=1024)
def zone_ok(name: str) -> bool:
    """Whether a `timezone` trait names a time zone the contact rules can use."""
    if not 0 < len(name) <= 64 or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _problems(e: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """(where, what) of each error, in the touchpoint format's words."""
    return [
        (".".join(str(p) for p in ((prefix,) if prefix else ()) + tuple(err["loc"])), _words(err)) for err in e.errors()
    ]


def _rejection(found: list[tuple[str, str]], record: int, event_id: str | None, raw: bytes | None) -> Rejection:
    """The first problem is the rejection's field and reason; every other one is named after it."""
    loc, msg = found[0]
    if len(found) > 1:
        msg += "; also " + "; ".join(f"{where or 'the record'} {what}" for where, what in found[1:])
    return Rejection(record, loc, msg, event_id, raw)


JSON_TYPES = {
    "dict": "an object",
    "list": "an array",
    "str": "a string",
    "int": "a number",
    "float": "a number",
    "bool": "true or false",
    "NoneType": "null",
}


def json_type(value: Any) -> str:
    """What a decoded JSON value was, in JSON's words."""
    return JSON_TYPES.get(type(value).__name__, type(value).__name__)


def _words(err: Any) -> str:
    """A pydantic error in the words of the touchpoint format."""
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a field of the touchpoint envelope (put it under properties or traits)"
    if kind == "value_error":
        return err["msg"].removeprefix("Value error, ")  # our own validators' words, as they are
    if kind in ("float_type", "int_type", "int_from_float", "bool_type", "string_type", "dict_type"):
        wanted = {
            "float_type": "a number",
            "int_type": "a whole number",
            "int_from_float": "a whole number",
            "bool_type": "true or false",
            "string_type": "a string",
            "dict_type": "an object",
        }[kind]
        return f"must be {wanted}, not {json_type(given)}" + (
            # The value is not repeated: errors never echo what may be personal data.
            " (send the number without quotes)" if isinstance(given, str) and wanted.endswith("number") else ""
        )
    if kind in ("less_than_equal", "greater_than_equal"):
        bound = ctx.get("le", ctx.get("ge"))
        shown = f"{bound:,.0f}" if isinstance(bound, float) and bound.is_integer() else f"{bound:,}"
        return f"must be at {'most' if kind == 'less_than_equal' else 'least'} {shown}"
    if kind == "literal_error":
        return f"is not one of: {ctx.get('expected', '').replace(' or ', ', ')}"
    if kind == "string_too_short":
        return "must not be empty"
    return err["msg"]
