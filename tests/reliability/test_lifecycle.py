"""Lifecycle of a real `clipsearch serve` process: /healthz answers while the model loads and
/readyz says 503 until it is ready; on SIGTERM the listener closes at once (no new request, so no
readiness probe, gets through), requests already in flight complete with 200, and the process
exits cleanly within uvicorn's graceful timeout (10 s). A request still running when that
timeout ends is cancelled and answers 503 with Retry-After (never a 500): the timeout bounds
shutdown, not request latency, and the client is told to retry elsewhere or later."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.utils.images import sample_photo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
GRACEFUL_S = 10  # app.server.GRACEFUL_SHUTDOWN_S


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(index: Path, port: int, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "app.cli", "serve", "--index", str(index), "--port", str(port),
           "--log-level", "warning", *extra]  # fmt: skip
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        cmd, cwd=REPO, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _jpeg(name: str) -> bytes:
    buf = io.BytesIO()
    sample_photo(name).convert("RGB").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_startup_then_sigterm_with_requests_in_flight(photo_index):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(photo_index, port)
    try:
        # --- start-up: alive before ready -------------------------------------------------
        seen_alive_not_ready = False
        deadline = time.monotonic() + 180
        with httpx.Client(base_url=base, timeout=5) as c:
            while True:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "never became ready"
                try:
                    health = c.get("/healthz")
                    ready = c.get("/readyz")
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                assert health.status_code == 200
                if ready.status_code == 200:
                    break
                assert ready.status_code == 503, ready.text
                assert ready.json()["error"]["code"] == "not_ready"
                seen_alive_not_ready = True
                time.sleep(0.05)
            assert seen_alive_not_ready, "/readyz was never 503 while /healthz answered"
            assert c.post("/search", json={"text": "a cat", "k": 1}).status_code == 200

        # --- SIGTERM with slow requests in flight ----------------------------------------
        images = [("images", (f"{i}.jpg", _jpeg(n), "image/jpeg")) for i, n in
                  enumerate(["cat", "coffee", "rocket", "astronaut", "camera"] * 2)]  # fmt: skip
        results: list[tuple[int, float]] = []
        started = threading.Barrier(9)

        def slow_request() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                started.wait()
                r = c.post("/embed", files=images)
                results.append((r.status_code, time.monotonic()))

        threads = [threading.Thread(target=slow_request) for _ in range(8)]
        for t in threads:
            t.start()
        started.wait()
        time.sleep(0.5)  # the uploads are read and the encoder is busy
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)

        time.sleep(0.3)
        with httpx.Client(base_url=base, timeout=2) as c, pytest.raises(httpx.TransportError):
            c.get("/readyz")  # the listener is closed: probes fail at once

        for t in threads:
            t.join(timeout=60)
        code = proc.wait(timeout=GRACEFUL_S + 15)
        exited = time.monotonic() - t_term
        assert [s for s, _ in results] == [200] * 8, (results, proc.stderr.read().decode()[-3000:])
        assert any(t_end > t_term for _, t_end in results), "no request was still in flight"
        # uvicorn re-raises the signal once its graceful shutdown is done: -SIGTERM is a clean exit
        assert code in (0, -signal.SIGTERM), proc.stderr.read().decode()[-2000:]
        assert exited < GRACEFUL_S + 5, exited
        print(f"in flight at SIGTERM: {sum(t > t_term for _, t in results)}/8, exit {exited:.1f}s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_request_outliving_the_graceful_timeout_gets_503_with_retry_after(photo_index):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # /embed goes through the micro-batcher: thousands of distinct long texts keep a request
    # busy far past the graceful timeout, batch by batch, and each batch is short.
    proc = start_serve(photo_index, port, "--max-embed-items", "1000", "--max-queue", "10000")
    results: list[httpx.Response | Exception] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "never became ready"
            try:
                if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)

        def long_request(n: int) -> None:
            texts = [f"request {n} text {i}: " + "a photo of a red car on a sunny street " * 20
                     for i in range(1000)]  # fmt: skip
            try:
                with httpx.Client(base_url=base, timeout=120) as c:
                    results.append(c.post("/embed", json={"texts": texts}))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                results.append(e)

        threads = [threading.Thread(target=long_request, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        time.sleep(2.0)  # all three are encoding
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=90)
        code = proc.wait(timeout=GRACEFUL_S + 20)
        exited = time.monotonic() - t_term
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read().decode()[-3000:]
    assert all(isinstance(r, httpx.Response) for r in results), (results, stderr)
    assert [r.status_code for r in results] == [503] * 3, ([r.text for r in results], stderr)
    for r in results:
        assert r.headers["retry-after"] == "5"
        assert r.json()["error"]["code"] == "shutting_down"
    assert code in (0, -signal.SIGTERM), stderr
    assert GRACEFUL_S - 1 < exited < GRACEFUL_S + 8, exited
