"""clip-retrieval's back-end API on clipsearch: /knn-service, /metadata, /indices-list with the
bodies its ClipClient and its web front send (copied from clip_retrieval 2.45's clip_client.py
and front/build/main.*.js), answered the way clip_back answers, and matching /search."""

from __future__ import annotations

import base64
import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from tests.app.conftest import CAPTIONS, wait_ready

CAPTIONED = {"cat": "a cat on a sofa", "coffee": "a cup of coffee"}


@pytest.fixture(scope="module")
def knn_index(tmp_path_factory, photos_dir, starter_encoder):
    """The sample photos plus a resized copy of the cat, listed in a JSONL manifest with
    clip-retrieval's metadata columns for some (caption, url, NSFW), and the text corpus."""
    from PIL import Image

    from indexer import add_texts, build_index

    root = tmp_path_factory.mktemp("knn")
    corpus = root / "corpus"
    shutil.copytree(photos_dir, corpus)
    with Image.open(corpus / "cat.jpg") as im:
        im.resize((im.width // 2, im.height // 2)).save(corpus / "cat_small.jpg")
    rows = []
    for p in sorted(corpus.glob("*.jpg")):
        row = {"path": p.name}
        if p.stem in CAPTIONED:
            row |= {"caption": CAPTIONED[p.stem], "url": f"https://example.com/{p.name}",
                    "NSFW": "UNLIKELY"}  # fmt: skip
        rows.append(row)
    manifest = corpus / "items.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index(manifest, root / "index", starter_encoder, progress=False)
    add_texts(root / "index", CAPTIONS, starter_encoder)
    return root / "index"


def make(index, encoder, **settings) -> TestClient:
    return TestClient(create_app(Settings(index=[f"pics={index}"], warmup=False, **settings),
                                 encoder=encoder))  # fmt: skip


@pytest.fixture(scope="module")
def client(knn_index, starter_encoder):
    with make(knn_index, starter_encoder, cors_origins="*") as c:
        wait_ready(c)
        yield c


def client_body(**query) -> dict:
    """What ClipClient(url, "pics") posts (its defaults), with one of text/image/embedding."""
    body = {"text": None, "image": None, "image_url": None, "embedding_input": None,
            "deduplicate": True, "use_safety_model": True, "use_violence_detector": True,
            "indice_name": "pics", "use_mclip": False, "aesthetic_score": 9,
            "aesthetic_weight": 0.5, "modality": "image", "num_images": 40,
            "num_result_ids": 40}  # fmt: skip
    return body | query


def front_body(**query) -> str:
    """What clip-retrieval's web front posts: text/plain JSON, its own defaults."""
    body = {"text": "", "image": None, "image_url": None, "embedding_input": None,
            "modality": "image", "num_images": 40, "indice_name": "pics",
            "num_result_ids": 3000, "use_mclip": False, "deduplicate": True,
            "use_safety_model": True, "use_violence_detector": True, "aesthetic_score": "",
            "aesthetic_weight": "0.5"} | query  # fmt: skip
    return json.dumps(body)


def test_indices_list(client):
    r = client.get("/indices-list")
    assert r.status_code == 200 and r.json() == ["pics"]


def test_text_query_matches_search_and_carries_the_metadata(client):
    body = client_body(text="a cat", num_images=3, num_result_ids=5, deduplicate=False)
    r = client.post("/knn-service", json=body)
    assert r.status_code == 200, r.text
    results = r.json()
    hits = client.post("/search", json={"text": "a cat", "k": 5}).json()["hits"]
    assert [x["id"] for x in results] == [int(h["id"]) for h in hits]
    assert [x["similarity"] for x in results] == [h["score"] for h in hits]
    # metadata on the first num_images only, as clip_back's map_to_metadata does
    assert all({"url", "image_path"} <= set(x) for x in results[:3])
    assert all(set(x) == {"id", "similarity"} for x in results[3:])
    by_path = {x["image_path"]: x for x in results[:3]}
    cat = by_path["cat.jpg"]
    assert cat["caption"] == "a cat on a sofa" and cat["url"] == "https://example.com/cat.jpg"
    assert cat["NSFW"] == "UNLIKELY"
    plain = next(x for x in results[:3] if x["image_path"] not in CAPTIONED)
    assert "caption" not in plain and plain["url"] == f"http://testserver/images/{plain['id']}"
    assert client.get(plain["url"]).status_code == 200  # the front shows it from there
    skipped = r.headers["x-clipsearch-not-applied"]
    assert skipped == "use_safety_model, use_violence_detector, aesthetic_score"


def test_deduplicate_is_search_dedup_at_0_94(client):
    body = client_body(text="a cat", num_images=4, num_result_ids=4)
    results = client.post("/knn-service", json=body).json()
    hits = client.post("/search", json={"text": "a cat", "k": 4, "dedup": 0.94}).json()["hits"]
    assert [x["id"] for x in results] == [int(h["id"]) for h in hits]
    paths = [x["image_path"] for x in results]
    assert len(results) == 4 and not {"cat.jpg", "cat_small.jpg"} <= set(paths)
    plain = client.post("/knn-service", json=body | {"deduplicate": False}).json()
    assert {"cat.jpg", "cat_small.jpg"} <= {x["image_path"] for x in plain}


def test_image_and_embedding_queries(client, photos_dir):
    b64 = base64.b64encode((photos_dir / "rocket.jpg").read_bytes()).decode()
    by_image = client.post("/knn-service", json=client_body(image=b64, deduplicate=False)).json()
    assert by_image[0]["image_path"] == "rocket.jpg" and len(by_image) == 6
    vec = client.post("/embed", json={"texts": ["a rocket"]}).json()["texts"][0]
    by_vec = client.post("/knn-service", json=client_body(embedding_input=vec)).json()
    by_text = client.post("/knn-service", json=client_body(text="a rocket")).json()
    assert [x["id"] for x in by_vec] == [x["id"] for x in by_text]


def test_text_modality_searches_the_text_corpus(client):
    r = client.post("/knn-service", json=client_body(text="a cup of coffee", modality="text",
                                                     num_images=2, num_result_ids=5))  # fmt: skip
    results = r.json()
    assert results[0]["caption"] == "a cup of coffee" and len(results) == 5
    assert "caption" in results[1] and "caption" not in results[2]
    assert "deduplicate" in r.headers["x-clipsearch-not-applied"]
    texts = client.post("/search", json={"text": "a cup of coffee", "target": "texts", "k": 5})
    assert [x["id"] for x in results] == [int(h["id"]) for h in texts.json()["hits"]]


def test_the_front_posts_text_plain_from_another_origin(client):
    r = client.post(
        "/knn-service",
        content=front_body(text="a cat"),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": "http://front.example"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    results = r.json()
    assert len(results) == 5  # num_result_ids 3000 over 6 images, the cat copy hidden
    ids = [x["id"] for x in results[5:40]] or [x["id"] for x in results]
    meta = client.post("/metadata", content=json.dumps({"ids": ids, "indice_name": "pics"}),
                       headers={"Content-Type": "text/plain;charset=UTF-8"})  # fmt: skip
    assert meta.status_code == 200
    rows = meta.json()
    assert [m["id"] for m in rows] == ids
    assert all(m["metadata"]["url"] for m in rows)
    assert (
        client.get("/indices-list", headers={"Origin": "http://x"}).headers[
            "access-control-allow-origin"
        ]
        == "*"
    )


def test_metadata_answers_every_id(client):
    hit = client.post("/knn-service", json=client_body(text="a cat")).json()[0]
    r = client.post("/metadata", json={"ids": [hit["id"], str(hit["id"]), 10**6, "x"],
                                       "indice_name": "pics"})  # fmt: skip
    assert r.status_code == 200
    rows = r.json()
    assert [m["id"] for m in rows] == [hit["id"], str(hit["id"]), 10**6, "x"]
    assert (
        rows[0]["metadata"]["image_path"] == hit["image_path"] == rows[1]["metadata"]["image_path"]
    )
    assert rows[2]["metadata"] == {} and rows[3]["metadata"] == {}
    assert client.post("/metadata", json={"ids": [], "indice_name": "pics"}).json() == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (client_body(), 422, "invalid_query"),
        (client_body(text="a cat", indice_name="laion5B"), 404, "unknown_index"),
        (client_body(text="a cat", num_images=0), 422, "validation_error"),
        (client_body(text="a cat", num_images="40"), 422, "validation_error"),
        (client_body(text="a cat", modality="video"), 422, "validation_error"),
        (client_body(embedding_input=[1.0, 0.0]), 422, "dimension_mismatch"),
        (client_body(image="not base64!"), 422, "invalid_base64"),
        (client_body(image=base64.b64encode(b"no image").decode()), 415, None),
        (client_body(text="a cat", image_url="https://example.com/x.jpg"), 422,
         "image_url_refused"),
        (client_body(text="a" * 5000), 422, "text_too_long"),
    ],
)  # fmt: skip
def test_bad_knn_requests_get_our_error_shape(client, body, status, code):
    r = client.post("/knn-service", json=body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert code is None or err["code"] == code
    assert err["message"]


def test_bad_bodies(client):
    assert client.post("/knn-service", content=b"{not json").status_code == 422
    assert client.post("/knn-service", json=[1, 2]).status_code == 422
    assert client.post("/metadata", json={"indice_name": "pics"}).status_code == 422
    r = client.post("/metadata", json={"ids": [1], "indice_name": "nope"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_index"


def test_knn_inline_images(knn_index, starter_encoder, photos_dir):
    with make(knn_index, starter_encoder, knn_inline_images=True) as c:
        wait_ready(c)
        results = c.post("/knn-service", json=client_body(text="a rocket", num_images=1)).json()
        assert base64.b64decode(results[0]["image"]) == (photos_dir / "rocket.jpg").read_bytes()
        assert "image" not in results[1]
        meta = c.post("/metadata", json={"ids": [results[0]["id"]], "indice_name": "pics"})
        assert meta.json()[0]["metadata"]["image"] == results[0]["image"]


class _Images(BaseHTTPRequestHandler):
    data = b""

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/rocket.jpg")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.end_headers()
        self.wfile.write(self.data)

    def log_message(self, *args) -> None:
        pass


def test_image_url_only_from_allowed_hosts(knn_index, starter_encoder, photos_dir):
    _Images.data = (photos_dir / "rocket.jpg").read_bytes()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with make(knn_index, starter_encoder, image_url_hosts="127.0.0.1") as c:
            wait_ready(c)
            r = c.post("/knn-service", json=client_body(image_url=url + "/rocket.jpg"))
            assert r.status_code == 200, r.text
            assert r.json()[0]["image_path"] == "rocket.jpg"
            r = c.post("/knn-service", json=client_body(image_url=url + "/redirect"))
            assert r.status_code == 422 and "redirect" in r.json()["error"]["message"]
            other = c.post("/knn-service", json=client_body(image_url="http://localhost/x.jpg"))
            assert other.status_code == 422 and "not among" in other.json()["error"]["message"]
        # "*" allows any host, but never one on a loopback or private address
        with make(knn_index, starter_encoder, image_url_hosts="*") as c:
            wait_ready(c)
            r = c.post("/knn-service", json=client_body(image_url=url + "/rocket.jpg"))
            assert r.status_code == 422 and "non-public" in r.json()["error"]["message"]
    finally:
        server.shutdown()


def test_openapi_declares_the_clip_retrieval_routes(client):
    spec = client.get("/openapi.json").json()
    knn = spec["paths"]["/knn-service"]["post"]
    schema = knn["requestBody"]["content"]["application/json"]["schema"]
    assert schema["properties"]["indice_name"]["anyOf"][0]["enum"] == ["", "pics"]
    assert schema["properties"]["image_url"] == {
        "type": "null",
        "description": "off: start the server with --image-url-hosts",
    }
    assert {"200", "404", "422"} <= set(knn["responses"])
    assert "/metadata" in spec["paths"] and "/indices-list" in spec["paths"]
    for name, ex in knn["requestBody"]["content"]["application/json"]["examples"].items():
        assert client.post("/knn-service", json=ex["value"]).status_code == 200, name
