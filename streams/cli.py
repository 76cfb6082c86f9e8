"""Streaming commands, added to `journey` through the `journey.commands` entry point, so the
engine's CLI never imports streams/: `journey worker`, `journey relay`, `journey readmodel`,
`journey customer ID --from-redis` and `journey demo --streaming`."""
from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
from click.core import ParameterSource
from redis.asyncio import Redis

from engine.cli import common, config_of, emit, open_engine, say
from engine.cli import customer as core_customer
from engine.cli import demo as core_demo

from . import readmodel
from .topology import Topology

RELAY_IDLE = 0.05   # seconds a separate relay waits, once caught up, before looking at the store again


def _config_path(kwargs: dict[str, object]) -> str | None:
    """The --config of a core command's options, which these commands take as they are."""
    path = kwargs.get("config_path")
    assert path is None or isinstance(path, str)   # click.Path gives a str
    return path


def with_engine_and_redis(config_path: str | None, work: Any) -> Any:
    """Run `await work(engine, config, redis)` with both opened, and closed after."""
    config = config_of(config_path)

    async def run() -> Any:
        redis = Redis.from_url(config.redis.url)
        try:
            with open_engine(config, create=True) as engine:
                return await work(engine, config, redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


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
    sys.argv = [sys.argv[0], "worker"]          # faust reads its own command line
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

        async def loop(step: Any) -> None:   # the feeds and the read model go at their own pace
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


@click.command("customer")
@click.option("--from-redis", is_flag=True, help="Read the Redis read model instead of the store.")
@click.pass_context
def customer(ctx: click.Context, from_redis: bool, **kwargs: object) -> None:
    """A customer's 360° view: stage and health with reasons, profile, timeline."""
    if not from_redis:
        return ctx.invoke(core_customer, **kwargs)
    config = config_of(_config_path(kwargs))

    async def run() -> dict | None:
        redis = Redis.from_url(config.redis.url)
        try:
            return await readmodel.lookup(redis, Topology.of(config), str(kwargs["customer_id"]))
        finally:
            await redis.aclose()

    row = asyncio.run(run())
    if row is None:
        raise click.ClickException(f"no customer {kwargs['customer_id']!r} in the Redis read model")
    emit(row) if kwargs.get("as_json") else say(row)


customer.params = [p for p in core_customer.params] + customer.params  # the core options, plus --from-redis


@click.command("demo")
@click.option("--streaming", is_flag=True,
              help="Run the whole pipeline on throwaway local servers (Tansu broker, redis-server, a worker).")
@click.pass_context
def demo(ctx: click.Context, streaming: bool, **kwargs: object) -> None:
    """Simulate, ingest and derive on the embedded store, then show the results."""
    if not streaming:
        return ctx.invoke(core_demo, **kwargs)
    from .demo import run_streaming_demo
    as_json = bool(kwargs.get("as_json"))
    given, seed = kwargs["customers"], kwargs["seed"]
    assert isinstance(given, int) and isinstance(seed, int)   # the core options' types (IntRange, int)
    customers = given if ctx.get_parameter_source("customers") is not ParameterSource.DEFAULT else 200
    result = run_streaming_demo(config_of(_config_path(kwargs)), customers, seed,
                                (lambda _: None) if as_json else say)
    if as_json:
        emit(result)
        return
    say()
    say(f"{result['kafka']:,} stage changes on Kafka and {result['redis']:,} on the Redis stream "
                  f"({result['actions_on_redis']:,} actions) in {result['seconds']} s; the latest:")
    for line in result["sample"]:
        say("  " + line)


demo.params = [p for p in core_demo.params] + demo.params
