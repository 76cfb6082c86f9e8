"""PII is sealed per customer; `forget` deletes the key and nothing personal can be read again."""
from __future__ import annotations

from pathlib import Path

from engine.config import Config, CustomField, CustomKind
from engine.service import Engine

from .helpers import day, order, tp

ANN = {"name": "Ann Example", "email": "ann.example@mail.test", "phone": "+44 20 7946 0958",
       "address": "1 Quiet Lane", "timezone": "Europe/London"}


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_pii_is_never_stored_in_clear_and_is_gone_after_forget(sqlite_config, clock):
    data = Path(sqlite_config.data_dir)
    with Engine(sqlite_config, clock) as engine:
        engine.ingest([tp("r", "customer.registered", day(0), traits=ANN), order("o1", day(1)),
                       tp("r2", "customer.registered", day(0), customer="c2", traits={"name": "Bob Other"})])
        assert engine.customer("c1")["traits"]["email"] == ANN["email"]
        blob = all_bytes(data)
        for value in ("Ann Example", "ann.example@mail.test", "+44 20 7946 0958", "1 Quiet Lane"):
            assert value.encode() not in blob, value
        assert b"Europe/London" in blob              # not personal: stored in clear, usable by policies

        from engine.ids import customer_uuid
        key = engine.keys.get_many([str(customer_uuid("c1"))])[str(customer_uuid("c1"))]
        assert key in all_bytes(data)
        assert engine.forget("c1") == {"customer_id": "c1", "erased": True, "key_deleted": True}
        view = engine.customer("c1")
        assert view["erased"] is True
        assert view["traits"] == {"timezone": "Europe/London", "personal_data": "[erased]"}
        assert (view["stage"], view["purchases"]) == ("first_buyer", 1)       # history still replays
        assert engine.funnel()["stages"]["first_buyer"] == 1
        assert engine.customer("c2")["traits"] == {"name": "Bob Other"}        # others untouched
        # new touchpoints of a forgotten customer keep no personal data
        engine.ingest([tp("p", "profile.updated", day(5), traits={"name": "Ann Again", "tier": "gold"})])
        assert engine.customer("c1")["traits"].get("name") is None
        assert engine.customer("c1")["traits"]["tier"] == "gold"
    assert key not in all_bytes(data)                 # the key's bytes are gone from the data directory
    assert b"Ann Again" not in all_bytes(data)


def test_forget_on_postgres_deletes_the_key(pg_config, clock):
    with Engine(pg_config, clock) as engine:
        engine.ingest([tp("r", "customer.registered", day(0), traits=ANN)])
        assert engine.customer("c1")["traits"]["name"] == "Ann Example"
        from engine.ids import customer_uuid
        assert str(customer_uuid("c1")) in engine.keys.get_many([str(customer_uuid("c1"))])
        engine.forget("c1")
        assert "name" not in engine.customer("c1")["traits"]
        assert engine.keys.get_many([str(customer_uuid("c1"))]) == {str(customer_uuid("c1")): b""}   # the tombstone
        assert engine.keys.create_many([str(customer_uuid("c1"))]) == {str(customer_uuid("c1")): b""}  # no new key


def test_custom_fields_marked_pii_are_sealed(tmp_path, clock):
    config = Config(data_dir=str(tmp_path), kinds=(CustomKind(name="badge.printed", fields={
        "badge_name": CustomField(pii=True), "event": CustomField()}),))
    with Engine(config, clock) as engine:
        r = engine.ingest([tp("b", "badge.printed", day(0), badge_name="Dr Secret Person", event="expo")])
        assert r.accepted == 1
        assert b"Dr Secret Person" not in all_bytes(tmp_path)
        assert b"expo" in all_bytes(tmp_path)
        line = [t for t in engine.customer("c1")["timeline"] if t["type"] == "touchpoint"]
        assert line[0]["kind"] == "badge.printed"
