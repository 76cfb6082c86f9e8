"""Request bodies within limits, before anything parses them: an ASGI layer in front of the app
that reads the body (at most the limit), inflates a gzip body (at most the limit, so a small
bomb is refused, not inflated) and hands the app the plain body."""

from __future__ import annotations

import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


class TooLarge(Exception):
    pass


class BoundedBodies:
    def __init__(self, app: ASGI, limit: Callable[[str], int], origins: tuple[str, ...] = ()):
        self.app, self.limit = app, limit  # limit(path): bytes a body may have there, inflated
        self.origins = origins  # CORS: the pages that may read our answers (http.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        limit = self.limit(scope["path"])
        headers = {k.lower(): v for k, v in scope["headers"]}
        origin = headers.get(b"origin", b"")
        # Answered here, before the app's CORS layer: a page of an allowed origin must read them too.
        cors = (
            [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
            if origin and ("*" in self.origins or origin.decode(errors="replace") in self.origins)
            else []
        )

        async def answer(status: int, message: str) -> None:
            await _answer(send, status, message, cors)

        encoding = headers.get(b"content-encoding", b"").strip().lower()
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            return await answer(400, "Content-Length is not a number")
        if declared > limit:
            if declared <= 4 * limit:  # read what a client is still sending, so it gets the answer and
                await _drain(receive)  # not a broken pipe; a larger one is cut off
            return await answer(413, f"the body is {declared:,} bytes; the limit here is {limit:,}")
        try:
            body = await _read(receive, limit)
            if encoding == b"gzip":
                body = _inflate(body, limit)
            elif encoding not in (b"", b"identity"):
                return await answer(415, f"Content-Encoding {encoding.decode(errors='replace')!r}: only gzip")
            elif len(body) > limit:
                raise TooLarge
        except TooLarge:
            return await answer(413, f"the body is larger than {limit:,} bytes (inflated); send smaller batches")
        except zlib.error as e:
            return await answer(400, f"the gzip body does not inflate: {e}")
        kept = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"content-encoding", b"content-length")]
        scope = {**scope, "headers": [*kept, (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # a disconnect, if the client goes
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(receive: Receive, limit: int) -> bytes:
    parts, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit * 2 + 1024:  # compressed bodies are smaller than inflated ones: a stream beyond
            raise TooLarge  # twice the limit is not one we could take either way
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _drain(receive: Receive) -> None:
    while (await receive()).get("more_body"):
        pass


def _inflate(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = inflater.decompress(body, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge
    out += inflater.flush()
    if not inflater.eof:  # the stream stops before its end: part of the body is missing
        raise zlib.error("the gzip body is incomplete (it stops before its end)")
    return out


def error_body(status: int, message: str) -> dict[str, object]:
    """An error as the server answers it: {code, message} for Segment's clients, and the same as
    {status_code, detail}, the error schema of the OpenAPI document."""
    return {"code": status, "message": message, "status_code": status, "detail": message}


async def _answer(send: Send, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = orjson.dumps(error_body(status, message))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
