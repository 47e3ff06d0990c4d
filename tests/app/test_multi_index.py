"""Several indexes in one server: `--index NAME=DIR` (repeatable) and clip-retrieval's
indices.json, one engine per index with each distinct model loaded once, GET /indexes, the
`index` field on /search, /classify and /embed (and `?index=` on the image routes), and the
settings travelling to worker processes unchanged."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.cli._server import free_port, start, stop, wait_ready
from tests.app.conftest import wait_ready as app_ready


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, photos_dir, tiny_hf_dir):
    """The sample photos indexed with another model (a tiny random CLIP, 16 dimensions)."""
    from indexer import build_index
    from model import load_encoder

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    index = tmp_path_factory.mktemp("multi") / "tiny-index"
    build_index(photos_dir, index, enc, progress=False)
    return index


@pytest.fixture(scope="module")
def second_starter_index(tmp_path_factory, photos_dir, starter_encoder):
    """Two photos indexed with the starter model: a second index that shares its encoder."""
    from indexer import build_index

    root = tmp_path_factory.mktemp("multi2")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in ("cat", "rocket"):
        shutil.copy(photos_dir / f"{name}.jpg", corpus / f"{name}.jpg")
    build_index(corpus, root / "pets", starter_encoder, progress=False)
    return root / "pets"


@pytest.fixture(scope="module")
def multi(photo_index, second_starter_index, tiny_index, starter_encoder):
    settings = Settings(
        index=[f"photos={photo_index}", f"pets={second_starter_index}", f"tiny={tiny_index}"],
        backend="torch",
        device="cpu",
        warmup=False,
    )
    with TestClient(create_app(settings, encoder=starter_encoder)) as c:
        app_ready(c)
        yield c


def test_indexes_lists_every_index_with_its_model(multi, tiny_hf_dir):
    body = multi.get("/indexes").json()
    assert body["default"] == "photos"
    by_name = {i["name"]: i for i in body["indexes"]}
    assert list(by_name) == ["photos", "pets", "tiny"]
    assert [i["default"] for i in body["indexes"]] == [True, False, False]
    assert (by_name["photos"]["count"], by_name["pets"]["count"], by_name["tiny"]["count"]) == (
        5,
        2,
        5,
    )
    assert by_name["tiny"]["dim"] == 16 and by_name["photos"]["dim"] != 16
    assert by_name["tiny"]["model"] == f"hf:{tiny_hf_dir}"
    assert by_name["photos"]["has_texts"] and not by_name["tiny"]["has_texts"]


def test_one_encoder_per_distinct_model(multi):
    engines = multi.app.state.engines
    assert engines["photos"].encoder is engines["pets"].encoder
    assert engines["tiny"].encoder is not engines["photos"].encoder


def test_search_classify_embed_choose_the_index(multi, tiny_hf_dir):
    default = multi.post("/search", json={"text": "a rocket", "k": 10}).json()
    assert len(default["hits"]) == 5 and default["model"] == "starter"
    pets = multi.post("/search", json={"text": "a rocket", "k": 10, "index": "pets"}).json()
    assert sorted(h["path"] for h in pets["hits"]) == ["cat.jpg", "rocket.jpg"]
    tiny = multi.post("/search", json={"text": "a rocket", "k": 3, "index": "tiny"})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["model"] == f"hf:{tiny_hf_dir}" and len(tiny.json()["hits"]) == 3
    emb = multi.post("/embed", json={"texts": ["a cat"], "index": "tiny"}).json()
    assert emb["dim"] == 16 and len(emb["texts"][0]) == 16
    a_pet = pets["hits"][0]["id"]
    r = multi.post("/classify", json={"image_id": a_pet, "labels": ["a", "b"], "index": "pets"})
    assert r.status_code == 200 and r.json()["model"] == "starter"
    # a vector of the tiny model's width is a 422 on the default index, fine on tiny's
    vec = {"embedding": [1.0] + [0.0] * 15, "k": 2}
    assert multi.post("/search", json=vec).status_code == 422
    assert multi.post("/search", json={**vec, "index": "tiny"}).status_code == 200


def test_hit_urls_point_at_their_index(multi):
    hits = multi.post("/search", json={"text": "a cat", "k": 2, "index": "pets"}).json()["hits"]
    assert all(h["url"].endswith("?index=pets") for h in hits)
    assert all(h["thumbnail_url"].endswith("?index=pets") for h in hits)
    for h in hits:
        assert multi.get(h["url"]).content == multi.get(h["url"]).content != b""
        thumb = multi.get(h["thumbnail_url"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    default = multi.post("/search", json={"text": "a cat", "k": 1}).json()["hits"][0]
    assert default["url"] == f"/images/{default['id']}"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/search", {"text": "a cat", "index": "nope"}),
        ("POST", "/classify", {"image_id": "0", "labels": ["a"], "index": "nope"}),
        ("POST", "/embed", {"texts": ["a"], "index": "nope"}),
        ("GET", "/images/0?index=nope", None),
        ("GET", "/images/0/thumbnail?index=nope", None),
    ],
)
def test_an_unknown_index_is_a_404_naming_the_known_ones(multi, method, path, body):
    r = multi.request(method, path, json=body)
    assert r.status_code == 404, r.text
    err = r.json()["error"]
    assert err["code"] == "unknown_index" and "photos, pets, tiny" in err["message"]


def test_probes_and_stats_cover_every_index(multi):
    ready = multi.get("/readyz").json()
    assert ready["index"] == "photos" and ready["indexes"] == ["photos", "pets", "tiny"]
    stats = multi.get("/stats").json()
    assert stats["index"] == "photos" and set(stats["indexes"]) == {"photos", "pets", "tiny"}
    assert stats["indexes"]["tiny"]["dim"] == 16 and stats["count"] == 5
    assert multi.get("/metrics").status_code == 200
    spec = multi.get("/openapi.json").json()
    index_prop = spec["components"]["schemas"]["SearchRequest"]["properties"]["index"]
    assert index_prop["enum"] == ["photos", "pets", "tiny"]


def test_a_single_index_is_named_after_its_folder(photo_index, starter_encoder):
    s = Settings(index=photo_index, warmup=False)
    assert s.index_map() == {photo_index.name: photo_index}
    with TestClient(create_app(s, encoder=starter_encoder)) as c:
        app_ready(c)
        assert c.get("/indexes").json()["default"] == photo_index.name
        r = c.post("/search", json={"text": "a cat", "index": photo_index.name})
        assert r.status_code == 200 and r.json()["hits"][0]["url"].endswith(
            r.json()["hits"][0]["id"]
        )


def test_indices_json_names_the_indexes(tmp_path, photo_index, tiny_index):
    shutil.copytree(tiny_index, tmp_path / "tiny")
    spec = tmp_path / "indices.json"
    spec.write_text(json.dumps({"laion_like": str(photo_index), "small": "tiny"}))
    s = Settings(index=[str(spec)])
    assert s.index_map() == {"laion_like": photo_index, "small": (tmp_path / "tiny").resolve()}
    # clip-retrieval's dict form with an indice_folder, and the env round trip
    spec.write_text(json.dumps({"a": {"indice_folder": str(photo_index)}}))
    s = Settings(index=spec)
    assert s.index_map() == {"a": photo_index}
    assert Settings(**{"index": json.loads(s.to_env()["CLIPSEARCH_INDEX"])}) == s


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["a=/x", "a=/y"], "two indexes with the name a"),
        (["a=/x", "b=/x"], "two indexes with the folder"),
        (["bad name!=/x"], "not an index name"),
    ],
)
def test_bad_index_lists_are_refused(given, said):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=said):
        Settings(index=given)


def test_settings_travel_to_workers(monkeypatch, photo_index, tiny_index):
    s = Settings(index=[f"photos={photo_index}", f"tiny={tiny_index}"], port=9)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == s
    monkeypatch.setenv("CLIPSEARCH_INDEX", str(photo_index))  # a plain folder, as before
    assert Settings().index_map() == {photo_index.name: photo_index}


def test_two_workers_serve_two_indexes(tmp_path, photo_index, tiny_index):
    """`serve --index a=DIR --index b=DIR --workers 2`: the settings reach both processes."""
    port = free_port()
    proc = start(["serve", "--index", f"photos={photo_index}", "--index", f"tiny={tiny_index}",
                  "--workers", "2", "--port", str(port), "--backend", "torch", "--device", "cpu",
                  "--no-warmup", "--log-level", "warning"], cwd=tmp_path)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(proc, base)
        assert ready["indexes"] == ["photos", "tiny"]
        answers = []
        deadline = time.monotonic() + 120
        while len(answers) < 6 and time.monotonic() < deadline:
            # new connections land on either worker; one may still be loading (503)
            r = httpx.post(base + "/search", json={"text": "a cat", "k": 2, "index": "tiny"})
            if r.status_code == 503:
                time.sleep(0.5)
                continue
            assert r.status_code == 200, r.text
            answers.append([h["id"] for h in r.json()["hits"]])
        assert len(answers) == 6 and all(a == answers[0] and len(a) == 2 for a in answers)
        assert [i["name"] for i in httpx.get(base + "/indexes").json()["indexes"]] == [
            "photos",
            "tiny",
        ]
    finally:
        stop(proc)


def test_writes_go_to_the_named_index(tmp_path, photo_index, second_starter_index, photos_dir,
                                      starter_encoder):  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(photo_index, a)
    shutil.copytree(second_starter_index, b)
    s = Settings(index=[f"a={a}", f"b={b}"], writable=True, warmup=False)
    with TestClient(create_app(s, encoder=starter_encoder)) as c:
        app_ready(c)
        data = (photos_dir / "coffee.jpg").read_bytes()
        r = c.post("/images?index=b", files={"image": ("coffee.jpg", data, "image/jpeg")})
        assert r.status_code == 201, r.text
        new_id = r.json()["items"][0]["id"]
        counts = {i["name"]: i["count"] for i in c.get("/indexes").json()["indexes"]}
        assert counts == {"a": 5, "b": 3}
        hits = c.post("/search", json={"text": "a cup of coffee", "index": "b", "k": 3}).json()
        assert new_id in [h["id"] for h in hits["hits"]]
        assert c.delete(f"/images/{new_id}?index=b").status_code == 200
        assert c.get(f"/images/{new_id}?index=b").status_code == 404
