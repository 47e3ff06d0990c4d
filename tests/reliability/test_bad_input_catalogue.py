"""Bad-input catalogue, the cases tests/app/test_bad_input.py does not already hold: each case
gets its documented status and the one error shape, and odd-but-valid images must work."""

from __future__ import annotations

import base64
import io
import math
import re
import time

import numpy as np
import pytest
from PIL import Image

from tests.app.conftest import make_client, wait_ready
from tests.reliability.conftest import error_code
from tests.utils.images import (
    exif_rotated_jpeg,
    huge_png_header,
    jpeg_bytes,
    png_bytes,
    sample_photo,
)

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


def test_zero_vectors_are_422_and_tiny_ones_are_a_direction(client, dim):
    for vec in ([0.0] * dim, [-0.0] * dim):
        assert error_code(client.post("/search", json={"embedding": vec}), 422) == "zero_query"
    for vec in ([1e-45] * dim, [5e-324] + [0.0] * (dim - 1)):  # the schema's "not all zeros"
        assert client.post("/search", json={"embedding": vec}).status_code == 200
    r = client.post("/search", json={"terms": [{"embedding": [0.0] * dim, "weight": 2}]})
    assert error_code(r, 422) == "zero_query"
    r = client.post("/search", json={"terms": [{"text": "a cat", "weight": 0}]})
    assert "weight: 0 would drop the term" in message_of(r, 422)


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


# --- issue 14: the mistakes people make, each with an answer that says what to do -------------


def message_of(r, status: int) -> str:
    error_code(r, status)
    return r.json()["error"]["message"]


def test_empty_labels_string_names_the_two_forms(client, dim):
    r = client.post("/classify", json={"image_id": "1", "labels": ""})
    msg = message_of(r, 422)
    assert "labels" in msg


def test_placeholder_base64_names_the_field(client):
    r = client.post("/embed", json={"images_b64": ["<base64 JPEG/PNG bytes>"]})
    assert error_code(r, 422) == "invalid_base64"
    assert "images_b64[0]" in r.json()["error"]["message"]


def test_empty_embed_body_names_both_fields(client):
    msg = message_of(client.post("/embed", json={}), 422)
    assert "texts" in msg and "images_b64" in msg


def test_two_query_forms_name_both(client):
    r = client.post("/search", json={"image_id": "1", "terms": [{"text": "a cat"}]})
    assert error_code(r, 422) == "invalid_query"
    msg = r.json()["error"]["message"]
    assert "exactly one" in msg and "image_id, terms" in msg


def test_repeated_and_comma_separated_labels_both_count(client):
    cat = png_bytes(sample_photo("cat").convert("RGB").resize((96, 64)))
    image = {"image": ("cat.png", cat, "image/png")}
    repeated = client.post("/classify", files=[("image", image["image"]),
                                               ("labels", (None, "a cat")),
                                               ("labels", (None, "a dog"))])  # fmt: skip
    assert repeated.status_code == 200, repeated.text
    labels = [x["label"] for x in repeated.json()["labels"]]
    assert sorted(labels) == ["a cat", "a dog"]
    comma = client.post("/classify", files=image, data={"labels": "a cat, a dog"})
    assert [x["label"] for x in comma.json()["labels"]] == labels
    listed = client.post("/classify", json={"image_b64": base64.b64encode(cat).decode(),
                                            "labels": ["a cat", "a dog"]})  # fmt: skip
    assert [x["label"] for x in listed.json()["labels"]] == labels


def test_json_sent_as_a_form_says_to_set_the_content_type(client):
    # what `curl -d '{"text": "a cat", "k": 2}'` sends
    r = client.post(
        "/search",
        content=b'{"text": "a cat", "k": 2}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert error_code(r, 415) == "json_sent_as_form"
    assert "Content-Type: application/json" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "hint"),
    [({"query": "a cat"}, "did you mean text?"), ({"text": "a", "top_k": 3}, "did you mean k?")],
)
def test_unknown_field_names_the_right_one(client, body, hint):
    msg = message_of(client.post("/search", json=body), 422)
    assert hint in msg and "SearchRequest takes text" in msg


def test_file_in_the_wrong_field_says_image(client):
    cat = png_bytes(sample_photo("cat").convert("RGB").resize((64, 64)))
    r = client.post("/search", files={"file": ("cat.png", cat, "image/png")})
    msg = message_of(r, 422)
    assert "-F image=@" in msg


def test_form_filter_takes_key_value_and_shows_the_form_when_wrong(client):
    cat = png_bytes(sample_photo("cat").convert("RGB").resize((64, 64)))
    files = {"image": ("cat.png", cat, "image/png")}
    ok = client.post("/search", files=files, data={"where": "color=red"})
    assert ok.status_code == 200 and ok.json()["hits"] == []  # no item has a color
    msg = message_of(client.post("/search", files=files, data={"where": "color"}), 422)
    assert "where=color=red" in msg


def test_get_on_search_says_post(client):
    r = client.get("/search")
    assert error_code(r, 405) == "method_not_allowed"
    assert "use POST" in r.json()["error"]["message"] and r.headers["allow"] == "POST"


def test_json_types_are_strict_and_say_how_to_write_them(client):
    msg = message_of(client.post("/search", json={"image_id": 42}), 422)
    assert "send a JSON string" in msg and '"42"' in msg
    msg = message_of(client.post("/search", json={"text": "a cat", "k": "5"}), 422)
    assert "send a JSON number" in msg
    assert client.post("/search", json={"text": "a cat", "k": 5.0}).status_code == 200


def test_offset_pages_through_images_and_texts(client):
    full = client.post("/search", json={"text": "a cat", "k": 5}).json()
    page1 = client.post("/search", json={"text": "a cat", "k": 2}).json()
    page2 = client.post("/search", json={"text": "a cat", "k": 2, "offset": 2}).json()
    last = client.post("/search", json={"text": "a cat", "k": 2, "offset": 4}).json()
    ids = [h["id"] for h in full["hits"]]
    assert [h["id"] for h in page1["hits"] + page2["hits"] + last["hits"]] == ids
    assert (page1["next_offset"], page2["next_offset"], last["next_offset"]) == (2, 4, None)
    texts = client.post("/search", json={"text": "a cat", "target": "texts", "k": 5}).json()
    t2 = client.post("/search", json={"text": "a cat", "target": "texts", "k": 2, "offset": 2})
    assert [h["id"] for h in t2.json()["hits"]] == [h["id"] for h in texts["hits"][2:4]]


def test_offset_beyond_the_limit_is_422(client):
    r = client.post("/search", json={"text": "a cat", "offset": 10_001})
    assert error_code(r, 422) == "validation_error"


def test_one_pixel_cap_one_message(client):
    cap = client.app.state.settings.max_image_pixels
    side = math.isqrt(cap) + 1
    too_big = huge_png_header(30000, 30000)  # 900 MP: above Pillow's own guard too
    over_cap = huge_png_header(side, side)  # just over the server's cap
    msgs = set()
    for data in (too_big, over_cap):
        r = client.post("/search", files={"image": ("big.png", data, "image/png")})
        assert error_code(r, 422) == "image_too_large"
        msgs.add(r.json()["error"]["message"])
        r = client.post("/embed", json={"images_b64": [base64.b64encode(data).decode()]})
        msgs.add(message_of(r, 422))
    assert len(msgs) == 1, msgs
    assert f"{cap:,} pixels" in msgs.pop()


def test_what_the_indexer_accepted_the_server_shows(tmp_path, starter_encoder):
    """An image over the server's upload cap that the indexer accepted: its thumbnail and file
    are served, while an upload of the same file gets the one pixel-cap message."""
    from indexer import build_index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    Image.new("RGB", (4000, 4000), (90, 140, 200)).save(corpus / "sky.png")
    build_index(corpus, tmp_path / "index", starter_encoder, progress=False)
    with make_client(tmp_path / "index", starter_encoder, max_image_pixels=10_000_000) as c:
        wait_ready(c)
        hit = c.post("/search", json={"text": "the sky", "k": 1}).json()["hits"][0]
        assert (hit["width"], hit["height"]) == (4000, 4000)
        thumb = c.get(hit["thumbnail_url"])
        assert thumb.status_code == 200, thumb.text
        assert max(Image.open(io.BytesIO(thumb.content)).size) <= 256
        assert c.get(hit["url"]).status_code == 200
        data = (corpus / "sky.png").read_bytes()
        r = c.post("/search", files={"image": ("sky.png", data, "image/png")})
        assert "10,000,000 pixels" in message_of(r, 422)


def test_docs_page_loads_nothing_from_another_host(client):
    html = client.get("/docs").text
    assert "swagger-ui-bundle.js" in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), html
    for asset in re.findall(r"""(?:src|href)=["']?(/[^"' >]+)""", html):
        assert client.get(asset).status_code == 200, asset


def test_missing_key_says_which_header_to_send(keyed_client):
    msg = message_of(keyed_client.post("/search", json={"text": "a cat"}), 401)
    assert "X-API-Key" in msg and "Bearer" in msg
