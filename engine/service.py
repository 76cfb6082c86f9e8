"""The engine's service API: what the CLI, streams/ and replay/ call. Wiring is done here, by hand."""

from __future__ import annotations

import functools
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import IntegrityError, InterfaceError, OperationalError

from . import queries
from .catalog import Catalog
from .clock import Clock, EventTimeClock, SystemClock, iso
from .config import Config, ConfigError
from .identity import Guards, Identifier, anonymous_home, is_visitor
from .ids import customer_uuid
from .ingest import BatchResult, Ingestor, retrying
from .keys import ERASED_KEY, open_keystore
from .policies.decide import PolicyEngine
from .privacy import PersonalFields
from .regroup import Regrouper
from .rejects import DeadLetters, open_dead_letters
from .rejects import Row as RejectRow
from .reports import IngestReport, Recorded, blank
from .store import open_store, to_us
from .touchpoints import Rejection, Touchpoint, Validator
from .value_store import RecordedModels

log = logging.getLogger("journey.engine")
# Errors of the machinery, not of a record (a lost connection, a full disk, writers that kept
# colliding): they stop the ingest (a worker retries the batch); splitting it would not help.
INFRASTRUCTURE: tuple[type[BaseException], ...] = (
    IntegrityError,
    InterfaceError,
    OperationalError,
    sqlite3.OperationalError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    OSError,
    MemoryError,
)


def _error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    return text if len(text) <= 300 else text[:297] + "..."


def halving(
    items: list[Any],
    run: Callable[[list[Any]], Any],
    give_up: Callable[[Any, Exception], Any],
    combine: Callable[[Any, Any], Any],
) -> Any:
    """The net under the engine: `run(items)`; on an unexpected error, each half the same way,
    until what fails stands alone and `give_up(item, error)` answers for it. A failure of the
    machinery stops it: splitting would not help."""
    try:
        return run(items)
    except INFRASTRUCTURE:
        raise
    except Exception as e:  # noqa: BLE001 - whatever we did not think of costs one item
        if len(items) == 1:
            return give_up(items[0], e)
        half = len(items) // 2
        return combine(halving(items[:half], run, give_up, combine), halving(items[half:], run, give_up, combine))


class ForgetIncomplete(Exception):
    """The key is gone, the Erased event is not recorded yet: running forget again finishes it."""


def searchable(directories: Iterable[str]) -> None:
    """Custom policy modules can be imported from these directories (after the installed packages:
    a module of the working directory never shadows one of the engine's)."""
    for d in directories:
        path = str(Path(d).resolve())
        if path not in sys.path:
            sys.path.append(path)


class Engine:
    def __init__(self, config: Config, clock: Clock | None = None, shard: tuple[int, int] | None = None):
        """`shard` (k, n): this engine is writer k of n, each owning the customers engine.ids.shard_of
        gives it, as a worker owns the customers of its Kafka partitions (see engine.parallel)."""
        self.config = config
        self.shard = shard
        self.clock: Clock = clock or SystemClock()
        self.rules = config.lifecycle
        self.ladders = config.compiled_ladders()
        self.value_rules = config.value
        self.catalog = Catalog(config.kinds)
        self.personal = PersonalFields(self.catalog, config.privacy.pii_fields, config.privacy.free_text_fields)
        self.validator = Validator(
            self.catalog,
            timedelta(hours=config.ingest.future_tolerance_hours),
            config.ingest.max_touchpoint_bytes,
            config.ingest.max_depth,
            config.ingest.max_string_chars,
            Guards.of(config.identity.blocked_values, config.identity.blocked_patterns),
        )
        self.store = open_store(config)
        self.keys = open_keystore(config)
        for spec in config.policies:
            if spec.trigger.kind is not None and self.catalog.schema(spec.trigger.kind) is None:
                raise ConfigError(
                    f"policy {spec.name}: trigger kind {spec.trigger.kind!r} is not a known touchpoint kind"
                )
        searchable(config.python_path)
        self.value_models = RecordedModels(self.store.journal, config.value.base_currency)
        self.policies = PolicyEngine(config.policies, config.contact, config.value, self.value_models.in_force)
        self.ingestor = Ingestor(
            self.store,
            self.keys,
            self.personal,
            self.rules,
            self.policies,
            Regrouper(self.store, config.identity, self.validator.guards),
            shard,
            config.identity.identifying_traits,
            self.validator.guards,
            self.ladders[1:],
        )

    @functools.cached_property
    def rejects(self) -> DeadLetters:
        """The dead-letter table, opened when first used (most engines never need it)."""
        return open_dead_letters(self.config)

    def keep_rejects(self, rows: Sequence[RejectRow]) -> int:
        """Keep refused records in the dead-letter table (engine.rejects). One sent for a customer
        who was forgotten is kept without its body: their personal data must not come back."""
        ids = {r[2] for r in rows if r[2]}
        if ids:
            uuids = {c: str(customer_uuid(c)) for c in ids}
            keys = self.keys.get_many(uuids.values())
            gone = {c for c, u in uuids.items() if keys.get(u) == ERASED_KEY}
            rows = [
                (*r[:5], r[5] + " (not kept: this customer was forgotten)", b"") if r[2] in gone else r for r in rows
            ]
        return self.rejects.keep(rows)

    def close(self) -> None:
        if "rejects" in self.__dict__:
            self.rejects.close()
        self.keys.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------

    def ingest(
        self,
        records: Iterable[bytes | str | dict],
        on_batch: Callable[[int], None] | None = None,
        by_id: bool = False,
    ) -> IngestReport:
        """Validate and ingest records (raw JSON lines or decoded objects), batch by batch, in this
        process (engine.parallel.ingest shares the work among processes). With `by_id`, a record
        whose event id its customer already has is a duplicate whatever its content (Segment's
        messageId rule, engine.ingest.Ingestor.ingest).

        Record numbers count from 1 in the order given, so a rejection points at its line.
        """
        report = IngestReport()
        size = self.config.ingest.batch_size
        batch: list[tuple[int, bytes | str | dict]] = []
        for number, record in enumerate(records, start=1):
            if blank(record):
                continue  # an empty line is no record (its number still counts)
            batch.append((number, record))
            if len(batch) >= size:
                self.ingest_batch(batch, report, by_id)
                if on_batch:
                    on_batch(len(batch))
                batch = []
        if batch:
            self.ingest_batch(batch, report, by_id)
            if on_batch:
                on_batch(len(batch))
        report.rejections.sort(key=lambda r: r.record)  # conflicts are found after the batch's parse errors
        return report

    def ingest_batch(
        self, batch: list[tuple[int, bytes | str | dict]], report: IngestReport, by_id: bool = False
    ) -> None:
        """Ingest one batch of numbered records in one transaction, adding to the report."""
        backfill = isinstance(self.clock, EventTimeClock)
        # A backfill's clock follows the data: "in the future" means after the real time.
        now = SystemClock().now() if backfill else self.clock.now()
        valid: list[tuple[int, Touchpoint]] = []
        invalid: list[Rejection] = []
        for number, record in batch:
            parsed = self.validate(number, record, now)
            (valid.append((number, parsed)) if isinstance(parsed, Touchpoint) else invalid.append(parsed))
        if isinstance(self.clock, EventTimeClock) and valid:  # a backfill
            self.clock.observe(max(tp.occurred_at for _, tp in valid))
        # A backfill also runs the timers due by now, in the batch's own transaction.
        try:
            result = self.ingestor.ingest(valid, self.clock.now(), due_timers=backfill, by_id=by_id)
        except INFRASTRUCTURE:
            raise
        except Exception:  # noqa: BLE001 - the net: find the record that fails, keep the rest
            result = self._isolate(valid, self.clock.now(), dict(batch), by_id)
        if result.rejected:  # conflicts are found after parsing: give them their record as it came
            raws = dict(batch)
            result.rejected = [
                replace(r, raw=raw) if r.raw is None and isinstance(raw := raws.get(r.record), bytes) else r
                for r in result.rejected
            ]
        report.add(result, invalid)
        if backfill:
            report.add_timers(self.run_due())

    def validate(self, number: int, record: bytes | str | dict, now: Any) -> Touchpoint | Rejection:
        """One record checked as ingest checks it, against nothing stored (what the HTTP edge does
        before it hands records to Kafka); whatever goes wrong rejects the record."""
        try:
            if isinstance(record, (bytes, str)):
                return self.validator.parse_line(record, number, now)
            return self.validator.validate(record, number, now)
        except Exception as e:  # noqa: BLE001 - whatever we did not think of rejects one record
            log.warning("record %d could not be validated: %r", number, e)
            log.debug("record %d", number, exc_info=True)
            raw = record if isinstance(record, bytes) else None
            return Rejection(number, "", f"could not be validated ({_error(e)})", raw=raw)

    def _isolate(
        self, items: list[tuple[int, Touchpoint]], now: Any, records: dict[int, Any], by_id: bool
    ) -> BatchResult:
        """Ingest these touchpoints in halves until the ones whose processing fails stand alone,
        and reject those: an unexpected error costs one record, never the batch. A customer's
        touchpoints keep their order (the first half commits first). Due timers are left to
        run_due, which isolates its own failures."""

        def reject(item: tuple[int, Touchpoint], e: Exception) -> BatchResult:
            number, tp = item
            log.warning("record %d (%s) could not be processed: %r", number, tp.event_id, e)
            log.debug("record %d", number, exc_info=True)
            raw = records.get(number)
            return BatchResult(
                rejected=[
                    Rejection(
                        number,
                        "",
                        f"could not be processed ({_error(e)}); the records around it were ingested",
                        tp.event_id,
                        raw if isinstance(raw, bytes) else None,
                    )
                ]
            )

        return halving(items, lambda part: self.ingestor.ingest(part, now, by_id=by_id), reject, BatchResult.plus)

    def run_due(self, batch: int = 500, shard: tuple[int, int] | None = None) -> Recorded:
        """Re-evaluate every customer whose timer is due (window expiries, health thresholds,
        policy timers, deferred actions) among this engine's shard, or the given one; returns the
        changes and decisions recorded. A customer whose evaluation fails is logged and skipped
        (its timer stays due, so the next run tries again): it never holds up the others."""
        now = self.clock.now()
        shard = shard or self.shard
        journal = self.store.journal
        recorded = Recorded()
        skipped: set[str] = set()
        while due := [u for u in journal.due_customers(to_us(now), batch + len(skipped), shard) if u not in skipped][
            :batch
        ]:
            recorded += self._timers(due, now, skipped)
        return recorded

    def _timers(self, due: list[str], now: Any, skipped: set[str]) -> Recorded:
        def skip(customer: str, e: Exception) -> Recorded:
            log.error(
                "the due timer of customer %s could not be run (%s); skipped until the next run", customer, _error(e)
            )
            log.debug("customer %s", customer, exc_info=True)
            skipped.add(customer)
            return Recorded()

        return halving(due, lambda part: self._derive_due(part, now), skip, Recorded.__add__)

    def _derive_due(self, due: list[str], now: Any) -> Recorded:
        def write() -> Recorded:
            customers = list(self.store.customers(UUID(u) for u in due).values())
            timers: list = []
            recorded = Recorded()
            with self.store.writing(customers):
                self.ingestor.settle_erasures(customers, iso(now))
                for c in customers:
                    recorded += Recorded(*self.ingestor.derive(c, now, iso(now), timers))
                self.store.append(customers, timers=timers)
            return recorded

        return retrying(self.store, write)

    def forget(self, customer_id: str) -> dict[str, Any]:
        """Erase a person's personal data: the customer's and that of every anonymous id linked to
        it (docs/identity.md). For each, first the key (its tombstone stops any writer from making
        a new one, so from then on every personal field of theirs is dropped and nothing sealed
        can be opened), then the Erased event, retried against concurrent writers; the links,
        which hold the other identifiers in clear, go with them. An anonymous id given alone is
        erased as a visitor."""
        if not is_visitor(customer_id) and self.store.customer(customer_uuid(customer_id)) is None:
            visitor = anonymous_home(customer_id)
            if self.store.customer(customer_uuid(visitor)) is not None:
                return {**self._forget(visitor, customer_id, "anonymous"), "customer_id": customer_id}
        res = self.ingestor.regrouper.resolution([customer_id], None)
        person = res.person_of.get(Identifier("customer", customer_id))
        others = sorted(m.value for m in res.members.get(person or "", ()) if m.kind == "anonymous")
        # The anonymous ids first: their links name them, and a forget that fails part-way is
        # finished by running it again only while the customer's links still lead to them.
        for anonymous in others:
            self._forget(anonymous_home(anonymous), anonymous, "anonymous")
        result = self._forget(customer_id)
        result["anonymous_ids_erased"] = len(others)
        return result

    def _forget(self, name: str, sent_as: str | None = None, kind: str = "customer") -> dict[str, Any]:
        """Erase one aggregate's personal data (`name`: a customer id, or an anonymous id's home
        with `sent_as` the id), its links (every one naming it: other customers' refused ones too)
        and the refused records sent for it."""
        sent = sent_as or name
        uuid = customer_uuid(name)
        dropped = self.rejects.drop(sent)  # refused records sent for them
        self.store.journal.drop_links(sent, kind)  # their other identifiers, in clear in the links
        known = self.store.customer(uuid)
        if known is None:
            if dropped or sent_as:  # refused records only: none of theirs is kept from now on either
                self.keys.delete(str(uuid))
                return {
                    "customer_id": name,
                    "erased": False,
                    "key_deleted": False,
                    "already_erased": False,
                    "rejects_deleted": dropped,
                }
            raise KeyError(name)
        already = known.erased
        deleted = self.keys.delete(str(uuid))

        def write() -> None:
            customer = self.store.customer(uuid)
            if customer is not None and not customer.erased:
                with self.store.writing([customer]):
                    customer.erase(iso(self.clock.now()))
                    self.store.append([customer])

        try:
            retrying(self.store, write)
        except INFRASTRUCTURE as e:
            raise ForgetIncomplete(
                f"{name}: the key is destroyed (no personal data of theirs can be read or stored "
                f"again), but recording the erasure failed ({_error(e)}); run forget again"
            ) from e
        return {
            "customer_id": name,
            "erased": True,
            "key_deleted": deleted,
            "already_erased": already,
            "rejects_deleted": dropped,
        }

    def unlink(self, a: str, b: str, reason: str) -> dict[str, Any]:
        """Record that identifiers `a` and `b` are not one person (engine.identity_view.unlink says
        what it needs), then derive the persons around them again in one write: a customer parts
        with the anonymous history the link had joined, and the corrections name the reason."""
        from .identity_view import unlink

        now = self.clock.now()
        done = unlink(self.store.journal, a, b, iso(now), reason)
        values = [x.split(":", 1)[1] for x in (done["a"], done["b"])]
        changes, actions = retrying(self.store, lambda: self.ingestor.regroup(values, now))
        return {**done, "changes": changes, "actions": actions}

    # -- reading -----------------------------------------------------------------------------

    def customer(
        self, customer_id: str, as_of: Any = None, limit: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        """The 360° view; its timeline newest first, `limit` entries (all by default) after `offset`."""
        return queries.customer_view(self, customer_id, as_of or self.clock.now(), limit=limit, offset=offset)

    def view(
        self, identifier: str, T: datetime, as_known: bool = False, limit: int | None = None, offset: int = 0
    ) -> dict[str, Any]:
        """The 360° view of the person an identifier belongs to: a customer id, or an anonymous id
        (docs/identity.md; `identified_by` then names it): the customer it is linked to, else the
        anonymous visitor's own (engine.identity.anonymous_home). KeyError if no touchpoint names it."""
        try:
            return queries.customer_view(self, identifier, T, as_known, limit, offset)
        except KeyError:
            known = iso(T) if as_known else None  # the links recorded by then
            resolved = self.ingestor.regrouper.resolution([identifier], known)
            person = resolved.person_of.get(Identifier("anonymous", identifier)) or anonymous_home(identifier)
            return {"identified_by": identifier, **queries.customer_view(self, person, T, as_known, limit, offset)}

    def funnel(self, as_of: Any = None, ladder: str | None = None) -> dict[str, Any]:
        return queries.funnel(self, as_of or self.clock.now(), ladder=ladder)

    def changes(self, after: int = 0, limit: int = 100, customer_id: str | None = None) -> list[dict[str, Any]]:
        return queries.changes(self, after, limit, customer_id)

    def actions(
        self, after: int = 0, limit: int = 100, customer_id: str | None = None, policy: str | None = None
    ) -> list[dict[str, Any]]:
        return queries.actions(self, after, limit, customer_id, policy)

    def why(self, action_id: str) -> dict[str, Any]:
        from .policies.explain import explain

        history = queries.action_history(self, action_id)
        if not history:
            raise KeyError(action_id)
        return {
            "action_id": action_id,
            "status": history[-1]["status"],
            "explanation": explain(history),
            "records": history,
        }
