"""A custom Python condition, as docs/policies.md shows: VIP care for big spenders."""


def big_spender(ctx) -> bool:
    return ctx.revenue >= 500
