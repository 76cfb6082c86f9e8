"""The HTTP application: Segment's tracking API writing touchpoints into the engine.

Each request's messages become envelopes (api.segment), the engine validates and ingests them in
one transaction (one writer at a time, in a process of its own: api.engine_process), and
the answer says what was accepted, what was a duplicate, and why each other message was refused.
A 200 means committed to the store, or with the Kafka sink acknowledged by Kafka (api.sink).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson
import swagger_ui_bundle  # type: ignore[import-untyped]
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityRequirement, SecurityScheme
from litestar.params import Parameter
from litestar.static_files import create_static_files_router

from engine import queries, rejects
from engine.catalog import Catalog
from engine.clock import iso, parse_time
from engine.config import Config
from engine.service import INFRASTRUCTURE
from engine.touchpoints import Rejection, Touchpoint, json_type

from . import auth, engine_process
from . import twice as api_twice
from .bodies import BoundedBodies, error_body
from .engine_process import Outcome
from .limits import RateLimiter
from .segment import Refused, segment_field, touchpoint
from .sink import KafkaSink, SinkUnavailable

log = logging.getLogger("journey.api")
WRITE: list[SecurityRequirement] = [{"writeKey": []}]
READ: list[SecurityRequirement] = [{"readToken": []}]


class ErrorBody(msgspec.Struct):
    """Every error answer: {code, message} as Segment's clients read it, and the same again."""

    code: int
    message: str
    status_code: int
    detail: str


def _errors(*codes: int) -> dict[int, ResponseSpec]:
    said = {
        401: "no valid write key or read token",
        403: "a token that may not read this",
        404: "no such customer or action",
        413: "a body larger than the limit (after inflating)",
        415: "a Content-Encoding other than gzip",
        429: "over the rate limit: send it again after Retry-After seconds",
        503: "the store, the engine or Kafka cannot take it now: send it again after Retry-After seconds",
    }
    return {c: ResponseSpec(data_container=ErrorBody, description=said[c]) for c in codes}


WRITE_ERRORS = _errors(401, 413, 415, 429, 503)
READ_ERRORS = _errors(401, 429, 503)
ASSETS = "/docs/assets"
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


class EngineUnavailable(Exception):
    """The engine's process stopped under a call (answered 503: nothing of the call is known)."""


class Writer:
    """The engine behind the API. Requests that arrive while a write is under way are written
    together, in one transaction when they fit one batch and are of one kind (group commit): each
    request waits for the commit of its records, and then learns what became of them."""

    def __init__(self, config: Config):
        self.config = config
        self.pool: ProcessPoolExecutor | None = None  # the engine's process (api.engine_process)
        self.kinds: frozenset[str] = frozenset(Catalog(config.kinds).schemas)
        self.pending: asyncio.Queue[tuple[list[Any], bool, asyncio.Future[Outcome]]] | None = None
        self.committer: asyncio.Task[None] | None = None
        self.sink: KafkaSink | None = None  # sink "kafka"; else the store

    def _spawn(self) -> ProcessPoolExecutor:
        # spawn, not fork: this process runs an event loop and threads a fork would copy half-made
        return ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=engine_process.open_engine,
            initargs=(self.config,),
        )

    async def start(self) -> None:
        self.pool = self._spawn()
        await self.run(engine_process.position)  # the store opens (and says so if it cannot) now
        self.pending = asyncio.Queue()
        self.committer = asyncio.create_task(self._commit())
        if self.config.http.sink == "kafka":
            self.sink = KafkaSink(self.config.kafka, self.config.http.sink_timeout_seconds)
            await self.sink.start()

    async def stop(self) -> None:
        if self.sink is not None:
            await self.sink.stop()
        if self.committer is not None:
            self.committer.cancel()
        if self.pool is not None:  # after whatever was asked before (one process, in order)
            with contextlib.suppress(Exception):
                await self.run(engine_process.close)
            self.pool.shutdown(wait=True)

    async def run(self, work: Any, *args: Any) -> Any:
        """Call a function of api.engine_process with the engine, in its process; calls run one at
        a time, in the order made. If the process died (killed, out of memory), a new one is started
        for the next call, and this one fails as unavailable (503: send it again)."""
        pool = self.pool
        assert pool is not None, "started with the app"
        try:
            return await asyncio.wrap_future(pool.submit(engine_process.call, work, *args))
        except BrokenProcessPool:
            if self.pool is pool:  # the first of the calls it failed starts the next one
                log.error("the engine's process died; starting another")
                pool.shutdown(wait=False)
                self.pool = self._spawn()
            raise EngineUnavailable("the engine's process stopped; send it again") from None

    async def ingest(self, records: list[Any], by_id: bool = False) -> Outcome:
        """Ingest records (envelopes, or raw lines) with whatever else is waiting; the outcome once
        committed. With `by_id` (Segment's messages), a record whose event id this customer already
        has is a duplicate whatever its content: a resent message's time is worked out again from
        when it arrived, so only its id says it is the same message."""
        assert self.pending is not None, "started with the app"
        if self.sink is not None:
            return await self._publish(records, by_id)
        done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        await self.pending.put((records, by_id, done))
        return await done

    async def _publish(self, records: list[Any], by_id: bool) -> Outcome:
        """Sink "kafka": each record checked as the engine will check it (what fails is answered
        and kept here), the others sent to Kafka and acknowledged before the answer. Duplicates
        are found by the worker that ingests them, so none is counted here."""
        assert self.sink is not None
        checked = await self.run(engine_process.validate, records)
        refused = [(i, c) for i, c in checked if isinstance(c, Rejection)]
        valid = [(c.customer_id, records[i]) for i, c in checked if isinstance(c, Touchpoint)]
        if valid:
            await self.sink.send(valid, by_id)
        return Outcome(len(valid), 0, refused)

    async def _commit(self) -> None:
        assert self.pending is not None
        limit = self.config.ingest.batch_size
        while True:
            group = [await self.pending.get()]
            size = len(group[0][0])
            while size < limit and not self.pending.empty():
                group.append(self.pending.get_nowait())
                size += len(group[-1][0])
            try:
                outcomes = await self.run(engine_process.write_group, [(part, by_id) for part, by_id, _ in group])
            except Exception as e:  # noqa: BLE001 - each request answers with it; the loop goes on
                for *_, done in group:
                    if not done.done():
                        done.set_exception(e)
                continue
            for (*_, done), outcome in zip(group, outcomes, strict=True):
                if not done.done():
                    done.set_result(outcome)

    async def write(
        self,
        messages: list[Any],
        sent_at: Any,
        context: dict[str, Any] | None,
        twice: dict[int, tuple[str, ...]] | None = None,
    ) -> Answer:
        """Segment's messages; `twice`: index -> where a key was given twice in that message (api.twice)."""
        http = self.config.http
        received = datetime.now(UTC)
        rejected: list[Rejected] = []
        kept: list[tuple[int, rejects.Row]] = []  # kept in the order they were sent
        envelopes: list[tuple[int, dict[str, Any], bytes]] = []

        def refuse(index: int, message: Any, sent: bytes, field: str, reason: str, mid: Any) -> None:
            rejected.append(Rejected(index, mid, field, reason))
            user = rejects.sent_by(message, "userId", "anonymousId")
            row = rejects.row(rejects.http_coordinates(sent), iso(received), sent, field, reason, user, mid)
            kept.append((index, row))

        for index, message in enumerate(messages):
            mid = message.get("messageId") if isinstance(message, dict) else None
            sent = b""
            try:
                try:
                    sent = orjson.dumps(message)
                except orjson.JSONEncodeError as e:  # beyond orjson: deep nesting, a lone surrogate, a huge integer
                    if "recursion" in str(e).lower():
                        sent = repr(message).encode("utf-8", "backslashreplace")[: http.max_message_bytes]
                        raise Refused("", "is nested too deeply") from None
                    sent = json.dumps(message).encode()  # escapes surrogates, writes any integer
                    if "integer" not in str(e).lower():
                        raise Refused("", "holds a lone surrogate: not valid Unicode text") from None
                    # an integer beyond 64 bits: the engine names its field (send it as a string)
                if twice and index in twice:
                    raise Refused(".".join(twice[index]), api_twice.reason(twice[index][-1]))
                if len(sent) > http.max_message_bytes:
                    raise Refused(
                        "", f"the message is larger than {http.max_message_bytes:,} bytes (http.max_message_bytes)"
                    )
                if context and isinstance(message, dict):  # a batch-level context: each message's own wins
                    message = {**message, "context": {**context, **(message.get("context") or {})}}
                envelope = touchpoint(message, received, sent_at, self.kinds, http.events, http.default_channel)
                envelopes.append((index, envelope, sent))
            except Refused as refused:
                refuse(index, message, sent, refused.field, refused.reason, mid)
        outcome = await self.ingest([e for _, e, _ in envelopes], by_id=True)
        for i, r in outcome.refused:
            index, envelope, sent = envelopes[i]
            refuse(
                index, messages[index], sent, segment_field(r.field, messages[index]), r.reason, envelope["event_id"]
            )
        await self.keep([row for _, row in sorted(kept, key=lambda k: k[0])])
        rejected.sort(key=lambda r: r.index)
        return Answer(outcome.accepted, outcome.duplicates, rejected)

    async def write_native(self, records: list[Any], twice: dict[int, tuple[str, ...]] | None = None) -> Answer:
        """Touchpoints in the engine's own envelope (decoded objects or raw lines), as journey ingest
        takes them; `twice`: records refused here (api._refused_here; raw lines: the engine finds
        duplicate keys itself)."""
        twice = twice or {}
        sent_on = [i for i in range(len(records)) if i not in twice]
        outcome = await self.ingest([records[i] for i in sent_on])
        refused = [(sent_on[i], r) for i, r in outcome.refused] + [
            (i, _refused_here(i, records[i], where)) for i, where in twice.items()
        ]
        refused.sort(key=lambda x: x[0])
        received = iso(datetime.now(UTC))
        kept = []
        for i, r in refused:
            record = records[i]
            sent = record if isinstance(record, bytes) else orjson.dumps(record)
            user = rejects.sent_by(record, "customer_id", "anonymous_id")  # whose, for forget
            kept.append(
                rejects.row(rejects.http_coordinates(sent), received, sent, r.field, r.reason, user, r.event_id)
            )
        await self.keep(kept)
        return Answer(
            outcome.accepted,
            outcome.duplicates,
            [Rejected(i, r.event_id, r.field, r.reason) for i, r in refused],
        )

    async def keep(self, rows: list[rejects.Row]) -> None:
        """Keep the refused messages in the dead-letter table before answering: nothing a client sent
        is lost. If that fails, the request fails (503): sent again, what was accepted is a duplicate."""
        if rows:
            await self.run(engine_process.keep_rejects, rows)


def _refused_here(i: int, record: Any, where: tuple[str, ...]) -> Rejection:
    """A native record refused before the engine sees it: a key given twice at `where`, or (where
    is ("",)) not an object."""
    if not isinstance(record, dict):
        return Rejection(i + 1, "", f"a touchpoint is a JSON object, not {json_type(record)}")
    event_id = record.get("event_id") if isinstance(record.get("event_id"), str) else None
    return Rejection(i + 1, ".".join(where), api_twice.reason(where[-1]), event_id)


def _twice_in(records: list[Any], again: Any) -> dict[int, tuple[str, ...]]:
    """index -> the first key given twice in that record, from the body parsed again (api.twice)."""
    if not isinstance(again, list):
        return {}
    # Only objects: the engine refuses anything else as no touchpoint (whatever it holds).
    found = {i: api_twice.first_twice(r) for i, r in enumerate(again) if isinstance(r, dict)}
    return {i: k for i, k in found.items() if k is not None and i < len(records) and isinstance(records[i], dict)}


def build_app(config: Config, keys: tuple[str, ...], tokens: tuple[str, ...] = ()) -> Any:
    """The ASGI application: `keys` may write, `tokens` (and http.personal_read_tokens) may read."""
    writer = Writer(config)
    personal = config.http.personal_read_tokens

    limiter = RateLimiter(config.http.rate_limit, config.http.rate_burst)

    def permitted(request: Request, body_key: str | None, cost: int | None) -> str:
        """The write key the request carries; its rate limit lets `cost` messages through (None:
        counted later, with limited)."""
        key = auth.allowed(auth.basic_user(request.headers.get("authorization")) or body_key, keys)
        if key is None:
            raise HTTPException(
                status_code=401, detail="a valid write key is required (HTTP Basic user name, or writeKey)"
            )
        if cost is not None:
            limited("w:" + key, cost)
        return key

    def limited(who: str, cost: int) -> None:
        if wait := limiter.take(who, cost):
            raise HTTPException(
                status_code=429,
                detail=f"over the rate limit of this key or token ({config.http.rate_limit:g}/s, [http] rate_limit); "
                "send it again after Retry-After seconds",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    @post(
        "/v1/batch",
        status_code=200,
        security=WRITE,
        responses=WRITE_ERRORS,
        summary="Segment's batch of messages (what its clients send)",
    )
    async def batch(request: Request, data: Batch) -> Answer:
        permitted(request, data.writeKey, len(data.batch))
        present = 1 + sum(v is not None for v in (data.sentAt, data.writeKey, data.context))
        decoded = present + api_twice.count_keys(data.batch) + api_twice.count_keys(data.context)
        twice: dict[int, tuple[str, ...]] = {}
        if (again := api_twice.reparse(await request.body(), decoded)) is not None:
            if isinstance(again, api_twice.Twice) and again.twice == "batch":  # which batch is meant?
                raise HTTPException(status_code=400, detail=api_twice.reason("batch"))
            twice = _twice_in(data.batch, again.get("batch"))
            outer: tuple[str, ...] | None = (again.twice,) if isinstance(again, api_twice.Twice) else None
            outer = outer or api_twice.first_twice({k: v for k, v in again.items() if k != "batch"})
            if outer is not None:  # in what the batch gives every message (its context, sentAt...)
                twice = dict.fromkeys(range(len(data.batch)), outer)
        return await writer.write(data.batch, data.sentAt, data.context, twice)

    @post(
        "/v1/touchpoints",
        status_code=200,
        security=WRITE,
        responses=WRITE_ERRORS,
        summary="Touchpoints in the engine's own format: a JSON object, an array of them, or JSON lines",
    )
    async def touchpoints(request: Request) -> Answer:
        key = permitted(request, None, None)  # before the body is parsed
        body = await request.body()
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:  # JSON lines: each line a record, its number kept for the answer
            lines = body.split(b"\n")
            limited("w:" + key, len(lines))
            return await writer.write_native(lines)
        records = parsed if isinstance(parsed, list) else [parsed]
        limited("w:" + key, len(records))
        again = api_twice.reparse(body, api_twice.count_keys(records))
        twice = _twice_in(records, again if isinstance(parsed, list) else [again])
        # In a JSON body every record is an object: a string there is no line to parse (the engine
        # would read it as one), so anything else is refused here, with the duplicate keys.
        odd = {i: ("",) for i, r in enumerate(records) if not isinstance(r, dict)}
        return await writer.write_native(records, twice | odd)

    def single(type_: str) -> Any:
        @post(
            f"/v1/{type_}",
            status_code=200,
            security=WRITE,
            responses=WRITE_ERRORS,
            summary=f"One Segment {type_} message",
            operation_id=f"segment_{type_}",
        )
        async def one(request: Request, data: dict[str, Any]) -> Answer:
            permitted(request, data.get("writeKey") if isinstance(data.get("writeKey"), str) else None, 1)
            again = api_twice.reparse(await request.body(), api_twice.count_keys(data))
            twice = _twice_in([data], [again])
            return await writer.write([{**data, "type": type_}], data.get("sentAt"), None, twice)

        return one

    def reader(request: Request) -> bool:
        """A read is allowed: whether it may see personal traits."""
        token = auth.bearer(request.headers.get("authorization"))
        if found := auth.allowed(token, personal):
            limited("r:" + found, 1)
            return True
        if found := auth.allowed(token, tokens):
            limited("r:" + found, 1)
            return False
        raise HTTPException(status_code=401, detail="a valid read token is required (Authorization: Bearer ...)")

    def time_of(value: str | None, name: str) -> datetime | None:
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as e:
            hint = " (a + in a URL's query reads as a space: send it as %2B)" if " " in value else ""
            raise HTTPException(status_code=400, detail=f"{name}: {e}{hint}") from None

    @get(
        "/v1/customers/{customer_id:path}",
        security=READ,
        responses=READ_ERRORS | _errors(404),
        summary="A customer's 360° view (as `journey customer --json`)",
    )
    async def customer(
        request: Request,
        customer_id: str,
        as_of: str | None = None,
        as_known: bool = False,
        limit: int = Parameter(default=25, ge=0, le=100_000),
        offset: int = Parameter(default=0, ge=0, le=2**63 - 1),
    ) -> dict[str, Any]:
        personal = reader(request)
        customer_id = customer_id.removeprefix("/")  # an id may hold a slash (team/ann): the rest of the path
        T = time_of(as_of, "as_of")

        try:
            return await writer.run(engine_process.customer, customer_id, T, as_known, limit or None, offset, personal)
        except KeyError:
            raise HTTPException(status_code=404, detail="no such customer") from None

    @get("/v1/funnel", security=READ, responses=READ_ERRORS, summary="Customers per stage and health as of a time")
    async def funnel(
        request: Request, as_of: str | None = None, as_known: bool = False, ladder: str | None = None
    ) -> dict[str, Any]:
        reader(request)
        T = time_of(as_of, "as_of")
        try:
            return await writer.run(engine_process.funnel, T, as_known, ladder)
        except ValueError as e:  # no such ladder
            raise HTTPException(status_code=400, detail=str(e)) from None

    def feed(name: str, topic: str, key: str) -> Any:
        @get(
            f"/v1/{name}",
            security=READ,
            responses=READ_ERRORS,
            summary=f"The {name} feed after a position (as `journey {name} --json`)",
            operation_id=name,
        )
        async def entries(
            request: Request,
            after: int = Parameter(default=0, ge=0, le=2**63 - 1),
            limit: int = Parameter(default=100, ge=1, le=10_000),
            customer: str | None = None,
        ) -> list[dict[str, Any]]:
            reader(request)
            return await writer.run(engine_process.feed, topic, key, after, limit, customer)

        return entries

    @get(
        "/v1/rejects",
        security=READ,
        responses=READ_ERRORS | _errors(403),
        summary="Refused messages kept as they came, with the reason (as `journey rejects --json`); "
        "a personal read token only, since they hold what was sent",
    )
    async def kept_rejects(
        request: Request,
        after: int = Parameter(default=0, ge=0, le=2**63 - 1),
        limit: int = Parameter(default=100, ge=1, le=10_000),
    ) -> list[dict[str, Any]]:
        if not reader(request):
            raise HTTPException(status_code=403, detail="kept rejects hold personal data: a personal read token only")
        return await writer.run(engine_process.kept_rejects, after, limit)

    @get(
        "/v1/actions/{action_id:str}/why",
        security=READ,
        responses=READ_ERRORS | _errors(404),
        summary="Why an action was issued, suppressed or deferred",
    )
    async def why(request: Request, action_id: str) -> dict[str, Any]:
        reader(request)
        try:
            return await writer.run(engine_process.why, action_id)
        except KeyError:
            raise HTTPException(status_code=404, detail="no such action") from None

    @get("/healthz", media_type=MediaType.JSON)
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @get("/readyz", media_type=MediaType.JSON)
    async def readyz() -> Response[dict[str, Any]]:
        """The store answers too."""
        try:
            position = await writer.run(engine_process.position)
        except Exception as e:  # noqa: BLE001 - not ready, whatever the reason
            return Response({"status": "unavailable", "reason": type(e).__name__}, status_code=503)
        if writer.sink is not None and not await writer.sink.ready():  # writes would fail: not ready
            return Response({"status": "unavailable", "reason": "kafka does not answer"}, status_code=503)
        return Response({"status": "ok", "position": position})

    @get("/openapi.json", media_type=MediaType.JSON, include_in_schema=False)
    async def openapi(request: Request) -> dict[str, Any]:
        """The OpenAPI document, generated from the schemas the handlers validate with."""
        return request.app.openapi_schema.to_schema()

    def errors(request: Request, exc: Exception) -> Response[Any]:
        """Segment's clients expect an error body {code, message}; an unexpected error is logged
        with its traceback, and answered without echoing anything the client sent."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        if isinstance(exc, RecursionError):  # a body nested beyond what a decoder can walk
            status, detail = 400, "the body is nested too deeply"
        elif isinstance(exc, (*INFRASTRUCTURE, SinkUnavailable, EngineUnavailable)):  # nothing may count as stored
            where = {SinkUnavailable: "Kafka", EngineUnavailable: "the engine"}.get(type(exc), "the store")
            status, detail = 503, f"{where} cannot take this now (busy or unreachable); send it again"
            headers = {"Retry-After": "1"}  # the clients honour it; messageId makes the resend safe
            log.warning("answered 503: %s: %s", type(exc).__name__, exc)
        elif status >= 500:
            log.error("a request failed", exc_info=exc)
        if isinstance(exc, ValidationException):
            problems = exc.extra if isinstance(exc.extra, list) else []
            said = "; ".join(f"{p.get('key')}: {p.get('message')}" for p in problems if isinstance(p, dict))
            where = "the query" if request.method == "GET" else "the body"
            detail = f"{where} is not what this endpoint takes: {said or exc.detail}"
        return Response(error_body(status, detail), status_code=status, media_type=MediaType.JSON, headers=headers)

    app = Litestar(
        route_handlers=[
            batch,
            touchpoints,
            *(single(t) for t in SINGLE),
            customer,
            funnel,
            feed("changes", queries.CHANGE_TOPIC, "change"),
            feed("actions", queries.ACTION_TOPIC, "action"),
            kept_rejects,
            why,
            healthz,
            readyz,
            openapi,
            # Swagger UI's own files, served here: the docs page needs no CDN.
            create_static_files_router(ASSETS, [swagger_ui_bundle.swagger_ui_path], include_in_schema=False),
        ],
        on_startup=[writer.start],
        on_shutdown=[writer.stop],
        exception_handlers={HTTPException: errors, Exception: errors},
        openapi_config=OpenAPIConfig(
            title="journey engine",
            version="1",
            path="/docs",
            render_plugins=[
                SwaggerRenderPlugin(
                    js_url=f"{ASSETS}/swagger-ui-bundle.js",
                    css_url=f"{ASSETS}/swagger-ui.css",
                    standalone_preset_js_url=f"{ASSETS}/swagger-ui-standalone-preset.js",
                    favicon=f"<link rel='icon' type='image/png' href='{ASSETS}/favicon-32x32.png'>",
                )
            ],
            components=Components(
                security_schemes={
                    # Segment's clients: the write key as the Basic user name, the password empty
                    "writeKey": SecurityScheme(type="http", scheme="basic", description="the write key, no password"),
                    "readToken": SecurityScheme(type="http", scheme="bearer", description="a read token"),
                }
            ),
        ),
        request_max_body_size=config.http.max_batch_bytes,
        cors_config=CORSConfig(
            allow_origins=list(config.http.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Content-Encoding"],
            expose_headers=["Retry-After"],  # a page's script waits as long as a 429 or 503 says
            max_age=600,
        )
        if config.http.cors_origins
        else None,
        debug=False,
    )
    limits = {f"/v1/{t}": config.http.max_message_bytes for t in SINGLE}
    # Litestar's own ASGI types are narrower than the generic ones BoundedBodies takes.
    return BoundedBodies(
        app,  # type: ignore[arg-type]
        lambda path: limits.get(path, config.http.max_batch_bytes),
        config.http.cors_origins,
    )
