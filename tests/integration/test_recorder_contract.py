"""The journey recorders keep the library's application-recorder contract: eventsourcing's own
test cases (eventsourcing.tests.persistence) run against both, on a real SQLite file and a real
PostgreSQL schema; its test that two racing writers' positions do not interleave runs against the
engine's own write path (JourneyRecorder.write); what that path adds (the side tables in the same
transaction) is tested after."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from eventsourcing.tests.persistence import ApplicationRecorderTestCase, NonInterleavingNotificationIDsBaseCase

from engine.persistence.journal import JourneyRecorder
from engine.persistence.postgres import PostgresJourneyRecorder, ensure_schema, pg_connect
from engine.persistence.sqlite import SQLiteJourneyRecorder

from ..conftest import pg_available, pg_settings


def _join_stray_threads(before: set[threading.Thread]) -> None:
    """The library's concurrency tests tell their reader threads to stop but do not wait for them:
    closing the datastore under a reader still inside sqlite3 crashed the interpreter (a
    segmentation fault on CI), so tearDown waits for the threads a test started. (Connection pools'
    workers are daemon threads that end with the datastore: they are not waited for.)"""
    for thread in set(threading.enumerate()) - before:
        if not thread.daemon:
            thread.join(timeout=30)


class SQLiteContract(ApplicationRecorderTestCase[SQLiteJourneyRecorder]):
    def setUp(self) -> None:
        self.threads = set(threading.enumerate())
        self.dir = tempfile.mkdtemp(prefix="journey-contract-")
        self.datastore = SQLiteDatastore(os.path.join(self.dir, "events.db"), lock_timeout=30)

    def tearDown(self) -> None:
        _join_stray_threads(self.threads)
        self.datastore.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def create_recorder(self) -> SQLiteJourneyRecorder:
        recorder = SQLiteJourneyRecorder(self.datastore)
        recorder.create_table()
        return recorder


class PostgresContract(ApplicationRecorderTestCase[PostgresJourneyRecorder]):
    def setUp(self) -> None:
        problem = pg_available()
        if problem:
            if os.environ.get("CI") == "true":
                pytest.fail(f"PostgreSQL is required on CI but not reachable: {problem}")
            pytest.skip(f"no PostgreSQL server: {problem}")
        self.threads = set(threading.enumerate())
        self.pg = pg_settings(f"journey_contract_{uuid.uuid4().hex[:12]}")
        ensure_schema(self.pg)
        self.datastore = PostgresDatastore(
            self.pg.dbname,
            self.pg.host,
            self.pg.port,
            self.pg.user,
            self.pg.password,
            schema=self.pg.schema_,
            pool_size=10,
            max_overflow=10,
            lock_timeout=30,
        )

    def tearDown(self) -> None:
        _join_stray_threads(self.threads)
        self.datastore.close()
        with pg_connect(self.pg, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{self.pg.schema_}" CASCADE')

    def create_recorder(self) -> PostgresJourneyRecorder:
        recorder = PostgresJourneyRecorder(self.datastore)
        recorder.create_table()
        return recorder


class _Writes:
    """A journey recorder whose insert_events is the engine's own write path (JourneyRecorder.write),
    so that the library's test of positions runs against what the engine uses."""

    def insert_events(self, stored_events, **kwargs):
        self.write(stored_events)


class SQLiteWrites(_Writes, SQLiteJourneyRecorder):
    pass


class PostgresWrites(_Writes, PostgresJourneyRecorder):
    pass


class SQLiteWritesDoNotInterleave(NonInterleavingNotificationIDsBaseCase):
    """Two writers racing: the positions of one write are contiguous (relays rely on it)."""

    setUp, tearDown = SQLiteContract.setUp, SQLiteContract.tearDown

    def create_recorder(self):
        recorder = SQLiteWrites(self.datastore)
        recorder.create_table()
        return recorder


class PostgresWritesDoNotInterleave(NonInterleavingNotificationIDsBaseCase):
    setUp, tearDown = PostgresContract.setUp, PostgresContract.tearDown

    def create_recorder(self):
        recorder = PostgresWrites(self.datastore)
        recorder.create_table()
        return recorder


@pytest.fixture(params=["sqlite", "postgres"])
def recorder(request):
    case = (SQLiteContract if request.param == "sqlite" else PostgresContract)()
    case.setUp()
    try:
        yield case.create_recorder()
    finally:
        case.tearDown()


def event(originator, version, state=b"{}"):
    return StoredEvent(originator_id=originator, originator_version=version, topic="t", state=state)


def test_write_is_one_transaction_with_the_side_tables(recorder):
    assert isinstance(recorder, JourneyRecorder)
    a, b = uuid4(), uuid4()
    recorder.write([event(a, 1), event(a, 2)], touchpoint_ids=[("e1", str(a), "d1")], timers=[(str(a), 10)])
    assert recorder.known_touchpoints(["e1", "e2"]) == {"e1": (str(a), "d1")}
    assert recorder.due_customers(10, 5) == [str(a)] and recorder.due_customers(9, 5) == []
    # a collision on a touchpoint id writes nothing of the batch: not b's event, not its timer
    with pytest.raises(IntegrityError):
        recorder.write([event(b, 1)], touchpoint_ids=[("e1", str(b), "d2")], timers=[(str(b), 1)])
    assert recorder.select_events(b) == [] and recorder.due_customers(10, 5) == [str(a)]
    # ...and so does a collision on a customer's version
    with pytest.raises(IntegrityError):
        recorder.write([event(b, 1), event(a, 2)], touchpoint_ids=[("e3", str(b), "d3")])
    assert recorder.known_touchpoints(["e3"]) == {} and recorder.select_events(b) == []
    # the log and the library's notifications agree on positions
    assert [(p, UUID(c)) for p, c, _, _ in recorder.log(0, 10)] == [
        (n.id, n.originator_id) for n in recorder.select_notifications(None, 10)
    ]
    assert recorder.max_notification_id() == 2
    recorder.write([event(b, 1)], timers=[(str(a), None), (str(b), 5)])  # a timer moves, one is cleared
    assert recorder.due_customers(100, 5) == [str(b)] and recorder.customer_count() == 2
    assert [topic for topic, _ in recorder.history(a)] == ["t", "t"]


def test_value_models_are_kept_in_the_order_recorded(recorder):
    assert recorder.models() == [] and recorder.model_count() == 0
    a1 = ("vm-a", "2026-01-01T00:00:00.000000+00:00", '{"n": 1}')
    b = ("vm-b", "2026-01-02T00:00:00.000000+00:00", '{"n": 2}')
    a3 = ("vm-a", "2026-01-03T00:00:00.000000+00:00", '{"n": 1}')  # a model recorded again: in force again
    for row in (b, a1, a3, b):  # the same recording twice (a rebuild's copy) is kept once
        recorder.record_model(row)
    assert recorder.models() == [a1, b, a3] and recorder.model_count() == 3
