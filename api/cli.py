"""`journey serve`, added to `journey` through the journey.commands entry point."""

from __future__ import annotations

import click

from engine.cli import common, config_of, emit, err, say
from engine.terminal import line

from . import auth


@click.command()
@click.option("--host", help="Address to listen on [default: http.host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port [default: http.port, 8080].")
@common
def serve(host: str | None, port: int | None, config_path: str | None, as_json: bool) -> None:
    """Serve Segment's tracking API (POST /v1/batch, /v1/track...) in front of the engine; docs at /docs."""
    import uvicorn

    from .app import build_app

    config = config_of(config_path)
    keys, made = auth.write_keys(config)
    if made is not None:
        err.print(line(f"no write key configured (http.write_keys, JOURNEY_WRITE_KEYS): using {keys[0]} (from {made})"))
    tokens, made = auth.read_tokens(config)
    if made is not None:
        err.print(
            line(f"no read token configured (http.read_tokens, JOURNEY_READ_TOKENS): using {tokens[0]} (from {made})")
        )
    host, port = host or config.http.host, port if port is not None else config.http.port
    if config.http.sink == "kafka":  # said here, not as a traceback of the app's startup
        import asyncio

        from .sink import KafkaSink, SinkUnavailable

        async def probe() -> None:
            sink = KafkaSink(config.kafka, config.http.sink_timeout_seconds)
            await sink.start()
            await sink.stop()

        try:
            asyncio.run(probe())
        except SinkUnavailable as e:
            raise click.ClickException(f"[http] sink is kafka, but {e}: start one, or set the sink to store") from None
    if as_json:
        emit({"url": f"http://{host}:{port}", "docs": "/docs", "openapi": "/openapi.json", "sink": config.http.sink})
    else:
        to = "the store" if config.http.sink == "store" else f"Kafka ({config.kafka.topic_prefix}.touchpoints)"
        say(f"serving on http://{host}:{port} (docs at /docs, OpenAPI at /openapi.json); writes go to {to}")
    uvicorn.run(build_app(config, keys, tokens), host=host, port=port, log_level="warning", access_log=False)
