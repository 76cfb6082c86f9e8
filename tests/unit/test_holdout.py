"""Control groups: a person's place in a group is a hash of the salt, the group and the person
(docs/policies.md), the held-out share is the configured one within binomial bounds, groups are
independent, and only promotional actions have them."""

from __future__ import annotations

import hashlib
import math

import pytest
from pydantic import ValidationError

from engine.policies.holdout import held_out, share
from engine.policies.model import ContactRules, PolicySpec


def spec(holdout: float = 0.1, purpose: str = "promotional", name: str = "hello") -> PolicySpec:
    return PolicySpec.model_validate(
        {
            "name": name,
            "action": "hello_email",
            "channel": "email",
            "purpose": purpose,
            "holdout": holdout,
            "trigger": {"on": "touchpoint", "kind": "customer.registered"},
        }
    )


def test_a_share_is_the_documented_hash_and_the_same_every_time():
    digest = hashlib.sha256(b"pepper\x1fhello\x1fc-42").digest()
    assert share("c-42", "hello", "pepper") == int.from_bytes(digest[:8], "big") / 2**64
    assert share("c-42", "hello", "pepper") == share("c-42", "hello", "pepper")
    assert share("c-42", "hello", "salt") != share("c-42", "hello", "pepper")


@pytest.mark.parametrize("fraction", [0.05, 0.1, 0.5])
def test_the_held_out_share_is_the_configured_one_within_binomial_bounds(fraction):
    n = 20_000
    rules = ContactRules()
    held = sum(held_out(f"c-{i}", spec(fraction), rules) is not None for i in range(n))
    sd = math.sqrt(n * fraction * (1 - fraction))
    assert abs(held - n * fraction) < 5 * sd, (held, n * fraction)


def test_a_policy_group_and_the_global_group_are_independent():
    n, rules = 20_000, ContactRules(global_holdout=0.5)
    both = sum(
        share(f"c-{i}", "global", rules.holdout_salt) < 0.5 and share(f"c-{i}", "hello", rules.holdout_salt) < 0.5
        for i in range(n)
    )
    assert abs(both - n / 4) < 5 * math.sqrt(n * 0.25 * 0.75)
    groups = {held_out(f"c-{i}", spec(0.5), rules) for i in range(200)}
    assert groups == {("global", 0.5), ("hello", 0.5), None}  # the global group first


def test_service_actions_have_no_control_group():
    assert held_out("c-1", spec(0.0, purpose="service"), ContactRules(global_holdout=0.99)) is None
    with pytest.raises(ValidationError, match="a service action cannot have a holdout"):
        spec(0.1, purpose="service")
    with pytest.raises(ValidationError):
        spec(1.0)  # everyone held out is no policy
