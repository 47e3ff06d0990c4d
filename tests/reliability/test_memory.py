"""What keeps the server's RSS flat under load (measured in benchmarks/load.py): the warm-up
runs every pool thread at the largest batch, and freed heap goes back to the OS periodically."""

from __future__ import annotations

import time

from app.memory import MallocTrimmer
from tests.app.conftest import make_client, wait_ready


def test_trimmer_runs_periodically_and_stops():
    trimmer = MallocTrimmer(0.02)
    try:
        assert trimmer.running
        deadline = time.monotonic() + 5
        while trimmer.trims < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert trimmer.trims >= 3
    finally:
        trimmer.close()
    assert not trimmer.running
    done = trimmer.trims
    time.sleep(0.1)
    assert trimmer.trims == done


def test_trimmer_off_starts_no_thread():
    trimmer = MallocTrimmer(0)
    assert not trimmer.running
    trimmer.close()


def test_warmup_starts_every_pool_thread_before_ready(photo_index, starter_encoder):
    with make_client(
        photo_index, starter_encoder, encode_workers=2, search_workers=3, max_batch=4
    ) as client:
        wait_ready(client)
        engine = client.app.state.engine
        # ThreadPoolExecutor starts threads lazily: all of them exist only if warm-up used them
        assert len(engine.encode_pool._threads) == 2
        assert len(engine.io_pool._threads) == 3
        assert client.post("/search", json={"text": "a cat", "k": 1}).status_code == 200
