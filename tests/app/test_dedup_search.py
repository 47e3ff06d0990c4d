"""/search `dedup` and `exclude_self` over an index with planted near-duplicates: each sample
photo also as a resized, a re-encoded (JPEG q40) and a lightly cropped copy. With the starter
model the copies sit at cosine >= 0.94 to their original, distinct photos at <= 0.78."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from indexer.dedup import distinct_hits
from tests.app.conftest import wait_ready
from tests.utils.images import sample_photo

NAMES = ("cat", "coffee", "rocket", "astronaut", "camera")
THRESHOLD = 0.9


@pytest.fixture(scope="module")
def dup_index(tmp_path_factory, starter_encoder):
    from indexer import add_texts, build_index

    root = tmp_path_factory.mktemp("dedup")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in NAMES:
        im = sample_photo(name).convert("RGB")
        w, h = im.size
        im.save(corpus / f"{name}.png")
        im.resize((w // 2, h // 2)).save(corpus / f"{name}_small.png")
        im.save(corpus / f"{name}_copy.jpg", quality=40)
        im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(corpus / f"{name}_crop.png")
    build_index(corpus, root / "index", starter_encoder, progress=False)
    add_texts(root / "index", ["a cat", "a cup of coffee", "a rocket", "a camera"], starter_encoder)
    return root / "index"


@pytest.fixture(scope="module")
def client(dup_index, starter_encoder):
    with TestClient(
        create_app(Settings(index=dup_index, warmup=False), encoder=starter_encoder)
    ) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def version(dup_index):
    from indexer import open_index

    v = open_index(dup_index)
    yield v
    v.close()


def stem(path: str) -> str:
    return path.split(".")[0].split("_")[0]


def max_pair_cosine(version, hits) -> float:
    vecs = [version.get_vector(int(h["id"])) for h in hits]
    return max(float(a @ b) for a, b in itertools.combinations(vecs, 2))


def search(client, **body) -> list[dict]:
    r = client.post("/search", json=body)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


@pytest.mark.parametrize("query", ["a photo", "a cat", "a rocket launch"])
def test_dedup_returns_k_distinct_hits(client, version, query):
    raw = search(client, text=query, k=5)
    assert max_pair_cosine(version, raw) >= THRESHOLD  # the copies do crowd the plain results
    hits = search(client, text=query, k=5, dedup=THRESHOLD)
    assert len(hits) == 5
    assert max_pair_cosine(version, hits) < THRESHOLD
    assert sorted(stem(h["path"]) for h in hits) == sorted(NAMES)  # one of each photo
    assert hits[0] == raw[0]  # the best hit of each group is the one kept
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_dedup_is_not_applied_to_texts(client):
    body = {"text": "a cat", "target": "texts", "k": 5}
    assert search(client, **body, dedup=0.5) == search(client, **body) != []


def test_fewer_distinct_images_than_k_gives_all_of_them(client):
    hits = search(client, text="a photo", k=8, dedup=THRESHOLD)
    assert len(hits) == len(NAMES)
    # what dedup keeps is the plain ranking with the near-duplicates taken out, order kept
    plain = search(client, text="a photo", k=20)
    assert [h for h in plain if h in hits] == hits


def test_dedup_pages(client):
    four = search(client, text="a photo", k=4, dedup=THRESHOLD)
    page2 = client.post(
        "/search", json={"text": "a photo", "k": 2, "offset": 2, "dedup": THRESHOLD}
    ).json()
    assert page2["hits"] == four[2:4]


def test_image_id_query_leaves_the_query_image_out(client, version):
    ids = {h["path"]: h["id"] for h in search(client, text="a photo", k=20)}
    cat = ids["cat.png"]
    hits = search(client, image_id=cat, k=5)
    assert len(hits) == 5 and cat not in [h["id"] for h in hits]
    assert {stem(h["path"]) for h in hits[:3]} == {"cat"}  # its copies are still found
    with_self = search(client, image_id=cat, k=5, exclude_self=False)
    assert with_self[0]["id"] == cat and with_self[0]["score"] == pytest.approx(1.0, abs=1e-3)
    assert with_self[1:] == hits[:4]
    # both: the copies of the query image fold into one hit, the others fill k
    both = search(client, image_id=cat, k=5, dedup=THRESHOLD)
    assert len(both) == 5 and cat not in [h["id"] for h in both]
    assert sorted(stem(h["path"]) for h in both) == sorted(NAMES)
    assert max_pair_cosine(version, both) < THRESHOLD


def test_image_id_terms_leave_their_images_out(client):
    ids = {h["path"]: h["id"] for h in search(client, text="a photo", k=20)}
    terms = [{"image_id": ids["cat.png"]}, {"image_id": ids["coffee.png"], "weight": 0.5}]
    hits = search(client, terms=terms, k=10)
    got = [h["id"] for h in hits]
    assert len(hits) == 10 and ids["cat.png"] not in got and ids["coffee.png"] not in got


@pytest.mark.parametrize(
    "body",
    [
        {"text": "a cat", "dedup": 0},
        {"text": "a cat", "dedup": 1.5},
        {"text": "a cat", "dedup": "0.9"},
        {"image_id": "0", "exclude_self": "no"},
    ],
)
def test_bad_dedup_options_are_422(client, body):
    r = client.post("/search", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] in ("validation_error", "invalid_query")


def test_distinct_hits_is_greedy_in_rank_order():
    e = np.eye(3, dtype=np.float32)
    near = np.array([0.99, 0.141, 0], np.float32)
    near /= np.linalg.norm(near)
    vectors = [e[0], near, None, e[1], e[2]]
    kept, seen = distinct_hits(iter(vectors), 0.95, want=2)
    assert kept == [0, 3] and seen == 4  # reads no further than needed; a gone item skipped
    assert distinct_hits(iter(vectors), 0.95, want=10) == ([0, 3, 4], 5)
