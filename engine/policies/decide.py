"""Retention decisions: fire the policies, check their conditions, apply the contact rules,
and return each decision as a fact with its id and its audit trail.

Each decision is recorded on the customer aggregate as it is taken, so the caps see the
decisions before it; the caller saves them in the same transaction as the touchpoints and
changes that caused them. Highest priority first, so a service recovery is issued before a
promotion of the same moment is checked (and then suppressed by the complaint it answers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any
from uuid import uuid5

from ..clock import iso
from ..ids import NAMESPACE
from ..projections.lifecycle import Status, revenue
from ..rules import ValueRules
from .checks import run_checks
from .holdout import GLOBAL, held_out
from .model import ContactRules, PolicySpec
from .triggers import Firing, on_facts, timers

if TYPE_CHECKING:
    from ..value.model import Model
    from ..value.person import Valued

TIMED = ("absence", "stage_held", "date")  # triggers that fire on a due time, not on a fact


@dataclass(frozen=True)
class PolicyContext:
    """What a custom Python condition sees (see docs/policies.md)."""

    customer_id: str
    stage: str | None
    health: str | None
    purchases: int
    now: datetime
    firing: Firing
    facts: Any = field(repr=False, compare=False)

    @cached_property
    def revenue(self) -> dict[str, float]:
        """Net revenue per currency (engine.projections.lifecycle.revenue): worked out only if
        the condition asks (it reads every order)."""
        return revenue(self.facts, self.now)


@lru_cache(maxsize=1 << 16)  # timers fire again at every derivation until something changes
def action_id(policy: str, customer: Any, trigger_id: str, version: str) -> str:
    return str(uuid5(NAMESPACE, f"action:{policy}:{customer}:{trigger_id}:{version}"))


class PolicyEngine:
    def __init__(
        self,
        specs: tuple[PolicySpec, ...],
        rules: ContactRules,
        value_rules: ValueRules | None = None,
        models: Callable[[str | None], Model | None] = lambda _known: None,
    ):
        self.specs = tuple(s for s in specs if s.enabled)
        # Most derivations have no change and a touchpoint no policy listens to: ask only the
        # policies whose trigger can fire.
        self.on_facts = tuple(s for s in self.specs if s.trigger.on not in TIMED)
        self.kinds = frozenset(s.trigger.kind for s in self.on_facts if s.trigger.on == "touchpoint")
        self.timed = tuple(s for s in self.specs if s.trigger.on in TIMED)
        self.rules = rules
        self.value_rules = value_rules or ValueRules()
        self.models = models  # the value model in force as known at a stored time (engine.value_store)
        self._model_at: tuple[str, Model | None] | None = None
        self.custom: dict[str, Callable[[PolicyContext], Any]] = {
            s.name: _resolve(s.python) for s in self.specs if s.python
        }

    def decide(
        self,
        customer: Any,
        status: Status,
        changes: list[dict],
        touchpoints: list[dict],
        now: datetime,
        at: str | None = None,
    ) -> tuple[list[dict[str, Any]], datetime | None]:
        """The decisions to record now, and when this customer's next policy timer is due."""
        heard = changes or any(tp["kind"] in self.kinds for tp in touchpoints)
        firings = on_facts(self.on_facts, changes, touchpoints) if heard else []
        upcoming: list[datetime] = []
        for spec in self.timed:
            for due, firing in timers(spec, customer, status, now):
                if due <= now:
                    firings.append(firing)
                else:
                    upcoming.append(due)
        decided: list[dict[str, Any]] = []
        at = at or iso(now)  # the stored form of now
        for firing in sorted(firings, key=lambda f: (-f.spec.priority, f.spec.name, f.trigger_id)):
            aid = action_id(firing.spec.name, customer.id, firing.trigger_id, self.rules.version)
            if aid in customer.actions or any(d["action_id"] == aid for d in decided):
                continue  # decided before: a redelivery, a restart or a replay changes nothing
            conditions = self._conditions(firing, customer, status, now, at)
            if all(c["ok"] for c in conditions):
                decided.append(self._decide(customer, firing, conditions, now, at, aid))
                customer.record_action(decided[-1])  # so caps see this decision at once
        for aid, action in list(customer.deferred.items()):
            release = datetime.fromisoformat(action["release_at"])
            if release > now:
                upcoming.append(release)
                continue
            policy = next((s for s in self.specs if s.name == action["policy"]), None)
            if policy is None:  # the policy was removed from the config while the action waited
                decided.append(
                    {
                        **action,
                        "status": "suppressed",
                        "at": at,
                        "release_at": None,
                        "reason": f"suppressed: policy {action['policy']} is no longer configured",
                    }
                )
            else:
                firing = Firing(
                    policy, action["trigger"]["id"], action["trigger"]["description"], tuple(action["causes"])
                )
                decided.append(self._decide(customer, firing, action["conditions"], now, at, aid))
            customer.record_action(decided[-1])
        return decided, min(upcoming, default=None)

    def _conditions(
        self, firing: Firing, customer: Any, status: Status, now: datetime, at: str
    ) -> list[dict[str, Any]]:
        spec, c = firing.spec, firing.spec.conditions
        out = []

        def cond(name: str, expected: Any, value: Any, ok: bool, **more: Any) -> None:
            out.append({"condition": name, "expected": expected, "value": value, "ok": ok, **more})

        # Every recorded change fires, even one undone later in the same batch: a live engine fed
        # one touchpoint at a time would have fired it too, and batching must not change decisions.
        if c.stage is not None:
            cond("stage", list(c.stage), status.stage, status.stage in c.stage)
        if c.health is not None:
            cond("health", list(c.health), status.health, status.health in c.health)
        n = status.count
        if c.min_purchases is not None:
            cond("min_purchases", c.min_purchases, n, n >= c.min_purchases)
        if c.max_purchases is not None:
            cond("max_purchases", c.max_purchases, n, n <= c.max_purchases)
        if c.on_value:
            v = self.valued(customer, now, at, with_rfm=c.rfm_segment is not None)
            # The trail names the model that scored, and the scores it gave.
            model = {
                "model_id": v.model_id if v else None,
                "clv": None if v is None or v.clv is None else round(v.clv, 2),
                "currency": self.value_rules.base_currency,
                "p_alive": None if v is None else round(v.p_alive, 4),
            }
            if c.value_segment is not None:
                seg = v.value_segment if v else None
                cond("value_segment", list(c.value_segment), seg, seg in c.value_segment, **model)
            if c.not_value_segment is not None:
                seg = v.value_segment if v else None
                cond("not_value_segment", list(c.not_value_segment), seg, seg not in c.not_value_segment, **model)
            if c.rfm_segment is not None:
                rfm = v.rfm_segment if v else None
                cond("rfm_segment", list(c.rfm_segment), rfm, rfm in c.rfm_segment, **model)
            if c.p_alive_below is not None:
                alive = round(v.p_alive, 4) if v else None
                ok = alive is not None and alive < c.p_alive_below
                cond("p_alive_below", c.p_alive_below, alive, ok, **model)
            if c.clv_at_least is not None:
                clv = round(v.clv, 2) if v and v.clv is not None else None
                cond("clv_at_least", c.clv_at_least, clv, clv is not None and clv >= c.clv_at_least, **model)
        if spec.name in self.custom:
            ctx = PolicyContext(customer.customer_id, status.stage, status.health, n, now, firing, customer.facts)
            verdict = self.custom[spec.name](ctx)
            cond(spec.python or spec.name, True, bool(verdict), bool(verdict))
        return out

    def model_at(self, at: str) -> Model | None:
        """The value model in force for a write recorded at `at`: read once per write, so its value
        dimension and its decisions use the same model."""
        if self._model_at is None or self._model_at[0] != at:
            self._model_at = (at, self.models(at))
        return self._model_at[1]

    def valued(self, customer: Any, now: datetime, at: str, with_rfm: bool = True) -> Valued | None:
        """The person's value now with the model in force as known at `at`; None without a model
        or a purchase (the person's facts: their own and their anonymous ids' touchpoints)."""
        model = self.model_at(at)
        if model is None:
            return None
        from ..value.person import valued

        return valued(customer.facts, now, model, self.value_rules, with_rfm)

    def _decide(
        self, customer: Any, firing: Firing, conditions: list[dict], now: datetime, at: str, aid: str
    ) -> dict[str, Any]:
        spec = firing.spec
        status, checks, caps, release = run_checks(customer, spec, now, self.rules)
        blocked = [c for c in checks if c["blocked"]]
        # Held out when it would be sent now: a decision deferred by quiet hours waits like any other
        # and is held out at its release, so that treated and held-out persons are measured from the
        # same moment, the send (held out at once, their window would start hours or days earlier).
        held = held_out(customer.customer_id, spec, self.rules) if status == "issued" else None
        if held is not None:  # it would have been sent: the control group's
            group, fraction = held
            what = "the global control group" if group == GLOBAL else f"the control group of {spec.name}"
            status, release = "held_out", None
            reason = (
                f"held out: in {what} ({fraction:.0%} of persons, by a hash of the person and the salt); "
                f"it would have been sent: {spec.name}: {firing.description}"
            )
        elif status == "issued":
            reason = f"{spec.name}: {firing.description}"
        elif status == "deferred":
            assert release is not None  # deferred by quiet hours alone, which end at release
            reason = f"deferred until {iso(release)[:16]}Z: {blocked[0]['detail']}"
        else:
            reason = "suppressed: " + "; ".join(c["detail"] for c in blocked)
        return {
            "action_id": aid,
            "customer_id": customer.customer_id,
            "policy": spec.name,
            "policy_version": self.rules.version,
            "action": spec.action,
            "channel": spec.channel,
            "purpose": spec.purpose,
            "priority": spec.priority,
            "status": status,
            "reason": reason,
            "at": at,
            "release_at": iso(release) if release else None,
            "trigger": {"type": spec.trigger.on, "id": firing.trigger_id, "description": firing.description},
            "causes": list(firing.causes),
            "conditions": conditions,
            "checks": checks,
            "caps": caps,
        }


def _resolve(target: str) -> Callable[[PolicyContext], Any]:
    import importlib

    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"custom policy function {target!r} cannot be loaded: {e}") from None
