"""clip-retrieval's own `ClipClient` (PyPI clip-retrieval 2.45.0, in its own venv and process)
against a running `clipsearch serve`: text, image and embedding queries, both modalities, with
and without `deduplicate`; each answer must be what our /search answers for the same query.

The index: the five sample photos, planted near-duplicates (a half-size re-encoded copy, a
cropped copy, a mirrored copy) and two noise images, with captions (the texts corpus that
Modality.TEXT searches), encoded with the offline starter model."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.app.cli._server import free_port, start, stop, wait_ready
from tests.utils.clip_retrieval_env import pytest_cache_env
from tests.utils.images import random_image, sample_photo

pytestmark = pytest.mark.slow

CAPTIONS = {
    "cat": "a cat lying on a sofa",
    "coffee": "a cup of coffee on a saucer",
    "rocket": "a rocket on the launch pad",
    "astronaut": "an astronaut in a space suit",
    "camera": "a man with a camera",
}
COPIES = {  # planted near-duplicates: name → (original, how it was made)
    "coffee copy": ("coffee", lambda im: im.resize((im.width // 2, im.height // 2))),
    "cat crop": ("cat", lambda im: im.crop((20, 20, im.width - 20, im.height - 20))),
    "rocket mirror": ("rocket", lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
}
DEDUP = 0.94  # clip_back's threshold, which /knn-service applies for `deduplicate`

CLIENT_SCRIPT = r"""
import json, sys
from clip_retrieval.clip_client import ClipClient, Modality

job = json.load(sys.stdin)
out = []
for q in job["queries"]:
    client = ClipClient(
        url=job["url"] + "/knn-service", indice_name=job["index"], num_images=q["num_images"],
        modality=Modality[q["modality"]], deduplicate=q["deduplicate"],
    )
    out.append(client.query(**{q["kind"]: q["value"]}))
print(json.dumps(out))
"""


@pytest.fixture(scope="session")
def cr_env(request):
    return pytest_cache_env(request.config)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cc_corpus")
    rows = []
    for name, caption in CAPTIONS.items():
        sample_photo(name).convert("RGB").save(root / f"{name}.jpg", quality=92)
        rows.append((f"{name}.jpg", caption))
    for name, (orig, fn) in COPIES.items():
        fn(sample_photo(orig).convert("RGB")).save(root / f"{name}.jpg", quality=60)
        rows.append((f"{name}.jpg", f"{CAPTIONS[orig]} ({name.split()[1]})"))
    for seed in range(2):
        random_image((96, 64), seed=seed).save(root / f"noise{seed}.png")
        rows.append((f"noise{seed}.png", f"random noise {seed}"))
    with open(root / "manifest.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("path", "caption"), *rows])
    return root


@pytest.fixture(scope="module")
def server(corpus, tmp_path_factory):
    """`clipsearch serve --index photos=IDX` on a free port; → its base URL."""
    from indexer import add_texts, build_index
    from model import load_encoder

    index = tmp_path_factory.mktemp("cc_index") / "photos"
    enc = load_encoder("starter", device="cpu")
    build_index(corpus / "manifest.csv", index, enc, progress=False)
    add_texts(index, None, enc)
    port = free_port()
    proc = start(["serve", "--index", f"photos={index}", "--host", "127.0.0.1", "--port",
                  str(port)], cwd=index.parent)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        yield base
    finally:
        stop(proc)


def search(base: str, body: dict) -> list[dict]:
    r = httpx.post(base + "/search", json={"index": "photos", **body}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["hits"]


def client_queries(cr_env, base: str, queries: list[dict]) -> list[list[dict]]:
    """Run every query through ClipClient in one process of the clip-retrieval venv."""
    return cr_env.run_json(CLIENT_SCRIPT, {"url": base, "index": "photos", "queries": queries})


def assert_same_images(got: list[dict], hits: list[dict], base: str) -> None:
    """ClipClient's results are /search's hits: same ids in the same order, similarity = score,
    url = the image this server serves (absolute, as the front needs it)."""
    assert [str(r["id"]) for r in got] == [h["id"] for h in hits]
    for r, h in zip(got, hits, strict=True):
        assert r["similarity"] == pytest.approx(h["score"], abs=1e-4)
        assert r["url"] == base + h["url"] and r["caption"] == h["caption"]
        assert r["image_path"] == h["path"]


def test_text_image_and_embedding_queries_match_search(cr_env, server, corpus):
    n = 10  # every image: the planted copies are in every list
    emb = httpx.post(server + "/embed", json={"texts": ["a cup of coffee"]}, timeout=60)
    assert emb.status_code == 200, emb.text
    vector = emb.json()["texts"][0]
    image = str(corpus / "coffee.jpg")
    forms = [("text", "a cup of coffee"), ("image", image), ("embedding_input", vector)]
    queries = [
        {"kind": kind, "value": value, "modality": "IMAGE", "num_images": n, "deduplicate": d}
        for kind, value in forms
        for d in (False, True)
    ]
    results = client_queries(cr_env, server, queries)
    b64 = base64.b64encode(Path(image).read_bytes()).decode()
    bodies = {"text": {"text": "a cup of coffee"}, "image": {"image_b64": b64},
              "embedding_input": {"embedding": vector}}  # fmt: skip
    for q, got in zip(queries, results, strict=True):
        body = {**bodies[q["kind"]], "k": n, **({"dedup": DEDUP} if q["deduplicate"] else {})}
        assert_same_images(got, search(server, body), server)
        paths = [r["image_path"] for r in got]
        if q["deduplicate"]:  # each planted copy is hidden behind its better original
            assert len(got) == n - len(COPIES)
            assert not any(p.split(".")[0] in COPIES for p in paths)
        else:
            assert len(got) == n and "coffee copy.jpg" in paths
        assert paths[0] in ("coffee.jpg", "coffee copy.jpg")


def test_text_modality_searches_the_captions(cr_env, server, corpus):
    queries = [
        {"kind": kind, "value": value, "modality": "TEXT", "num_images": 5, "deduplicate": d}
        for kind, value in (("text", "a cat on a sofa"), ("image", str(corpus / "rocket.jpg")))
        for d in (False, True)
    ]
    results = client_queries(cr_env, server, queries)
    b64 = base64.b64encode((corpus / "rocket.jpg").read_bytes()).decode()
    for q, got in zip(queries, results, strict=True):
        body = {"text": q["value"]} if q["kind"] == "text" else {"image_b64": b64}
        hits = search(server, {**body, "k": 5, "target": "texts"})
        assert [r["caption"] for r in got] == [h["text"] for h in hits]
        assert [r["similarity"] for r in got] == pytest.approx([h["score"] for h in hits], abs=1e-4)
    assert results[0][0]["caption"].startswith("a cat lying on a sofa")
    assert results[2][0]["caption"].startswith("a rocket on the launch pad")
