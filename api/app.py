"""The HTTP application: Segment's tracking API writing touchpoints into the engine.

Each request's messages become envelopes (api.segment), the engine validates and ingests them in
one transaction (one writer at a time: the engine is synchronous, so it works in a thread), and
the answer says what was accepted, what was a duplicate, and why each other message was refused.
A 200 means committed to the store.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin

from engine.config import Config
from engine.service import Engine

from . import auth
from .bodies import BoundedBodies
from .segment import Refused, touchpoint

SINGLE = ("track", "identify", "page", "screen", "group", "alias")


class Batch(msgspec.Struct, kw_only=True):
    """Segment's batch body, as its clients send it."""

    batch: list[dict[str, Any]]
    sentAt: str | None = None
    writeKey: str | None = None
    context: dict[str, Any] | None = None


class Rejected(msgspec.Struct):
    index: int
    messageId: Any
    field: str
    reason: str


class Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class Writer:
    """The engine behind the API, one write at a time."""

    def __init__(self, config: Config, keys: tuple[str, ...]):
        self.config, self.keys = config, keys
        self.engine: Engine | None = None
        self.lock = asyncio.Lock()
        self.kinds: frozenset[str] = frozenset()

    def start(self) -> None:
        self.engine = Engine(self.config)
        self.kinds = frozenset(self.engine.catalog.schemas)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.close()

    async def write(self, messages: list[Any], sent_at: Any, context: dict[str, Any] | None) -> Answer:
        assert self.engine is not None, "started with the app"
        http = self.config.http
        received = datetime.now(UTC)
        rejected: list[Rejected] = []
        envelopes: list[tuple[int, dict[str, Any]]] = []
        for index, message in enumerate(messages):
            mid = message.get("messageId") if isinstance(message, dict) else None
            try:
                if len(orjson.dumps(message)) > http.max_message_bytes:
                    raise Refused(
                        "", f"the message is larger than {http.max_message_bytes:,} bytes (http.max_message_bytes)"
                    )
                if context and isinstance(message, dict):  # a batch-level context: each message's own wins
                    message = {**message, "context": {**context, **(message.get("context") or {})}}
                envelopes.append(
                    (index, touchpoint(message, received, sent_at, self.kinds, http.events, http.default_channel))
                )
            except Refused as refused:
                rejected.append(Rejected(index, mid, refused.field, refused.reason))
        async with self.lock:
            report = await asyncio.to_thread(self.engine.ingest, [e for _, e in envelopes])
        for r in report.rejections:
            index, envelope = envelopes[r.record - 1]
            rejected.append(Rejected(index, envelope["event_id"], r.field, r.reason))
        rejected.sort(key=lambda r: r.index)
        return Answer(report.accepted, report.duplicates, rejected)


def build_app(config: Config, keys: tuple[str, ...]) -> Any:
    writer = Writer(config, keys)

    def permitted(request: Request, body_key: str | None) -> None:
        if not auth.allowed(auth.basic_user(request.headers.get("authorization")) or body_key, keys):
            raise HTTPException(
                status_code=401, detail="a valid write key is required (HTTP Basic user name, or writeKey)"
            )

    @post("/v1/batch", status_code=200, summary="Segment's batch of messages (what its clients send)")
    async def batch(request: Request, data: Batch) -> Answer:
        permitted(request, data.writeKey)
        return await writer.write(data.batch, data.sentAt, data.context)

    def single(type_: str) -> Any:
        @post(f"/v1/{type_}", status_code=200, summary=f"One Segment {type_} message", operation_id=f"segment_{type_}")
        async def one(request: Request, data: dict[str, Any]) -> Answer:
            permitted(request, data.get("writeKey") if isinstance(data.get("writeKey"), str) else None)
            return await writer.write([{**data, "type": type_}], data.get("sentAt"), None)

        return one

    @get("/healthz", media_type=MediaType.JSON)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @get("/openapi.json", media_type=MediaType.JSON, include_in_schema=False)
    async def openapi(request: Request) -> dict[str, Any]:
        """The OpenAPI document, generated from the schemas the handlers validate with."""
        return request.app.openapi_schema.to_schema()

    def errors(_: Request, exc: Exception) -> Response[Any]:
        """Segment's clients expect an error body {code, message}."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        if isinstance(exc, ValidationException):
            detail = f"the body is not a Segment message or batch: {exc.extra or exc.detail}"
        return Response({"code": status, "message": detail}, status_code=status, media_type=MediaType.JSON)

    app = Litestar(
        route_handlers=[batch, healthz, openapi, *(single(t) for t in SINGLE)],
        on_startup=[writer.start],
        on_shutdown=[writer.stop],
        exception_handlers={HTTPException: errors},
        openapi_config=OpenAPIConfig(
            title="journey engine", version="1", path="/docs", render_plugins=[SwaggerRenderPlugin()]
        ),
        request_max_body_size=config.http.max_batch_bytes,
        debug=False,
    )
    limits = {f"/v1/{t}": config.http.max_message_bytes for t in SINGLE}
    # Litestar's own ASGI types are narrower than the generic ones BoundedBodies takes.
    return BoundedBodies(app, lambda path: limits.get(path, config.http.max_batch_bytes))  # type: ignore[arg-type]
