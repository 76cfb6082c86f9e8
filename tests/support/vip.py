"""A custom Python condition, as docs/policies.md shows: VIP care for big spenders."""


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
