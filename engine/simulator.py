"""A seeded, reproducible generator of realistic multi-channel customer histories.

`simulate(customers, seed, until)` streams touchpoint records (JSON-ready dicts in the
envelope format of engine.touchpoints) for demos, load tests and tests of the lifecycle
rules. Only the stdlib is used, so the same arguments give the same stream everywhere.

How it works: a first pass draws each customer's archetype and purchase dates (small
tuples only). Each customer then becomes a lazy generator, started only when the stream
reaches its first touchpoint, which walks through its "steps" (purchase sessions, emails,
contacts...) in time order and keeps the records they cause on a small local agenda keyed
by delivery time. A global heap merges the customers, so memory grows with the customers
active at one moment (a few objects each), not with the records produced.
"""

from __future__ import annotations

import itertools
import random
import zlib
from bisect import bisect
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from heapq import heappop, heappush, heapreplace
from itertools import accumulate
from typing import Any

from .rules import ILLUSTRATIVE_RATES

DAY = 86400.0
HISTORY_DAYS = 3 * 365
LATE, TWICE = 0.03, 0.02  # shares of records delivered late / delivered twice
UTC = UTC
OFFSETS = (timezone(timedelta(hours=2)), timezone(timedelta(hours=1)), timezone(timedelta(hours=-5)))

# name: (share, purchases lo..hi, cadence days lo..hi, odds of active / at_risk / lapsed as of until).
# Purchase dates are built backwards from the last one, so the health as of `until` is chosen,
# not hoped for: at_risk needs more than max(60, 2 x median gap) days of silence, and gaps
# vary by +-40 %, so 2.8 x cadence is always beyond the threshold.
ARCHETYPES = {
    "browser": (0.24, (0, 0), (0, 0), (1, 0, 0)),  # never buys (some orders get voided)
    "one_timer": (0.20, (1, 1), (0, 0), (0.3, 0.35, 0.35)),
    "repeat": (0.18, (2, 3), (30, 110), (0.4, 0.3, 0.3)),
    "regular": (0.14, (4, 12), (14, 60), (0.7, 0.3, 0)),  # loyal; the at_risk ones go quiet 3-6 months
    "advocate": (0.10, (5, 14), (14, 45), (0.85, 0.15, 0)),  # loyal + review/referral/NPS 9-10 this year
    "churner": (0.14, (4, 10), (20, 70), (0, 0, 1)),  # bought often, stopped over a year ago
}
HEALTHS = ("active", "at_risk", "lapsed")


def _table(weighted: dict) -> tuple[tuple, list[float]]:
    return tuple(weighted), list(accumulate(weighted.values()))


def _pick(rng: random.Random, table: tuple[tuple, list[float]]) -> Any:
    options, cum = table
    return options[bisect(cum, rng.random() * cum[-1])]


ARCHETYPE = _table({name: a[0] for name, a in ARCHETYPES.items()})

COUNTRY = _table(
    {
        ("DE", "Europe/Berlin", "EUR", "+49", ("Berlin", "Hamburg", "Munich")): 35,
        ("FR", "Europe/Paris", "EUR", "+33", ("Paris", "Lyon")): 15,
        ("NL", "Europe/Amsterdam", "EUR", "+31", ("Amsterdam", "Utrecht")): 10,
        ("GB", "Europe/London", "GBP", "+44", ("London", "Leeds")): 15,
        ("CH", "Europe/Zurich", "CHF", "+41", ("Zurich", "Basel")): 5,
        ("SE", "Europe/Stockholm", "SEK", "+46", ("Stockholm",)): 5,
        ("US", "America/New_York", "USD", "+1", ("New York", "Boston")): 15,
    }
)
FIRST = (
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Lea",
    "Max",
    "Nora",
    "Oskar",
    "Paula",
    "Rafael",
    "Sofia",
    "Tom",
    "Uma",
    "Yusuf",
)
LAST = (
    "Meyer",
    "Dubois",
    "Jansen",
    "Smith",
    "Keller",
    "Lindqvist",
    "Garcia",
    "Novak",
    "Rossi",
    "Weber",
    "Brown",
    "Fischer",
    "Martin",
    "Okafor",
    "Schulz",
    "Kowalski",
)
BUY_CHANNEL = _table({"web": 45, "mobile_app": 30, "in_store": 15, "phone": 5, "partner": 5})
ACQ_CHANNEL = _table({"web": 35, "mobile_app": 20, "social": 15, "in_store": 15, "partner": 10, "phone": 5})
SOURCE = {
    "web": "shop",
    "mobile_app": "app",
    "in_store": "pos",
    "phone": "crm",
    "partner": "partner-api",
    "social": "marketing",
}
SEVERITY = _table({"low": 40, "medium": 35, "high": 20, "critical": 5})
COMPLAINT_CHANNEL = _table({"phone": 30, "email": 35, "chat": 25, "mail": 8, "fax": 2})
INVOICE_CHANNEL = _table({"email": 70, "mail": 27, "fax": 3})
RATING = _table({1: 1, 2: 1, 3: 2, 4: 3, 5: 3})


def simulate(customers: int, seed: int, until: datetime) -> Iterator[dict]:
    """Touchpoint records (JSON-ready dicts) in delivery order for `customers` customers,
    with histories spanning roughly the 3 years before `until` (a UTC-aware datetime)."""
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware (UTC)")
    sim = _Sim(seed, until)
    # (first touchpoint, i, archetype, buys), each let go of once its customer starts
    plans = deque(sorted(sim.plan(i) for i in range(customers)))
    journeys: list = [None] * customers  # by customer, while running
    heap: list = []  # each running customer's next entry
    while True:
        # Start each customer just before its first record is due, never earlier: memory
        # holds only the customers whose histories overlap the current point in the stream.
        while plans and (not heap or plans[0][0] <= heap[0][0]):
            start, i, name, buys = plans.popleft()
            journeys[i] = _Customer(sim, i, name).journey(start, buys)
            heappush(heap, next(journeys[i]))  # the first visit is never after until
        if not heap:
            return
        entry = heap[0]
        _, _, i, n, kind, at, channel, source, props, traits = entry
        following = next(journeys[i], None)
        if following is None:
            heappop(heap)
            journeys[i] = None
        else:
            heapreplace(heap, following)
        yield {
            "event_id": f"sim-{seed}-{n}",
            "customer_id": f"cust-{i:06d}",
            "kind": kind,
            "occurred_at": at,
            "channel": channel,
            "source": source,
            "properties": dict(props),
            "traits": dict(traits) if traits else None,
        }


class _Sim:
    def __init__(self, seed: int, until: datetime):
        # One shared Random: the merge asks the customers for records in a fixed order,
        # so the draws (and the output) are the same on every run.
        self.seed, self.rng = seed, random.Random(seed)
        self.now = until.timestamp()
        self.t0 = self.now - HISTORY_DAYS * DAY
        self.n = 0  # touchpoints made so far: the <n> of event ids
        self.seq = itertools.count()  # tie-breaker, so heaps never compare records

    def plan(self, i: int) -> tuple[float, int, str, tuple[float, ...]]:
        """(first touchpoint, i, archetype, purchase session times) of customer i."""
        rng, now = self.rng, self.now
        name = _pick(rng, ARCHETYPE)
        _, (nlo, nhi), (clo, chi), odds = ARCHETYPES[name]
        n, cadence = rng.randint(nlo, nhi), rng.uniform(clo, chi)
        if n == 0:
            return rng.uniform(self.t0, now - DAY), i, name, ()
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
        for _ in range(n - 1):  # earlier purchases, until the history window ends
            t -= cadence * rng.uniform(0.6, 1.4) * DAY
            if t < self.t0 + 2 * DAY:
                break
            buys.append(t)
        buys.reverse()
        return max(self.t0, buys[0] - rng.uniform(0, 45) * DAY), i, name, tuple(buys)


class _Customer:
    """One customer's profile and pending records (an agenda keyed by delivery time).

    Entries are (due, seq, i, n, kind, occurred_at, channel, source, property items, trait
    items): flat tuples of atomic values, which the GC soon stops tracking, as records can
    wait for weeks. For the same reason the state is a slotted object, not closures: with
    100,000 customers waiting, every object per customer is walked by each full collection.
    Handlers (buy, browse, ...) schedule the records of one step.
    """

    __slots__ = (
        "sim",
        "rng",
        "i",
        "name",
        "agenda",
        "city",
        "prefix",
        "currency",
        "shop",
        "by_invoice",
        "subscribed",
        "orders",
    )

    def __init__(self, sim: _Sim, i: int, name: str):
        self.sim, self.rng, self.i, self.name = sim, sim.rng, i, name
        self.agenda: list = []
        self.shop = _pick(self.rng, BUY_CHANNEL)  # where this customer usually buys
        self.by_invoice = self.rng.random() < 0.15
        self.subscribed, self.orders = False, 0

    def journey(self, start: float, buys: tuple[float, ...]) -> Iterator[tuple]:
        rng, now, name, agenda = self.rng, self.sim.now, self.name, self.agenda
        registered = self.register(start)
        fade = min(now, (buys[-1] if buys else start) + rng.uniform(20, 200) * DAY)  # browsing after the last buy
        steps = [(b, "buy") for b in buys]
        for _ in range(rng.randint(1, 3)):
            steps.append((rng.uniform(start, fade), "browse"))
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            steps.append((rng.uniform(start, now), "contact"))
        if name == "browser" and rng.random() < 0.15:
            steps.append((rng.uniform(start, fade), "void"))  # ordered, then cancelled or fully refunded
        if name == "advocate":
            steps.append((max(start + DAY, rng.uniform(now - 330 * DAY, now - 35 * DAY)), "advocacy"))
        if self.subscribed:
            t = start + rng.uniform(3, 60) * DAY
            while t < now:  # newsletters keep coming after buying stops
                steps.append((t, "email"))
                t += rng.uniform(80, 180) * DAY
            if rng.random() < 0.15:
                steps.append((rng.uniform(start, now), "unsubscribe"))
        if registered and rng.random() < 0.1:
            steps.append((rng.uniform(start, now), "profile"))
        steps.sort(reverse=True)  # popped from the end: done steps are freed
        while steps:
            t, what = steps.pop()
            while agenda and agenda[0][0] < t:  # nothing scheduled later can be due before t
                yield heappop(agenda)
            getattr(self, what)(t)
        while agenda:
            yield heappop(agenda)

    def emit(
        self, t: float, kind: str, channel: str, source: str, props: dict | None = None, traits: dict | None = None
    ) -> None:
        """Schedule one touchpoint; what would happen after `until` hasn't happened yet."""
        sim, rng = self.sim, self.rng
        if t > sim.now:
            return
        sim.n += 1
        tz = UTC if rng.random() > 0.05 else rng.choice(OFFSETS)  # same instant, other offset
        body = (
            self.i,
            sim.n,
            kind,
            datetime.fromtimestamp(int(t), tz).isoformat(),
            channel,
            source,
            tuple(props.items()) if props else (),
            tuple(traits.items()) if traits else None,
        )
        due, r = t, rng.random()
        if r < LATE:
            due += rng.uniform(0.05, 21) * DAY
        heappush(self.agenda, (due, next(sim.seq), *body))
        if r > 1 - TWICE:  # a redelivery of the identical record, a bit later
            heappush(self.agenda, (due + rng.uniform(60, 3 * DAY), next(sim.seq), *body))

    def scores(self, t: float) -> tuple[int, int]:
        """(rating, nps). Regulars must not turn advocate by accident: recent feedback is lukewarm."""
        rng = self.rng
        if self.name == "advocate":
            return rng.randint(4, 5), rng.randint(9, 10)
        if self.name == "regular" and t > self.sim.now - 370 * DAY:
            return rng.randint(1, 3), rng.randint(3, 8)
        return _pick(rng, RATING), rng.randint(0, 10)

    def register(self, t: float) -> bool:
        """Acquisition: a first visit, then (for most) registration with traits and consents."""
        rng, emit, i = self.rng, self.emit, self.i
        country, tz, self.currency, self.prefix, cities = _pick(rng, COUNTRY)
        first, last, self.city = rng.choice(FIRST), rng.choice(LAST), rng.choice(cities)
        acq = _pick(rng, ACQ_CHANNEL)
        first_kind = {"in_store": "store.visited", "phone": "call.completed"}.get(acq, "page.viewed")
        emit(t, first_kind, acq, SOURCE[acq], {"landing": "/"} if first_kind == "page.viewed" else {})
        if self.name == "browser" and rng.random() < 0.3:
            return False  # stays anonymous: no traits, no consents
        traits = {
            "name": f"{first} {last}",
            "email": f"{first}.{last}.{i}@example.com".lower(),
            "phone": f"{self.prefix} {rng.randrange(10**8, 10**9)}",
            "address": f"{rng.randint(1, 199)} Market Street, {self.city}",
            "city": self.city,
            "country": country,
            "timezone": tz,
            "language": "en" if country in ("GB", "US") else country.lower(),
            "tier": "gold" if self.name in ("regular", "advocate") else "standard",
        }
        t += rng.uniform(60, 1800)
        emit(t, "customer.registered", acq, "crm", {"via": acq}, traits)
        self.subscribed = rng.random() < 0.65
        emit(
            t + 5,
            "consent.changed",
            "email",
            "crm",
            {"channel": "email", "purpose": "promotional", "granted": self.subscribed},
        )
        if rng.random() < 0.3:
            emit(t + 6, "consent.changed", "sms", "crm", {"channel": "sms", "purpose": "service", "granted": True})
        return True

    def void(self, t: float) -> None:
        self.buy(t, void=True)

    def buy(self, t: float, void: bool = False) -> None:
        """A purchase session and its consequences: refunds, invoices, complaints, feedback."""
        rng, emit, i, cur = self.rng, self.emit, self.i, self.currency
        self.orders += 1
        k = self.orders
        ch = self.shop if rng.random() < 0.8 else _pick(rng, BUY_CHANNEL)
        if ch == "in_store":
            emit(t, "store.visited", ch, "pos", {"city": self.city})
        elif rng.random() < 0.6:
            emit(t, "product.viewed", ch, SOURCE[ch], {"sku": f"sku-{rng.randint(1, 500):04d}"})
        # A basket of about 45 euros, priced in the customer's currency (a Swede pays in kronor).
        price = rng.lognormvariate(3.8, 0.7) / ILLUSTRATIVE_RATES.get(cur, 1.0)
        oid, amount, ot = f"ord-{i:06d}-{k}", round(price, 2), t + rng.uniform(120, 3600)
        emit(ot, "order.placed", ch, SOURCE[ch], {"order_id": oid, "amount": amount, "currency": cur})
        r = rng.random() * (0.08 if void else 1)
        if r < 0.03:
            emit(ot + rng.uniform(600, 2 * DAY), "order.cancelled", ch, SOURCE[ch], {"order_id": oid})
            return
        if r < 0.08:  # refunds: mostly full, some partial
            back = amount if void or rng.random() < 0.6 else round(amount * rng.uniform(0.1, 0.6), 2)
            emit(
                ot + rng.uniform(3, 30) * DAY,
                "order.refunded",
                "web",
                "billing",
                {"order_id": oid, "amount": back, "currency": cur},
            )
        if rng.random() < 0.2:
            emit(ot + 30, "email.sent", "email", "shop", {"template": "order_confirmation"})
        if self.by_invoice:
            inv = {"invoice_id": f"inv-{i:06d}-{k}", "amount": amount, "currency": cur}
            it = ot + rng.uniform(0.05, 1) * DAY
            emit(it, "invoice.issued", _pick(rng, INVOICE_CHANNEL), "billing", inv)
            if rng.random() < 0.7:
                emit(it + rng.uniform(3, 28) * DAY, "invoice.paid", "web", "billing", inv)
            else:  # overdue; most pay eventually, some never
                emit(it + 30 * DAY, "invoice.overdue", "email", "billing", inv)
                if rng.random() < 0.7:
                    emit(it + rng.uniform(35, 90) * DAY, "invoice.paid", "web", "billing", inv)
        if rng.random() < 0.04:
            cmp, ct = f"cmp-{i:06d}-{k}", ot + rng.uniform(2, 20) * DAY
            emit(
                ct,
                "complaint.filed",
                _pick(rng, COMPLAINT_CHANNEL),
                "support",
                {"complaint_id": cmp, "severity": _pick(rng, SEVERITY)},
            )
            if rng.random() < 0.85:
                emit(ct + rng.uniform(0.2, 40) * DAY, "complaint.resolved", "email", "support", {"complaint_id": cmp})
        if rng.random() < 0.12:
            rt = ot + rng.uniform(5, 30) * DAY
            emit(
                rt,
                "review.posted",
                ch if ch in ("web", "mobile_app") else "web",
                "shop",
                {"rating": self.scores(rt)[0], "order_id": oid},
            )
        if rng.random() < 0.08:
            st = ot + rng.uniform(1, 14) * DAY
            rating, nps = self.scores(st)
            emit(
                st,
                "survey.answered",
                rng.choice(("email", "sms", "web")),
                "survey",
                {"nps": nps, "csat": rating} if rng.random() < 0.6 else {"nps": nps},
            )

    def browse(self, t: float) -> None:
        rng = self.rng
        ch = rng.choice(("web", "web", "mobile_app", "social"))
        self.emit(t, "page.viewed", ch, SOURCE[ch], {"path": rng.choice(("/", "/sale", "/new", "/help"))})
        if rng.random() < 0.6:
            self.emit(
                t + rng.uniform(10, 600), "product.viewed", ch, SOURCE[ch], {"sku": f"sku-{rng.randint(1, 500):04d}"}
            )

    def email(self, t: float) -> None:
        if not self.subscribed:
            return
        rng, emit = self.rng, self.emit
        campaign = {"campaign": f"nl-{datetime.fromtimestamp(int(t), UTC):%Y-%m}"}
        emit(t, "email.sent", "email", "marketing", campaign)
        if rng.random() < 0.35:
            ot = t + rng.uniform(0.01, 2) * DAY
            emit(ot, "email.opened", "email", "marketing", campaign)
            if rng.random() < 0.3:
                emit(ot + rng.uniform(5, 600), "email.clicked", "email", "marketing", campaign)
                emit(ot + 620, "page.viewed", "web", "shop", {"path": "/sale", "utm_campaign": campaign["campaign"]})

    def unsubscribe(self, t: float) -> None:
        self.subscribed = False
        self.emit(
            t, "consent.changed", "email", "marketing", {"channel": "email", "purpose": "promotional", "granted": False}
        )

    def profile(self, t: float) -> None:
        rng = self.rng
        change = rng.choice(
            (
                {"address": f"{rng.randint(1, 199)} Station Road, {self.city}"},
                {"phone": f"{self.prefix} {rng.randrange(10**8, 10**9)}"},
                {"tier": "silver"},
            )
        )
        self.emit(t, "profile.updated", "web", "crm", {"fields": ",".join(change)}, change)

    def advocacy(self, t: float) -> None:
        """Advocates get a fresh advocacy signal within the last year."""
        rng, emit, code = self.rng, self.emit, {"code": f"ref-{self.i:06d}"}
        how = rng.choice(("referral", "review", "survey"))
        if how == "referral":
            emit(t, "referral.made", "social", "marketing", code)
            emit(t + rng.uniform(2, 30) * DAY, "referral.converted", "web", "marketing", code)
        elif how == "review":
            emit(t, "review.posted", "web", "shop", {"rating": rng.randint(4, 5)})
        else:
            emit(t, "survey.answered", "email", "survey", {"nps": rng.randint(9, 10)})

    def contact(self, t: float) -> None:
        """Service touchpoints unrelated to an order."""
        rng, emit = self.rng, self.emit
        how = rng.choice(("call", "ticket", "store", "referral", "survey"))
        if how == "call":
            emit(t, "call.completed", "phone", "support", {"duration_s": rng.randint(30, 1800)})
        elif how == "ticket":
            ch, ticket = rng.choice(("chat", "email", "phone")), {"ticket_id": f"tck-{self.i:06d}-{int(t)}"}
            emit(t, "ticket.opened", ch, "support", ticket)
            if rng.random() < 0.9:
                emit(t + rng.uniform(0.1, 10) * DAY, "ticket.resolved", ch, "support", ticket)
        elif how == "store":
            emit(t, "store.visited", "in_store", "pos", {"city": self.city})
        elif how == "referral":
            code = {"code": f"ref-{self.i:06d}"}
            emit(t, "referral.made", "social", "marketing", code)
            if rng.random() < 0.4 and (self.name != "regular" or t < self.sim.now - 400 * DAY):
                emit(t + rng.uniform(2, 30) * DAY, "referral.converted", "web", "marketing", code)
        else:
            emit(t, "survey.answered", "sms", "survey", {"csat": rng.randint(1, 5)})


def simulate_account(customer_id: str, touchpoints: int, seed: int, until: datetime) -> Iterator[dict]:
    """One heavy customer, as a dealer or a B2B account is: `touchpoints` records over the 3 years
    before `until`, in time order, a fifth of them orders (invoiced: issued, some overdue, paid),
    with page views, emails, a few refunds, cancellations, reviews and consent changes. For
    benchmarks and tests of histories whose length must not slow the engine down."""
    if until.tzinfo is None:
        raise ValueError("until must be timezone-aware (UTC)")
    rng = random.Random(seed)
    end = until.timestamp()
    start = end - HISTORY_DAYS * DAY
    times = sorted(rng.uniform(start, end - 60) for _ in range(touchpoints))
    orders: list[str] = []
    open_invoices: list[str] = []
    for n, t in enumerate(times):
        at = datetime.fromtimestamp(t, UTC).isoformat()
        base = {"event_id": f"acct-{seed}-{n}", "customer_id": customer_id, "occurred_at": at, "traits": None}
        r = rng.random()
        if r < 0.20:
            oid = f"{customer_id}-o{n}"
            orders.append(oid)
            record = {
                "kind": "order.placed",
                "channel": "partner",
                "source": "dealer-portal",
                "properties": {
                    "order_id": oid,
                    "amount": round(rng.uniform(50, 5000), 2),
                    "currency": "EUR",
                    "lines": rng.randint(1, 40),
                },
            }
        elif r < 0.26 and orders:
            inv = f"{customer_id}-i{n}"
            open_invoices.append(inv)
            record = {
                "kind": "invoice.issued",
                "channel": "email",
                "source": "billing",
                "properties": {"invoice_id": inv, "amount": round(rng.uniform(50, 5000), 2), "currency": "EUR"},
            }
        elif r < 0.31 and open_invoices:
            inv = open_invoices.pop(rng.randrange(len(open_invoices)))
            record = {
                "kind": "invoice.paid" if rng.random() < 0.9 else "invoice.overdue",
                "channel": "email",
                "source": "billing",
                "properties": {"invoice_id": inv, "amount": 1.0, "currency": "EUR"},
            }
            if record["kind"] == "invoice.overdue":
                open_invoices.append(inv)
        elif r < 0.315 and orders:
            record = {
                "kind": "order.refunded",
                "channel": "partner",
                "source": "dealer-portal",
                "properties": {"order_id": rng.choice(orders[-50:]), "amount": round(rng.uniform(5, 500), 2)},
            }
        elif r < 0.318 and orders:
            record = {
                "kind": "order.cancelled",
                "channel": "partner",
                "source": "dealer-portal",
                "properties": {"order_id": orders[-1]},
            }
        elif r < 0.322:
            record = {
                "kind": "review.posted",
                "channel": "web",
                "source": "reviews",
                "properties": {"rating": _pick(rng, RATING)},
            }
        elif r < 0.324:
            record = {
                "kind": "consent.changed",
                "channel": "email",
                "source": "crm",
                "properties": {"channel": "email", "purpose": "promotional", "granted": rng.random() < 0.8},
            }
        elif r < 0.40:
            record = {
                "kind": rng.choice(("email.sent", "email.opened", "email.clicked")),
                "channel": "email",
                "source": "marketing",
                "properties": {},
            }
        else:
            record = {
                "kind": "page.viewed",
                "channel": "web",
                "source": "shop",
                "properties": {"path": f"/catalog/{rng.randrange(500)}"},
            }
        yield {**base, **record}


CLIENT_CHANNELS = ("web", "mobile_app")  # where a browser's or an app's anonymous id comes from
GUEST_KINDS = ("page.viewed", "product.viewed", "order.placed")  # what a visitor does signed out


def with_devices(
    records: Iterable[dict], share: float, shared: float, seed: int, guests: float = 0.0
) -> Iterator[dict]:
    """The records with the anonymous ids a web or app client would send beside the customer id
    (identity resolution, docs/identity.md): each customer browses on a device of its own, and a
    `shared` fraction of customers on the device of another (a family tablet: the guards refuse to
    join them); a `share` of the web and app touchpoints carry the device's id (the others come
    from servers: e-mails, stores, phones). A `guests` fraction of customers browse and buy signed
    out half of the time: those page views, product views and orders carry the device's id alone
    (the visitor's), the rest signed in, which links the two. Deterministic from the seed."""
    for r in records:
        if r.get("channel") not in CLIENT_CHANNELS:
            yield r
            continue
        n = int(r["customer_id"].rsplit("-", 1)[1])
        draw = zlib.crc32(f"{seed}/{r['event_id']}".encode()) / 2**32
        if draw < share:
            owner = n - 1 if zlib.crc32(f"{seed}/shared/{n}".encode()) / 2**32 < shared and n else n
            r = {**r, "anonymous_id": f"dev-{seed}-{owner:06d}"}
            guest = zlib.crc32(f"{seed}/guest/{n}".encode()) / 2**32 < guests
            if guest and r["kind"] in GUEST_KINDS and draw < share / 2:
                r = {k: v for k, v in r.items() if k != "customer_id"}
        yield r
