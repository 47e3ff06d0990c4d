"""`clipsearch demo` as a newcomer runs it (what `make run` does after installing): build the
starter model, the demo corpus and its index, serve, answer searches, stop; then run it again
and reuse everything."""

from __future__ import annotations

import httpx
import pytest

from ._server import free_port, start, stop, wait_ready

pytestmark = pytest.mark.slow


def test_demo_builds_serves_answers_and_stops(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    demo_dir = tmp_path / "demo"
    proc = start(["demo", "--dir", str(demo_dir), "--port", str(port)], cwd=tmp_path)
    try:
        ready = wait_ready(proc, base, timeout=600)
        assert ready["model"] == "starter"
        page = httpx.get(base + "/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        r = httpx.post(base + "/search", json={"text": "a cat", "k": 5}, timeout=30)
        assert r.status_code == 200
        hits = r.json()["hits"]
        assert any(h["path"].endswith("cat.jpg") for h in hits[:3]), hits
        cat = next(h for h in hits if h["path"].endswith("cat.jpg"))
        r = httpx.post(base + "/search", json={"image_id": cat["id"], "target": "texts", "k": 3})
        assert r.status_code == 200 and r.json()["hits"][0]["text"]
    finally:
        code = stop(proc)
    assert code == 0, proc.stderr.read()[-2000:]

    again = start(["demo", "--dir", str(demo_dir), "--no-serve"], cwd=tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "demo corpus written" not in err and f"version {ready['index_version']}" in err
