"""Micro-batching of encoder calls on a bounded worker pool.

Concurrent requests each `await batcher.submit(item)`; one dispatcher task groups whatever is
queued into batches of up to `max_batch` and runs `fn(batch)` on the pool, so the event loop never
blocks on the model. A lone request is dispatched at once (no added latency); while a batch is
running the next one fills up on its own ("natural" batching). With several workers, a batch that
would start while another is still running lingers up to `max_wait_ms` to fill up. Beyond
`max_queue` waiting requests, `submit` fails fast with Overloaded (→ 503 + Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(Exception):
    """The queue is full; the client should retry after `retry_after` seconds."""

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__("the server is busy; retry shortly")
        self.retry_after = retry_after


@dataclass
class BatchStats:
    requests: int = 0
    batches: int = 0
    rejected: int = 0
    max_batch_seen: int = 0

    def as_dict(self) -> dict[str, float]:
        mean = self.requests / self.batches if self.batches else 0.0
        return {
            "requests": self.requests,
            "batches": self.batches,
            "rejected": self.rejected,
            "mean_batch": round(mean, 3),
            "max_batch_seen": self.max_batch_seen,
        }


class MicroBatcher(Generic[T, R]):
    """`fn(list[T]) -> Sequence[R]` (same length, same order) run in batches on `executor`.
    `fn` may put an exception in place of a result to fail that one item; raising fails all.

    With `enabled=False` every item is its own call (still off the event loop) — the baseline
    the benchmark compares against. Create inside a running event loop (the app's lifespan).
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Sequence[R]],
        executor: Executor,
        *,
        max_batch: int = 32,
        max_wait_ms: float = 2.0,
        max_queue: int = 256,
        concurrency: int = 1,
        enabled: bool = True,
        name: str = "batcher",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.fn = fn
        self.executor = executor
        self.max_batch = max_batch if enabled else 1
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.name = name
        self.on_batch = on_batch  # (batch size, seconds) — for metrics
        self.stats = BatchStats()
        self._queue: deque[tuple[T, asyncio.Future]] = deque()
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._running = 0
        self._task: asyncio.Task | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def submit(self, item: T) -> R:
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        if len(self._queue) >= self.max_queue:
            self.stats.rejected += 1
            raise Overloaded(retry_after=1)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._dispatch(), name=self.name)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._wakeup.set()
        return await fut

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError(f"{self.name} closed"))

    async def _dispatch(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._slots.acquire()
            # Linger only when others are already being served: a request that arrives on an
            # idle server goes straight to the model.
            if self._running > 0 and self.max_wait > 0 and len(self._queue) < self.max_batch:
                deadline = time.perf_counter() + self.max_wait
                while len(self._queue) < self.max_batch and time.perf_counter() < deadline:
                    await asyncio.sleep(0.0005)
            batch = []
            while self._queue and len(batch) < self.max_batch:
                item, fut = self._queue.popleft()
                if not fut.cancelled():  # the client went away while queued
                    batch.append((item, fut))
            if not batch:
                self._slots.release()
                continue
            self._running += 1
            asyncio.get_running_loop().create_task(self._run(batch))

    async def _run(self, batch: list[tuple[T, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        items = [item for item, _ in batch]
        t0 = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(items)} items")
        except Exception as e:  # noqa: BLE001 - handed to every waiting request
            log.exception("%s: batch of %d failed", self.name, len(items))
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)
        else:
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):  # one item failed alone (e.g. a bad filter)
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
        finally:
            seconds = time.perf_counter() - t0
            self._running -= 1
            self._slots.release()
            self.stats.requests += len(items)
            self.stats.batches += 1
            self.stats.max_batch_seen = max(self.stats.max_batch_seen, len(items))
            if self.on_batch is not None:
                self.on_batch(len(items), seconds)
