"""`[http] sink = "kafka"`: journey serve hands what it accepts to Kafka (acks=all) and `journey
worker`s ingest it, exactly once, also when a worker is killed and another takes over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import uuid
from functools import partial

from engine.clock import SystemClock
from engine.queries import TOUCHPOINT_TOPIC, scan
from engine.service import Engine

from .test_http import JOURNEY, KEY, TOKEN, free_port, get, post, wait_ready
from .test_worker import prepare, start_worker, stop, stored_count, wait_until


async def test_the_kafka_sink_with_workers_ingests_each_message_exactly_once(stream_config, tmp_path):
    from segment.analytics.client import Client as Segment

    config = stream_config.model_copy(
        update={"http": stream_config.http.model_copy(update={"sink": "kafka", "sink_timeout_seconds": 20})}
    )
    topo, cfg = await prepare(config, tmp_path)
    group = f"g{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    env |= {"JOURNEY_WRITE_KEYS": KEY, "JOURNEY_READ_TOKENS": TOKEN}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [JOURNEY, "serve", "--port", str(port), "--config", str(cfg)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    workers = [start_worker(cfg, group, tmp_path / "worker0.log")]
    engine = Engine(config, SystemClock())
    try:
        await asyncio.to_thread(wait_ready, url, server, tmp_path / "serve.log")
        errors: list = []
        segment = Segment(KEY, host=url, sync_mode=True, on_error=lambda e, batch: errors.append(e))

        def send(first: int, last: int) -> None:
            for i in range(first, last):
                customer = f"s{i % 40}"
                if i % 4 == 0:
                    props = {"order_id": f"O-{i}", "revenue": 10, "currency": "EUR"}
                    segment.track(customer, "Order Completed", props, message_id=f"m{i}")
                else:
                    segment.page(customer, name="Home", properties={"url": f"/p{i}"}, message_id=f"m{i}")
            segment.flush()

        await asyncio.to_thread(send, 0, 400)
        stored = partial(stored_count, engine)
        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 100), 120, "the first touchpoints")
        stop(workers[0], signal.SIGKILL)  # mid-stream, no goodbye: its batch is redelivered to the next
        workers.append(start_worker(cfg, group, tmp_path / "worker1.log"))
        await asyncio.to_thread(send, 400, 800)
        # A resend of messages already accepted (their time worked out again): duplicates by id.
        again = [
            {"type": "page", "userId": f"s{i % 40}", "messageId": f"m{i}", "sentAt": "2026-01-01T00:00:09Z"}
            for i in range(1, 40, 4)
        ]
        status, answer = await asyncio.to_thread(post, url + "/v1/batch", json.dumps({"batch": again}).encode())
        assert (status, answer) == (200, {"accepted": 10, "duplicates": 0, "rejected": []})  # Kafka took them
        bad = {"type": "track", "userId": "s1", "event": "Order Completed", "messageId": "bad-1"}
        status, answer = await asyncio.to_thread(post, url + "/v1/batch", json.dumps({"batch": [bad]}).encode())
        assert status == 200 and answer["rejected"][0]["field"] == "properties.order_id"  # answered at once
        assert errors == []
        await wait_until(lambda: asyncio.to_thread(lambda: stored() >= 800), 180, "every touchpoint")
        await asyncio.sleep(2)  # the resent ten would arrive meanwhile, if they were to be stored
        ids = [b["touchpoint"]["event_id"] for _, _, b in scan(engine, TOUCHPOINT_TOPIC)]
        assert len(ids) == len(set(ids)) == 800
        status, seen = await asyncio.to_thread(get, f"{url}/v1/customers/s0")
        # s0 gets messages 0, 40, 80...: all orders (i % 4 == 0), 20 of 10 EUR each
        assert status == 200 and (seen["purchases"], seen["revenue"], seen["touchpoints"]) == (20, {"EUR": 200.0}, 20)
        assert [kept[4] for kept in engine.rejects.after(0, 10)] == ["bad-1"]  # its message id
    finally:
        for w in workers:
            stop(w)
        server.terminate()
        server.wait(timeout=20)
        log.close()
        engine.close()
    for name in ("serve.log", "worker1.log"):
        assert "Traceback" not in (tmp_path / name).read_text(), name


def test_serve_with_the_kafka_sink_and_no_broker_says_so(tmp_path):
    (tmp_path / "config.toml").write_text(
        f'[http]\nsink = "kafka"\nsink_timeout_seconds = 2\n[kafka]\nbootstrap_servers = "127.0.0.1:{free_port()}"\n'
    )
    env = {**os.environ, "JOURNEY_DATA_DIR": str(tmp_path / "var"), "JOURNEY_WRITE_KEYS": KEY}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    out = subprocess.run([JOURNEY, "serve"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no Kafka broker answers at" in out.stderr and "Traceback" not in out.stderr
