"""A seeded, reproducible generator of realistic multi-channel customer histories.

`simulate(customers, seed, until)` streams touchpoint records (JSON-ready dicts in the
envelope format of engine.touchpoints) for demos, load tests and tests of the lifecycle
rules. Only the stdlib is used, so the same arguments give the same stream everywhere.

How it works: a first pass draws each customer's archetype and purchase dates (small
tuples only). Each customer then becomes a lazy generator, started only when the stream
reaches its first touchpoint, which walks through its "steps" (purchase sessions, emails,
contacts...) in time order and keeps the records they cause on a small local agenda keyed
by delivery time. A global heap merges the customers, so memory grows with the customers
active at one moment, not with the records produced.
"""
from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta, timezone
from heapq import heappop, heappush, heapreplace
from typing import Any, Iterator

DAY = 86400.0
HISTORY_DAYS = 3 * 365
LATE, TWICE = 0.03, 0.02          # shares of records delivered late / delivered twice
UTC = timezone.utc
OFFSETS = (timezone(timedelta(hours=2)), timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))

# name: (share, purchases lo..hi, cadence days lo..hi, odds of active / at_risk / lapsed as of until).
# Purchase dates are built backwards from the last one, so the health as of `until` is chosen,
# not hoped for: at_risk needs more than max(60, 2 x median gap) days of silence, and gaps
# vary by +-40 %, so 2.8 x cadence is always beyond the threshold.
ARCHETYPES = {
    "browser":   (0.24, (0, 0), (0, 0), (1, 0, 0)),           # never buys (some orders get voided)
    "one_timer": (0.20, (1, 1), (0, 0), (0.3, 0.35, 0.35)),
    "repeat":    (0.18, (2, 3), (30, 110), (0.4, 0.3, 0.3)),
    "regular":   (0.14, (4, 12), (14, 60), (0.7, 0.3, 0)),    # loyal; the at_risk ones go quiet 3-6 months
    "advocate":  (0.10, (5, 14), (14, 45), (0.85, 0.15, 0)),  # loyal + review/referral/NPS 9-10 this year
    "churner":   (0.14, (4, 12), (20, 70), (0, 0, 1)),        # bought often, stopped over a year ago
}
NAMES, SHARES = list(ARCHETYPES), [a[0] for a in ARCHETYPES.values()]
HEALTHS = ("active", "at_risk", "lapsed")

COUNTRIES = (("DE", "Europe/Berlin", "EUR", "+49", ("Berlin", "Hamburg", "Munich")),
             ("FR", "Europe/Paris", "EUR", "+33", ("Paris", "Lyon")),
             ("NL", "Europe/Amsterdam", "EUR", "+31", ("Amsterdam", "Utrecht")),
             ("GB", "Europe/London", "GBP", "+44", ("London", "Leeds")),
             ("CH", "Europe/Zurich", "CHF", "+41", ("Zurich", "Basel")),
             ("SE", "Europe/Stockholm", "SEK", "+46", ("Stockholm",)),
             ("US", "America/New_York", "USD", "+1", ("New York", "Boston")))
COUNTRY_WEIGHTS = (35, 15, 10, 15, 5, 5, 15)
FIRST = ("Anna", "Ben", "Clara", "David", "Emma", "Felix", "Greta", "Hugo", "Ines", "Jonas",
         "Lea", "Max", "Nora", "Oskar", "Paula", "Rafael", "Sofia", "Tom", "Uma", "Yusuf")
LAST = ("Meyer", "Dubois", "Jansen", "Smith", "Keller", "Lindqvist", "Garcia", "Novak",
        "Rossi", "Weber", "Brown", "Fischer", "Martin", "Okafor", "Schulz", "Kowalski")
BUY_CHANNELS, BUY_WEIGHTS = ("web", "mobile_app", "in_store", "phone", "partner"), (45, 30, 15, 5, 5)
ACQ_CHANNELS, ACQ_WEIGHTS = ("web", "mobile_app", "social", "in_store", "partner", "phone"), (35, 20, 15, 15, 10, 5)
SOURCE = {"web": "shop", "mobile_app": "app", "in_store": "pos", "phone": "crm", "partner": "partner-api",
          "social": "marketing"}
SEVERITIES, SEVERITY_WEIGHTS = ("low", "medium", "high", "critical"), (40, 35, 20, 5)


def simulate(customers: int, seed: int, until: datetime) -> Iterator[dict]:
    """Touchpoint records (JSON-ready dicts) in delivery order for `customers` customers,
    with histories spanning roughly the 3 years before `until` (a UTC-aware datetime)."""
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware (UTC)")
    sim = _Sim(seed, until)
    plans = sorted(sim.plan(i) for i in range(customers))   # (first touchpoint, i, archetype, buys)
    heap: list = []                                         # (due, seq, record, generator)
    p = 0
    while p < len(plans) or heap:
        # Start each customer just before its first record is due, never earlier: memory
        # holds only the customers whose histories overlap the current point in the stream.
        while p < len(plans) and (not heap or plans[p][0] <= heap[0][0]):
            gen = sim.journey(*plans[p])
            plans[p] = None                                 # type: ignore[call-overload]
            p += 1
            first = next(gen, None)
            if first is not None:
                heappush(heap, (*first, gen))
        if not heap:
            continue
        _, _, record, gen = heap[0]
        following = next(gen, None)
        if following is None:
            heappop(heap)
        else:
            heapreplace(heap, (*following, gen))
        yield record


class _Sim:
    def __init__(self, seed: int, until: datetime):
        # One shared Random: the merge asks the customers for records in a fixed order,
        # so the draws (and the output) are the same on every run.
        self.seed, self.rng = seed, random.Random(seed)
        self.now = until.timestamp()
        self.t0 = self.now - HISTORY_DAYS * DAY
        self.n = 0                        # touchpoints made so far: the <n> of event ids
        self.seq = itertools.count()      # tie-breaker, so heaps never compare records

    def plan(self, i: int) -> tuple[float, int, str, list[float]]:
        rng, now = self.rng, self.now
        name = rng.choices(NAMES, SHARES)[0]
        _, (nlo, nhi), (clo, chi), odds = ARCHETYPES[name]
        n, cadence = rng.randint(nlo, nhi), rng.uniform(clo, chi)
        if n == 0:
            return rng.uniform(self.t0, now - DAY), i, name, []
        health = rng.choices(HEALTHS, odds)[0]
        if health == "active":
            since = rng.uniform(0.5, max(55.0, cadence))
        elif health == "at_risk":
            lo = max(63.0, 2.8 * cadence + 3, 90.0 if n >= 4 else 0)
            since = rng.uniform(lo, max(lo + 5, 185.0 if n >= 4 else 350.0))
        else:
            since = rng.uniform(370, 720)
        t = now - since * DAY
        buys = [t]
        for _ in range(n - 1):            # earlier purchases, until the history window ends
            t -= cadence * rng.uniform(0.6, 1.4) * DAY
            if t < self.t0 + 2 * DAY:
                break
            buys.append(t)
        buys.reverse()
        return max(self.t0, buys[0] - rng.uniform(0, 45) * DAY), i, name, buys

    def emit(self, agenda: list, cid: str, t: float, kind: str, channel: str, source: str,
             props: dict | None = None, traits: dict | None = None) -> None:
        """Schedule one touchpoint on a customer's agenda; what would happen after `until` hasn't yet."""
        if t > self.now:
            return
        rng = self.rng
        self.n += 1
        tz = UTC if rng.random() > 0.05 else rng.choice(OFFSETS)   # same instant, other offset
        record = {"event_id": f"sim-{self.seed}-{self.n}", "customer_id": cid, "kind": kind,
                  "occurred_at": datetime.fromtimestamp(int(t), tz).isoformat(), "channel": channel,
                  "source": source, "properties": props or {}, "traits": traits}
        due, r = t, rng.random()
        if r < LATE:
            due += rng.uniform(0.05, 21) * DAY
        heappush(agenda, (due, next(self.seq), record))
        if r > 1 - TWICE:                 # a redelivery: an identical copy, a bit later
            copy = {**record, "properties": dict(record["properties"]), "traits": traits and dict(traits)}
            heappush(agenda, (due + rng.uniform(60, 3 * DAY), next(self.seq), copy))

    def journey(self, start: float, i: int, name: str, buys: list[float]) -> Iterator[tuple]:
        """One customer's records as (due, seq, record), in order of delivery time."""
        rng, now = self.rng, self.now
        cid, agenda = f"cust-{i:06d}", []
        uniform, random_ = rng.uniform, rng.random

        def emit(t: float, kind: str, channel: str, source: str, props: dict | None = None,
                 traits: dict | None = None) -> None:
            self.emit(agenda, cid, t, kind, channel, source, props, traits)

        def scores(t: float) -> tuple[int, int]:
            # (rating, nps). Regulars must not turn advocate by accident: recent feedback is lukewarm.
            if name == "advocate":
                return rng.randint(4, 5), rng.randint(9, 10)
            if name == "regular" and t > now - 370 * DAY:
                return rng.randint(1, 3), rng.randint(3, 8)
            return rng.choices((1, 2, 3, 4, 5), (1, 1, 2, 3, 3))[0], rng.randint(0, 10)

        country, tz, currency, prefix, cities = rng.choices(COUNTRIES, COUNTRY_WEIGHTS)[0]
        first, last, city = rng.choice(FIRST), rng.choice(LAST), rng.choice(cities)
        traits = {"name": f"{first} {last}", "email": f"{first}.{last}.{i}@example.com".lower(),
                  "phone": f"{prefix} {rng.randrange(10**8, 10**9)}",
                  "address": f"{rng.randint(1, 199)} Market Street, {city}", "city": city,
                  "country": country, "timezone": tz, "language": "en" if country in ("GB", "US") else
                  country.lower(), "tier": "gold" if name in ("regular", "advocate") else "standard"}
        shop = rng.choices(BUY_CHANNELS, BUY_WEIGHTS)[0]     # where this customer usually buys
        by_invoice = random_() < 0.15
        # Acquisition: a first visit, then (for most) registration with consents.
        acq = rng.choices(ACQ_CHANNELS, ACQ_WEIGHTS)[0]
        first_kind = {"in_store": "store.visited", "phone": "call.completed"}.get(acq, "page.viewed")
        emit(start, first_kind, acq, SOURCE[acq], {"landing": "/"} if first_kind == "page.viewed" else {})
        registered = name != "browser" or random_() < 0.7
        subscribed = registered and random_() < 0.65
        if registered:
            t = start + uniform(60, 1800)
            emit(t, "customer.registered", acq, "crm", {"via": acq}, traits)
            emit(t + 5, "consent.changed", "email", "crm", {"channel": "email", "purpose": "promotional",
                                                            "granted": subscribed})
            if random_() < 0.3:
                emit(t + 6, "consent.changed", "sms", "crm", {"channel": "sms", "purpose": "service", "granted": True})

        fade = min(now, (buys[-1] if buys else start) + uniform(20, 200) * DAY)   # browsing after the last buy
        steps = [(b, "buy") for b in buys]
        steps += [(uniform(start, fade), "browse") for _ in range(rng.randint(1, 4))]
        steps += [(uniform(start, now), "contact") for _ in range(rng.choice((0, 0, 1, 1, 2)))]
        if name == "browser" and random_() < 0.15:
            steps.append((uniform(start, fade), "void"))    # ordered, then cancelled or fully refunded
        if name == "advocate":
            steps.append((max(start + DAY, uniform(now - 330 * DAY, now - 35 * DAY)), "advocacy"))
        if subscribed:
            t = start + uniform(3, 60) * DAY
            while t < now:                                  # newsletters keep coming after buying stops
                steps.append((t, "email"))
                t += uniform(60, 150) * DAY
            if random_() < 0.15:
                steps.append((uniform(start, now), "unsubscribe"))
        if registered and random_() < 0.1:
            steps.append((uniform(start, now), "profile"))
        steps.sort()

        k = 0                                               # orders so far, for order ids
        for t, what in steps:
            while agenda and agenda[0][0] < t:              # nothing later can be due earlier than t
                yield heappop(agenda)
            if what in ("buy", "void"):
                k += 1
                ch = shop if random_() < 0.8 else rng.choices(BUY_CHANNELS, BUY_WEIGHTS)[0]
                if ch == "in_store":
                    emit(t, "store.visited", ch, "pos", {"city": city})
                elif random_() < 0.6:
                    emit(t, "product.viewed", ch, SOURCE[ch], {"sku": f"sku-{rng.randint(1, 500):04d}"})
                oid, amount, ot = f"ord-{i:06d}-{k}", round(rng.lognormvariate(3.8, 0.7), 2), t + uniform(120, 3600)
                emit(ot, "order.placed", ch, SOURCE[ch], {"order_id": oid, "amount": amount, "currency": currency})
                r = random_() if what == "buy" else random_() * 0.08
                if r < 0.03:
                    emit(ot + uniform(600, 2 * DAY), "order.cancelled", ch, SOURCE[ch], {"order_id": oid})
                    continue
                if r < 0.08:                                # refunds: mostly full, some partial
                    back = amount if what == "void" or random_() < 0.6 else round(amount * uniform(0.1, 0.6), 2)
                    emit(ot + uniform(3, 30) * DAY, "order.refunded", "web", "billing",
                         {"order_id": oid, "amount": back, "currency": currency})
                if random_() < 0.2:
                    emit(ot + 30, "email.sent", "email", "shop", {"template": "order_confirmation"})
                if by_invoice:
                    inv = {"invoice_id": f"inv-{i:06d}-{k}", "amount": amount, "currency": currency}
                    it, via = ot + uniform(0.05, 1) * DAY, rng.choices(("email", "mail", "fax"), (70, 27, 3))[0]
                    emit(it, "invoice.issued", via, "billing", inv)
                    if random_() < 0.7:
                        emit(it + uniform(3, 28) * DAY, "invoice.paid", "web", "billing", inv)
                    else:                                   # overdue; most pay eventually, some never
                        emit(it + 30 * DAY, "invoice.overdue", "email", "billing", inv)
                        if random_() < 0.7:
                            emit(it + uniform(35, 90) * DAY, "invoice.paid", "web", "billing", inv)
                if random_() < 0.04:
                    cmp = f"cmp-{i:06d}-{k}"
                    ct = ot + uniform(2, 20) * DAY
                    emit(ct, "complaint.filed", rng.choices(("phone", "email", "chat", "mail", "fax"),
                                                            (30, 35, 25, 8, 2))[0], "support",
                         {"complaint_id": cmp, "severity": rng.choices(SEVERITIES, SEVERITY_WEIGHTS)[0]})
                    if random_() < 0.85:
                        emit(ct + uniform(0.2, 40) * DAY, "complaint.resolved", "email", "support", {"complaint_id": cmp})
                if random_() < 0.12:
                    rt = ot + uniform(5, 30) * DAY
                    emit(rt, "review.posted", ch if ch in ("web", "mobile_app") else "web", "shop",
                         {"rating": scores(rt)[0], "order_id": oid})
                if random_() < 0.08:
                    st = ot + uniform(1, 14) * DAY
                    rating, nps = scores(st)
                    emit(st, "survey.answered", rng.choice(("email", "sms", "web")), "survey",
                         {"nps": nps, "csat": max(1, rating)} if random_() < 0.6 else {"nps": nps})
            elif what == "browse":
                ch = rng.choice(("web", "web", "mobile_app", "social"))
                emit(t, "page.viewed", ch, SOURCE[ch], {"path": rng.choice(("/", "/sale", "/new", "/help"))})
                if random_() < 0.6:
                    emit(t + uniform(10, 600), "product.viewed", ch, SOURCE[ch], {"sku": f"sku-{rng.randint(1, 500):04d}"})
            elif what == "email" and subscribed:
                campaign = f"cmp-{datetime.fromtimestamp(int(t), UTC):%Y-%m}"
                emit(t, "email.sent", "email", "marketing", {"campaign": campaign})
                if random_() < 0.35:
                    ot = t + uniform(0.01, 2) * DAY
                    emit(ot, "email.opened", "email", "marketing", {"campaign": campaign})
                    if random_() < 0.3:
                        emit(ot + uniform(5, 600), "email.clicked", "email", "marketing", {"campaign": campaign})
                        emit(ot + 620, "page.viewed", "web", "shop", {"path": "/sale", "utm_campaign": campaign})
            elif what == "unsubscribe":
                subscribed = False
                emit(t, "consent.changed", "email", "marketing", {"channel": "email", "purpose": "promotional",
                                                                  "granted": False})
            elif what == "profile":
                change = rng.choice(({"address": f"{rng.randint(1, 199)} Station Road, {city}"},
                                     {"phone": f"{prefix} {rng.randrange(10**8, 10**9)}"}, {"tier": "silver"}))
                emit(t, "profile.updated", "web", "crm", {"fields": sorted(change)}, change)
            elif what == "advocacy":                        # a fresh advocacy signal within the last year
                how = rng.choice(("referral", "review", "survey"))
                if how == "referral":
                    emit(t, "referral.made", "social", "marketing", {"code": f"ref-{i:06d}"})
                    emit(t + uniform(2, 30) * DAY, "referral.converted", "web", "marketing", {"code": f"ref-{i:06d}"})
                elif how == "review":
                    emit(t, "review.posted", "web", "shop", {"rating": rng.randint(4, 5)})
                else:
                    emit(t, "survey.answered", "email", "survey", {"nps": rng.randint(9, 10)})
            elif what == "contact":                         # service touchpoints unrelated to an order
                how = rng.choice(("call", "ticket", "store", "referral", "survey"))
                if how == "call":
                    emit(t, "call.completed", "phone", "support", {"duration_s": rng.randint(30, 1800)})
                elif how == "ticket":
                    ch = rng.choice(("chat", "email", "phone"))
                    emit(t, "ticket.opened", ch, "support", {"ticket_id": f"tck-{i:06d}-{int(t)}"})
                    if random_() < 0.9:
                        emit(t + uniform(0.1, 10) * DAY, "ticket.resolved", ch, "support", {"ticket_id": f"tck-{i:06d}-{int(t)}"})
                elif how == "store":
                    emit(t, "store.visited", "in_store", "pos", {"city": city})
                elif how == "referral":
                    emit(t, "referral.made", "social", "marketing", {"code": f"ref-{i:06d}"})
                    if random_() < 0.4 and (name != "regular" or t < now - 400 * DAY):
                        emit(t + uniform(2, 30) * DAY, "referral.converted", "web", "marketing", {"code": f"ref-{i:06d}"})
                else:
                    emit(t, "survey.answered", "sms", "survey", {"csat": rng.randint(1, 5)})
        while agenda:
            yield heappop(agenda)
