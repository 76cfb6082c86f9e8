"""A custom Python condition, as docs/policies.md shows: VIP care for big spenders."""

# The policy that uses it, as a config file would declare it.
VIP_CARE = {
    "name": "vip_care",
    "trigger": {"on": "touchpoint", "kind": "order.placed"},
    "action": "vip_call",
    "channel": "phone",
    "purpose": "service",
    "python": "tests.support.vip:big_spender",
}


def big_spender(ctx) -> bool:
    return ctx.revenue.get("EUR", 0) >= 500


def broken(ctx) -> bool:
    """A custom condition with a bug: for tests of what a failure does."""
    raise ZeroDivisionError("the custom condition divided by zero")


def broken_for_c2(ctx) -> bool:
    """Fails for one customer only: for tests of what a failure of one customer's timer does."""
    if ctx.customer_id == "c2":
        raise RuntimeError("this customer's condition is broken")
    return True
