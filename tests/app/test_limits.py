"""Limits and guards that hold before any model or index is involved."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings


@pytest.fixture()
def bare_client(tmp_path):
    """A service whose index does not exist: it stays alive but never becomes ready."""
    settings = Settings(index=tmp_path / "missing", max_body_bytes=4096, api_key=None)
    with TestClient(create_app(settings)) as c:
        yield c


def test_oversize_body_with_content_length_is_413(bare_client):
    r = bare_client.post("/search", content=b"x" * 5000, headers={"content-type": "image/png"})
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_oversize_chunked_body_without_content_length_is_413(bare_client):
    def chunks():
        for _ in range(10):
            yield b"y" * 1000

    r = bare_client.post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_healthz_alive_while_readyz_reports_the_load_error(bare_client):
    assert bare_client.get("/healthz").json() == {"status": "ok"}
    r = bare_client.get("/readyz")
    assert r.status_code == 503
    assert r.headers["retry-after"]
    body = r.json()["error"]
    assert body["code"] == "not_ready" and "missing" in body["message"]


def test_routes_answer_503_until_ready_and_unknown_paths_404(bare_client):
    r = bare_client.post("/search", json={"text": "a cat"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
    r = bare_client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = bare_client.get("/search")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_api_key_required_everywhere_but_the_probes(tmp_path):
    settings = Settings(index=tmp_path / "missing", api_key="s3cret")
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        guarded = [("post", "/search"), ("get", "/stats"), ("get", "/metrics"),
                   ("get", "/images/1"), ("post", "/classify"), ("post", "/embed")]  # fmt: skip
        for method, path in guarded:
            r = getattr(c, method)(path)
            assert r.status_code == 401, path
            assert r.json()["error"]["code"] == "unauthorized"
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/stats", headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        # /admin needs the (admin) key too
        assert c.post("/admin/reload").status_code == 401


def test_admin_disabled_without_any_key(bare_client):
    r = bare_client.post("/admin/reload")
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_disabled"


def test_cors_headers_only_for_configured_origins(tmp_path):
    settings = Settings(index=tmp_path / "missing", cors_origins="https://a.example")
    with TestClient(create_app(settings)) as c:
        ok = c.get("/healthz", headers={"Origin": "https://a.example"})
        assert ok.headers["access-control-allow-origin"] == "https://a.example"
        other = c.get("/healthz", headers={"Origin": "https://b.example"})
        assert "access-control-allow-origin" not in other.headers


def test_settings_come_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(tmp_path))
    monkeypatch.setenv("CLIPSEARCH_MAX_BODY_BYTES", "123456")
    monkeypatch.setenv("CLIPSEARCH_BATCHING", "false")
    monkeypatch.setenv("CLIPSEARCH_API_KEY", "")
    s = Settings()
    assert list(s.index_map().values()) == [tmp_path]
    assert s.max_body_bytes == 123456 and s.batching is False
    assert s.api_key is None


def test_openapi_declares_examples_and_error_statuses(bare_client):
    spec = bare_client.get("/openapi.json").json()
    search = spec["paths"]["/search"]["post"]
    content = search["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(content)
    # Without a loaded index there is no real id or dimension to show: those examples wait.
    assert {"text", "image_b64", "terms"} <= set(content["application/json"]["examples"])
    assert {"404", "413", "415", "422", "503"} <= set(search["responses"])
    assert "401" not in search["responses"]  # no key configured
    assert "SearchRequest" in spec["components"]["schemas"]
    assert "ClassifyRequest" in spec["components"]["schemas"]


def test_web_page_served_at_root_when_present(bare_client):
    from app.main import DEFAULT_STATIC

    if not (DEFAULT_STATIC / "index.html").is_file():
        pytest.skip("no web page in this checkout")
    r = bare_client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert bare_client.get("/no-such-file.js").status_code == 404
