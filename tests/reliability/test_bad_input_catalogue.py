"""Bad-input catalogue, the cases tests/app/test_bad_input.py does not already hold: each case
gets its documented status and the one error shape, and odd-but-valid images must work."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import make_client, wait_ready
from tests.reliability.conftest import error_code
from tests.utils.images import exif_rotated_jpeg, jpeg_bytes, png_bytes, sample_photo

API_KEY = "s3cret-api-key-0123456789"


@pytest.fixture(scope="module")
def client(photo_index, starter_encoder):
    with make_client(photo_index, starter_encoder, max_body_bytes=4 * 1024 * 1024) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def keyed_client(photo_index, starter_encoder):
    with make_client(photo_index, starter_encoder, api_key=API_KEY) as c:
        wait_ready(c)
        yield c


@pytest.fixture(scope="module")
def dim(client) -> int:
    return client.get("/stats").json()["dim"]


def _img(mode: str) -> bytes:
    cat = sample_photo("cat").convert("RGB").resize((120, 80))
    buf = io.BytesIO()
    if mode == "CMYK":
        cat.convert("CMYK").save(buf, format="JPEG")
    elif mode == "I;16":
        arr = (np.asarray(cat.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        img16 = Image.fromarray(arr)
        assert img16.mode == "I;16"
        img16.save(buf, format="PNG")
    elif mode == "P":
        cat.convert("P", palette=Image.Palette.ADAPTIVE).save(buf, format="PNG")
    elif mode == "P+transparency":
        cat.convert("P").save(buf, format="GIF", transparency=0)
    elif mode == "LA":
        cat.convert("LA").save(buf, format="PNG")
    elif mode == "RGBA-webp":
        cat.convert("RGBA").save(buf, format="WEBP")
    elif mode == "1-bit-tiff":
        cat.convert("1").save(buf, format="TIFF")
    elif mode == "animated-gif-300-frames":
        frames = [cat.rotate(i) for i in range(300)]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=10)
    elif mode == "animated-webp-100-frames":
        frames = [cat.rotate(i) for i in range(100)]
        frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode",
    [
        "CMYK",
        "I;16",
        "P",
        "P+transparency",
        "LA",
        "RGBA-webp",
        "1-bit-tiff",
        "animated-gif-300-frames",
        "animated-webp-100-frames",
    ],
)
def test_unusual_but_valid_images_work(client, mode):
    data = _img(mode)
    r = client.post("/search", files={"image": ("x", data, "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json()["hits"]
    r = client.post("/embed", files={"images": ("x", data, "image/whatever")})
    assert r.status_code == 200, r.text
    v = np.asarray(r.json()["images"][0])
    assert np.isfinite(v).all() and abs(np.linalg.norm(v) - 1) < 1e-3


def test_exif_rotated_image_is_turned_upright(client):
    cat = sample_photo("cat").convert("RGB")
    upright = client.post("/embed", files={"images": ("a.jpg", jpeg_bytes(cat, quality=95))})
    rotated = client.post("/embed", files={"images": ("b.jpg", exif_rotated_jpeg(cat, 6))})
    unrotated = client.post(
        "/embed", files={"images": ("c.jpg", jpeg_bytes(cat.transpose(Image.Transpose.ROTATE_90)))}
    )
    a, b, c = (np.asarray(r.json()["images"][0]) for r in (upright, rotated, unrotated))
    assert float(a @ b) > 0.98  # the EXIF orientation was applied
    assert float(a @ b) > float(a @ c)


# --- multipart: too many parts, malformed forms -----------------------------------------------


def _multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "XyZbOuNdArY") -> bytes:
    out = []
    for name, value, filename in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value)
    return b"\r\n".join(out) + f"\r\n--{boundary}--\r\n".encode()


MP = {"content-type": "multipart/form-data; boundary=XyZbOuNdArY"}


@pytest.mark.parametrize(
    ("route", "parts"),
    [
        ("/search", [("text", b"a cat", None)] + [(f"f{i}", b"x", None) for i in range(5000)]),
        ("/search", [("k", b"1", None)] * 3000),
        ("/embed", [("images", b"\x89PNG", f"{i}.png") for i in range(200)]),
        ("/classify", [("labels", b"a", None)] * 2000),
    ],
    ids=["5000-fields", "3000-repeats", "200-files", "2000-labels"],
)
def test_thousands_of_multipart_parts_are_422(client, route, parts):
    r = client.post(route, content=_multipart(parts), headers=MP)
    assert error_code(r, 422) == "invalid_form"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"content-type": "multipart/form-data"}, b"--x\r\n\r\n"),  # no boundary
        (MP, b"--XyZbOuNdArY\r\n\x00\x01garbage\r\n--XyZbOuNdArY--\r\n"),
        (MP, b"--XyZbOuNdArY\r\nContent-Disposition: form-data\r\n\r\nv\r\n--XyZbOuNdArY--\r\n"),
    ],
    ids=["no-boundary", "garbage-headers", "part-without-name"],
)
def test_malformed_multipart_is_422(client, headers, body):
    r = client.post("/search", content=body, headers=headers)
    assert r.status_code == 422, r.text
    assert error_code(r, 422) in ("invalid_form", "validation_error", "invalid_query")


# --- content types ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ctype", "body", "status", "code"),
    [
        ("application/xml", b"<q>a cat</q>", 415, "unsupported_media_type"),
        ("image/png", png_bytes(Image.new("RGB", (8, 8))), 415, "unsupported_media_type"),
        ("application/octet-stream", b"\0\1\2", 415, "unsupported_media_type"),
        ("text/plain; charset=utf-8", b'{"text": "a cat"}', 415, "unsupported_media_type"),
        ("", b"not json", 422, "invalid_json"),  # no content type: read as JSON
        ("application/json", b"\xff\xfe\x00garbage", 422, "invalid_json"),
        ("application/json", b"", 422, "validation_error"),
    ],
)
def test_wrong_or_missing_content_types(client, ctype, body, status, code):
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/search", content=body, headers=headers)
    assert error_code(r, status) == code


def test_json_without_content_type_is_accepted(client):
    r = client.post("/search", content=b'{"text": "a cat", "k": 1}')
    assert r.status_code == 200, r.text


# --- texts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["a cat\x00", "\x01\x02\x1b[31ma cat", "a\u202ecat", "cat\ufeff", "\U0001f431 cat", "a\r\ncat"],
)
def test_control_characters_in_text_work(client, text):
    r = client.post("/search", json={"text": text, "k": 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ["/search", "/embed", "/classify"])
def test_lone_surrogates_are_422(client, route):
    # JSON may carry an unpaired surrogate escape; Python decodes it to a str that cannot be
    # encoded as UTF-8, which must not crash the tokenizer or the error response.
    body = {
        "/search": b'{"text": "a \\ud800 cat"}',
        "/embed": b'{"texts": ["\\udfff"]}',
        "/classify": b'{"image_id": "1", "labels": ["a \\ud83d"]}',
    }[route]
    r = client.post(route, content=body, headers={"content-type": "application/json"})
    assert error_code(r, 422) == "invalid_text"


# --- wrong JSON types, extra fields, zero vectors ---------------------------------------------


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/search", {"text": 123}),
        ("/search", {"text": ["a cat"]}),
        ("/search", {"text": None}),
        ("/search", {"text": "a", "k": [5]}),
        ("/search", {"embedding": "0.1,0.2"}),
        ("/search", {"embedding": [[0.1]]}),
        ("/search", {"embedding": ["a"]}),
        ("/search", {"image_id": 42.5}),
        ("/search", {"image_id": {"id": 1}}),
        ("/search", {"terms": {"text": "a"}}),
        ("/search", {"terms": []}),
        ("/search", {"terms": [{"text": "a", "weight": "heavy"}]}),
        ("/search", {"text": "a", "where": ["x"]}),
        ("/search", {"text": "a", "min_score": "high"}),
        ("/search", {"text": "a", "min_score": 2}),
        ("/search", {"text": "a", "path_prefix": 5}),
        ("/classify", {"image_id": "1", "labels": [1, 2]}),
        ("/classify", {"image_id": "1", "labels": ["a"], "templates": "x {}"}),
        ("/embed", {"texts": "a cat"}),
        ("/embed", {"texts": [1]}),
        ("/embed", {"texts": {"a": 1}}),
        ("/embed", {"texts": None}),
        ("/search", {"text": "a", "extra": 1}),
        ("/search", {"terms": [{"text": "a", "extra": 1}]}),
        ("/classify", {"image_id": "1", "labels": ["a"], "extra": True}),
        ("/embed", {"texts": ["a"], "extra": []}),
    ],
)
def test_wrong_json_types_and_extra_fields_are_422(client, route, body):
    assert error_code(client.post(route, json=body), 422)


def test_zero_and_subnormal_vectors_are_422(client, dim):
    for vec in ([0.0] * dim, [1e-45] * dim, [-0.0] * dim):
        assert error_code(client.post("/search", json={"embedding": vec}), 422) == "zero_query"
    r = client.post("/search", json={"terms": [{"embedding": [0.0] * dim, "weight": 2}]})
    assert error_code(r, 422) == "zero_query"
    r = client.post("/search", json={"terms": [{"text": "a cat", "weight": 0}]})
    assert error_code(r, 422) == "zero_query"


# --- filenames -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    ["../../../../etc/passwd", "/etc/passwd", "..\\..\\boot.ini", "a\x00.png", "%2e%2e%2f.png"],
)
def test_path_traversal_in_upload_filenames_is_harmless(client, photo_index, filename):
    before = sorted(p.name for p in photo_index.rglob("*"))
    data = png_bytes(sample_photo("cat").convert("RGB").resize((64, 64)))
    r = client.post("/search", files={"image": (filename, data, "image/png")}, data={"k": "1"})
    assert r.status_code == 200, r.text
    assert sorted(p.name for p in photo_index.rglob("*")) == before  # nothing written


# --- API keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": API_KEY[:-1]},
        {"X-API-Key": API_KEY + "x"},
        {"X-API-Key": API_KEY.upper()},
        {"X-API-Key": "x" * 10_000},
        {"X-API-Key": " " + API_KEY},
        {"Authorization": f"Basic {API_KEY}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {API_KEY[:-1]}"},
        {"X-API-Key": "clé-ünïcödé".encode()},  # raw UTF-8 bytes in a header
    ],
)
def test_missing_or_wrong_api_key_is_401(keyed_client, headers):
    r = keyed_client.post("/search", json={"text": "a cat"}, headers=headers)
    assert error_code(r, 401) == "unauthorized"
    assert error_code(keyed_client.get("/stats", headers=headers), 401) == "unauthorized"


def test_right_api_key_either_header_works(keyed_client):
    for h in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
        assert keyed_client.post("/search", json={"text": "a cat", "k": 1}, headers=h).is_success
    assert keyed_client.get("/healthz").status_code == 200


def test_api_key_comparison_is_constant_time():
    """The check goes through hmac.compare_digest; time a wrong key sharing a long prefix against
    one wrong at the first byte (a loose bound: a byte-by-byte == leaks far more on 64 KiB)."""
    from pydantic import SecretStr

    from app.deps import _key_matches

    secret = "k" * 65536
    expected = SecretStr(secret)
    early, late = "x" + secret[1:], secret[:-1] + "x"

    def best(key: str) -> float:
        times = []
        for _ in range(200):
            t0 = time.perf_counter()
            _key_matches(key, expected)
            times.append(time.perf_counter() - t0)
        return min(times)

    assert not _key_matches(early, expected) and not _key_matches(late, expected)
    assert _key_matches(secret, expected)
    ratio = best(late) / best(early)
    assert 0.33 < ratio < 3.0, ratio
