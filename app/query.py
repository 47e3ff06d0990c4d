"""What the routes do, independent of how the request arrived (JSON or multipart):
turn a query into one unit vector, search, classify, embed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from model import zeroshot as zs

from .engine import SearchEngine, SearchJob, parse_id
from .errors import ApiError
from .limits import check_text, decode_b64, strip_text
from .schemas import (
    MAX_OFFSET,
    ClassifyRequest,
    ClassifyResponse,
    EmbedResponse,
    LabelScore,
    QueryTerm,
    SearchHit,
    SearchRequest,
    SearchResponse,
)

if TYPE_CHECKING:
    from indexer import IndexVersion

EMPTY = np.zeros(0, dtype=np.float32)  # placeholder query of a job the engine fills in


class Timings:
    """Per-stage wall time of one request (ms in the response, seconds in /metrics)."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.start = time.perf_counter()
        self.ms: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self.ms[name] = round(self.ms.get(name, 0.0) + dt * 1000, 3)
            self.engine.metrics.observe_stage(name, dt)

    def add(self, name: str, seconds: float) -> None:
        """A stage timed elsewhere (on a worker thread)."""
        self.ms[name] = round(self.ms.get(name, 0.0) + seconds * 1000, 3)
        self.engine.metrics.observe_stage(name, seconds)

    def done(self) -> dict[str, float]:
        total = time.perf_counter() - self.start
        self.engine.metrics.observe_stage("total", total)
        return {**self.ms, "total": round(total * 1000, 3)}


async def image_vector(engine: SearchEngine, data: bytes, t: Timings) -> np.ndarray:
    with t.stage("decode"):
        image = await engine.decode_image(data)
    with t.stage("encode"):
        return await engine.embed_image(image)


def stored_vector(version: IndexVersion, image_id: str) -> np.ndarray:
    vec = version.get_vector(parse_id(image_id))
    if vec is None:
        raise ApiError(404, "not_found", f"no image with id {image_id}")
    return np.asarray(vec, dtype=np.float32)


def given_vector(embedding: list[float], dim: int) -> np.ndarray:
    if len(embedding) != dim:
        raise ApiError(
            422, "dimension_mismatch", f"embedding has {len(embedding)} values; the model has {dim}"
        )
    vec = np.asarray(embedding, dtype=np.float64)
    if np.abs(vec).max() > np.finfo(np.float32).max:  # finite in JSON, infinite as float32
        raise ApiError(422, "invalid_embedding", "embedding values must be finite float32")
    return normalise(vec, "embedding")


def normalise(vec: np.ndarray, what: str) -> np.ndarray:
    """Any direction with a non-zero value is a query, however small its values: scale by the
    largest first so squaring neither underflows nor overflows."""
    v64 = vec.astype(np.float64)
    top = float(np.abs(v64).max()) if v64.size else 0.0
    if not np.isfinite(top) or top == 0.0:
        raise ApiError(422, "zero_query", f"the {what} has no direction (all values are 0)")
    v64 = v64 / top
    return (v64 / np.linalg.norm(v64)).astype(np.float32)


async def term_vector(
    engine: SearchEngine, version: IndexVersion, term: QueryTerm, t: Timings
) -> np.ndarray:
    if term.text is not None:
        text = check_text(term.text, engine.settings.max_text_chars)
        with t.stage("encode"):
            return await engine.embed_text(text)
    if term.image_id is not None:
        return await engine.run_io(stored_vector, version, term.image_id)
    if term.image_b64 is not None:
        return await image_vector(engine, decode_b64(term.image_b64), t)
    assert term.embedding is not None
    return given_vector(term.embedding, engine.dim)


async def query_vector(
    engine: SearchEngine,
    version: IndexVersion,
    req: SearchRequest,
    upload: bytes | None,
    t: Timings,
) -> np.ndarray:
    """Exactly one query form → (dim,) unit vector; `terms` are summed with their weights."""
    forms = req.query_forms() + (["image"] if upload is not None else [])
    if len(forms) != 1:
        raise ApiError(
            422,
            "invalid_query",
            "give exactly one of text, image_id, image_b64, embedding, terms or an image file"
            + (f" (got {', '.join(forms)})" if forms else ""),
        )
    if upload is not None:
        return await image_vector(engine, upload, t)
    if req.terms is None:
        term = QueryTerm(**{forms[0]: getattr(req, forms[0])})
        return await term_vector(engine, version, term, t)
    if len(req.terms) > engine.settings.max_terms:
        raise ApiError(422, "too_many_terms", f"at most {engine.settings.max_terms} terms")
    vecs = await asyncio.gather(*(term_vector(engine, version, x, t) for x in req.terms))
    weights = np.array([x.weight for x in req.terms], dtype=np.float64)
    total = (weights[:, None] * np.stack(vecs)).sum(axis=0)  # (dim,)
    if np.linalg.norm(total) <= 1e-6 * np.abs(weights).sum():  # unit terms that cancel out
        raise ApiError(422, "zero_query", "the weighted terms cancel out: no direction is left")
    return normalise(total, "weighted query")


def image_hit(item, score: float, url_query: str = "") -> SearchHit:
    """A hit on the wire; `url_query` ("?index=name") points its URLs at a non-default index."""
    sid = str(item.id)
    return SearchHit(
        id=sid,
        score=round(float(score), 6),
        path=item.path,
        url=f"/images/{sid}{url_query}",
        thumbnail_url=f"/images/{sid}/thumbnail{url_query}",
        caption=item.caption,
        width=item.width,
        height=item.height,
    )


def check_where(where: dict[str, str] | None) -> None:
    """Refuse a filter key the index cannot express before any work (also for target=texts)."""
    from indexer.store import filter_sql

    try:
        filter_sql(None, where)
    except ValueError as e:
        raise ApiError(422, "invalid_filter", f"where: {e}") from e


def page(hits: list, req: SearchRequest) -> tuple[list, int | None]:
    """The page [offset, offset + k) of hits searched for offset + k; the next page's offset."""
    window = hits[req.offset : req.offset + req.k]
    more = len(hits) >= req.offset + req.k
    return window, (req.offset + req.k if more and req.offset + req.k <= MAX_OFFSET else None)


MAX_FETCH = 20_000  # the most candidates one deduplicated or self-excluding search looks at
DEDUP_OVERFETCH = 4  # candidates per wanted hit on dedup's first try (then 4× more each time)


def named_ids(req: SearchRequest) -> set[int]:
    """The images a query searches from by id (the image_id form and image_id terms of
    positive weight; a negative term pushes away, it is no query image): what `exclude_self`
    leaves out of the hits."""
    given = [req.image_id] + [t.image_id for t in req.terms or [] if t.weight > 0]
    return {parse_id(i) for i in given if i is not None}


def _vectors_of(version: IndexVersion, hits: list) -> Iterator[np.ndarray | None]:
    for h in hits:
        yield version.get_vector(h.item.id)


def _distinct(version: IndexVersion, hits: list, threshold: float, want: int) -> list:
    from indexer.dedup import distinct_hits

    kept, _ = distinct_hits(_vectors_of(version, hits), threshold, want)
    return [hits[i] for i in kept]


async def find_images(
    engine: SearchEngine,
    job: SearchJob,
    *,
    dedup: float | None = None,
    exclude: frozenset[int] | set[int] = frozenset(),
    t: Timings | None = None,
) -> list:
    """`job.k` image hits, best first, leaving out the ids in `exclude` and (with `dedup`) any
    hit whose cosine to a better kept hit is at least `dedup` (stored vectors of the version).
    Over-fetches: job.k + the excluded with no dedup; with dedup 4× that, then 4× more while
    there are more candidates and too few kept (at most MAX_FETCH)."""
    want = job.k
    fetch = want + len(exclude)
    if dedup is not None:
        fetch = min(max(fetch, DEDUP_OVERFETCH * fetch), MAX_FETCH)
    while True:
        t0 = time.perf_counter()
        found = await engine.search_images(dataclasses.replace(job, k=fetch))
        if t is not None:
            t.add("search", time.perf_counter() - t0)
        hits = [h for h in found if h.item.id not in exclude]
        if dedup is not None:
            t0 = time.perf_counter()
            hits = await engine.run_io(_distinct, job.version, hits, dedup, want)
            if t is not None:
                t.add("dedup", time.perf_counter() - t0)
        if len(hits) >= want or len(found) < fetch or fetch >= MAX_FETCH:
            return hits[:want]
        fetch = min(fetch * DEDUP_OVERFETCH, MAX_FETCH)


async def search(engine: SearchEngine, req: SearchRequest, upload: bytes | None) -> SearchResponse:
    check_where(req.where)
    only_text = req.text is not None and len(req.query_forms()) == 1 and upload is None
    if only_text and req.target == "images" and req.dedup is None:
        return await text_search(engine, req, req.text or "")
    t = Timings(engine)
    want = req.offset + req.k
    with engine.lease() as version:
        q = await query_vector(engine, version, req, upload, t)
        if req.target == "texts":
            if not version.has_texts:
                raise ApiError(
                    422, "no_texts", f"index version {version.id} has no text corpus to search"
                )
            with t.stage("search"):
                found = await engine.run_io(version.search_texts, q[None, :], want)
            hits = [
                SearchHit(id=str(h.id), score=round(float(h.score), 6), text=h.text)
                for h in found[0]
                if req.min_score is None or h.score >= req.min_score
            ]
        else:
            job = SearchJob(version, q, want, req.path_prefix, req.where, req.min_score)
            exclude = named_ids(req) if req.exclude_self else set()
            found = await find_images(engine, job, dedup=req.dedup, exclude=exclude, t=t)
            hits = [image_hit(h.item, h.score, engine.url_query) for h in found]
        hits, next_offset = page(hits, req)
        return SearchResponse(
            hits=hits, model=engine.model_spec, index_version=version.id, timings_ms=t.done(),
            offset=req.offset, next_offset=next_offset,
        )  # fmt: skip


async def text_search(engine: SearchEngine, req: SearchRequest, text: str) -> SearchResponse:
    """The common case, text → images, on the shortest path: encode and search in one go."""
    t = Timings(engine)
    text = check_text(text, engine.settings.max_text_chars)
    with engine.lease() as version:
        want = req.offset + req.k
        job = SearchJob(version, EMPTY, want, req.path_prefix, req.where, req.min_score)
        res = await engine.text_search(text, job)
        t.add("encode", res.encode_s)
        t.add("search", res.search_s)
        found = [image_hit(h.item, h.score, engine.url_query) for h in res.hits or []]
        hits, next_offset = page(found, req)
        return SearchResponse(
            hits=hits, model=engine.model_spec, index_version=version.id, timings_ms=t.done(),
            offset=req.offset, next_offset=next_offset,
        )  # fmt: skip


def parse_labels(labels: list[str] | str, max_labels: int, max_chars: int) -> list[str]:
    """A JSON list (each label non-blank) or one comma-separated string (blank pieces dropped)
    → distinct labels, order kept."""
    if isinstance(labels, str):
        check_text(labels, max_chars, "labels")
        raw = labels.split(",")
        given = [strip_text(x) for x in raw if strip_text(x)]
    else:
        raw = labels
        given = [check_text(x, max_chars, f"labels[{i}]") for i, x in enumerate(labels)]
    if not given:
        raise ApiError(
            422, "invalid_labels", 'give at least one label: ["a cat", "a dog"] or "a cat, a dog"'
        )
    if len(raw) > max_labels:
        raise ApiError(422, "too_many_labels", f"{len(raw)} labels; the limit is {max_labels}")
    return list(dict.fromkeys(given))


def parse_templates(templates: list[str] | None, max_templates: int, max_chars: int):
    if templates is None:
        return zs.validate_templates(None)
    if not templates:
        raise ApiError(422, "invalid_labels", "templates: give at least one, or leave it out")
    if len(templates) > max_templates:
        raise ApiError(422, "too_many_templates", f"at most {max_templates} templates")
    for i, t in enumerate(templates):
        check_text(t, max_chars, f"templates[{i}]")
        if (
            t.count("{") != 1
            or t.count("}") != 1
            or "{}" not in t
            or not strip_text(t.replace("{}", ""))
        ):
            raise ApiError(
                422,
                "invalid_labels",
                f"templates[{i}] must hold exactly one {{}} where the label goes, some words "
                'around it and no other braces, e.g. "a photo of {}."',
            )
    return tuple(templates)


async def classify(
    engine: SearchEngine, req: ClassifyRequest, upload: bytes | None
) -> ClassifyResponse:
    t = Timings(engine)
    s = engine.settings
    labels = parse_labels(req.labels, s.max_labels, s.max_text_chars)
    templates = parse_templates(req.templates, s.max_templates, s.max_text_chars)
    sources = [x for x in (req.image_id, req.image_b64, upload) if x is not None]
    if len(sources) != 1:
        raise ApiError(422, "invalid_query", "give exactly one of image_id, image_b64 or an image")
    if upload is not None:
        img = await image_vector(engine, upload, t)
    elif req.image_b64 is not None:
        img = await image_vector(engine, decode_b64(req.image_b64), t)
    else:
        with engine.lease() as version:
            img = await engine.run_io(stored_vector, version, req.image_id or "")
    with t.stage("labels"):
        label_embs = await engine.label_embeddings(labels, templates)
    probs = zs.probabilities(img[None, :], label_embs, engine.logit_scale)[0]  # (L,)
    order = np.argsort(-probs, kind="stable")
    return ClassifyResponse(
        labels=[LabelScore(label=labels[i], score=round(float(probs[i]), 6)) for i in order],
        model=engine.model_spec,
        timings_ms=t.done(),
    )


async def embed(engine: SearchEngine, texts: list[str], images: list[bytes]) -> EmbedResponse:
    s = engine.settings
    if not texts and not images:
        raise ApiError(
            422, "invalid_query", "give at least one of texts or images_b64 (or an images file)"
        )
    for what, items in (("texts", texts), ("images", images)):
        if len(items) > s.max_embed_items:
            raise ApiError(
                422, "too_many_items", f"{len(items)} {what}; the limit is {s.max_embed_items}"
            )
    texts = [check_text(x, s.max_text_chars, f"texts[{i}]") for i, x in enumerate(texts)]
    t = Timings(engine)
    text_vecs = await engine.embed_texts(texts)
    img_vecs = await asyncio.gather(*(image_vector(engine, b, t) for b in images))
    return EmbedResponse(
        model=engine.model_spec,
        dim=engine.dim,
        texts=[[round(float(x), 7) for x in v] for v in text_vecs],
        images=[[round(float(x), 7) for x in v] for v in img_vecs],
    )
