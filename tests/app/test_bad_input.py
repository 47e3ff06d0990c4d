"""Every bad input gets a documented 4xx in the one error shape — never a 5xx."""

from __future__ import annotations

import base64
import io
import shutil

import pytest
from PIL import Image

from tests.utils.images import huge_png_header, png_bytes, sample_photo


def error_of(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    return body["error"]["code"]


def upload(client, data: bytes, name: str = "x.png", **fields):
    return client.post("/search", files={"image": (name, data, "image/png")}, data=fields)


def test_oversize_upload_with_content_length_is_413(client):
    big = b"\0" * (3 * 1024 * 1024)  # the test client's limit is 2 MiB
    assert error_of(upload(client, big), 413) == "payload_too_large"


def test_oversize_chunked_upload_without_content_length_is_413(client):
    def stream():
        for _ in range(40):
            yield b"{" * 100_000

    r = client.post("/search", content=stream(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert error_of(r, 413) == "payload_too_large"


def test_non_image_bytes_are_415(client):
    r = upload(client, b"this is a text file, not a picture\n" * 10, "notes.txt")
    assert error_of(r, 415) == "unsupported_image_format"
    b64 = base64.b64encode(b"%PDF-1.4 not an image").decode()
    assert error_of(client.post("/search", json={"image_b64": b64}), 415)


def test_truncated_image_is_422(client):
    data = png_bytes(sample_photo("cat"))
    assert error_of(upload(client, data[: len(data) // 2]), 422) == "invalid_image"


def test_empty_file_is_422(client):
    assert error_of(upload(client, b""), 422) == "empty_image"


def test_decompression_bomb_header_is_422_before_decoding(client):
    r = upload(client, huge_png_header(30000, 30000), "bomb.png")
    assert error_of(r, 422) == "image_too_large"


def test_disallowed_format_is_415(client):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PCX")
    assert error_of(upload(client, buf.getvalue(), "x.pcx"), 415) == "unsupported_image_format"


@pytest.mark.parametrize(
    ("text", "code"), [("", "empty_text"), ("   ", "empty_text"), ("x" * 100_000, "text_too_long")]
)
def test_empty_and_huge_texts_are_422(client, text, code):
    assert error_of(client.post("/search", json={"text": text}), 422) == code


@pytest.mark.parametrize("k", [0, -1, 10**9, "many", 2.5])
def test_k_out_of_range_is_422(client, k):
    assert error_of(client.post("/search", json={"text": "a cat", "k": k}), 422)


def test_nan_and_inf_in_embedding_are_422(client):
    dim = client.get("/stats").json()["dim"]
    for bad in ("NaN", "Infinity", "-Infinity"):
        body = '{"embedding": [' + ", ".join(["0.1"] * (dim - 1) + [bad]) + "]}"
        r = client.post("/search", content=body, headers={"content-type": "application/json"})
        assert error_of(r, 422) == "validation_error"
    huge = [1e39] * dim  # finite as JSON (float64), infinite as float32
    r = client.post("/search", json={"embedding": huge})
    assert error_of(r, 422) == "invalid_embedding"
    big = [3e38] * dim  # finite in float32 (its norm is not): still a valid direction
    assert client.post("/search", json={"embedding": big}).status_code == 200


def test_wrong_dimension_and_zero_vector_are_422(client):
    dim = client.get("/stats").json()["dim"]
    r = client.post("/search", json={"embedding": [0.1] * (dim + 1)})
    assert error_of(r, 422) == "dimension_mismatch"
    assert error_of(client.post("/search", json={"embedding": [0.0] * dim}), 422) == "zero_query"


def test_query_forms_must_be_exactly_one(client):
    assert error_of(client.post("/search", json={"k": 5}), 422) == "invalid_query"
    r = client.post("/search", json={"text": "a", "image_id": "1"})
    assert error_of(r, 422) == "invalid_query"
    assert error_of(client.post("/search", json={"text": "a", "bogus": 1}), 422)
    r = client.post("/search", json={"terms": [{"text": "a", "image_id": "1"}]})
    assert error_of(r, 422) == "validation_error"
    r = client.post("/search", json={"terms": [{"text": "a"}, {"text": "a", "weight": -1}]})
    assert error_of(r, 422) == "zero_query"


def test_malformed_bodies_are_4xx(client):
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert error_of(r, 422) == "invalid_json"
    assert error_of(client.post("/search", json=[1, 2]), 422)
    r = client.post("/search", content=b"x", headers={"content-type": "text/plain"})
    assert error_of(r, 415) == "unsupported_media_type"
    assert error_of(client.post("/search", json={"image_b64": "***"}), 422) == "invalid_base64"
    assert error_of(client.post("/search", json={"text": "a", "target": "videos"}), 422)
    r = client.post("/search", data={"embedding": "[1, 2", "k": "5"})
    assert error_of(r, 422) == "validation_error"  # vectors go as JSON, the message says


def test_unknown_ids_are_404(client):
    for image_id in ("999999999", "-5", "abc", "9" * 40):
        assert error_of(client.get(f"/images/{image_id}"), 404) == "not_found"
        assert error_of(client.get(f"/images/{image_id}/thumbnail"), 404) == "not_found"
    assert error_of(client.post("/search", json={"image_id": "424242"}), 404) == "not_found"
    r = client.post("/classify", json={"image_id": "424242", "labels": ["a"]})
    assert error_of(r, 404) == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/images/..%2F..%2F..%2Fetc%2Fpasswd",
        "/images/%2E%2E/%2E%2E/etc/passwd",
        "/images/../../etc/passwd",
        "/images/1%00.jpg",
        "/images/%2Fetc%2Fpasswd/thumbnail",
        "/images/..%5C..%5Cwindows",
    ],
)
def test_path_traversal_attempts_are_404(client, path):
    r = client.get(path)
    assert r.status_code == 404, r.text
    assert b"root:" not in r.content


def test_texts_target_without_text_corpus_is_422(two_version_index, starter_encoder):
    from tests.app.conftest import make_client, wait_ready

    index, _, _ = two_version_index
    with make_client(index, starter_encoder) as c:
        wait_ready(c)
        r = c.post("/search", json={"text": "a cat", "target": "texts"})
        assert error_of(r, 422) == "no_texts"


def test_file_swapped_for_a_symlink_out_of_the_corpus_is_404(tmp_path, photos_dir, starter_encoder):
    """Even an indexed id cannot be used to read outside the corpus after the fact."""
    from indexer import build_index
    from tests.app.conftest import make_client, wait_ready

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(photos_dir / "cat.jpg", corpus / "cat.jpg")
    secret = tmp_path / "secret.jpg"
    shutil.copy(photos_dir / "rocket.jpg", secret)
    build_index(corpus, tmp_path / "index", starter_encoder, progress=False)
    with make_client(tmp_path / "index", starter_encoder) as c:
        wait_ready(c)
        cat = c.post("/search", json={"text": "a cat", "k": 1}).json()["hits"][0]["id"]
        assert c.get(f"/images/{cat}").status_code == 200
        (corpus / "cat.jpg").unlink()
        (corpus / "cat.jpg").symlink_to(secret)
        assert error_of(c.get(f"/images/{cat}"), 404) == "not_found"
        assert c.get(f"/images/{cat}/thumbnail").status_code == 404
