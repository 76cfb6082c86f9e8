"""A custom Python condition, as docs/policies.md shows: VIP care for big spenders."""


def big_spender(ctx) -> bool:
    return ctx.revenue >= 500


def broken(ctx) -> bool:
    """A custom condition with a bug: for tests of what a failure does."""
    raise ZeroDivisionError("the custom condition divided by zero")
