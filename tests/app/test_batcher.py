"""The micro-batcher: batches concurrent work, keeps order, fails fast when full."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.batcher import MicroBatcher, Overloaded


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_batches_and_keep_order():
    calls: list[int] = []

    def double(items: list[int]) -> list[int]:
        calls.append(len(items))
        time.sleep(0.01)  # a model call: later arrivals queue up meanwhile
        return [2 * x for x in items]

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(double, pool, max_batch=8, max_wait_ms=2)
            out = await asyncio.gather(*(b.submit(i) for i in range(40)))
            await b.close()
            return out, b.stats

    out, stats = run(main())
    assert out == [2 * i for i in range(40)]
    assert sum(calls) == 40
    assert max(calls) == 8 and len(calls) < 40
    assert stats.batches == len(calls) and stats.requests == 40


def test_disabled_batching_runs_one_item_per_call():
    calls: list[int] = []

    def ident(items):
        calls.append(len(items))
        return items

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(ident, pool, max_batch=8, enabled=False)
            out = await asyncio.gather(*(b.submit(i) for i in range(10)))
            await b.close()
            return out

    assert run(main()) == list(range(10))
    assert calls == [1] * 10


def test_lone_request_is_not_delayed_by_the_linger():
    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(lambda xs: xs, pool, max_batch=32, max_wait_ms=60_000)
            t0 = time.perf_counter()
            await b.submit(1)
            dt = time.perf_counter() - t0
            await b.close()
            return dt

    assert run(main()) < 30  # a linger would take the whole minute: nothing else was in flight


def test_full_queue_fails_fast_with_overloaded():
    release = threading.Event()

    def blocked(items):
        release.wait(5)
        return items

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(blocked, pool, max_batch=1, max_queue=3)
            first = asyncio.ensure_future(b.submit(0))
            await asyncio.sleep(0.05)  # the first is running; the next three fill the queue
            waiting = [asyncio.ensure_future(b.submit(i)) for i in (1, 2, 3)]
            await asyncio.sleep(0.01)
            with pytest.raises(Overloaded):
                await b.submit(4)
            release.set()
            done = await asyncio.gather(first, *waiting)
            await b.close()
            return done, b.stats.rejected

    done, rejected = run(main())
    assert done == [0, 1, 2, 3] and rejected == 1


def test_errors_reach_every_request_of_the_batch_and_the_batcher_survives():
    def flaky(items):
        if "bad" in items:
            raise ValueError("boom")
        return items

    async def main():
        with ThreadPoolExecutor(1) as pool:
            b = MicroBatcher(flaky, pool, max_batch=4)
            r = await asyncio.gather(b.submit("bad"), return_exceptions=True)
            ok = await b.submit("good")
            await b.close()
            return r, ok

    r, ok = run(main())
    assert isinstance(r[0], ValueError) and ok == "good"
