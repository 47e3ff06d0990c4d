"""The search engine behind the routes: one encoder, the current index version (hot-swappable),
micro-batched encoding and the caches. Blocking work (model, FAISS, decoding, files) always runs
on worker pools, never on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import io
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from PIL import Image

from model import Encoder, ImageLoadError, load_image
from model import zeroshot as zs

from .batcher import MicroBatcher
from .cache import LRUCache
from .engine_errors import (
    ImageUnavailableError,
    InvalidFilterError,
    ItemNotFoundError,
    NoIndexError,
)
from .memory import MallocTrimmer, process_memory
from .metrics import Metrics
from .settings import Settings

log = logging.getLogger(__name__)


def pixel_cap_message(max_pixels: int) -> str:
    """The one answer for an image over the pixel cap, wherever it is met."""
    return (
        f"the image has more than {max_pixels:,} pixels, this server's limit: downscale it "
        "(or start the server with a larger --max-image-pixels)"
    )


if TYPE_CHECKING:
    from indexer import Hit, IndexVersion

R = TypeVar("R")


@dataclass(frozen=True)
class SearchJob:
    version: IndexVersion
    query: np.ndarray  # (dim,) unit vector
    k: int
    path_prefix: str | None = None
    where: dict[str, str] | None = None
    min_score: float | None = None


@dataclass(frozen=True)
class TextJob:
    text: str
    search: SearchJob | None  # set: search right after encoding when the text came alone


@dataclass(frozen=True)
class TextResult:
    vector: np.ndarray  # (dim,)
    hits: list[Hit] | None  # None: not searched yet
    encode_s: float  # this query's share of its batch's encode time
    search_s: float


class _Slot:
    """A version plus the number of requests using it; closed once retired and unused."""

    def __init__(self, version: IndexVersion) -> None:
        self.version = version
        self.leases = 0
        self.retired = False


class SearchEngine:
    def __init__(self, encoder: Encoder, version: IndexVersion, settings: Settings,
                 metrics: Metrics | None = None) -> None:  # fmt: skip
        from indexer import ModelMismatchError

        if version.dim != encoder.dim:
            raise ModelMismatchError(
                f"index version {version.id} has dim {version.dim}, the model {encoder.dim}"
            )
        self.encoder = encoder
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.index_dir = Path(version.path).parent.parent
        self.model_spec = encoder.spec
        self.backend: str = getattr(encoder, "backend", "torch")
        self.fingerprint = encoder.fingerprint
        self.dim = encoder.dim
        self.logit_scale = encoder.logit_scale
        self._slot = _Slot(version)
        self._lock = threading.Lock()
        self._reload_lock: asyncio.Lock | None = None
        self.encode_pool = ThreadPoolExecutor(settings.encode_workers, "clipsearch-encode")
        self.io_pool = ThreadPoolExecutor(settings.search_workers, "clipsearch-io")
        self.text_cache = LRUCache(settings.text_cache_size)
        self.label_cache = LRUCache(settings.label_cache_size)
        self.thumb_cache = LRUCache(settings.thumbnail_cache_size)
        self._text_batcher: MicroBatcher[TextJob, TextResult] | None = None
        self._image_batcher: MicroBatcher[Image.Image, np.ndarray] | None = None
        self._trimmer: MallocTrimmer | None = None
        self.live: Any = None  # a writable server's indexer.live.LiveIndex (open_live)
        self._compactor: Any = None
        # Which index this is on a server of several (load_engines sets them): the name, and
        # the query string its image URLs need ("" for the default index).
        self.name: str = self.index_dir.name
        self.url_query: str = ""

    # -- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        settings: Settings,
        encoder: Encoder | None = None,
        metrics: Metrics | None = None,
        index_dir: Path | None = None,
    ) -> SearchEngine:
        """Open the live version of `index_dir` (default: the settings' first index) and the
        model it needs (settings.model, default the one it was built with); refuse a model that
        does not match the version."""
        from indexer import open_index
        from indexer.resolve import backend_of, check_model, encoder_for_index

        if index_dir is None:
            index_dir = next(iter(settings.index_map().values()), None)
        if index_dir is None:
            raise NoIndexError("no index configured (set --index / CLIPSEARCH_INDEX)")
        version = open_index(index_dir)
        try:
            if encoder is None:
                encoder = encoder_for_index(
                    index_dir,
                    model=settings.model,
                    device=settings.device,
                    backend=settings.backend,
                )
            check_model(version, encoder.fingerprint, encoder.spec, backend_of(encoder))
            engine = cls(encoder, version, settings, metrics)
            if settings.writable or (settings.reload_poll_s > 0 and engine.has_live_log()):
                engine.open_live()
            return engine
        except BaseException:
            version.close()
            raise

    def start(self) -> None:
        """Create the batchers (needs the running event loop)."""
        s = self.settings
        common = dict(
            max_batch=s.max_batch,
            max_wait_ms=s.batch_wait_ms,
            max_queue=s.max_queue,
            concurrency=s.encode_workers,
            enabled=s.batching,
        )
        self._text_batcher = MicroBatcher(
            self._encode_text_batch, self.encode_pool, name="text", **common,
            on_batch=functools.partial(self.metrics.observe_batch, "text"),
        )  # fmt: skip
        self._image_batcher = MicroBatcher(
            self.encoder.encode_images, self.encode_pool, name="image", **common,
            on_batch=functools.partial(self.metrics.observe_batch, "image"),
        )  # fmt: skip
        self._reload_lock = asyncio.Lock()
        self._trimmer = MallocTrimmer(s.malloc_trim_s)

    def warmup(self) -> None:
        """Run every path a request can take, on every pool thread, at the largest batch the
        batcher forms, before the server reports ready. Each thread's first big batch is what
        grows the process: glibc gives each thread its own malloc arena, and torch sizes its
        buffers to the largest batch seen. Doing that here keeps RSS flat under load instead of
        climbing through the first minute of traffic (see docs/reliability.md)."""
        t0 = time.perf_counter()
        n = self.settings.max_batch
        texts = [f"warm-up query {i} " + "word " * (i % 16) for i in range(n)]
        rng = np.random.default_rng(0)
        photo = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=85)
        jpeg = buf.getvalue()
        with self.lease() as v:
            queries = self.encoder.encode_texts(texts[:2])

            def encode_path() -> None:
                self.encoder.encode_texts(texts)
                self.encoder.encode_texts(texts[:1])
                self.encoder.encode_images([photo] * n)
                self.encoder.encode_images([photo])
                v.search(queries[:1], 10)

            def io_path() -> None:
                self.encoder.load_image(jpeg, max_pixels=self.settings.max_image_pixels)
                v.search(queries[:1], 10)
                v.search(queries, 10)

            _on_every_thread(self.encode_pool, self.settings.encode_workers, encode_path)
            _on_every_thread(self.io_pool, self.settings.search_workers, io_path)
        log.info("warm-up took %.2fs", time.perf_counter() - t0)

    async def close(self) -> None:
        for b in (self._text_batcher, self._image_batcher):
            if b is not None:
                await b.close()
        if self._trimmer is not None:
            self._trimmer.close()
        self.encode_pool.shutdown(wait=True)
        self.io_pool.shutdown(wait=True)
        if self.live is not None:
            self._compactor.close()
            self.live.close()
        self._slot.version.close()

    def close_now(self) -> None:
        """Close an engine that was never started (a sibling failed to load)."""
        self.encode_pool.shutdown(wait=False)
        self.io_pool.shutdown(wait=False)
        if self.live is not None:
            self._compactor.close()
            self.live.close()
        self._slot.version.close()

    def open_live(self) -> None:
        """Serve the living index (the version + the write-ahead log, replayed) and fold its
        changes into new versions in the background (app/routes/writes.py writes to it)."""
        from indexer.live import CompactOptions, Compactor, LiveIndex
        from indexer.live.follow import FollowThread, LiveFollower
        from indexer.recall import recall_queries

        if not self.settings.writable:  # a read-only replica: follow the writer's log
            self.live = LiveFollower.open_follower(self.index_dir, self.fingerprint)
            self._compactor = FollowThread(self.live, self.settings.reload_poll_s).start()
            return
        self.live = LiveIndex.open(self.index_dir, expected_fingerprint=self.fingerprint)
        queries = functools.partial(recall_queries, self.encoder)
        opts = CompactOptions(self.settings.compact_changes, self.settings.compact_idle_s)
        self._compactor = Compactor(self.live, queries, opts).start()

    def has_live_log(self) -> bool:
        from indexer.live.wal import LIVE_DIR, LOG_NAME

        return (self.index_dir / LIVE_DIR / LOG_NAME).is_file()

    # -- versions -------------------------------------------------------------------------------
    @property
    def version(self) -> IndexVersion:
        return self._slot.version

    @contextlib.contextmanager
    def lease(self) -> Iterator[IndexVersion]:
        """The current version, kept open for the duration of one request even if a reload
        swaps in another meanwhile."""
        with self._lock:
            slot = self._slot
            slot.leases += 1
        try:
            yield slot.version if self.live is None else self.live.view()
        finally:
            with self._lock:
                slot.leases -= 1
                close = slot.retired and slot.leases == 0
            if close:
                slot.version.close()

    async def reload(self, version: str | None = None) -> tuple[str, str, IndexVersion]:
        """Open the live (or named) version, check it, warm it, then swap atomically. A corrupt or
        mismatched version raises and the current one keeps serving."""
        assert self._reload_lock is not None, "engine not started"
        from indexer import ModelMismatchError, open_index

        async with self._reload_lock:
            new = await self.run_io(
                functools.partial(
                    open_index, self.index_dir, version=version,
                    expected_fingerprint=self.fingerprint,
                )
            )  # fmt: skip
            try:
                if new.dim != self.dim:
                    raise ModelMismatchError(f"version {new.id} has dim {new.dim}, not {self.dim}")
                probe = np.zeros((1, self.dim), np.float32)
                probe[0, 0] = 1.0
                await self.run_io(new.search, probe, 1)
            except BaseException:
                new.close()
                raise
            with self._lock:
                old = self._slot
                self._slot = _Slot(new)
                old.retired = True
                close_old = old.leases == 0
            if close_old:
                old.version.close()
            self.thumb_cache = LRUCache(self.settings.thumbnail_cache_size)
            log.info("index version %s → %s (%d items)", old.version.id, new.id, new.count)
            return old.version.id, new.id, new

    # -- pools ----------------------------------------------------------------------------------
    async def run_io(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self.io_pool, fn, *args)

    async def run_encode(self, fn: Callable[..., R], *args: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(self.encode_pool, fn, *args)

    # -- encoding -------------------------------------------------------------------------------
    async def embed_text(self, text: str) -> np.ndarray:
        """(dim,) unit vector of one query text, through the LRU cache and the batcher."""
        return (await self._text_query(text, None)).vector

    async def text_search(self, text: str, job: SearchJob) -> TextResult:
        """Encode a query text and search with it (`job.query` is ignored)."""
        res = await self._text_query(text, job)
        if res.hits is None:  # encoded in a batch (or cached): search on the I/O pool
            t0 = time.perf_counter()
            hits = await self.search_images(dataclasses.replace(job, query=res.vector))
            res = TextResult(res.vector, hits, res.encode_s, time.perf_counter() - t0)
        return res

    async def _text_query(self, text: str, job: SearchJob | None) -> TextResult:
        assert self._text_batcher is not None, "engine not started"
        cached = self.text_cache.get(text)
        if cached is not None:
            self.metrics.cache_event("text", "hit")
            return TextResult(cached, None, 0.0, 0.0)
        self.metrics.cache_event("text", "miss")
        res = await self._text_batcher.submit(TextJob(text, job))
        self.text_cache.put(text, res.vector)
        return res

    def _encode_text_batch(self, jobs: list[TextJob]) -> list[TextResult | BaseException]:
        """Runs on the encode thread. A query that came alone is searched right here: that
        saves a hand-off to the I/O pool (and a thread wake-up) on the latency-bound path;
        under load, batches leave searching to the I/O pool so it overlaps the next batch."""
        t0 = time.perf_counter()
        vecs = self.encoder.encode_texts([j.text for j in jobs])  # (n, dim)
        encode_s = (time.perf_counter() - t0) / len(jobs)
        out: list[TextResult | BaseException] = []
        for j, vec in zip(jobs, vecs, strict=True):
            if j.search is None or len(jobs) > 1:
                out.append(TextResult(vec, None, encode_s, 0.0))
                continue
            t1 = time.perf_counter()
            try:
                hits = self._search_one(dataclasses.replace(j.search, query=vec))
            except InvalidFilterError as e:
                out.append(e)
                continue
            out.append(TextResult(vec, hits, encode_s, time.perf_counter() - t1))
        return out

    async def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        vecs = await asyncio.gather(*(self.embed_text(t) for t in texts))
        return np.stack(vecs) if vecs else np.zeros((0, self.dim), np.float32)

    async def decode_image(self, data: bytes) -> Image.Image:
        return await self.run_io(self._decode, data)

    def _decode(self, data: bytes) -> Image.Image:
        cap = self.settings.max_image_pixels
        try:
            return self.encoder.load_image(data, max_pixels=cap)
        except ImageLoadError as e:
            if e.code == "image_too_large":  # ours or Pillow's bomb guard: one message
                raise ImageLoadError(pixel_cap_message(cap), code="image_too_large") from e
            raise
        except Exception as e:  # noqa: BLE001 - a decoder bug on odd bytes is still bad input
            log.warning("decoder failed on an upload: %r", e)
            raise ImageLoadError("the image cannot be decoded (corrupt or odd file)") from e

    async def embed_image(self, image: Image.Image) -> np.ndarray:
        assert self._image_batcher is not None, "engine not started"
        return await self._image_batcher.submit(image)

    async def label_embeddings(self, labels: list[str], templates: tuple[str, ...]) -> np.ndarray:
        """(L, dim); each label's prompt-ensemble embedding is cached per model and templates."""
        keys = [(self.fingerprint, templates, label) for label in labels]
        found = {k[2]: v for k in keys if (v := self.label_cache.get(k)) is not None}
        missing = [label for label in labels if label not in found]
        self.metrics.cache_event("label", "hit" if not missing else "miss")
        if missing:
            embs = await self.run_encode(zs.label_embeddings, self.encoder, missing, templates)
            for label, emb in zip(missing, embs, strict=True):
                self.label_cache.put((self.fingerprint, templates, label), emb)
                found[label] = emb
        return np.stack([found[label] for label in labels])

    # -- searching ------------------------------------------------------------------------------
    async def search_images(self, job: SearchJob) -> list[Hit]:
        """Top hits for one query, on the I/O pool. Searches are not batched: one IVF query
        takes well under a millisecond here, and the indexer's batched path (exact re-rank
        per batch) measured slower per query than single calls."""
        return await self.run_io(self._search_one, job)

    @staticmethod
    def _search_one(job: SearchJob) -> list[Hit]:
        try:
            return job.version.search(
                job.query[None, :], job.k, path_prefix=job.path_prefix, where=job.where,
                min_score=job.min_score,
            )[0]  # fmt: skip
        except ValueError as e:  # e.g. a metadata key the filter cannot express
            raise InvalidFilterError(str(e)) from e

    # -- items ----------------------------------------------------------------------------------
    def image_file(self, version: IndexVersion, image_id: str) -> Path:
        """The corpus file of an item; 404 for unknown ids and anything outside the corpus."""
        item_id = parse_id(image_id)
        path = version.image_path(item_id)
        if path is None or not path.is_file():
            raise ItemNotFoundError(f"no image with id {image_id}")
        return path

    async def thumbnail(self, version: IndexVersion, image_id: str) -> bytes:
        path = self.image_file(version, image_id)
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        data = self.thumb_cache.get(key)
        if data is None:
            item = version.get_item(parse_id(image_id))
            indexed = item.width * item.height if item is not None else 0
            # What the indexer accepted, the server shows, whatever the upload cap.
            cap = max(self.settings.max_image_pixels, indexed)
            data = await self.run_io(self._make_thumbnail, path, cap)
            self.thumb_cache.put(key, data)
        return data

    def _make_thumbnail(self, path: Path, max_pixels: int) -> bytes:
        px = self.settings.thumbnail_px
        try:
            img = load_image(path, max_pixels=max_pixels, min_size=px)
        except ImageLoadError as e:  # the stored file changed since indexing: not the client's
            log.warning("thumbnail of %s failed: %s", path, e)
            raise ImageUnavailableError(f"the image file can no longer be read: {e}") from e
        img.thumbnail((px, px))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=85)
        return buf.getvalue()

    def example_id(self) -> str | None:
        """An id in the live version, for the examples of the OpenAPI document."""
        probe = np.zeros((1, self.dim), np.float32)
        probe[0, 0] = 1.0
        with self.lease() as v:
            hits = v.search(probe, 1)[0]
        return str(hits[0].item.id) if hits else None

    @property
    def writable(self) -> bool:
        """Accepts POST /images and DELETE /images/{id} (a read-only replica follows only)."""
        return self.settings.writable and self.live is not None

    def queued(self) -> int:
        return sum(b.queued for b in (self._text_batcher, self._image_batcher) if b is not None)

    # -- introspection --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        v = self.version
        return {
            "model": self.model_spec,
            "backend": self.backend,
            "fingerprint": self.fingerprint,
            "dim": self.dim,
            "index_version": v.id,
            "count": v.count,
            "factory": v.factory,
            "has_texts": v.has_texts,
            "writable": self.writable,
            "live": self.live.stats() if self.live is not None else None,
            "memory": process_memory(v.path),
            "batching": {
                "enabled": self.settings.batching,
                "text": self._text_batcher.stats.as_dict() if self._text_batcher else None,
                "image": self._image_batcher.stats.as_dict() if self._image_batcher else None,
            },
            "caches": {
                "text": self.text_cache.stats(),
                "label": self.label_cache.stats(),
                "thumbnail": self.thumb_cache.stats(),
            },
        }


def model_key(settings: Settings, index_dir: Path) -> tuple[str, str, str | None]:
    """What decides which encoder an index needs: its model spec (settings.model, default the
    one it was built with), the backend and the device. Equal keys share one loaded encoder."""
    from indexer.manifest import read_manifest

    spec = settings.model or read_manifest(index_dir).model
    return spec, settings.backend, settings.device


def load_encoders(settings: Settings, encoder: Encoder | None = None) -> dict[str, Encoder]:
    """One encoder per served index, each distinct model loaded once and checked against every
    index that uses it. `encoder` (already loaded) serves the default index and any other index
    with the same key."""
    from indexer.manifest import read_manifest
    from indexer.resolve import backend_of, check_model
    from model import load_encoder

    loaded: dict[tuple[str, str, str | None], Encoder] = {}
    out: dict[str, Encoder] = {}
    for n, (name, path) in enumerate(settings.index_map().items()):
        key = model_key(settings, path)
        if n == 0 and encoder is not None:
            loaded.setdefault(key, encoder)
        if key not in loaded:
            loaded[key] = load_encoder(key[0], device=settings.device, backend=settings.backend)
        enc = loaded[key]
        check_model(read_manifest(path), enc.fingerprint, enc.spec, backend_of(enc))
        out[name] = enc
    return out


def load_engines(
    settings: Settings, encoder: Encoder | None = None, metrics: Metrics | None = None
) -> dict[str, SearchEngine]:
    """An engine per served index, in the order given (the first is the default), sharing the
    encoders of load_encoders and one Metrics. On a failure the engines opened so far close."""
    if not settings.index:
        raise NoIndexError("no index configured (set --index / CLIPSEARCH_INDEX)")
    encoders = load_encoders(settings, encoder)
    metrics = metrics or Metrics()
    engines: dict[str, SearchEngine] = {}
    try:
        for n, (name, path) in enumerate(settings.index_map().items()):
            engine = SearchEngine.load(settings, encoders[name], metrics, index_dir=path)
            engine.name = name
            engine.url_query = "" if n == 0 else f"?index={name}"
            engines[name] = engine
    except BaseException:
        for engine in engines.values():
            engine.close_now()
        raise
    return engines


def _on_every_thread(pool: ThreadPoolExecutor, threads: int, fn: Callable[[], None]) -> None:
    """Run fn once on each of the pool's `threads` threads: a barrier holds every task until all
    have started, so no thread can take two of them and the pool must start all of its threads."""
    barrier = threading.Barrier(threads)

    def task() -> None:
        barrier.wait(timeout=60)
        fn()

    for f in [pool.submit(task) for _ in range(threads)]:
        f.result()


def parse_id(image_id: str) -> int:
    """Ids are int64 on the inside and strings on the wire; anything else is simply unknown."""
    try:
        value = int(image_id)
    except (TypeError, ValueError):
        raise ItemNotFoundError(f"no image with id {image_id!r}") from None
    if not -(2**63) <= value < 2**63:
        raise ItemNotFoundError(f"no image with id {image_id!r}")
    return value
