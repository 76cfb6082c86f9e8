"""The catalog of touchpoint kinds and channels, each kind with a pydantic schema for its properties.

Built-in schemas allow extra properties (services add their own), but the declared ones
must be present and well typed. Custom kinds come from `[[kinds]]` in config.toml.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from .limits import MAX_AMOUNT, id_problem
from .money import Currency
from .rules import CustomKind
from .vocabulary import CHANNELS, Channel  # noqa: F401 - re-exported for callers of the catalog


class Props(BaseModel):
    # strict: "12.5" is not an amount and 1 is not a boolean; ints are still accepted as floats.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


NonEmpty = Field(min_length=1)
Money = Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)  # no sum of amounts can overflow


class Empty(Props):
    pass


class ConsentChanged(Props):
    channel: Channel
    purpose: Literal["promotional", "service"]
    granted: bool


class OrderPlaced(Props):
    order_id: str = NonEmpty
    amount: float = Money
    currency: Currency


class OrderRefunded(Props):
    order_id: str = NonEmpty
    amount: float = Money
    currency: Currency | None = None  # the order's; if given, it must be the order's


class OrderCancelled(Props):
    order_id: str = NonEmpty


class ComplaintFiled(Props):
    complaint_id: str = NonEmpty
    severity: Literal["low", "medium", "high", "critical"]


class ComplaintResolved(Props):
    complaint_id: str = NonEmpty


class SurveyAnswered(Props):
    nps: int | None = Field(None, ge=0, le=10)
    csat: int | None = Field(None, ge=1, le=5)

    @model_validator(mode="after")
    def one_score(self) -> SurveyAnswered:
        if self.nps is None and self.csat is None:
            raise ValueError("a survey answer needs nps (0-10) and/or csat (1-5)")
        return self


class ReviewPosted(Props):
    rating: int = Field(ge=1, le=5)


class Aliased(Props):
    """Segment's alias: another id this customer was known by (identity resolution links them)."""

    previous_id: str = NonEmpty

    @field_validator("previous_id")
    @classmethod
    def an_id(cls, v: str) -> str:
        if (problem := id_problem(v)) is not None:  # an identifier, held to the ids' rules
            raise ValueError(problem)
        return v


class Grouped(Props):
    """Segment's group: the account, company or household this customer belongs to."""

    group_id: str = NonEmpty


class Invoice(Props):
    invoice_id: str = NonEmpty
    amount: float = Money
    currency: Currency


BUILTIN_KINDS: dict[str, type[Props]] = {
    "customer.registered": Empty,
    "profile.updated": Empty,
    "customer.aliased": Aliased,
    "customer.grouped": Grouped,
    "consent.changed": ConsentChanged,
    "page.viewed": Empty,
    "product.viewed": Empty,
    "email.sent": Empty,
    "email.opened": Empty,
    "email.clicked": Empty,
    "store.visited": Empty,
    "call.completed": Empty,
    "order.placed": OrderPlaced,
    "order.refunded": OrderRefunded,
    "order.cancelled": OrderCancelled,
    "ticket.opened": Empty,
    "ticket.resolved": Empty,
    "complaint.filed": ComplaintFiled,
    "complaint.resolved": ComplaintResolved,
    "survey.answered": SurveyAnswered,
    "review.posted": ReviewPosted,
    "referral.made": Empty,
    "referral.converted": Empty,
    "invoice.issued": Invoice,
    "invoice.overdue": Invoice,
    "invoice.paid": Invoice,
}

_PY_TYPES: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "datetime": AwareDatetime}


class Catalog:
    """Kinds known to this engine: the built-ins plus the custom kinds of the config."""

    def __init__(self, custom: tuple[CustomKind, ...] = ()):
        self.schemas: dict[str, type[Props]] = dict(BUILTIN_KINDS)
        # Custom kinds' fields marked pii or free_text: sealed (engine.privacy).
        self.personal_properties: dict[str, frozenset[str]] = {}
        for kind in custom:
            if kind.name in BUILTIN_KINDS:
                raise ValueError(f"custom kind {kind.name!r} clashes with a built-in kind")
            fields = {
                name: (_PY_TYPES[f.type] if f.required else _PY_TYPES[f.type] | None, ... if f.required else None)
                for name, f in kind.fields.items()
            }
            # The ignore: mypy matches a **dict against create_model's own parameters too
            # (__config__, __doc__...), which no field definition fits (pydantic's signature).
            self.schemas[kind.name] = create_model(  # type: ignore[call-overload]
                "Custom_" + kind.name.replace(".", "_"), __base__=Props, **fields
            )
            self.personal_properties[kind.name] = frozenset(n for n, f in kind.fields.items() if f.pii or f.free_text)

    def schema(self, kind: str) -> type[Props] | None:
        return self.schemas.get(kind)

    def properties(self) -> dict[str, dict[str, str] | None]:
        """Each kind's declared properties with their type ("number", "string" or "other"); None
        for a built-in kind that declares none (what it carries is free)."""
        return {
            name: {p: _type_word(f.annotation) for p, f in s.model_fields.items()}
            if s.model_fields or name not in BUILTIN_KINDS
            else None
            for name, s in self.schemas.items()
        }


def _type_word(annotation: Any) -> str:
    args = set(get_args(annotation)) - {type(None)} or {annotation}
    if args <= {int, float}:
        return "number"
    return "string" if args <= {str} else "other"


def json_ready(value: Any) -> Any:
    """Property values as JSON types (datetimes of custom fields become ISO strings)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value
