"""clip-retrieval's back-end API, answered by clipsearch: `POST /knn-service`, `POST /metadata`
and `GET /indices-list` with clip_back's request fields, defaults and response shapes, so that
its `ClipClient` and its web front run unchanged against this server (docs/api.md has the
mapping). Differences, each on purpose:

- errors are this API's {"error": {...}} with a 4xx, where clip_back answers 500;
- `deduplicate` hides near-duplicates (cosine >= 0.94, clip_back's threshold) the way /search's
  `dedup` does, so the list still holds `num_result_ids` hits (clip_back's only shrinks);
- `use_mclip`, `use_safety_model`, `use_violence_detector` and `aesthetic_score` are accepted
  and not applied: the `X-Clipsearch-Not-Applied` response header names those a request asked
  for (clip-retrieval's clients read only the body);
- `image_url` is fetched only from the hosts --image-url-hosts allows;
- a result's `url` is the item's own `url` metadata (an index imported from clip-retrieval), else
  this server's /images/{id}; `image` (base64) only with --knn-inline-images.

The bodies are read as JSON whatever their Content-Type: clip-retrieval's front posts
`JSON.stringify(...)` as text/plain (a CORS "simple" request, no preflight)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..bodies import read_json, validate
from ..deps import engine_for, get_engine
from ..engine import SearchEngine, SearchJob, parse_id
from ..engine_errors import ItemNotFoundError
from ..errors import ApiError
from ..limits import check_text, decode_b64, strip_text
from ..query import Timings, find_images, given_vector, image_vector
from ..schemas import FiniteFloat, Int, error_responses
from ._fetch import check_url, fetch_image

router = APIRouter(tags=["clip-retrieval"])

MAX_RESULTS = 10_000  # num_images / num_result_ids / ids per request (clip-retrieval's front: 3000)
DEDUP_THRESHOLD = 0.94  # clip_back's cosine for "the same image" (its get_non_uniques)
NOT_APPLIED = "X-Clipsearch-Not-Applied"


class KnnRequest(BaseModel):
    """clip_back's /knn-service body: one query (the first of text, image, image_url,
    embedding_input that is given) and its options. Unknown fields are ignored, as there."""

    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    image: str | None = Field(None, description="base64 of the query image")
    image_url: str | None = Field(None, description="fetched only from --image-url-hosts")
    embedding_input: Annotated[list[FiniteFloat], Field(min_length=1, max_length=8192)] | None = (
        None
    )
    modality: Literal["image", "text"] = Field(
        "image", description="image: search the images; text: the index's text corpus"
    )
    num_images: Int = Field(100, ge=1, le=MAX_RESULTS, description="results with metadata")
    num_result_ids: Int | None = Field(
        None, ge=1, le=MAX_RESULTS, description="results in all (default: num_images)"
    )
    indice_name: str | None = Field(None, max_length=64, description="index (default: the first)")
    use_mclip: bool = False
    deduplicate: bool = False
    use_safety_model: bool = False
    use_violence_detector: bool = False
    aesthetic_score: Int | str | None = None
    aesthetic_weight: FiniteFloat | str | None = None


class MetadataRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ids: Annotated[list[Int | str], Field(max_length=MAX_RESULTS)]
    indice_name: str | None = Field(None, max_length=64)


async def _read(request: Request, model: type[BaseModel]) -> Any:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise ApiError(422, "validation_error", "the JSON body must be an object")
    return validate(model, data, strict=True)


async def _engine(request: Request, name: str | None) -> SearchEngine:
    await get_engine(request)  # 503 while loading, before anything else
    return engine_for(request, name or None)  # "" is clip-retrieval's front before it knows


def not_applied(req: KnnRequest) -> list[str]:
    asked = {
        "use_mclip": req.use_mclip,
        "use_safety_model": req.use_safety_model,
        "use_violence_detector": req.use_violence_detector,
        "aesthetic_score": req.aesthetic_score not in (None, ""),
        "deduplicate": req.deduplicate and req.modality == "text",
    }
    return [name for name, on in asked.items() if on]


def check_inputs(engine: SearchEngine, req: KnnRequest) -> np.ndarray | None:
    """Refuse a bad input even where a query of higher rank makes it unused (what the schema
    calls invalid, the server refuses); → the embedding_input's vector, if one is given."""
    s = engine.settings
    if req.text is not None and len(req.text) > s.max_text_chars:
        check_text(req.text, s.max_text_chars)
    if req.image_url is not None and not s.image_url_host_list():
        check_url(req.image_url, [])
    if req.embedding_input is not None:
        return given_vector(req.embedding_input, engine.dim)
    return None


async def knn_query(request: Request, engine: SearchEngine, req: KnnRequest) -> np.ndarray:
    """The query vector, from the first input given (clip_back's order)."""
    s = engine.settings
    t = Timings(engine)
    given = check_inputs(engine, req)
    if req.text is not None and strip_text(req.text):
        return await engine.embed_text(check_text(req.text, s.max_text_chars))
    if req.image is not None:
        return await image_vector(engine, decode_b64(req.image, "image"), t)
    if req.image_url is not None:
        hosts = s.image_url_host_list()
        data = await engine.run_io(fetch_image, req.image_url, hosts, s.max_body_bytes)
        return await image_vector(engine, data, t)
    if given is not None:
        return given
    raise ApiError(
        422, "invalid_query", "must fill one of text, image, image_url and embedding_input"
    )


def item_metadata(engine: SearchEngine, version: Any, item: Any, base: str) -> dict[str, Any]:
    """clip_back's metadata columns (url, image_path, caption, NSFW; `image` when inlined)."""
    own = item.extra.get("url")
    meta: dict[str, Any] = {
        "url": own if isinstance(own, str) else f"{base}images/{item.id}{engine.url_query}",
        "image_path": item.path,
    }
    if item.caption is not None:
        meta["caption"] = item.caption
    if "NSFW" in item.extra:
        meta["NSFW"] = item.extra["NSFW"]
    if engine.settings.knn_inline_images:
        path = version.image_path(item.id)
        if path is not None:
            meta["image"] = base64.b64encode(path.read_bytes()).decode()
    return meta


def _metadata_of(engine: SearchEngine, version: Any, items: list, base: str) -> list[dict]:
    return [item_metadata(engine, version, item, base) for item in items]


async def _image_results(
    engine: SearchEngine, req: KnnRequest, q: np.ndarray, n: int, base: str
) -> list[dict[str, Any]]:
    with engine.lease() as version:
        dedup = DEDUP_THRESHOLD if req.deduplicate else None
        hits = await find_images(engine, SearchJob(version, q, n), dedup=dedup)
        shown = [h.item for h in hits[: req.num_images]]
        metas = await engine.run_io(_metadata_of, engine, version, shown, base)
    out = []
    for i, h in enumerate(hits):
        out.append({**(metas[i] if i < len(metas) else {}), "id": int(h.item.id),
                    "similarity": round(float(h.score), 6)})  # fmt: skip
    return out


async def _text_results(engine: SearchEngine, req: KnnRequest, q: np.ndarray, n: int) -> list:
    with engine.lease() as version:
        if not version.has_texts:
            raise ApiError(
                422, "no_texts", f"index {engine.name} has no text corpus: use modality image"
            )
        found = (await engine.run_io(version.search_texts, q[None, :], n))[0]
    return [
        {
            **({"caption": h.text} if i < req.num_images else {}),
            "id": int(h.id),
            "similarity": round(float(h.score), 6),
        }  # fmt: skip
        for i, h in enumerate(found)
    ]


@router.post(
    "/knn-service",
    responses={
        200: {
            "description": "The nearest neighbours, best first (clip_back's shape)",
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/KnnResult"}}
                }
            },
            "headers": {
                NOT_APPLIED: {
                    "description": "the options this request asked for that are not applied",
                    "schema": {"type": "string"},
                }
            },
        },
        **error_responses(401, 404, 413, 415, 422, 503),
    },
    openapi_extra={"x-clipsearch-knn-body": "knn"},
)
async def knn_service(request: Request) -> Response:
    """clip-retrieval's knn service: nearest images (or texts) of a text, image or vector."""
    req: KnnRequest = await _read(request, KnnRequest)
    engine = await _engine(request, req.indice_name)
    q = await knn_query(request, engine, req)
    n = req.num_result_ids or req.num_images
    base = str(request.base_url)
    if req.modality == "text":
        results = await _text_results(engine, req, q, n)
    else:
        results = await _image_results(engine, req, q, n, base)
    skipped = not_applied(req)
    return JSONResponse(results, headers={NOT_APPLIED: ", ".join(skipped)} if skipped else None)


def _metadata_rows(engine: SearchEngine, ids: list, base: str) -> list[dict[str, Any]]:
    out = []
    with engine.lease() as version:
        for given in ids:
            try:
                item = version.get_item(parse_id(str(given)))
            except ItemNotFoundError:
                item = None
            meta = item_metadata(engine, version, item, base) if item is not None else {}
            out.append({"id": given, "metadata": meta})
    return out


@router.post(
    "/metadata",
    responses={
        200: {
            "description": "Each id with its metadata ({} for an id the index does not hold)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "array",
                        "items": {"$ref": "#/components/schemas/KnnMetadata"},
                    }
                }
            },
        },
        **error_responses(401, 404, 413, 422, 503),
    },
    openapi_extra={"x-clipsearch-knn-body": "metadata"},
)
async def metadata(request: Request) -> Response:
    """clip-retrieval's metadata service: the metadata of result ids."""
    req: MetadataRequest = await _read(request, MetadataRequest)
    engine = await _engine(request, req.indice_name)
    rows = await engine.run_io(_metadata_rows, engine, req.ids, str(request.base_url))
    return JSONResponse(rows)


@router.get(
    "/indices-list",
    response_model=list[str],
    responses=error_responses(401, 503),
)
async def indices_list(request: Request) -> list[str]:
    """clip-retrieval's index list: this server's index names, the default first."""
    await get_engine(request)
    return list(request.app.state.engines)
