"""journey serve with the official Segment and RudderStack clients, over real HTTP on a free port."""

from __future__ import annotations

import base64
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

JOURNEY = str(Path(sys.executable).parent / "journey")
KEY = "test-write-key"
TOKEN, PERSONAL = "test-read-token", "test-personal-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    """Until the server answers /readyz (its store too); its log if it dies or takes a minute."""
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/readyz", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text()) from None
            time.sleep(0.1)


@contextmanager
def serving(tmp_path: Path, toml: str = ""):
    """journey serve on a free port with ./config.toml holding `toml`: (url, env)."""
    port = free_port()
    env = {
        **os.environ,
        "JOURNEY_DATA_DIR": str(tmp_path / "var"),
        "JOURNEY_WRITE_KEYS": KEY,
        "JOURNEY_READ_TOKENS": TOKEN,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.toml").write_text(f'[http]\npersonal_read_tokens = ["{PERSONAL}"]\n{toml}')
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [JOURNEY, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, tmp_path / "serve.log")
        yield url, env | {"SERVER_PID": str(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


@pytest.fixture
def server(tmp_path):
    with serving(tmp_path) as (url, env):
        yield url, env


def basic(key: str = KEY) -> dict[str, str]:
    """The write key as Segment's clients send it: the HTTP Basic user name, no password."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(url: str, body: bytes, key: str | None = KEY, **headers: str) -> tuple[int, dict]:
    auth = basic(key) if key else {}
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", **auth, **headers})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get(url: str, token: str | None = TOKEN) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def view(env: dict, customer: str) -> dict:
    out = subprocess.run([JOURNEY, "customer", customer, "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_segment_and_rudderstack_clients_send_touchpoints(server):
    from rudderstack.analytics.client import Client as Rudder
    from segment.analytics.client import Client as Segment

    url, env = server
    errors: list = []
    segment = Segment(KEY, host=url, sync_mode=True, on_error=lambda e, batch: errors.append(e))
    segment.identify("ann", {"name": "Ann Example", "email": "ann@example.org", "timezone": "Europe/Berlin"})
    segment.track("ann", "Order Completed", {"order_id": "A-1", "revenue": 100, "currency": "EUR"}, message_id="m-1")
    segment.track("ann", "Order Completed", {"order_id": "A-1", "revenue": 100, "currency": "EUR"}, message_id="m-1")
    segment.track("ann", "Order Refunded", {"order_id": "A-1", "total": 40, "currency": "EUR"})
    rudder = Rudder(KEY, host=url, sync_mode=True, on_error=lambda e, batch: errors.append(e))  # gzip by default
    rudder.track("bob", "order.placed", {"order_id": "B-1", "amount": 12.5, "currency": "USD"})
    rudder.page("bob", name="Home", properties={"url": "https://shop.example/"}, anonymous_id="web-9")
    assert errors == []
    ann = view(env, "ann")
    assert (ann["stage"], ann["purchases"], ann["revenue"], ann["touchpoints"]) == ("first_buyer", 1, {"EUR": 60.0}, 3)
    assert ann["traits"]["name"] == "Ann Example"  # sealed in the store, shown to the view
    bob = view(env, "bob")
    assert (bob["stage"], bob["revenue"], bob["touchpoints"]) == ("first_buyer", {"USD": 12.5}, 2)
    out = subprocess.run([JOURNEY, "identity", "show", "web-9", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout)["person"] == "bob", out.stderr  # anonymousId and userId: a link
    status, seen = get(f"{url}/v1/customers/web-9")
    assert (status, seen["customer_id"], seen["identified_by"]) == (200, "bob", "web-9")

    # ...and over HTTP: the same view as the CLI's, personal traits only for a personal token
    status, seen = get(f"{url}/v1/customers/ann")
    same = ("stage", "health", "purchases", "revenue", "touchpoints", "timeline", "timeline_total", "history")
    assert status == 200 and {k: seen[k] for k in same} == {k: ann[k] for k in same}
    assert seen["traits"] == {"timezone": "Europe/Berlin"}
    assert get(f"{url}/v1/customers/ann", PERSONAL)[1]["traits"]["email"] == "ann@example.org"
    assert get(f"{url}/v1/customers/nobody")[0] == 404
    assert get(f"{url}/v1/customers/ann", "wrong")[0] == 401 and get(f"{url}/v1/customers/ann", None)[0] == 401
    assert get(f"{url}/v1/customers/ann?as_of=yesterday")[0] == 400
    status, funnel = get(f"{url}/v1/funnel")
    assert status == 200 and funnel["customers"] == 2 and funnel["stages"]["first_buyer"] == 2
    status, changes = get(f"{url}/v1/changes?limit=1000")
    assert status == 200 and {c["customer_id"] for c in changes} == {"ann", "bob"}
    status, actions = get(f"{url}/v1/actions?customer=ann")
    assert status == 200 and actions and all(a["customer_id"] == "ann" for a in actions)
    status, why = get(f"{url}/v1/actions/{actions[0]['action_id']}/why")
    assert status == 200 and why["action_id"] == actions[0]["action_id"] and why["explanation"]
    assert get(f"{url}/v1/changes?limit=0")[0] == 400
    assert get(f"{url}/readyz", None)[0] == 200


def test_what_the_api_refuses_and_why(server):
    url, _ = server
    one = {
        "type": "track",
        "userId": "c1",
        "event": "Order Completed",
        "messageId": "x1",
        "properties": {"order_id": "o", "revenue": 5, "currency": "EUR"},
    }
    batch = {
        "batch": [
            one,
            {**one, "messageId": "x2", "userId": None},
            {**one, "messageId": "x3", "event": "Signed Up"},
            {**one, "messageId": "x1"},
            {**one, "messageId": "x4", "userId": None, "anonymousId": "a1"},  # a guest: kept as a1's
        ]
    }
    status, answer = post(url + "/v1/batch", json.dumps(batch).encode())
    assert status == 200 and (answer["accepted"], answer["duplicates"]) == (2, 1)
    assert [(r["index"], r["messageId"], r["field"]) for r in answer["rejected"]] == [
        (1, "x2", "userId"),
        (2, "x3", "event"),
    ]
    assert answer["rejected"][0]["reason"] == "is required, or an anonymousId"
    assert "[http.events]" in answer["rejected"][1]["reason"]
    # a key given twice in one object is ambiguous: that message is refused, the others kept
    body = (
        b'{"batch": [{"type": "page", "userId": "t1", "messageId": "w1"}, '
        b'{"type": "page", "userId": "t1", "userId": "t2", "messageId": "w2"}, '
        b'{"type": "track", "userId": "t1", "event": "page.viewed", "messageId": "w3", '
        b'"properties": {"url": "/a", "url": "/b"}}]}'
    )
    status, answer = post(url + "/v1/batch", body)
    assert (status, answer["accepted"]) == (200, 1)
    assert [(r["index"], r["field"], r["reason"]) for r in answer["rejected"]] == [
        (1, "userId", "key 'userId' appears twice in one object; which one is meant is ambiguous"),
        (2, "properties.url", "key 'url' appears twice in one object; which one is meant is ambiguous"),
    ]
    status, answer = post(url + "/v1/batch", b'{"batch": [], "batch": [{"type": "page", "userId": "t1"}]}')
    assert status == 400 and "'batch' appears twice" in answer["message"]
    status, answer = post(url + "/v1/page", b'{"userId": "t1", "messageId": "w4", "context": {"a": 1, "a": 2}}')
    assert (status, answer["accepted"], answer["rejected"][0]["reason"][:20]) == (200, 0, "key 'a' appears twic")
    # answers never echo what was sent in a field (it may be personal data)
    leaky = [
        {"type": "identify", "userId": "c1", "messageId": "p1", "traits": {"phone": 4915112345678901234}},
        {**one, "messageId": "p2", "properties": {**one["properties"], "order_id": "o-p2", "revenue": "4915199"}},
    ]
    status, answer = post(url + "/v1/batch", json.dumps({"batch": leaky}).encode())
    assert [r["field"] for r in answer["rejected"]] == ["traits.phone", "properties.revenue"]
    assert not [r for r in answer["rejected"] if "49151" in r["reason"]], answer
    huge = {"type": "identify", "userId": "c1", "messageId": "p3", "traits": {"lucky": 10**30}}  # beyond 64 bits
    status, answer = post(url + "/v1/identify", json.dumps(huge).encode())
    assert [(r["field"], r["reason"][:24]) for r in answer["rejected"]] == [
        ("traits.lucky", "is an integer of 31 digi")
    ]
    cut = gzip.compress(json.dumps({"batch": [one]}).encode())[:20]
    status, answer = post(url + "/v1/batch", cut, **{"Content-Encoding": "gzip"})
    assert status == 400 and "incomplete" in answer["message"]
    # a wrong or missing key
    assert post(url + "/v1/batch", json.dumps(batch).encode(), key="wrong")[0] == 401
    status, answer = post(url + "/v1/batch", json.dumps(batch).encode(), key=None)
    assert status == 401 and answer["code"] == 401
    # the key in the body, on one message
    status, answer = post(url + "/v1/track", json.dumps({**one, "messageId": "x9", "writeKey": KEY}).encode(), key=None)
    assert (status, answer["accepted"]) == (200, 1)
    # invalid JSON, a body too large, and a small gzip bomb (refused, not inflated)
    assert post(url + "/v1/batch", b"{not json")[0] == 400
    assert post(url + "/v1/batch", json.dumps({"batch": [one] * 4000}).encode())[0] == 413
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    status, answer = post(url + "/v1/batch", bomb, **{"Content-Encoding": "gzip"})
    assert status == 413 and "inflated" in answer["message"]
    # the OpenAPI document
    with urllib.request.urlopen(url + "/openapi.json") as r:
        document = json.loads(r.read())
    assert document["paths"]["/v1/batch"]["post"]["security"] == [{"writeKey": []}]
    assert document["paths"]["/v1/funnel"]["get"]["security"] == [{"readToken": []}]
    assert {"200", "401", "413", "429", "503"} <= set(document["paths"]["/v1/batch"]["post"]["responses"])
    assert "404" in document["paths"]["/v1/customers/{customer_id}"]["get"]["responses"]
    assert set(document["components"]["securitySchemes"]) == {"writeKey", "readToken"}
    # the docs page, with Swagger UI served from here (no CDN)
    with urllib.request.urlopen(url + "/docs") as r:
        page = r.read().decode()
    assert "/docs/assets/swagger-ui-bundle.js" in page and "https://" not in page, page
    with urllib.request.urlopen(url + "/docs/assets/swagger-ui-bundle.js") as r:
        assert r.status == 200 and len(r.read()) > 100_000


def test_refused_messages_are_kept_listed_and_forgotten(server, tmp_path):
    """The dead-letter table: every refused message is kept with its bytes and reason before the
    answer; a resend keeps it once; only a personal read token lists them; forget deletes a person's."""
    url, env = server
    order = {
        "type": "track",
        "userId": "c7",
        "event": "Order Completed",
        "messageId": "d1",
        "properties": {"order_id": "o7", "revenue": -5, "currency": "EUR"},
        "context": {"traits": {"email": "marker-d7@mail.test"}},
    }
    body = json.dumps({"batch": [order, {**order, "messageId": "d2", "event": "Signed Up"}]}).encode()
    for _ in range(2):  # sent again: nothing kept twice
        status, answer = post(url + "/v1/batch", body)
        assert status == 200 and [(r["messageId"], r["field"]) for r in answer["rejected"]] == [
            ("d1", "properties.revenue"),
            ("d2", "event"),
        ]
    native = {"event_id": "d3", "customer_id": "c8", "kind": "page.viewed", "occurred_at": "2026-01-01T00:00:00Z"}
    assert post(url + "/v1/touchpoints", json.dumps(native).encode())[1]["rejected"][0]["field"] == "channel"
    assert get(url + "/v1/rejects")[0] == 403  # a read token that may not see personal data
    status, kept = get(url + "/v1/rejects", PERSONAL)
    assert status == 200 and [(k["customer_id"], k["message_id"], k["field"]) for k in kept] == [
        ("c7", "d1", "properties.revenue"),
        ("c7", "d2", "event"),
        ("c8", "d3", "channel"),
    ]
    numbers = [k["number"] for k in kept]  # increasing; a resend ignored may use up a number
    assert numbers == sorted(set(numbers))
    assert json.loads(kept[0]["body"])["context"]["traits"]["email"] == "marker-d7@mail.test"  # as it was sent
    assert "[http.events]" in kept[1]["reason"] and kept[2]["source"].startswith("http/")
    after = str(numbers[0])
    out = subprocess.run([JOURNEY, "rejects", "--json", "--after", after], env=env, capture_output=True, text=True)
    assert [json.loads(x) for x in out.stdout.splitlines()] == kept[1:]
    out = subprocess.run([JOURNEY, "rejects"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "Signed Up" in out.stdout and "d3" in out.stdout
    out = subprocess.run([JOURNEY, "forget", "c7", "--json"], env=env, capture_output=True, text=True)
    assert json.loads(out.stdout)["rejects_deleted"] == 2, out.stderr
    assert [k["customer_id"] for k in get(url + "/v1/rejects", PERSONAL)[1]] == ["c8"]
    data = Path(env["JOURNEY_DATA_DIR"])
    assert not [p for p in data.rglob("*") if p.is_file() and b"marker-d7" in p.read_bytes()]
    # refused again after the forget: kept, without what was sent
    again = json.dumps({"batch": [{**order, "messageId": "d4"}]}).encode()
    assert post(url + "/v1/batch", again)[1]["rejected"][0]["messageId"] == "d4"
    last = get(url + "/v1/rejects", PERSONAL)[1][-1]
    assert (last["message_id"], last["body"]) == ("d4", "") and last["reason"].endswith("was forgotten)")
    assert not [p for p in data.rglob("*") if p.is_file() and b"marker-d7" in p.read_bytes()]


def test_touchpoints_in_the_engines_own_format(server):
    url, env = server
    one = {
        "event_id": "n1",
        "customer_id": "cy",
        "kind": "order.placed",
        "occurred_at": "2026-01-05T10:00:00Z",
        "channel": "web",
        "source": "shop",
        "properties": {"order_id": "N-1", "amount": 9, "currency": "EUR"},
    }
    assert post(url + "/v1/touchpoints", json.dumps(one).encode()) == (
        200,
        {"accepted": 1, "duplicates": 0, "rejected": []},
    )
    lines = b"\n".join(json.dumps(r).encode() for r in [one, {**one, "event_id": "n2", "channel": "pigeon"}]) + b"\n"
    status, answer = post(url + "/v1/touchpoints", lines)
    assert (status, answer["accepted"], answer["duplicates"]) == (200, 0, 1)
    assert [(r["index"], r["messageId"], r["field"]) for r in answer["rejected"]] == [(1, "n2", "channel")]
    status, answer = post(url + "/v1/touchpoints", json.dumps([{**one, "event_id": "n3"}, 7]).encode())
    assert (status, answer["accepted"], [r["index"] for r in answer["rejected"]]) == (200, 1, [1])
    twice = b"[" + json.dumps({**one, "event_id": "n4"}).encode()[:-1] + b', "kind": "page.viewed"}, 8]'
    status, answer = post(url + "/v1/touchpoints", twice)
    assert [(r["index"], r["messageId"], r["reason"][:16]) for r in answer["rejected"]] == [
        (0, "n4", "key 'kind' appea"),
        (1, None, "a touchpoint is "),
    ]
    status, answer = post(url + "/v1/touchpoints", b'[[{"a": 1, "a": 2}], "  ", ""]')  # odd ones, no 500
    assert (status, answer["accepted"], [r["index"] for r in answer["rejected"]]) == (200, 0, [0, 1, 2])
    assert view(env, "cy")["touchpoints"] == 2


def test_concurrent_requests_are_committed_together_and_each_told_its_own(server):
    """Group commit: requests that arrive together share a transaction; each answer counts its own
    messages (a messageId sent by two requests at once is accepted once, a duplicate in the other)."""
    from concurrent.futures import ThreadPoolExecutor

    url, env = server

    def message(n: int) -> dict:  # the same content whichever request sends it
        return {
            "type": "track",
            "userId": f"g{n % 3}",
            "event": "page.viewed",
            "messageId": f"gm{n}",
            "timestamp": "2026-01-01T00:00:00Z",
        }

    def batch(k: int) -> list[dict]:
        return [message((k * 7 + i) % 60) for i in range(10)] + [
            {"type": "track", "userId": f"g{k}", "event": "nope", "messageId": f"bad{k}"}
        ]

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda k: post(url + "/v1/batch", json.dumps({"batch": batch(k)}).encode()), range(24)))
    assert all(status == 200 for status, _ in answers)
    assert sum(a["accepted"] for _, a in answers) == 60  # gm0..gm59, each once
    assert sum(a["accepted"] + a["duplicates"] for _, a in answers) == 24 * 10
    assert all([r["index"] for r in a["rejected"]] == [10] for _, a in answers)


def test_a_segment_message_sent_again_is_a_duplicate_and_odd_ones_are_answered(server):
    """What a newcomer trial found: a resend (its time worked out again from its arrival) was a
    conflict; deep nesting was a 500; answers named the engine's fields instead of the message's."""
    url, env = server
    msg = {
        "type": "track",
        "userId": "team/ann",
        "event": "page.viewed",
        "messageId": "r1",
        "timestamp": "2026-01-01T10:00:00Z",
        "sentAt": "2026-01-01T10:00:01Z",
    }
    body = json.dumps({"batch": [msg, {k: v for k, v in msg.items() if k != "messageId"}]}).encode()
    assert post(url + "/v1/batch", body)[1] == {"accepted": 2, "duplicates": 0, "rejected": []}
    time.sleep(0.01)  # a later arrival: another corrected time, the same messages
    assert post(url + "/v1/batch", body)[1] == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert get(f"{url}/v1/customers/team/ann")[1]["touchpoints"] == 2  # an id with a slash reads too
    resent = [{**msg, "messageId": "r9"}, {**msg, "messageId": "r9", "sentAt": "2026-01-01T10:00:02Z"}]
    body = json.dumps({"batch": resent}).encode()  # a resend within one batch: its time differs by a second
    assert post(url + "/v1/batch", body)[1] == {"accepted": 1, "duplicates": 1, "rejected": []}
    odd = [
        {**msg, "messageId": "r2", "userId": 123},
        {**msg, "messageId": "r3", "traits": "x"},
        {**msg, "messageId": "r4", "properties": {"x": json.loads("[" * 400 + "]" * 400)}},
    ]
    status, answer = post(url + "/v1/batch", json.dumps({"batch": odd}).encode())
    assert status == 200 and [(r["index"], r["field"]) for r in answer["rejected"]] == [
        (0, "userId"),
        (1, "traits"),
        (2, ""),
    ]
    assert answer["rejected"][2]["reason"] == "is nested too deeply"
    deep = (
        b'{"type": "track", "userId": "a", "event": "page.viewed", "properties": {"x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}"
    )
    status, answer = post(url + "/v1/track", deep)
    assert status in (400, 413) and "Traceback" not in json.dumps(answer)
    status, answer = get(f"{url}/v1/customers/ann?limit=-1")
    assert status == 400 and answer["message"].startswith("the query is not what this endpoint takes: limit")
    assert "{'" not in answer["message"]


def test_a_store_that_cannot_take_more_is_a_503_and_nothing_is_lost(pg_config, tmp_path):
    """Backpressure: while another writer holds the event table, a write waits its lock timeout and
    is answered 503 with Retry-After (never a 200 for what is not stored); sent again, it is stored."""
    from engine.persistence.postgres import pg_connect

    pg = pg_config.store.postgres
    toml = (
        f'[store]\nbackend = "postgres"\nlock_timeout_seconds = 1\n[store.postgres]\nschema = "{pg.schema_}"\n'
        f'host = "{pg.host}"\nport = {pg.port}\nuser = "{pg.user}"\ndbname = "{pg.dbname}"\n'
    )
    with serving(tmp_path, toml) as (url, _):
        msg = {"type": "track", "userId": "bp", "event": "page.viewed", "messageId": "bp-1"}
        body = json.dumps({"batch": [msg]}).encode()
        with pg_connect(pg) as conn, conn.transaction():
            conn.execute(f'LOCK TABLE "{pg.schema_}".journey_events IN EXCLUSIVE MODE')  # another writer, busy
            request = urllib.request.Request(url + "/v1/batch", body, {"Content-Type": "application/json", **basic()})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
        assert post(url + "/v1/batch", body)[1] == {"accepted": 1, "duplicates": 0, "rejected": []}
        assert get(f"{url}/v1/customers/bp")[1]["touchpoints"] == 1


def test_rate_limits_per_key_and_cors_only_for_configured_origins(tmp_path):
    # One token every 2 s: slow enough that a loaded machine's batch does not earn one back first
    toml = 'rate_limit = 0.5\nrate_burst = 4\ncors_origins = ["https://shop.example"]\n'
    with serving(tmp_path, toml) as (url, _):
        page = {"type": "page", "userId": "rl"}
        batch = json.dumps({"batch": [{**page, "messageId": f"q{i}"} for i in range(4)]}).encode()
        assert post(url + "/v1/batch", batch)[1]["accepted"] == 4  # the whole burst at once
        request = urllib.request.Request(
            url + "/v1/page",
            json.dumps({**page, "messageId": "q9"}).encode(),
            basic(),
        )
        with pytest.raises(urllib.error.HTTPError) as over:
            urllib.request.urlopen(request, timeout=10)
        assert over.value.code == 429 and int(over.value.headers["Retry-After"]) >= 1
        assert "rate_limit" in json.loads(over.value.read())["message"]
        time.sleep(2.1)  # one comes back every 2 s
        assert post(url + "/v1/page", json.dumps({**page, "messageId": "q9"}).encode())[1]["accepted"] == 1
        reads = [get(url + "/v1/funnel")[0] for _ in range(6)]  # a read token has its own bucket
        assert reads[:4] == [200] * 4 and 429 in reads[4:]

        def preflight(origin: str) -> dict:
            request = urllib.request.Request(
                url + "/v1/batch",
                method="OPTIONS",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    return dict(r.headers)
            except urllib.error.HTTPError as e:
                return dict(e.headers)

        assert preflight("https://shop.example").get("access-control-allow-origin") == "https://shop.example"
        # answers made before the app (here a 415) carry the header too, so the page can read them
        request = urllib.request.Request(
            url + "/v1/batch", b"{}", {"Origin": "https://shop.example", "Content-Encoding": "br"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 415
        assert refused.value.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "access-control-allow-origin" not in {k.lower() for k in preflight("https://evil.example")}
    with serving(tmp_path / "plain") as (url, _):  # no origins configured: no CORS at all
        request = urllib.request.Request(url + "/healthz", headers={"Origin": "https://shop.example"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def engine_process(server_pid: int) -> int:
    """The pid of the engine's process under journey serve (api.engine_process)."""
    for line in subprocess.run(["pgrep", "-P", str(server_pid)], capture_output=True, text=True).stdout.split():
        if b"spawn_main" in Path(f"/proc/{line}/cmdline").read_bytes():
            return int(line)
    raise AssertionError("no engine process")


def test_a_killed_engine_process_is_a_503_then_replaced_and_nothing_is_lost(server):
    """The engine runs in a process of its own: killed under a write (out of memory, say), the
    request is answered 503, a new process takes the next one, and a resend is stored once."""
    url, env = server
    first = engine_process(int(env["SERVER_PID"]))
    batch = json.dumps({"batch": [{"type": "page", "userId": "kp", "messageId": f"k{i}"} for i in range(50)]})
    assert post(url + "/v1/batch", batch.encode())[1]["accepted"] == 50
    os.kill(first, signal.SIGKILL)
    more = json.dumps({"batch": [{"type": "page", "userId": "kp", "messageId": f"k{i}"} for i in range(100)]})
    status, answer = post(url + "/v1/batch", more.encode())
    assert (status, answer["code"]) == (503, 503) and "send it again" in answer["message"]
    assert post(url + "/v1/batch", more.encode())[1] == {"accepted": 50, "duplicates": 50, "rejected": []}
    assert engine_process(int(env["SERVER_PID"])) != first
    assert get(f"{url}/v1/customers/kp")[1]["touchpoints"] == 100
