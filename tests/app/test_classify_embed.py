"""POST /classify and /embed, GET /images/…, /stats and /metrics."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tests.app.test_bad_input import error_of
from tests.app.test_search import ids_by_name

LABELS = ["a cat", "a dog", "a cup of coffee", "a rocket"]


def test_classify_upload_ranks_a_cat_first(client, photos_dir):
    data = (photos_dir / "cat.jpg").read_bytes()
    r = client.post(
        "/classify",
        files={"image": ("cat.jpg", data, "image/jpeg")},
        data={"labels": ",".join(LABELS)},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"][0]["label"] == "a cat"
    scores = [x["score"] for x in body["labels"]]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1.0, abs=1e-4)
    assert body["model"] == "starter"


def test_classify_by_id_and_base64_with_templates(client, photos_dir):
    coffee = ids_by_name(client)["coffee"]
    r = client.post("/classify", json={"image_id": coffee, "labels": LABELS})
    assert r.json()["labels"][0]["label"] == "a cup of coffee"
    b64 = base64.b64encode((photos_dir / "rocket.jpg").read_bytes()).decode()
    r = client.post(
        "/classify",
        json={"image_b64": b64, "labels": "a cat, a rocket", "templates": ["a photo of {}."]},
    )
    assert r.status_code == 200, r.text
    assert r.json()["labels"][0]["label"] == "a rocket"


def test_label_embeddings_are_cached(client):
    cat = ids_by_name(client)["cat"]
    before = client.get("/stats").json()["caches"]["label"]
    for _ in range(2):
        client.post("/classify", json={"image_id": cat, "labels": ["a zebra", "a tiger"]})
    after = client.get("/stats").json()["caches"]["label"]
    assert after["size"] >= before["size"] + 2
    assert after["hits"] >= before["hits"] + 2


def test_classify_bad_input(client):
    cat = ids_by_name(client)["cat"]
    assert error_of(client.post("/classify", json={"image_id": cat, "labels": " , "}), 422)
    r = client.post("/classify", json={"image_id": cat, "labels": ["a"], "templates": ["no slot"]})
    assert error_of(r, 422) == "invalid_labels"
    r = client.post("/classify", json={"labels": ["a"]})
    assert error_of(r, 422) == "invalid_query"
    r = client.post("/classify", json={"image_id": cat, "labels": [f"l{i}" for i in range(300)]})
    assert error_of(r, 422) == "too_many_labels"


def test_embed_texts_and_images(client, photos_dir):
    data = (photos_dir / "cat.jpg").read_bytes()
    r = client.post(
        "/embed",
        files=[("images", ("cat.jpg", data, "image/jpeg"))],
        data={"texts": ["a cat", "a rocket"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    texts, images = np.array(body["texts"]), np.array(body["images"])
    assert texts.shape == (2, body["dim"]) and images.shape == (1, body["dim"])
    assert np.allclose(np.linalg.norm(texts, axis=1), 1, atol=1e-4)
    sims = images @ texts.T  # (1, 2)
    assert sims[0, 0] > sims[0, 1]
    b64 = base64.b64encode(data).decode()
    r = client.post("/embed", json={"images_b64": [b64]})
    assert np.allclose(r.json()["images"], images, atol=1e-4)
    assert error_of(client.post("/embed", json={}), 422) == "invalid_query"
    assert error_of(client.post("/embed", json={"texts": ["ok"] * 100}), 422) == "too_many_items"


def test_image_and_thumbnail(client, photos_dir):
    cat = ids_by_name(client)["cat"]
    r = client.get(f"/images/{cat}")
    assert r.status_code == 200
    assert r.content == (photos_dir / "cat.jpg").read_bytes()
    r = client.get(f"/images/{cat}/thumbnail")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(r.content))
    assert max(thumb.size) <= 256


def test_stats_metrics_and_probes(client):
    assert client.get("/readyz").json()["status"] == "ready"
    stats = client.get("/stats").json()
    assert stats["count"] == 5 and stats["has_texts"] is True and stats["model"] == "starter"
    text = client.get("/metrics").text
    assert 'clipsearch_requests_total{route="/search",method="POST",status="200"}' in text
    assert 'clipsearch_stage_seconds_bucket{stage="encode",le="+Inf"}' in text
    assert "clipsearch_batch_size_count" in text
    assert "clipsearch_ready 1" in text
