"""Configuration: one pydantic model per section of config.toml (domain rules in engine.rules,
infrastructure settings in engine.settings), read from a file and the environment.

The model defaults *are* the packaged defaults, so `journey` runs with no file at all;
tests check that the repository's config.toml says the same thing.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError, model_validator

from .catalog import Catalog
from .ladders.check import problems
from .ladders.default import CUSTOMER
from .ladders.model import SHAPES, LadderDef
from .policies.model import DEFAULT_POLICIES, ContactRules, PolicySpec, default_policies
from .projections.lifecycle import Ladder, compiled, customer_ladder
from .rules import (
    CustomField,
    CustomKind,
    FieldType,
    IdentityRules,
    LifecycleRules,
    RfmSegment,
    ValueRules,
    ValueSegment,
)
from .settings import (
    HttpSettings,
    IngestSettings,
    KafkaSettings,
    PostgresSettings,
    PrivacySettings,
    RedisSettings,
    StoreSettings,
)
from .value.rfm import OTHER
from .vocabulary import Section

# Everything a config file holds, importable from here.
__all__ = [
    "Config",
    "ConfigError",
    "load_config",
    "dump_toml",
    "IdentityRules",
    "LifecycleRules",
    "RfmSegment",
    "ValueRules",
    "CustomKind",
    "CustomField",
    "FieldType",
    "IngestSettings",
    "KafkaSettings",
    "PostgresSettings",
    "PrivacySettings",
    "RedisSettings",
    "StoreSettings",
    "HttpSettings",
    "ContactRules",
    "PolicySpec",
]


class Config(Section):
    data_dir: str = "./var"
    lifecycle: LifecycleRules = LifecycleRules()
    identity: IdentityRules = IdentityRules()
    value: ValueRules = ValueRules()
    ingest: IngestSettings = IngestSettings()
    store: StoreSettings = StoreSettings()
    privacy: PrivacySettings = PrivacySettings()
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    http: HttpSettings = HttpSettings()
    kinds: tuple[CustomKind, ...] = ()
    # Where the modules of custom policy conditions (`python = "module:function"`) are found,
    # besides the installed packages: directories, relative ones from the working directory.
    python_path: tuple[str, ...] = (".",)
    contact: ContactRules = ContactRules()
    # Listing [[policies]] in a config file replaces this whole default set.
    policies: tuple[PolicySpec, ...] = DEFAULT_POLICIES
    # Ladders besides the customer ladder ([lifecycle]): employees, dealers... (docs/ladders.md)
    ladders: tuple[LadderDef, ...] = ()

    def compiled_ladders(self) -> tuple[Ladder, ...]:
        """The customer ladder, then the [[ladders]], compiled (once per process for equal ones)."""
        return (customer_ladder(self.lifecycle), *(compiled(d) for d in self.ladders))

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @model_validator(mode="before")
    @classmethod
    def _defaults_follow_segments(cls, data: Any) -> Any:
        """Without [[policies]], the default set's top-customer call names the best value segment
        [value] configures (or is left out when there is none)."""
        if not isinstance(data, dict) or "policies" in data:
            return data
        value = data.get("value")
        segments = value.value_segments if isinstance(value, ValueRules) else (value or {}).get("value_segments")
        if segments is None:
            return data
        first = segments[0] if segments else None
        top = None if first is None else first.name if isinstance(first, ValueSegment) else first.get("name")
        return data if top == "top" else {**data, "policies": default_policies(top)}

    @model_validator(mode="after")
    def _ladders(self) -> Config:
        """Ladders that can work: unique names, known kinds and properties, reachable stages; the
        policies' ladder triggers name a ladder and one of its stages or health values. Compiling
        them here makes every person's facts keep what they read from the start."""
        names = [d.name for d in self.ladders]
        if CUSTOMER in names:
            raise ValueError(
                f"ladder {CUSTOMER} is the customer ladder, which [lifecycle] declares: give yours another name"
            )
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"ladder {', '.join(twice)} is declared twice")
        kinds = Catalog(self.kinds).properties()
        found = [p for d in self.ladders for p in problems(d, kinds)]
        if found:
            raise ValueError("; ".join(found))
        by_name = {lad.name: lad for lad in self.compiled_ladders()}
        for spec in self.policies:
            t = spec.trigger
            if t.ladder == CUSTOMER:
                continue
            lad = by_name.get(t.ladder)
            if lad is None:
                raise ValueError(f"policy {spec.name}: no ladder {t.ladder!r}; the ladders: {', '.join(by_name)}")
            for value, known, what in ((t.stage, lad.stages, "stage"), (t.health, lad.healths, "health")):
                if value is not None and value not in known:
                    raise ValueError(
                        f"policy {spec.name}: ladder {lad.name} has no {what} {value!r}; "
                        f"its {what} values: {', '.join(known)}"
                    )
        return self

    @model_validator(mode="after")
    def _value_names(self) -> Config:
        """A policy's value conditions name segments [value] has (a typo would never hold)."""
        v = self.value
        value_names = [s.name for s in v.value_segments] + [v.rest_segment]
        rfm_names = [s.name for s in v.rfm_segments] + [OTHER]
        for spec in self.policies:
            c = spec.conditions
            for field, names, known in (
                ("trigger segment", (spec.trigger.segment,) if spec.trigger.segment else (), value_names),
                ("value_segment", c.value_segment, value_names),
                ("not_value_segment", c.not_value_segment, value_names),
                ("rfm_segment", c.rfm_segment, rfm_names),
            ):
                unknown = [n for n in names or () if n not in known]
                if unknown:
                    raise ValueError(
                        f"policy {spec.name}: {field} {', '.join(map(repr, unknown))} is no segment of [value]; "
                        f"the segments: {', '.join(known)}"
                    )
        return self


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
    rates_file = raw.get("value", {}).get("rates_file") if isinstance(raw.get("value"), dict) else None
    if isinstance(rates_file, str) and path is not None:  # relative to the config file, as its reader expects
        raw["value"]["rates_file"] = str(Path(path).parent / rates_file)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        lines = []
        errors = e.errors()
        for err in errors:
            if err["type"] == "too_short" and any(
                o is not err and tuple(o["loc"][: len(err["loc"])]) == tuple(err["loc"]) for o in errors
            ):
                continue  # "too few after validation": its items' own errors say why
            where = ".".join(map(str, err["loc"]))
            var = from_env.get(where)
            msg = err["msg"].removeprefix("Value error, ")  # pydantic's wording, not the reader's
            if err["loc"][:1] in (("ladders",), ("policies",)):
                where, msg = _named(err, raw), _reworded(err, msg)
            lines.append(
                (f"  {where}: {msg}" if where else f"  {msg}")
                + (f" (set by the environment variable {var})" if var else "")
            )
        raise ConfigError(f"config file {path or '(defaults)'} is invalid:\n" + "\n".join(lines)) from None


def _named(err: Any, raw: dict) -> str:
    """An error's place in [[ladders]] or [[policies]] by names, not indexes: 'ladder members,
    stage devotee, when.all.1.count.at_lest'."""
    loc, out, node = list(err["loc"]), [], raw  # type: list[Any], list[str], Any
    for i, part in enumerate(loc):
        before = loc[i - 1] if i else None
        if part in SHAPES and (before == "when" or (isinstance(before, int) and loc[i - 2] in ("all", "any"))):
            continue  # the name pydantic gives the condition's shape, not a key
        item = node[part] if isinstance(node, dict | list) and _has(node, part) else None
        if isinstance(part, int) and i >= 1 and loc[i - 1] in ("ladders", "stages", "health", "policies"):
            label = {"ladders": "ladder", "stages": "stage", "health": "health rule", "policies": "policy"}[loc[i - 1]]
            name = item.get("name") if isinstance(item, dict) else None
            out[-1] = f"{label} {name}" if name else f"{label} #{part + 1}"
        else:
            out.append(str(part))
        node = item
    return ", ".join(out[:2] if len(out) > 2 and out[1].startswith(("stage", "health")) else out[:1]) + (
        ", " + ".".join(out[2:] if len(out) > 2 and out[1].startswith(("stage", "health")) else out[1:])
        if len(out) > 1
        else ""
    )


def _has(node: Any, part: Any) -> bool:
    return (isinstance(node, dict) and part in node) or (
        isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
    )


def _reworded(err: Any, msg: str) -> str:
    """pydantic's words where a ladder's author needs others."""
    kind, key = err["type"], err["loc"][-1]
    if kind == "extra_forbidden":
        return f"{key!r} is not a key here (docs/ladders.md lists each condition's keys)"
    if kind == "string_pattern_mismatch":
        return "a name is lowercase letters, digits and _, starting with a letter"
    if kind == "too_short" and key == "stages":
        return "a ladder needs at least two stages: where everyone starts, and one to reach"
    if kind == "model_type" and key == "applies_to":
        return 'applies_to is a table: { kinds = [...] }, { source = "..." } or { trait = "...", equals = ... }'
    return msg


def _apply_env(raw: dict) -> dict[str, str]:
    """Put the environment's overrides into the raw config; returns which setting came from which
    variable, so that an invalid one is named by the variable that set it."""
    used: dict[str, str] = {}
    for var, section, key in (
        ("JOURNEY_DATA_DIR", None, "data_dir"),
        ("KAFKA_BOOTSTRAP_SERVERS", "kafka", "bootstrap_servers"),
        ("REDIS_URL", "redis", "url"),
        ("JOURNEY_STORE", "store", "backend"),
    ):
        if os.environ.get(var):
            (raw.setdefault(section, {}) if section else raw)[key] = os.environ[var]
            used[f"{section}.{key}" if section else key] = var
    pg = raw.setdefault("store", {}).setdefault("postgres", {})
    for var, key in (
        ("PGHOST", "host"),
        ("PGPORT", "port"),
        ("PGUSER", "user"),
        ("PGPASSWORD", "password"),
        ("PGDATABASE", "dbname"),
    ):
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
        if isinstance(v, str):  # a JSON string is a TOML basic string, once DEL is escaped too
            return orjson.dumps(v).decode().replace("\x7f", "\\u007f")
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items() if x is not None) + " }"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"no TOML value for {v!r}")

    def section(name: str, data: dict) -> None:
        scalars = {
            k: v
            for k, v in data.items()
            if v is not None
            and not isinstance(v, dict)
            and not (isinstance(v, (list, tuple)) and v and isinstance(v[0], dict) and not name)
        }
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
