"""The app under a real uvicorn server on loopback: chunked uploads and plain queries."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from app.main import create_app
from app.settings import Settings


@pytest.fixture(scope="module")
def server_url(photo_index, starter_encoder):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(index=photo_index, max_body_bytes=256 * 1024)
    app = create_app(settings, encoder=starter_encoder)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        raise TimeoutError("server did not become ready")
    yield url
    server.should_exit = True
    thread.join(30)


def test_chunked_upload_over_the_limit_is_413_on_a_real_server(server_url):
    def stream():
        for _ in range(64):
            yield b"\xff" * 16384  # 1 MiB in all, sent chunked with no Content-Length

    r = httpx.post(
        server_url + "/search",
        content=stream(),
        headers={"content-type": "multipart/form-data; boundary=x"},
        timeout=30,
    )
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large"


def test_search_over_http(server_url, photos_dir):
    r = httpx.post(server_url + "/search", json={"text": "a cat", "k": 2}, timeout=30)
    assert r.status_code == 200 and r.json()["hits"][0]["path"].endswith("cat.jpg")
    data = (photos_dir / "camera.jpg").read_bytes()
    r = httpx.post(server_url + "/search", files={"image": ("c.jpg", data)}, timeout=30)
    assert r.json()["hits"][0]["path"].endswith("camera.jpg")
