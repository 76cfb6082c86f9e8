"""config.toml is the packaged defaults written out, bad config is named precisely, and any config
written as TOML (as worker processes get theirs) reads back equal."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import Config, ConfigError, CustomField, CustomKind, dump_toml, load_config
from engine.policies.model import DEFAULT_POLICIES

ROOT = Path(__file__).parents[2]


def test_repository_config_equals_the_packaged_defaults(monkeypatch):
    for var in (
        "JOURNEY_DATA_DIR",
        "JOURNEY_STORE",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "KAFKA_BOOTSTRAP_SERVERS",
        "REDIS_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    assert load_config(ROOT / "config.toml") == Config()


def test_lifecycle_section_has_exactly_the_documented_keys():
    import tomllib

    keys = set(tomllib.loads((ROOT / "config.toml").read_text())["lifecycle"])
    assert keys == {
        "rules_version",
        "window_days",
        "loyal_min_purchases",
        "loyal_min_recent_purchases",
        "advocate_min_nps",
        "advocate_min_rating",
        "at_risk_min_days",
        "at_risk_gap_factor",
        "lapsed_days",
    }


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JOURNEY_STORE", "postgres")
    monkeypatch.setenv("PGPORT", "6543")
    c = load_config(ROOT / "config.toml")
    assert (c.data_path, c.store.backend, c.store.postgres.port) == (tmp_path, "postgres", 6543)


@pytest.mark.parametrize(
    "text, words",
    [
        ("[lifecycle]\nwindow_days = 0\n", "lifecycle.window_days"),
        ("[lifecycle]\nwindow_dayz = 3\n", "lifecycle.window_dayz"),
        ("[store]\nbackend = 'mysql'\n", "store.backend"),
        ("[[kinds]]\nname = 'nodot'\n", "kinds.0.name"),
        ("[lifecycle\n", "not valid TOML"),
    ],
)
def test_bad_config_is_named(tmp_path, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(path)


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
NAMES = st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True)


@st.composite
def configs(draw):
    kinds = tuple(
        CustomKind(
            name=f"{draw(NAMES)}.{draw(NAMES)}{i}",
            fields={
                draw(NAMES): CustomField(
                    type=draw(st.sampled_from(["string", "integer", "number", "boolean", "datetime"])),
                    required=draw(st.booleans()),
                    pii=draw(st.booleans()),
                )
                for _ in range(draw(st.integers(0, 3)))
            },
        )
        for i in range(draw(st.integers(0, 2)))
    )
    policies = draw(st.lists(st.sampled_from(DEFAULT_POLICIES), unique_by=lambda p: p.name, min_size=1))
    return Config.model_validate(
        {
            "data_dir": draw(TEXT),
            "lifecycle": {
                "rules_version": draw(TEXT),
                "window_days": draw(st.integers(1, 36_600)),
                "at_risk_gap_factor": draw(st.floats(0.01, 100)),
                "loyal_min_purchases": draw(st.integers(1, 50)),
            },
            "ingest": {"future_tolerance_hours": draw(st.floats(0, 8784)), "max_depth": draw(st.integers(1, 64))},
            "kafka": {"topic_prefix": draw(TEXT), "batch_seconds": draw(st.floats(0.001, 10))},
            "redis": {"prefix": draw(TEXT)},
            "privacy": {"pii_fields": draw(st.lists(TEXT, max_size=3))},
            "kinds": [k.model_dump() for k in kinds],
            "policies": [p.model_dump(exclude_none=True) for p in policies],
        }
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=configs())
def test_a_config_written_as_toml_reads_back_equal(config, tmp_path):
    path = tmp_path / "round-trip.toml"
    path.write_text(dump_toml(config), encoding="utf-8")
    assert load_config(path) == config
