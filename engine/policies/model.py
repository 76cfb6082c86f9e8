"""Declarative retention policies and contact rules, as they appear in config.toml.

A policy is: a trigger, conditions that must hold when it fires, and the action it asks
for (type, channel, purpose, priority). Whether the action is issued is decided afterwards
by the contact rules (engine/policies/checks.py), the same for every policy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..vocabulary import HEALTHS, STAGES, Channel, Section

TriggerType = Literal[
    "stage_entered",
    "stage_left",
    "stage_held",
    "health_changed",
    "value_segment_entered",
    "value_segment_left",
    "touchpoint",
    "absence",
    "date",
]
Purpose = Literal["promotional", "service"]


class Trigger(Section):
    on: TriggerType
    stage: str | None = None  # stage_entered, stage_left, stage_held
    health: str | None = None  # health_changed
    segment: str | None = None  # value_segment_entered, value_segment_left (a segment of [value])
    kind: str | None = None  # touchpoint
    absence: Literal["second_purchase", "activity"] | None = None
    date: Literal["first_purchase_anniversary"] | None = None
    days: int | None = Field(None, gt=0)  # absence, stage_held
    # stage_entered: only the first time the customer enters the stage (a welcome is said once).
    first_time: bool = False
    # stage_entered, stage_left, health_changed: on which ladder ([[ladders]]; the customer ladder
    # by default, whose stages and health values are the ones checked here; the others' are
    # checked against their ladder by the config).
    ladder: str = "customer"

    @model_validator(mode="after")
    def complete(self) -> Trigger:
        need = {
            "stage_entered": ("stage",),
            "stage_left": ("stage",),
            "stage_held": ("stage", "days"),
            "health_changed": ("health",),
            "value_segment_entered": ("segment",),
            "value_segment_left": ("segment",),
            "touchpoint": ("kind",),
            "absence": ("absence", "days"),
            "date": ("date",),
        }[self.on]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a trigger on {self.on!r} needs {' and '.join(missing)}")
        if self.ladder != "customer":
            if self.on not in ("stage_entered", "stage_left", "health_changed"):
                raise ValueError(f"a trigger on {self.on!r} reads the customer ladder: leave ladder out")
            return self
        if self.stage is not None and self.stage not in STAGES:
            raise ValueError(
                f"unknown stage {self.stage!r} of the customer ladder (its stages: {', '.join(STAGES)}); "
                'a stage of another ladder needs ladder = "NAME"'
            )
        if self.health is not None and self.health not in HEALTHS:
            raise ValueError(f"unknown health {self.health!r}; values are {', '.join(HEALTHS)}")
        return self


class Conditions(Section):
    """What must hold when the trigger fires; each is recorded with its value in the audit trail."""

    stage: tuple[str, ...] | None = None
    health: tuple[str, ...] | None = None
    min_purchases: int | None = None
    max_purchases: int | None = None
    # Customer value (docs/value.md), with the value model in force when the decision is taken;
    # without a model, or for a person without a purchase, none of them holds but not_value_segment.
    value_segment: tuple[str, ...] | None = None  # the person's value segment is one of these
    not_value_segment: tuple[str, ...] | None = None  # ... is none of these
    rfm_segment: tuple[str, ...] | None = None  # RFM scored among the persons the model was fitted to
    p_alive_below: float | None = Field(None, gt=0, le=1)
    clv_at_least: float | None = Field(None, ge=0)  # in the base currency

    @property
    def on_value(self) -> bool:
        """Whether checking these needs the person's value."""
        return any(
            v is not None
            for v in (
                self.value_segment,
                self.not_value_segment,
                self.rfm_segment,
                self.p_alive_below,
                self.clv_at_least,
            )
        )


class PolicySpec(Section):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    trigger: Trigger
    conditions: Conditions = Conditions()
    action: str
    channel: Channel
    purpose: Purpose
    priority: int = 0
    enabled: bool = True
    # A custom policy written in Python ("module:function"); its trigger is evaluated as usual
    # and the function may add conditions (see docs/policies.md).
    python: str | None = None
    # The share of persons held out of this policy's actions as its control group (0.1: a tenth),
    # assigned by a hash of the person, the policy and [contact] holdout_salt (engine.policies.holdout).
    holdout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _service_always(self) -> PolicySpec:
        if self.holdout > 0 and self.purpose != "promotional":
            raise ValueError(
                f"a {self.purpose} action cannot have a holdout (a complaint is recovered, an "
                "invoice reminded, for everyone): leave holdout out, or make it promotional"
            )
        return self


class Cap(Section):
    channel: str = "any"  # a channel, or "any" for all channels together
    max: int = Field(ge=0)
    days: float = Field(gt=0)


class ContactRules(Section):
    version: str = "2026-11-p1"  # part of every action id: bump it when policies change
    promotional_consent_default: bool = False  # opt-in: no promotion without a recorded grant
    service_consent_default: bool = True  # allowed unless revoked
    default_timezone: str = "UTC"
    quiet_hours_start: str = Field("21:00", pattern=r"^\d\d:\d\d$")
    quiet_hours_end: str = Field("08:00", pattern=r"^\d\d:\d\d$")
    caps: tuple[Cap, ...] = (Cap(channel="any", max=2, days=7),)
    # A global control group: this share of persons gets no promotional action at all (service
    # ones still), assigned by a hash of the person and the salt; held-out decisions are recorded.
    global_holdout: float = Field(0.0, ge=0, lt=1)
    # Changing the salt draws new control groups (and changes no decision already taken).
    holdout_salt: str = Field("journey", min_length=1, max_length=200)

    @field_validator("default_timezone")
    @classmethod
    def known_zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(v)
        except Exception:  # noqa: BLE001 - ZoneInfo raises several kinds
            raise ValueError(f"unknown time zone {v!r}; use an IANA name like Europe/Berlin") from None
        return v


def _p(
    name: str, on: dict, action: str, channel: Channel, purpose: Purpose, priority: int, **conditions: Any
) -> PolicySpec:
    return PolicySpec(
        name=name,
        trigger=Trigger(**on),
        conditions=Conditions(**conditions),
        action=action,
        channel=channel,
        purpose=purpose,
        priority=priority,
    )


def default_policies(top: str | None = "top") -> tuple[PolicySpec, ...]:
    """The default set; `top` names the best value segment of [value] (None: there is none, and the
    top-customer call is left out), so renamed segments keep the defaults valid."""
    value = {"value_segment": (top,)} if top else {}
    others = {"not_value_segment": (top,)} if top else {}
    return tuple(
        p
        for p in (
            _p(
                "welcome",
                {"on": "stage_entered", "stage": "prospect", "first_time": True},
                "welcome_email",
                "email",
                "service",
                10,
            ),
            _p(
                "second_purchase_nudge",
                {"on": "absence", "absence": "second_purchase", "days": 30},
                "second_purchase_offer",
                "email",
                "promotional",
                50,
            ),
            _p(
                "loyalty_enrolment",
                {"on": "stage_entered", "stage": "loyal", "first_time": True},
                "loyalty_invitation",
                "email",
                "promotional",
                60,
            ),
            _p(
                "referral_ask",
                {"on": "stage_held", "stage": "loyal", "days": 30},
                "referral_request",
                "email",
                "promotional",
                40,
            ),
            _p(
                "advocate_reward",
                {"on": "stage_entered", "stage": "advocate"},
                "advocate_gift",
                "email",
                "promotional",
                70,
            ),
            _p(
                "service_recovery",
                {"on": "touchpoint", "kind": "complaint.filed"},
                "service_recovery_call",
                "phone",
                "service",
                100,
            ),
            # A top customer (by CLV, with the value model in force) drifting away gets a personal call
            # from service, not a coupon; the others get the retention offer. Without a fitted model
            # nobody is top, and every customer at risk gets the offer, as before value existed.
            _p(
                "top_customer_call",
                {"on": "health_changed", "health": "at_risk"},
                "personal_service_call",
                "phone",
                "service",
                90,
                **value,
            )
            if top
            else None,
            _p(
                "churn_risk_outreach",
                {"on": "health_changed", "health": "at_risk"},
                "retention_offer",
                "email",
                "promotional",
                80,
                **others,
            ),
            _p("win_back", {"on": "health_changed", "health": "lapsed"}, "win_back_offer", "email", "promotional", 30),
        )
        if p is not None
    )


DEFAULT_POLICIES = default_policies()
