"""Request and response models: the wire shapes of DESIGN.md, with OpenAPI examples."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Vector = Annotated[list[FiniteFloat], Field(min_length=1, max_length=8192)]
ImageId = Annotated[str, Field(min_length=1, max_length=32, examples=["1234"])]

QUERY_FIELDS = ("text", "image_id", "image_b64", "embedding", "terms")


class QueryTerm(BaseModel):
    """One part of a weighted query: exactly one source and a weight (negative to push away)."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    image_id: ImageId | None = None
    image_b64: str | None = None
    embedding: Vector | None = None
    weight: FiniteFloat = Field(1.0, ge=-10.0, le=10.0)

    @model_validator(mode="after")
    def _one_source(self) -> QueryTerm:
        given = [
            f
            for f in ("text", "image_id", "image_b64", "embedding")
            if getattr(self, f) is not None
        ]
        if len(given) != 1:
            raise ValueError("each term needs exactly one of text, image_id, image_b64, embedding")
        return self


class SearchRequest(BaseModel):
    """Exactly one query form (or, in multipart, an uploaded `image`) plus options."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "a cat", "k": 5},
                {"image_id": "1234", "k": 10, "path_prefix": "photos/"},
                {"image_b64": "<base64 JPEG/PNG bytes>", "k": 5, "target": "texts"},
                {"embedding": [0.01, -0.02, "…"], "k": 10, "min_score": 0.2},
                {
                    "terms": [
                        {"text": "a beach", "weight": 1.0},
                        {"text": "people", "weight": -0.5},
                    ],
                    "k": 10,
                },
            ]
        },
    )

    text: str | None = None
    image_id: ImageId | None = None
    image_b64: str | None = None
    embedding: Vector | None = None
    terms: Annotated[list[QueryTerm], Field(min_length=1, max_length=64)] | None = None
    k: int = Field(10, ge=1, le=1000, description="number of hits (1…1000)")
    target: Literal["images", "texts"] = "images"
    min_score: FiniteFloat | None = Field(None, ge=-1.0, le=1.0)
    path_prefix: str | None = Field(None, max_length=1024)
    where: dict[str, Annotated[str, Field(max_length=1024)]] | None = Field(
        None, max_length=32, description="metadata equality filter on items' extra fields"
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


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"image_id": "1234", "labels": ["a cat", "a dog"]},
                {
                    "image_b64": "<base64 JPEG/PNG bytes>",
                    "labels": "day,night",
                    "templates": ["a photo taken at {}."],
                },
            ]
        },
    )

    image_id: ImageId | None = None
    image_b64: str | None = None
    labels: list[str] | str = Field(..., description="a list, or one comma-separated string")
    templates: list[str] | None = Field(None, description="prompt templates with one {}")


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


class EmbedRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["a red car", "a bicycle"]},
                {"images_b64": ["<base64 JPEG/PNG bytes>"], "texts": ["a cat"]},
            ]
        },
    )

    texts: list[str] = []
    images_b64: list[str] = []


class EmbedResponse(BaseModel):
    model: str
    dim: int
    texts: list[list[float]]
    images: list[list[float]]


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
    415: ("Not an image", "unsupported_image_format", "not a supported image"),
    422: ("Invalid input", "validation_error", "k: Input should be less than or equal to 1000"),
    503: ("Not ready or overloaded", "overloaded", "the server is busy; retry shortly"),
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
    return out
