"""config.toml is the packaged defaults written out, and bad config is named precisely."""
from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import Config, ConfigError, load_config

ROOT = Path(__file__).parent.parent


def test_repository_config_equals_the_packaged_defaults(monkeypatch):
    for var in ("JOURNEY_DATA_DIR", "JOURNEY_STORE", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE",
                "KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    assert load_config(ROOT / "config.toml") == Config()


def test_lifecycle_section_has_exactly_the_documented_keys():
    import tomllib
    keys = set(tomllib.loads((ROOT / "config.toml").read_text())["lifecycle"])
    assert keys == {"rules_version", "window_days", "loyal_min_purchases", "loyal_min_recent_purchases",
                    "advocate_min_nps", "advocate_min_rating", "at_risk_min_days", "at_risk_gap_factor",
                    "lapsed_days"}


def test_environment_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("JOURNEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JOURNEY_STORE", "postgres")
    monkeypatch.setenv("PGPORT", "6543")
    c = load_config(ROOT / "config.toml")
    assert (c.data_path, c.store.backend, c.store.postgres.port) == (tmp_path, "postgres", 6543)


@pytest.mark.parametrize("text, words", [
    ("[lifecycle]\nwindow_days = 0\n", "lifecycle.window_days"),
    ("[lifecycle]\nwindow_dayz = 3\n", "lifecycle.window_dayz"),
    ("[store]\nbackend = 'mysql'\n", "store.backend"),
    ("[[kinds]]\nname = 'nodot'\n", "kinds.0.name"),
    ("[lifecycle\n", "not valid TOML"),
])
def test_bad_config_is_named(tmp_path, text, words):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        load_config(path)
