"""`journey why`: an action or a suppression explained in plain words, from its recorded trail."""

from __future__ import annotations

from typing import Any


def explain(history: list[dict[str, Any]]) -> str:
    first, last = history[0], history[-1]
    lines = [
        f"Action {last['action_id']} — {last['policy']} ({last['action']} by {last['channel']}, "
        f"{last['purpose']}) for customer {last['customer_id']}: {_status(last['status']).upper()}."
    ]
    lines.append(
        f"Why it was considered: {first['trigger']['description']} "
        f"(trigger {first['trigger']['type']}, policy version {first['policy_version']})."
    )
    if first["conditions"]:
        lines.append(
            "Conditions: "
            + "; ".join(
                f"{c['condition']} = {_words(c['value'])} (needs {_needs(c)}): {'met' if c['ok'] else 'not met'}"
                + (_scored(c) if "model_id" in c else "")
                for c in first["conditions"]
            )
            + "."
        )
    for record in history:
        lines.append(f"At {record['at'][:16]}Z it was {_status(record['status'])}:")
        for c in record["checks"]:
            lines.append(f"  {'✗' if c['blocked'] else '✓'} {c['check']}: {c['detail']}")
        if record["status"] == "deferred":
            lines.append(f"  → held back until {record['release_at'][:16]}Z, then checked again.")
    if last["status"] == "issued":
        lines.append("Every check passed, so the action was issued.")
    elif last["status"] == "suppressed":
        blocked = [c["check"] for c in last["checks"] if c["blocked"]]
        lines.append(f"It was not sent because of: {', '.join(blocked) or 'the policy was removed'}.")
    elif last["status"] == "held_out":
        group = last["reason"].removeprefix("held out: ").split("; it would have been sent", 1)[0]
        lines.append(f"It would have been sent, but the person is {group}.")
    if last["caps"]:
        lines.append(
            "Contact pressure then: "
            + "; ".join(
                f"{c['used']}/{c['max']} promotional in {c['days']:g} days ({c['channel']})" for c in last["caps"]
            )
            + "."
        )
    return "\n".join(lines)


def _status(status: str) -> str:
    return status.replace("_", " ")  # held_out: held out


# What a condition needs, in words, where its expected value alone does not say it.
NEEDS = {
    "min_purchases": "at least {}",
    "max_purchases": "at most {}",
    "p_alive_below": "below {}",
    "clv_at_least": "at least {}",
    "not_value_segment": "none of {}",
}


def _words(value: Any) -> str:
    """A recorded value as a reader expects it (the trail is JSON: None, lists, booleans)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value) or "nothing"
    return str(value)


def _needs(c: dict[str, Any]) -> str:
    expected = c["expected"]
    if c["condition"] in NEEDS:
        return NEEDS[c["condition"]].format(_words(expected))
    if isinstance(expected, list) and len(expected) > 1:
        return f"one of {_words(expected)}"
    return _words(expected)


def _scored(c: dict[str, Any]) -> str:
    """What a value condition's scores were, and which model gave them."""
    if c["model_id"] is None:
        return " (no value model in force, or no purchase to score)"
    clv = "no CLV" if c["clv"] is None else f"CLV {c['clv']:,.2f} {c['currency']}"
    return f" ({clv}, P(alive) {c['p_alive']:.0%}, value model {c['model_id']})"
