"""`journey why` in words: the trail is JSON (None, lists, booleans), the explanation is not."""

from __future__ import annotations

import re

import pytest

from engine.policies.explain import explain

pytestmark = pytest.mark.unit


def decision(conditions: list[dict], status: str = "suppressed") -> dict:
    return {
        "action_id": "a1",
        "customer_id": "c1",
        "policy": "vip_care",
        "policy_version": "v1",
        "action": "call",
        "channel": "phone",
        "purpose": "service",
        "status": status,
        "reason": "",
        "at": "2026-01-01T10:00:00.000000+00:00",
        "release_at": None,
        "trigger": {"type": "stage_entered", "id": "t", "description": "entered loyal"},
        "conditions": conditions,
        "checks": [],
        "caps": [],
    }


def test_conditions_read_as_words_not_python():
    scored = {"model_id": None, "clv": None, "currency": "EUR", "p_alive": None}
    text = explain(
        [
            decision(
                [
                    {"condition": "stage", "expected": ["loyal", "advocate"], "value": "loyal", "ok": True},
                    {"condition": "min_purchases", "expected": 2, "value": 4, "ok": True},
                    {"condition": "not_value_segment", "expected": ["top"], "value": None, "ok": True, **scored},
                    {"condition": "clv_at_least", "expected": 100.0, "value": None, "ok": False, **scored},
                    {"condition": "my_check", "expected": True, "value": False, "ok": False},
                ]
            )
        ]
    )
    # it read: not_value_segment = None (needs ['top']); my_check = False (needs True)
    assert not re.search(r"None|True|False|\[|'", text), text
    assert "stage = loyal (needs one of loyal, advocate): met" in text
    assert "min_purchases = 4 (needs at least 2): met" in text
    assert "not_value_segment = none (needs none of top): met" in text
    assert "clv_at_least = none (needs at least 100.0): not met" in text
    assert "my_check = no (needs yes): not met" in text
