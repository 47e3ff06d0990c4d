"""Request and response models: the wire shapes of DESIGN.md, with OpenAPI examples."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from indexer.types import MAX_K

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _integral(v: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; strict validation would not.
    return int(v) if isinstance(v, float) and v.is_integer() else v


Int = Annotated[int, BeforeValidator(_integral)]
Vector = Annotated[list[FiniteFloat], Field(min_length=1, max_length=8192)]
ImageId = Annotated[str, Field(min_length=1, max_length=32, examples=["1234"])]

IndexName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        examples=["photos"],
        description="which index to use (GET /indexes lists them; default: the first one)",
    ),
]

QUERY_FIELDS = ("text", "image_id", "image_b64", "embedding", "terms")
MAX_OFFSET = 10_000  # paging depth: a page past this is a request for a bigger k, not a page


class RequestModel(BaseModel):
    """A request body: unknown fields and explicit nulls are refused (leave a field out instead),
    so what the OpenAPI schema calls invalid, the server refuses too."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if value is None and key in cls.model_fields:
                    raise ValueError(f"{key}: null is not a value here; leave the field out")
        return data


class QueryTerm(RequestModel):
    """One part of a weighted query: exactly one source and a weight (negative to push away)."""

    text: str | None = None
    image_id: ImageId | None = None
    image_b64: str | None = None
    embedding: Vector | None = None
    weight: FiniteFloat = Field(1.0, ge=-10.0, le=10.0, description="not 0; negative pushes away")

    @model_validator(mode="after")
    def _one_source(self) -> QueryTerm:
        given = [
            f
            for f in ("text", "image_id", "image_b64", "embedding")
            if getattr(self, f) is not None
        ]
        if len(given) != 1:
            raise ValueError("each term needs exactly one of text, image_id, image_b64, embedding")
        if self.weight == 0:
            raise ValueError("weight: 0 would drop the term; leave the term out instead")
        return self


class SearchRequest(RequestModel):
    """Exactly one query form (or, in multipart, an uploaded `image`) plus options."""

    text: str | None = None
    image_id: ImageId | None = None
    image_b64: str | None = None
    embedding: Vector | None = None
    terms: Annotated[list[QueryTerm], Field(min_length=1, max_length=64)] | None = None
    k: Int = Field(10, ge=1, le=MAX_K, description=f"number of hits (1…{MAX_K})")
    offset: Int = Field(
        0, ge=0, le=MAX_OFFSET, description="skip this many hits first (paging: the next page)"
    )
    target: Literal["images", "texts"] = "images"
    min_score: FiniteFloat | None = Field(None, ge=-1.0, le=1.0)
    path_prefix: str | None = Field(None, max_length=1024)
    where: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        None, max_length=32, description="metadata equality filter on items' extra fields"
    )
    index: IndexName | None = None
    dedup: FiniteFloat | None = Field(
        None,
        gt=0.0,
        le=1.0,
        description="hide near-duplicate images: a hit whose cosine similarity to a better hit "
        "is at least this is left out, and the next one takes its place (still k hits); not "
        "applied with target=texts",
    )
    exclude_self: bool = Field(
        True,
        description="leave out the query's own images: the image_id form and image_id terms "
        "of positive weight (false keeps them: an image is its own best match)",
    )

    def query_forms(self) -> list[str]:
        return [f for f in QUERY_FIELDS if getattr(self, f) is not None]


class SearchHit(BaseModel):
    id: str
    score: float
    path: str | None = None
    url: str | None = None
    thumbnail_url: str | None = None
    caption: str | None = None
    width: int | None = None
    height: int | None = None
    text: str | None = Field(None, description="the matched text (target=texts only)")


class SearchResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "hits": [
                        {
                            "id": "1234",
                            "score": 0.31,
                            "path": "photos/cat.jpg",
                            "url": "/images/1234",
                            "thumbnail_url": "/images/1234/thumbnail",
                            "caption": None,
                            "width": 451,
                            "height": 300,
                        }
                    ],
                    "model": "starter",
                    "index_version": "20260101T000000-ab12",
                    "timings_ms": {"encode": 4.1, "search": 0.3, "total": 5.0},
                }
            ]
        }
    )

    hits: list[SearchHit]
    model: str
    index_version: str
    timings_ms: dict[str, float]
    offset: int = Field(0, description="the offset asked for")
    next_offset: int | None = Field(
        None, description="offset of the next page; null when this page is the last"
    )


class ClassifyRequest(RequestModel):
    """One image (`image_id` or `image_b64`; in multipart an `image` file) and candidate labels."""

    image_id: ImageId | None = None
    image_b64: str | None = None
    labels: list[str] | str = Field(..., description="a list, or one comma-separated string")
    templates: list[str] | None = Field(None, description="prompt templates with one {}")
    index: IndexName | None = None


class LabelScore(BaseModel):
    label: str
    score: float


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "labels": [
                        {"label": "a cat", "score": 0.93},
                        {"label": "a dog", "score": 0.07},
                    ],
                    "model": "starter",
                }
            ]
        }
    )

    labels: list[LabelScore]
    model: str
    timings_ms: dict[str, float] = {}


class EmbedRequest(RequestModel):
    """Texts and/or images (at least one of either) to embed."""

    texts: list[str] = []
    images_b64: list[str] = []
    index: IndexName | None = None


class EmbedResponse(BaseModel):
    model: str
    dim: int
    texts: list[list[float]]
    images: list[list[float]]


class IndexInfo(BaseModel):
    name: str
    default: bool = Field(description="the index a request that names none uses")
    model: str
    backend: str
    dim: int
    count: int = Field(description="images in the live version")
    index_version: str
    has_texts: bool = Field(description="has a text corpus (target=texts, modality=text)")
    writable: bool


class IndexesResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default": "photos",
                    "indexes": [
                        {
                            "name": "photos",
                            "default": True,
                            "model": "starter",
                            "backend": "torch",
                            "dim": 512,
                            "count": 5,
                            "index_version": "20260101T000000-ab12",
                            "has_texts": True,
                            "writable": False,
                        }
                    ],
                }
            ]
        }
    )

    default: str
    indexes: list[IndexInfo]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ReloadResponse(BaseModel):
    index_version: str
    previous_version: str | None
    changed: bool
    count: int


def error_example(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


# Every error status a route can answer, with an example body for the OpenAPI docs.
ERRORS: dict[int, tuple[str, str, str]] = {
    401: ("Missing or wrong API key", "unauthorized", "missing or invalid API key"),
    404: ("Unknown id", "not_found", "no image with id 99"),
    409: ("Index refused", "index_corrupt", "checksum mismatch in images.faiss"),
    413: ("Body too large", "payload_too_large", "request body is over the limit"),
    415: (
        "Not an image, or a body that is neither JSON nor a form",
        "unsupported_image_format",
        "not a supported image",
    ),
    422: ("Invalid input", "validation_error", "k: Input should be less than or equal to 1000"),
    503: (
        "Loading, overloaded or shutting down: retry after Retry-After seconds",
        "overloaded",
        "the server is busy; retry shortly",
    ),
}

RETRY_AFTER = {
    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
}


def error_responses(*statuses: int) -> dict[int | str, dict]:
    out: dict[int | str, dict] = {}
    for status in statuses:
        desc, code, msg = ERRORS[status]
        out[status] = {
            "model": ErrorResponse,
            "description": desc,
            "content": {"application/json": {"example": error_example(code, msg)}},
        }
        if status == 503:
            out[status]["headers"] = RETRY_AFTER
    return out
