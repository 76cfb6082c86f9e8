"""Segment tracking-API messages as touchpoints: pure functions, no I/O.

A message becomes the engine's envelope (engine.touchpoints validates it as it validates every
touchpoint): `messageId` -> event_id (so a resent message is a duplicate, forever), `userId` ->
customer_id, the event time corrected for the client's clock as Segment corrects it, the channel
from the context, and a kind from the message type or the event name.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from engine.vocabulary import CHANNELS

# Segment's e-commerce v2 and email event names, and the built-in kinds they are.
EVENTS = {
    "Order Completed": "order.placed",
    "Order Refunded": "order.refunded",
    "Order Cancelled": "order.cancelled",
    "Product Viewed": "product.viewed",
    "Email Delivered": "email.sent",
    "Email Opened": "email.opened",
    "Email Link Clicked": "email.clicked",
}
ORDER_KINDS = ("order.placed", "order.refunded")


class Refused(Exception):
    """A message that cannot be a touchpoint: the field and the reason."""

    def __init__(self, field: str, reason: str):
        super().__init__(reason)
        self.field, self.reason = field, reason


def touchpoint(
    message: Any, received_at: datetime, sent_at: Any, kinds: frozenset[str], events: dict[str, str], channel: str
) -> dict[str, Any]:
    """The envelope of one message (a decoded JSON value), or Refused. `sent_at` is the batch's
    (a message's own wins); `kinds` the catalog's kinds; `events` further names from config."""
    if not isinstance(message, dict):
        raise Refused("", "a message is a JSON object")
    kind_of = message.get("type")
    user, anonymous = message.get("userId"), message.get("anonymousId")
    if user in (None, "") and (anonymous in (None, "") or kind_of == "alias"):
        # A visitor's message may have an anonymousId alone (docs/identity.md); an alias names the user.
        raise Refused("userId", "is required" if kind_of == "alias" else "is required, or an anonymousId")
    props: Any = message.get("properties") or {}
    traits: Any = message.get("traits")
    if traits is not None and not isinstance(traits, dict):
        raise Refused("traits", "must be an object")
    context: Any = message.get("context") or {}
    if not isinstance(context, dict):
        raise Refused("context", "must be an object")
    kind, channel = _kind(kind_of, message, kinds, events), _channel(context, channel, kind_of)
    if kind_of == "identify":
        props = {}
    elif kind_of == "alias":
        props = {"previous_id": message.get("previousId")}
    elif kind_of == "group":
        props, traits = {"group_id": message.get("groupId")}, None
    elif kind in ORDER_KINDS and isinstance(props, dict):
        props = _order(props)
    library = context.get("library")
    source = library.get("name") if isinstance(library, dict) else None
    mid = message.get("messageId")
    return {
        # Segment makes a messageId when a client sends none; ours is the message's own digest, so
        # that the same message sent again is still a duplicate
        "event_id": mid if mid is not None else derived_id(message),
        **({"customer_id": user} if user not in (None, "") else {}),
        "kind": kind,
        "occurred_at": occurred_at(message, received_at, message.get("sentAt") or sent_at),
        "channel": channel,
        "source": source if isinstance(source, str) and source else "segment",
        "properties": props,
        "traits": traits if isinstance(traits, dict) and traits else None,
        # the browser's or app's id of the visitor: linked to the user id (docs/identity.md)
        **({"anonymous_id": anonymous} if anonymous not in (None, "") else {}),
    }


def derived_id(message: dict[str, Any]) -> str:
    """An id for a message sent without messageId: a digest of what it says (not of when it was sent)."""
    said = {k: v for k, v in message.items() if k not in ("sentAt", "writeKey", "receivedAt")}
    return "msg-" + hashlib.sha256(orjson.dumps(said, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


# The touchpoint's fields as the message named them, for the answers.
FIELDS = {
    "event_id": "messageId",
    "customer_id": "userId",
    "anonymous_id": "anonymousId",
    "occurred_at": "timestamp",
    "kind": "event",
    "channel": "context.channel",
    "source": "context.library.name",
}


def segment_field(field: str, message: Any) -> str:
    """A rejection's field in the message's words (properties and traits keep theirs; an order's
    amount is the `revenue` or `total` it came from)."""
    if field == "properties.amount" and isinstance(message, dict) and isinstance(message.get("properties"), dict):
        props = message["properties"]
        return next((f"properties.{name}" for name in ("revenue", "total") if name in props), field)
    return FIELDS.get(field, field)


def _kind(type_: Any, message: dict[str, Any], kinds: frozenset[str], events: dict[str, str]) -> str:
    fixed = {
        "identify": "profile.updated",
        "page": "page.viewed",
        "screen": "page.viewed",
        "alias": "customer.aliased",
        "group": "customer.grouped",
    }
    if type_ in fixed:
        return fixed[type_]
    if type_ != "track":
        raise Refused("type", "is not one of: track, identify, page, screen, group, alias")
    event = message.get("event")
    if not isinstance(event, str) or not event:
        raise Refused("event", "is required for a track message")
    if event in kinds:
        return event
    if event in events:
        return events[event]
    if event in EVENTS:
        return EVENTS[event]
    raise Refused(
        "event",
        "is no kind of this engine: send one of its kinds (e.g. order.placed), a Segment "
        "e-commerce name (Order Completed...), or map it under [http.events] in config.toml",
    )


def _channel(context: dict[str, Any], default: str, type_: Any) -> str:
    """Where the touchpoint happened: a channel the context names, a mobile app, a web page, else
    the configured default (a server's events)."""
    named = context.get("channel")
    if named in CHANNELS:
        return str(named)
    device = context.get("device")
    if (
        type_ == "screen"
        or context.get("app")
        or (isinstance(device, dict) and device.get("type") in ("ios", "android"))
    ):
        return "mobile_app"
    if context.get("page") or context.get("userAgent"):
        return "web"
    return default


def _order(props: dict[str, Any]) -> dict[str, Any]:
    """Segment's order properties as ours: `revenue`, else `total`, is the amount."""
    out = {k: v for k, v in props.items() if k not in ("revenue", "total")}
    amount = props.get("revenue", props.get("total"))
    if amount is not None:
        out["amount"] = amount
    return out


def occurred_at(message: dict[str, Any], received_at: datetime, sent_at: Any) -> Any:
    """When it happened, as Segment has it: the client's `timestamp` corrected for the client's
    clock (received_at - (sentAt - timestamp)), else `originalTimestamp`, else when it arrived.
    A time that does not parse is passed on as it is, for the engine's validator to name."""
    stamp = message.get("timestamp") or message.get("originalTimestamp")
    if stamp is None:
        return received_at.isoformat()
    when, sent = _time(stamp), _time(sent_at)
    if when is None:
        return stamp
    if sent is not None and message.get("timestamp"):
        return (received_at - (sent - when)).isoformat()
    return when.isoformat()


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo is not None else None
