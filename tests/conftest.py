"""Shared fixtures: a fixed clock, and an engine on SQLite (a temp dir) or PostgreSQL (own schema).

PostgreSQL comes from PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE when set, else the
local server at 127.0.0.1:5432 (database `test`). Without a server the PostgreSQL tests
skip on a developer machine; on CI (CI=true) they fail instead, so they can't silently vanish.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.clock import FixedClock
from engine.config import Config, PostgresSettings, StoreSettings
from engine.service import Engine

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def pg_settings(schema: str) -> PostgresSettings:
    return PostgresSettings(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "postgres"),
        password=os.environ.get("PGPASSWORD", ""),
        dbname=os.environ.get("PGDATABASE", "test"),
        schema=schema,
    )


def pg_available() -> str | None:
    import psycopg

    s = pg_settings("public")
    try:
        psycopg.connect(
            host=s.host, port=s.port, user=s.user, password=s.password or None, dbname=s.dbname, connect_timeout=3
        ).close()
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "no server here"
        return str(e)


LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked by its folder: unit (no I/O), integration (stores, broker, Redis), e2e
    (CLI processes, the browser); `pytest -m unit` runs the fast ones alone."""
    for item in items:
        layer = next((p for p in item.path.parts if p in LAYERS), None)
        if layer:
            item.add_marker(layer)


REPO = Path(__file__).parents[1]


@pytest.fixture(scope="session", autouse=True)
def leaves_the_repository_clean():
    """A test run leaves no folders in the repository (faust used to leave its data directories,
    "journey-data/" and "g<hex>-data/", wherever a worker started)."""
    before = {p.name for p in REPO.iterdir()}
    yield
    stray = sorted({p.name for p in REPO.iterdir()} - before - {".pytest_cache", ".hypothesis"})
    assert not stray, f"the test run left these in the repository: {stray}"


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def sqlite_config(tmp_path) -> Config:
    return Config(data_dir=str(tmp_path / "var"))


@pytest.fixture
def pg_config(tmp_path):
    problem = pg_available()
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required on CI but not reachable: {problem}")
        pytest.skip(f"no PostgreSQL server: {problem}")
    schema = f"journey_test_{uuid.uuid4().hex[:12]}"
    config = Config(
        data_dir=str(tmp_path / "var"), store=StoreSettings(backend="postgres", postgres=pg_settings(schema))
    )
    yield config
    import psycopg

    s = config.store.postgres
    with psycopg.connect(
        host=s.host, port=s.port, user=s.user, password=s.password or None, dbname=s.dbname, autocommit=True
    ) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgres"])
def config(request, tmp_path) -> Config:
    """Run a test on both stores."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_config")
    return request.getfixturevalue("pg_config")


@pytest.fixture
def engine(config, clock):
    with Engine(config, clock) as e:
        yield e


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """KAFKA_BOOTSTRAP_SERVERS when given, else a throwaway Tansu broker for the session."""
    from streams.local import env_or, tansu_broker

    if env_or("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    with tansu_broker() as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url():
    """REDIS_URL when given, else a throwaway redis-server for the session."""
    from streams.local import env_or, redis_server

    if env_or("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    with redis_server() as url:
        yield url


@pytest.fixture
def stream_config(tmp_path, kafka_bootstrap, redis_url) -> Config:
    """A config whose topics and Redis keys belong to this test alone; its Redis keys are removed after."""
    from engine.config import KafkaSettings, RedisSettings

    tag = uuid.uuid4().hex[:10]
    config = Config(
        data_dir=str(tmp_path / "var"),
        kafka=KafkaSettings(
            bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{tag}", partitions=3, batch_seconds=0.05
        ),
        redis=RedisSettings(url=redis_url, prefix=f"test:{tag}"),
    )
    yield config
    import redis

    r = redis.Redis.from_url(redis_url)
    for key in r.scan_iter(match=f"test:{tag}:*"):
        r.delete(key)
    r.close()
