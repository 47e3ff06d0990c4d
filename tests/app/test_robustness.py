"""No client input produces a 5xx; a full encoder queue answers 503 with Retry-After."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.app.conftest import make_client, wait_ready
from tests.app.test_bad_input import error_of

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=40)
)


def _containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)


values = st.recursive(scalars, _containers, max_leaves=12)
FIELDS = [
    *("text", "image_id", "image_b64", "embedding", "terms", "k", "target", "min_score"),
    *("path_prefix", "where", "labels", "templates", "texts", "images_b64", "weight"),
]
bodies = st.dictionaries(st.sampled_from(FIELDS), values, max_size=5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=bodies, route=st.sampled_from(["/search", "/classify", "/embed"]))
def test_random_json_bodies_never_give_a_5xx(client, body, route):
    raw = json.dumps(body, allow_nan=True)
    r = client.post(route, content=raw, headers={"content-type": "application/json"})
    assert r.status_code < 500, (route, raw, r.text)
    if r.status_code >= 400:
        assert set(r.json()["error"]) == {"code", "message"}


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), field=st.sampled_from(["image", "text", "k", "where"]))
def test_random_multipart_never_gives_a_5xx(client, data, field):
    if field == "image":
        r = client.post("/search", files={"image": ("x", data)})
    else:
        r = client.post("/search", files={"image": ("x", b"")},
                        data={field: data.decode("latin-1")})  # fmt: skip
    assert r.status_code < 500, r.text


def test_bad_metadata_filter_is_422(client):
    r = client.post("/search", json={"text": "a cat", "where": {"bad'key": "x"}})
    assert error_of(r, 422) == "invalid_filter"
    r = client.post("/search", json={"text": "a cat", "where": {"colour": "red"}})
    assert r.status_code == 200 and r.json()["hits"] == []


def test_full_queue_is_503_with_retry_after(photo_index, starter_encoder):
    with make_client(
        photo_index, starter_encoder, max_queue=1, max_batch=1, text_cache_size=0
    ) as c:
        wait_ready(c)
        texts = [f"a photo of thing number {i}" for i in range(24)]
        with ThreadPoolExecutor(12) as pool:
            rs = list(pool.map(lambda t: c.post("/search", json={"text": t}), texts))
        statuses = {r.status_code for r in rs}
        assert statuses <= {200, 503} and 503 in statuses and 200 in statuses
        busy = next(r for r in rs if r.status_code == 503)
        assert busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "overloaded"
