"""Ingest with several processes, each owning a shard of the customers.

The engine's work per touchpoint is Python (validation, lifecycle, policies) and its write
waits are I/O; one process uses one core. Here the parent routes each record to the process
that owns its customer (engine.ids.shard_of, as Kafka partitions keyed by customer give each
worker its customers), in input order, so every customer still has a single writer and sees
its records in order. Each process batches, validates, decides and writes on its own; a
backfill's clock and due timers are per process and per shard. Rejections keep their record
numbers. If a process fails, the ingest stops with its error; what was committed stays, and
running the same input again only adds what is missing (touchpoints are idempotent).
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from .clock import EventTimeClock
from .config import Config
from .ids import customer_uuid, shard_of
from .memory import settle
from .reports import IngestReport, blank
from .service import Engine

Record = bytes | str | dict
WAIT = 0.5  # seconds between liveness checks while a queue is full or empty


def route(record: Record, shards: int) -> int:
    """The shard of a record's customer; records without a readable customer id go to shard 0,
    whose process rejects them with the reason."""
    try:
        obj = orjson.loads(record) if isinstance(record, (bytes, str)) else record
        customer = obj["customer_id"]
        return shard_of(customer_uuid(customer), shards) if isinstance(customer, str) and customer else 0
    except Exception:  # noqa: BLE001 - whatever it is, shard 0 rejects it with the reason
        return 0


def ingest(
    engine: Engine, records: Iterable[Record], workers: int = 1, on_batch: Callable[[int], None] | None = None
) -> IngestReport:
    """Ingest with `workers` processes (engine.ingest itself for one), each owning a shard of the
    customers; a backfill (an engine whose clock follows event time) stays one in every process."""
    if workers <= 1:
        return engine.ingest(records, on_batch)
    return ingest_in_parallel(engine.config, records, workers, isinstance(engine.clock, EventTimeClock), on_batch)


def ingest_in_parallel(
    config: Config,
    records: Iterable[Record],
    workers: int,
    backfill: bool,
    on_batch: Callable[[int], None] | None = None,
) -> IngestReport:
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited connections
    inboxes = [ctx.Queue(maxsize=4) for _ in range(workers)]
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_work, args=(config, k, workers, backfill, inboxes[k], results), daemon=True)
        for k in range(workers)
    ]
    for p in procs:
        p.start()
    report = IngestReport()
    done = 0

    def take(block: bool) -> None:
        """Merge what the processes reported; with block, wait until something arrives."""
        nonlocal done
        while True:
            try:
                kind, payload = results.get(timeout=WAIT) if block else results.get_nowait()
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("an ingest process died without a report") from None
                if block:
                    continue
                return
            if kind == "error":
                raise RuntimeError(f"an ingest process failed:\n{payload}")
            if kind == "done":
                done += 1
            else:
                size, part = payload
                report.merge(part)
                if on_batch:
                    on_batch(size)
            block = False  # then take whatever else is there, without waiting

    def send(k: int, item: Any) -> None:
        while True:
            try:
                inboxes[k].put(item, timeout=WAIT)
                return
            except queue.Full:
                take(block=False)  # raises if a process failed

    try:
        size = config.ingest.batch_size
        pending: list[list[tuple[int, Record]]] = [[] for _ in range(workers)]
        for number, record in enumerate(records, start=1):
            if blank(record):
                continue
            k = route(record, workers)
            pending[k].append((number, record))
            if len(pending[k]) >= size:
                send(k, pending[k])
                pending[k] = []
                take(block=False)
        for k in range(workers):
            if pending[k]:
                send(k, pending[k])
            send(k, None)
        while done < workers:
            take(block=True)
    finally:
        for p in procs:
            p.join(timeout=5 if done == workers else 0)
            if p.is_alive():
                p.terminate()
    report.rejections.sort(key=lambda r: r.record)
    return report


def _work(config: Config, k: int, n: int, backfill: bool, inbox: Any, results: Any) -> None:
    try:
        with Engine(config, EventTimeClock() if backfill else None, shard=(k, n)) as engine:
            while (batch := inbox.get()) is not None:
                part = IngestReport()
                engine.ingest_batch(batch, part)
                settle()  # the collector's policy, after each batch (engine.memory)
                results.put(("batch", (len(batch), part)))
        results.put(("done", k))
    except BaseException:  # noqa: BLE001 - reported to the parent, which stops the ingest
        results.put(("error", traceback.format_exc()))
