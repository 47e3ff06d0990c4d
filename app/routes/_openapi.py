"""OpenAPI request bodies for routes that take JSON or multipart (read by hand in bodies.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def body(
    model: type[BaseModel],
    json_examples: dict[str, Any],
    form_schema: dict[str, Any],
    form_examples: dict[str, Any],
) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": ref,
                    "examples": {k: {"value": v} for k, v in json_examples.items()},
                },
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": form_schema},
                    "examples": {k: {"value": v} for k, v in form_examples.items()},
                },
            },
        }
    }


FILE = {"type": "string", "format": "binary"}
STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
