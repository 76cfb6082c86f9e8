"""PII is sealed per customer; `forget` deletes the key and nothing personal can be read again."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config import Config, CustomField, CustomKind
from engine.service import Engine

from ..helpers import day, order, tp

ANN = {
    "name": "Ann Example",
    "email": "ann.example@mail.test",
    "phone": "+44 20 7946 0958",
    "address": "1 Quiet Lane",
    "timezone": "Europe/London",
}


def all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_pii_is_never_stored_in_clear_and_is_gone_after_forget(sqlite_config, clock):
    data = Path(sqlite_config.data_dir)
    with Engine(sqlite_config, clock) as engine:
        engine.ingest(
            [
                tp("r", "customer.registered", day(0), traits=ANN),
                order("o1", day(1)),
                tp("r2", "customer.registered", day(0), customer="c2", traits={"name": "Bob Other"}),
            ]
        )
        assert engine.customer("c1")["traits"]["email"] == ANN["email"]
        blob = all_bytes(data)
        for value in ("Ann Example", "ann.example@mail.test", "+44 20 7946 0958", "1 Quiet Lane"):
            assert value.encode() not in blob, value
        assert b"Europe/London" in blob  # not personal: stored in clear, usable by policies

        from engine.ids import customer_uuid

        key = engine.keys.get_many([str(customer_uuid("c1"))])[str(customer_uuid("c1"))]
        assert key in all_bytes(data)
        assert engine.forget("c1") == {
            "customer_id": "c1",
            "erased": True,
            "key_deleted": True,
            "already_erased": False,
            "rejects_deleted": 0,
            "anonymous_ids_erased": 0,  # none linked to c1
        }
        assert engine.forget("c1")["already_erased"] is True  # a second time changes nothing
        view = engine.customer("c1")
        assert view["erased"] is True
        assert view["traits"] == {"timezone": "Europe/London", "personal_data": "[erased]"}
        assert (view["stage"], view["purchases"]) == ("first_buyer", 1)  # history still replays
        assert engine.funnel()["stages"]["first_buyer"] == 1
        assert engine.customer("c2")["traits"] == {"name": "Bob Other"}  # others untouched
        # new touchpoints of a forgotten customer keep no personal data
        engine.ingest([tp("p", "profile.updated", day(5), traits={"name": "Ann Again", "tier": "gold"})])
        assert engine.customer("c1")["traits"].get("name") is None
        assert engine.customer("c1")["traits"]["tier"] == "gold"
    assert key not in all_bytes(data)  # the key's bytes are gone from the data directory
    assert b"Ann Again" not in all_bytes(data)


def test_forget_on_postgres_deletes_the_key(pg_config, clock):
    with Engine(pg_config, clock) as engine:
        engine.ingest([tp("r", "customer.registered", day(0), traits=ANN)])
        assert engine.customer("c1")["traits"]["name"] == "Ann Example"
        from engine.ids import customer_uuid

        assert str(customer_uuid("c1")) in engine.keys.get_many([str(customer_uuid("c1"))])
        engine.forget("c1")
        assert "name" not in engine.customer("c1")["traits"]
        assert engine.keys.get_many([str(customer_uuid("c1"))]) == {str(customer_uuid("c1")): b""}  # the tombstone
        assert engine.keys.create_many([str(customer_uuid("c1"))]) == {str(customer_uuid("c1")): b""}  # no new key


def test_custom_fields_marked_pii_are_sealed(tmp_path, clock):
    config = Config(
        data_dir=str(tmp_path),
        kinds=(CustomKind(name="badge.printed", fields={"badge_name": CustomField(pii=True), "event": CustomField()}),),
    )
    with Engine(config, clock) as engine:
        r = engine.ingest([tp("b", "badge.printed", day(0), badge_name="Dr Secret Person", event="expo")])
        assert r.accepted == 1
        assert b"Dr Secret Person" not in all_bytes(tmp_path)
        assert b"expo" in all_bytes(tmp_path)
        line = [t for t in engine.customer("c1")["timeline"] if t["type"] == "touchpoint"]
        assert line[0]["kind"] == "badge.printed"


MARKERS = {  # where a customer's personal data hides: nested traits, property names, free text, lists
    "traits": {
        "contact": {"email": "marker-a1@mail.test", "Mobile_Phone": "marker-a2"},
        "name": "Marker A3 Person",
        "timezone": "Europe/Paris",
        "tier": "gold",
    },
    "props": {
        "customer_email": "marker-a4@mail.test",
        "ssn": "marker-a5",
        "card_number": "marker-a6",
        "comment": "call me on marker-a7",
        "items": [{"sku": "s1", "shipping_address": "marker-a8 Road"}],
        "page": "/pricing",
    },
}


def test_personal_data_is_sealed_at_any_depth_and_gone_everywhere_after_forget(tmp_path):
    from click.testing import CliRunner

    from engine.cli import main
    from engine.clock import FixedClock
    from replay.export import frames, to_parquet

    from ..conftest import NOW

    config = Config(
        data_dir=str(tmp_path / "var"),
        kinds=(
            CustomKind(
                name="survey.commented", fields={"remark": CustomField(free_text=True), "badge": CustomField(pii=True)}
            ),
        ),
    )
    markers = [f"marker-a{i}" for i in range(1, 11)]
    records = [
        tp("m1", "customer.registered", day(0), traits=MARKERS["traits"]),
        tp("m2", "page.viewed", day(1), **MARKERS["props"]),
        {
            **order("m3", day(2), comment="marker-a9 at the door"),
            "traits": {"contact": {"email": "marker-a1@mail.test"}},
        },
        tp("m4", "survey.commented", day(3), remark="marker-a10 said", badge="marker-a3"),
        tp("o1", "customer.registered", day(0), customer="other", traits={"email": "other@mail.test"}),
    ]
    with Engine(config, FixedClock(NOW)) as engine:
        assert engine.ingest(records).accepted == len(records)
        blob = all_bytes(tmp_path / "var")
        assert not [m for m in markers if m.encode() in blob]  # sealed, never in clear
        assert b"/pricing" in blob and b"s1" in blob and b"Europe/Paris" in blob  # the rest stays usable
        view = engine.customer("c1")
        assert view["traits"]["contact"] == {"email": "marker-a1@mail.test"}  # the owner's view shows it (latest)
        assert view["traits"]["name"] == "Marker A3 Person"
        engine.forget("c1")

        def everything() -> str:
            out = [
                json.dumps(engine.customer("c1")),
                json.dumps(engine.changes(limit=10**6)),
                json.dumps(engine.actions(limit=10**6)),
                json.dumps(engine.funnel()),
            ]
            tables = frames(engine, NOW)
            out += [t.to_json(date_format="iso") for t in tables.values()]
            to_parquet(tables, tmp_path / "export")
            return "\n".join(out)

        shown = everything()
        assert not [m for m in markers if m in shown], shown
        assert engine.customer("other")["traits"]["email"] == "other@mail.test"  # others untouched
    env = {"JOURNEY_DATA_DIR": str(tmp_path / "var")}
    runner = CliRunner()
    results = [
        runner.invoke(main, args, env=env, catch_exceptions=False)
        for args in (
            ["customer", "c1"],
            ["changes"],
            ["actions"],
            ["replay", "export", "--out", str(tmp_path / "export2")],
            ["report", "--out", str(tmp_path / "report.html"), "--as-of", NOW.isoformat()],
        )
    ]
    assert all(r.exit_code == 0 for r in results), [r.output for r in results]
    assert not [m for m in markers for r in results if m in r.output]
    everywhere = all_bytes(tmp_path)  # data directory, exports, report
    assert not [m for m in markers if m.encode() in everywhere]


def test_a_pattern_that_would_seal_what_the_engine_reads_is_refused(tmp_path):
    import pytest

    from engine.config import PrivacySettings

    with pytest.raises(ValueError, match="properties.amount"):
        Engine(Config(data_dir=str(tmp_path), privacy=PrivacySettings(pii_fields=("*amount*",))))
