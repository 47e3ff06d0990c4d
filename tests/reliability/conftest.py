"""Fixtures for the reliability tests: the app tests' real sample-photo index (re-exported so
pytest finds it here) and helpers for the one error shape."""

from __future__ import annotations

from tests.app.conftest import photo_index, two_version_index  # noqa: F401 - fixtures

ADMIN_KEY = "reliability-admin-key"


def error_code(r, status: int) -> str:
    """The code of an error response, after checking its status and the one error shape."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["code"]
