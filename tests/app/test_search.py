"""POST /search against a real index of the sample photos (starter model)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.utils.images import jpeg_bytes, sample_photo


def ids_by_name(client) -> dict[str, str]:
    """photo name → item id, read through the API itself."""
    r = client.post("/search", json={"text": "a photo", "k": 100})
    return {h["path"].rsplit("/", 1)[-1].split(".")[0]: h["id"] for h in r.json()["hits"]}


def names(hits) -> list[str]:
    return [h["path"].rsplit("/", 1)[-1].split(".")[0] for h in hits]


def test_text_query_finds_the_cat_first(client):
    r = client.post("/search", json={"text": "a cat", "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert names(body["hits"])[0] == "cat"
    hit = body["hits"][0]
    assert set(hit) == {"id", "score", "path", "url", "thumbnail_url", "caption", "width", "height"}
    assert isinstance(hit["id"], str)
    assert hit["url"] == f"/images/{hit['id']}"
    assert hit["thumbnail_url"] == f"/images/{hit['id']}/thumbnail"
    assert (hit["width"], hit["height"]) == sample_photo("cat").size
    assert body["model"] == "starter"
    assert body["index_version"]
    assert {"encode", "search", "total"} <= set(body["timings_ms"])
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 5


@pytest.mark.parametrize(("query", "expected"), [("a cup of coffee", "coffee"),
                                                 ("a rocket", "rocket")])  # fmt: skip
def test_other_text_queries(client, query, expected):
    r = client.post("/search", json={"text": query, "k": 3})
    assert names(r.json()["hits"])[0] == expected


def test_uploaded_photo_finds_itself_first(client, photos_dir):
    data = (photos_dir / "coffee.jpg").read_bytes()
    r = client.post("/search", files={"image": ("coffee.jpg", data, "image/jpeg")}, data={"k": "3"})
    assert r.status_code == 200, r.text
    top = r.json()["hits"][0]
    assert names([top]) == ["coffee"]
    assert top["score"] == pytest.approx(1.0, abs=1e-3)


def test_base64_image_and_stored_image_id_queries(client, photos_dir):
    b64 = base64.b64encode((photos_dir / "rocket.jpg").read_bytes()).decode()
    r = client.post("/search", json={"image_b64": b64, "k": 2})
    assert names(r.json()["hits"])[0] == "rocket"
    rocket = ids_by_name(client)["rocket"]
    r = client.post("/search", json={"image_id": rocket, "k": 2, "exclude_self": False})
    top = r.json()["hits"][0]
    assert top["id"] == rocket and top["score"] == pytest.approx(1.0, abs=1e-4)
    # By default the query image itself is left out, and k hits still come back.
    hits = client.post("/search", json={"image_id": rocket, "k": 2}).json()["hits"]
    assert len(hits) == 2 and rocket not in [h["id"] for h in hits]


def test_image_to_text_returns_the_right_caption(client, photos_dir):
    data = (photos_dir / "cat.jpg").read_bytes()
    r = client.post(
        "/search", files={"image": ("cat.jpg", data, "image/jpeg")}, data={"target": "texts"}
    )
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits[0]["text"] == "a cat"
    assert hits[0]["path"] is None and len(hits) == 5
    r = client.post("/search", json={"image_id": ids_by_name(client)["coffee"], "target": "texts"})
    assert r.json()["hits"][0]["text"] == "a cup of coffee"


def test_embedding_query_equals_text_query(client):
    emb = client.post("/embed", json={"texts": ["a rocket"]}).json()["texts"][0]
    by_vec = client.post("/search", json={"embedding": emb, "k": 5}).json()["hits"]
    by_text = client.post("/search", json={"text": "a rocket", "k": 5}).json()["hits"]
    assert [h["id"] for h in by_vec] == [h["id"] for h in by_text]
    # a multipart form carries an uploaded image; a vector goes as JSON, and the answer says so
    r = client.post("/search", data={"embedding": json.dumps(emb), "k": "5"})
    assert r.status_code == 422 and "JSON body" in r.json()["error"]["message"]


def test_weighted_and_negative_terms_change_the_ranking(client):
    ids = ids_by_name(client)

    def rank(body) -> list[str]:
        r = client.post("/search", json={**body, "k": 5})
        assert r.status_code == 200, r.text
        return [h["id"] for h in r.json()["hits"]]

    plain = rank({"terms": [{"text": "a cat"}]})
    assert plain[0] == ids["cat"]
    # pulling towards coffee hard and pushing away from the cat flips the top
    mixed = rank({"terms": [{"text": "a cat", "weight": 0.2}, {"text": "a cup of coffee"}]})
    assert mixed[0] == ids["coffee"]
    pushed = rank({"terms": [{"text": "an animal"}, {"text": "a cat", "weight": -1.0}]})
    assert pushed.index(ids["cat"]) > plain.index(ids["cat"])
    # an image term with a negative weight pushes that image to the end
    away = rank({"terms": [{"text": "a photo"}, {"image_id": ids["rocket"], "weight": -2.0}]})
    assert away[-1] == ids["rocket"]


def test_filters_and_min_score(client):
    r = client.post("/search", json={"text": "a cat", "k": 3, "path_prefix": "co"})
    assert names(r.json()["hits"]) == ["coffee"]
    r = client.post("/search", json={"text": "a cat", "k": 5, "min_score": 0.99})
    assert r.status_code == 200 and r.json()["hits"] == []
    all_hits = client.post("/search", json={"text": "a cat", "k": 1000}).json()["hits"]
    assert len(all_hits) == 5  # min(k, matches)


def test_text_cache_hit_gives_the_same_answer(client):
    a = client.post("/search", json={"text": "a rocket", "k": 5}).json()
    b = client.post("/search", json={"text": "a rocket", "k": 5}).json()
    assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
    assert client.get("/stats").json()["caches"]["text"]["hits"] >= 1


def test_jpeg_reencoded_upload_still_matches(client):
    data = jpeg_bytes(sample_photo("astronaut").resize((200, 200)), quality=60)
    r = client.post("/search", files={"image": ("a.jpg", data, "image/jpeg")}, data={"k": "1"})
    assert names(r.json()["hits"]) == ["astronaut"]


def test_concurrent_queries_batched_together_answer_like_single_ones(client):
    from concurrent.futures import ThreadPoolExecutor

    bodies = [
        {"text": t, "k": k, **extra}
        for t in ("a cat", "a rocket", "a cup of coffee")
        for k, extra in ((1, {}), (4, {}), (5, {"min_score": 0.3}), (2, {"path_prefix": "c"}))
    ]
    alone = [client.post("/search", json=b).json()["hits"] for b in bodies]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda b: client.post("/search", json=b).json()["hits"], bodies))
    for a, b in zip(alone, together, strict=True):
        assert [h["id"] for h in a] == [h["id"] for h in b]
        assert [h["score"] for h in a] == pytest.approx([h["score"] for h in b], abs=1e-4)
