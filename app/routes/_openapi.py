"""The request bodies of the OpenAPI document, built from the running configuration: the limits
in force (text length, labels, terms, items), the model's dimension, a real image id for the
examples, and security only where a key is set. What the schema calls valid, the server accepts;
what it calls invalid, the server refuses (schemathesis, tests/app/test_contract_cli.py, holds
the two to each other).

The routes read JSON or multipart by hand (app/bodies.py), so their bodies are described here
rather than inferred by FastAPI; the JSON schemas start from the pydantic request models."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from ..bodies import form_limits
from ..limits import VISIBLE
from ..schemas import (
    MAX_OFFSET,
    QUERY_FIELDS,
    ClassifyRequest,
    EmbedRequest,
    QueryTerm,
    SearchRequest,
)
from ..settings import Settings
from . import knn_service

F32_MAX = float(np.finfo(np.float32).max)
BINARY = {"type": "string", "format": "binary", "minLength": 1}
BASE64 = {
    "type": "string",
    "format": "byte",
    "contentEncoding": "base64",
    "minLength": 4,
    "description": "base64 of JPEG, PNG, WebP, GIF, BMP or TIFF bytes",
}
TEMPLATE = r"^[^{}]*\{\}[^{}]*$"  # exactly one {} and no other braces
NOT_JSON = r"^[^{]"  # a form field that starts with { is JSON sent the wrong way
# A form field that may repeat is declared as one string: in multipart, one value and a list of
# one are the same bytes, so a schema `array` would make clients (and fuzzers) see two types.
REPEAT = "repeat the field for more"
WHERE_KEY = r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,63}"  # indexer/store.py's filter keys
ROUTE_MODELS = {"search": SearchRequest, "classify": ClassifyRequest, "embed": EmbedRequest}


def body_placeholder(route: str) -> dict[str, Any]:
    """A route's static requestBody; `document` replaces it with the full one."""
    ref = {"$ref": f"#/components/schemas/{ROUTE_MODELS[route].__name__}"}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
        "x-clipsearch-body": route,
    }


@dataclass(frozen=True)
class Runtime:
    """What the document depends on besides the routes."""

    settings: Settings
    dim: int | None = None  # None while the model loads: vectors are described without a length
    image_id: str | None = None  # an id in the live index version, for examples
    has_texts: bool = False
    indexes: tuple[str, ...] = ()  # the served index names, the default first


def tiny_png_b64() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 120, 40)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def document(spec: dict[str, Any], rt: Runtime) -> dict[str, Any]:
    """Finish FastAPI's generated document for this configuration (in place)."""
    comps = spec.setdefault("components", {}).setdefault("schemas", {})
    comps.update(json_schemas(rt))
    comps["KnnResult"] = RESULT_SCHEMA
    comps["KnnMetadata"] = METADATA_SCHEMA
    png = tiny_png_b64()
    for path_item in spec.get("paths", {}).values():
        for op in path_item.values():
            route = op.pop("x-clipsearch-body", None)
            if route is not None:
                op["requestBody"] = request_body(route, rt, png)
            knn = op.pop("x-clipsearch-knn-body", None)
            if knn is not None:
                op["requestBody"] = knn_request_body(knn, rt)
    _security(spec, rt.settings)
    return spec


def request_body(route: str, rt: Runtime, png: str) -> dict[str, Any]:
    json_examples, form_examples = EXAMPLES[route](rt, png)
    ref = {"$ref": f"#/components/schemas/{ROUTE_MODELS[route].__name__}"}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": ref,
                "examples": {k: {"value": v} for k, v in json_examples.items()},
            },
            "multipart/form-data": {"schema": FORMS[route](rt)}
            | (
                {"examples": {k: {"value": v} for k, v in form_examples.items()}}
                if form_examples
                else {}
            ),
        },
    }


# -- JSON bodies ---------------------------------------------------------------------------------


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with the optional fields as what they are when given (a field is
    left out, never null) and no $defs (nested models are referenced from components)."""
    s = model.model_json_schema(ref_template="#/components/schemas/{model}")
    s.pop("$defs", None)
    for prop in s.get("properties", {}).values():
        branches = prop.pop("anyOf", None)
        if branches is not None:
            kept = [b for b in branches if b.get("type") != "null"]
            if len(kept) == 1:
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
        if prop.get("default", 0) is None:
            del prop["default"]
    return s


def text(s: Settings, what: str = "a text") -> dict[str, Any]:
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": s.max_text_chars,
        "pattern": VISIBLE,
        "description": f"{what}, not blank, at most {s.max_text_chars:,} characters",
    }


def vector(dim: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "array",
        "items": {"type": "number", "minimum": -F32_MAX, "maximum": F32_MAX},
        "not": {"items": {"const": 0}},  # a direction: not all zeros
        "description": "a query vector in the model's space (normalised by the server)",
    }
    if dim is not None:
        out |= {"minItems": dim, "maxItems": dim}
        out["description"] += f"; {dim} numbers"
    else:
        out |= {"minItems": 1, "maxItems": 8192}
    return out


def one_of(fields: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"required": [f]} for f in fields]


def json_schemas(rt: Runtime) -> dict[str, dict[str, Any]]:
    s = rt.settings
    term = model_schema(QueryTerm)
    p = term["properties"]
    p["text"] |= text(s)
    p["image_b64"] |= BASE64
    p["embedding"] |= vector(rt.dim)
    p["weight"]["not"] = {"const": 0}
    term["oneOf"] = one_of(("text", "image_id", "image_b64", "embedding"))

    search = model_schema(SearchRequest)
    p = search["properties"]
    p["text"] |= text(s, "what to look for")
    p["image_b64"] |= BASE64
    p["embedding"] |= vector(rt.dim)
    p["terms"]["maxItems"] = s.max_terms
    p["where"]["propertyNames"] = {"pattern": WHERE_KEY + "$"}
    search["oneOf"] = one_of(QUERY_FIELDS)

    classify = model_schema(ClassifyRequest)
    p = classify["properties"]
    p["image_b64"] |= BASE64
    p["labels"] = {
        "oneOf": [
            {"type": "array", "items": text(s, "a label"), "minItems": 1,
             "maxItems": s.max_labels},
            labels_string(s),
        ],
        "description": 'a list ["a cat", "a dog"], or one comma-separated string "a cat, a dog"',
    }  # fmt: skip
    p["templates"] = templates(s)
    classify["oneOf"] = one_of(("image_id", "image_b64"))

    embed = model_schema(EmbedRequest)
    p = embed["properties"]
    p["texts"] |= {"items": text(s), "maxItems": s.max_embed_items}
    p["images_b64"] |= {"items": BASE64, "maxItems": s.max_embed_items}
    embed["anyOf"] = [
        {"required": [f], "properties": {f: {"minItems": 1}}} for f in ("texts", "images_b64")
    ]
    for body in (search, classify, embed):
        body["properties"]["index"] |= _index_enum(rt)
    return {"QueryTerm": term, "SearchRequest": search, "ClassifyRequest": classify,
            "EmbedRequest": embed}  # fmt: skip


def _index_enum(rt: Runtime) -> dict[str, Any]:
    return {"enum": list(rt.indexes)} if rt.indexes else {}


def index_field(rt: Runtime) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": 64,
            "description": "which index (GET /indexes)"} | _index_enum(rt)  # fmt: skip


def labels_string(s: Settings, form: bool = False) -> dict[str, Any]:
    patterns = [
        r"[^,\s]",  # at least one label that is not blank
        rf"^[^,]*(?:,[^,]*){{0,{s.max_labels - 1}}}$",  # at most max_labels
    ] + ([NOT_JSON] if form else [])
    return {
        "type": "string",
        "maxLength": s.max_text_chars,
        "allOf": [{"pattern": p} for p in patterns],
    }


def templates(s: Settings) -> dict[str, Any]:
    return {
        "type": "array",
        "items": {
            "type": "string",
            "maxLength": s.max_text_chars,
            "allOf": [{"pattern": TEMPLATE}, {"pattern": r"[^{}\s]"}],
        },
        "minItems": 1,
        "maxItems": s.max_templates,
        "description": 'prompt templates, each with one {} for the label: "a photo of {}."',
    }


# -- multipart bodies ----------------------------------------------------------------------------


def form(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}  # fmt: skip


def search_form(rt: Runtime) -> dict[str, Any]:
    """An uploaded image and the options; text, ids, vectors and terms go as JSON."""
    props = {
        "image": BINARY | {"description": "the query image"},
        "k": {"type": "integer", "minimum": 1, "maximum": 1000},
        "offset": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
        "target": {"type": "string", "enum": ["images", "texts"]},
        "min_score": {"type": "number", "minimum": -1, "maximum": 1},
        "path_prefix": {"type": "string", "maxLength": 1024},
        "where": {
            "type": "string",
            "pattern": WHERE_KEY + r"=[\s\S]{0,1024}$",
            "description": f"a metadata filter key=value: -F where=color=red ({REPEAT})",
        },
        "index": index_field(rt),
    }
    return form(props, ["image"])


def classify_form(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    props = {
        "image": BINARY | {"description": "the image to classify"},
        "labels": labels_string(s, form=True) | {
            "description": "comma-separated labels (-F labels='a cat, a dog'); or repeat the "
            "field, one or more labels each (-F labels='a cat' -F labels='a dog')",
        },
        "templates": templates(s)["items"] | {
            "description": f'a prompt template with one {{}}: "a photo of {{}}." ({REPEAT})'
        },
        "index": index_field(rt),
    }  # fmt: skip
    return form(props, ["image", "labels"])


def embed_form(rt: Runtime) -> dict[str, Any]:
    s = rt.settings
    max_files = form_limits(s)[0]
    props = {
        "images": {"type": "array", "items": BINARY, "maxItems": min(s.max_embed_items, max_files),
                   "description": "repeat the field, one file each"},
        "texts": text(s) | {"allOf": [{"pattern": NOT_JSON}],
                            "description": f"a text to embed ({REPEAT})"},
        "index": index_field(rt),
    }  # fmt: skip
    out = form(props, [])
    out["anyOf"] = [
        {"required": ["images"], "properties": {"images": {"minItems": 1}}},
        {"required": ["texts"]},
    ]
    return out


FORMS = {"search": search_form, "classify": classify_form, "embed": embed_form}


# -- examples: each one a request the server answers with 200 (tests post every one) -------------


def search_examples(rt: Runtime, png: str) -> tuple[dict, dict]:
    js: dict[str, Any] = {
        "text": {"text": "a cat", "k": 5},
        "next page": {"text": "a cat", "k": 5, "offset": 5},
        "filtered": {"text": "a cat", "k": 5, "path_prefix": "pets/", "min_score": 0.2},
        "metadata": {"text": "a cat", "where": {"color": "red"}},
        "terms": {"terms": [{"text": "a beach"}, {"text": "people", "weight": -0.5}], "k": 10},
        "image_b64": {"image_b64": png, "k": 5},
    }
    if rt.image_id is not None:
        js["image_id"] = {"image_id": rt.image_id, "k": 10}
    if rt.dim is not None:
        js["embedding"] = {"embedding": [1.0] + [0.0] * (rt.dim - 1), "k": 10}
    if rt.has_texts:
        js["image → texts"] = {"image_b64": png, "k": 5, "target": "texts"}
    return js, {}


def classify_examples(rt: Runtime, png: str) -> tuple[dict, dict]:
    js: dict[str, Any] = {
        "image_b64": {"image_b64": png, "labels": "day, night",
                      "templates": ["a photo taken at {}."]},
    }  # fmt: skip
    if rt.image_id is not None:
        js["image_id"] = {"image_id": rt.image_id, "labels": ["a cat", "a dog"]}
    return js, {}


def embed_examples(rt: Runtime, png: str) -> tuple[dict, dict]:
    js = {
        "texts": {"texts": ["a red car", "a bicycle"]},
        "images": {"images_b64": [png], "texts": ["a cat"]},
    }
    return js, {"texts": {"texts": ["a red car", "a bicycle"]}}


EXAMPLES = {"search": search_examples, "classify": classify_examples, "embed": embed_examples}


# -- clip-retrieval's back-end API (app/routes/knn_service.py) ---------------------------------

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "similarity"],
    "properties": {
        "id": {"type": "integer"},
        "similarity": {"type": "number"},
        "url": {"type": "string"},
        "image_path": {"type": "string"},
        "caption": {"type": "string"},
        "image": {"type": "string", "description": "base64 (with --knn-inline-images)"},
        "NSFW": {"description": "the item's NSFW metadata, where it has one"},
    },
}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "metadata"],
    "properties": {
        "id": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "metadata": {"type": "object", "properties": RESULT_SCHEMA["properties"]},
    },
}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def knn_schema(rt: Any) -> dict[str, Any]:
    """/knn-service's body under this configuration (rt: _openapi.Runtime)."""
    s = rt.settings
    url_on = bool(s.image_url_host_list())
    count = {"type": "integer", "minimum": 1, "maximum": knn_service.MAX_RESULTS}
    flag = {"type": "boolean", "default": False}
    props: dict[str, Any] = {
        "text": _nullable({"type": "string", "maxLength": s.max_text_chars}),
        "image": _nullable({"type": "string", "description": "base64 of the query image"}),
        "image_url": _nullable({"type": "string", "maxLength": 2048}) if url_on else {
            "type": "null", "description": "off: start the server with --image-url-hosts"},
        "embedding_input": _nullable(vector(rt.dim)),
        "modality": {"type": "string", "enum": ["image", "text"] if rt.has_texts else ["image"],
                     "default": "image"},
        "num_images": count | {"default": 100},
        "num_result_ids": _nullable(count | {"description": "default: num_images"}),
        "indice_name": _nullable(index_name(rt)),
        "use_mclip": flag, "deduplicate": flag, "use_safety_model": flag,
        "use_violence_detector": flag,
        "aesthetic_score": {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]},
        "aesthetic_weight": {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
    }  # fmt: skip
    branches = [
        {"required": ["text"], "properties": {"text": text(s, "the query text")}},
        {"required": ["image"], "properties": {"image": BASE64}},
        {"required": ["embedding_input"], "properties": {"embedding_input": vector(rt.dim)}},
    ]
    if url_on:
        branches.append(
            {"required": ["image_url"], "properties": {"image_url": {"type": "string"}}}
        )
    return {"type": "object", "properties": props, "anyOf": branches,
            "description": "one of text, image, image_url, embedding_input (the first given "
            "is used); unknown fields are ignored"}  # fmt: skip


def index_name(rt: Any) -> dict[str, Any]:
    names = list(getattr(rt, "indexes", ()) or ())
    out: dict[str, Any] = {"type": "string", "maxLength": 64,
                           "description": "the index (\"\" or null: the default)"}  # fmt: skip
    if names:
        out["enum"] = ["", *names]
    return out


def metadata_schema(rt: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["ids"],
        "properties": {
            "ids": {
                "type": "array",
                "maxItems": knn_service.MAX_RESULTS,
                "items": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
            "indice_name": _nullable(index_name(rt)),
        },
    }


def knn_request_body(kind: str, rt: Any) -> dict[str, Any]:
    default = (list(getattr(rt, "indexes", ()) or ()) or [None])[0]
    if kind == "knn":
        schema = knn_schema(rt)
        examples = {
            "text": {"text": "a cat", "modality": "image", "num_images": 5,
                     "indice_name": default, "deduplicate": True},
        }  # fmt: skip
        if rt.dim is not None:
            examples["embedding"] = {"embedding_input": [1.0] + [0.0] * (rt.dim - 1),
                                     "num_images": 5, "indice_name": default}  # fmt: skip
    else:
        schema = metadata_schema(rt)
        examples = {"ids": {"ids": [0, 1], "indice_name": default}}
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": schema,
                "examples": {k: {"value": v} for k, v in examples.items()},
            }
        },
    }


# -- security ------------------------------------------------------------------------------------


def _security(spec: dict[str, Any], s: Settings) -> None:
    """Declare a key only on the operations that ask for one under this configuration: every
    route but the probes when an API key is set, /admin when an admin (or API) key is set."""
    used = False
    for path, path_item in spec.get("paths", {}).items():
        for op in path_item.values():
            if "security" not in op:
                continue
            keyed = s.admin_key() if path.startswith("/admin") else s.api_key
            if keyed is None:
                del op["security"]
                op.get("responses", {}).pop("401", None)
            else:
                used = True
    if not used:
        spec.get("components", {}).pop("securitySchemes", None)
