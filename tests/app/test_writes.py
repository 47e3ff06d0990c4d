"""POST /images and DELETE /images/{id} on a writable server: read your writes, duplicates,
paths under the corpus root only, 403 writes_disabled, the API key, replay after a restart,
and an index grown by uploads and compacted equal to a clean build of the same files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from indexer import build_index, open_index
from indexer.live import compact
from tests.app.conftest import make_client, wait_ready
from tests.utils.images import jpeg_bytes, sample_photo


def _upload(client, *names, **form):
    files = [("image", (f"{n}.jpg", jpeg_bytes(sample_photo(n)), "image/jpeg")) for n in names]
    return client.post("/images", files=files, data=form)


def _search(client, text, k=5):
    r = client.post("/search", json={"text": text, "k": k})
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def corpus_index(tmp_path, photos_dir, starter_encoder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("cat", "coffee"):
        shutil.copy(photos_dir / f"{name}.jpg", corpus / f"{name}.jpg")
    build_index(corpus, tmp_path / "idx", starter_encoder, progress=False, workers=0)
    return corpus, tmp_path / "idx"


def test_writes_are_off_unless_writable(corpus_index, starter_encoder):
    _, idx = corpus_index
    with make_client(idx, starter_encoder, warmup=False) as c:
        wait_ready(c)
        for r in (_upload(c, "rocket"), c.delete("/images/0")):
            assert r.status_code == 403 and r.json()["error"]["code"] == "writes_disabled"


def test_writes_need_the_api_key(corpus_index, starter_encoder):
    _, idx = corpus_index
    with make_client(idx, starter_encoder, warmup=False, writable=True, api_key="k") as c:
        wait_ready(c)
        assert _upload(c, "rocket").status_code == 401
        assert c.delete("/images/0").status_code == 401
        r = c.delete("/images/0", headers={"X-API-Key": "k"})
        assert r.status_code == 200 and r.json() == {"deleted": "0"}


def test_upload_search_delete_and_restart(corpus_index, starter_encoder):
    _, idx = corpus_index
    with make_client(idx, starter_encoder, warmup=False, writable=True) as c:
        wait_ready(c)
        r = _upload(c, "rocket", "astronaut", caption=["launch", ""],
                    meta=['{"team": "space"}'])  # fmt: skip
        assert r.status_code == 201, r.text
        body = r.json()
        rocket, astro = body["items"]
        assert rocket["caption"] == "launch" and astro["caption"] is None
        assert rocket["duplicate_of"] is None and rocket["path"].startswith("media:")
        assert (rocket["width"], rocket["height"]) == sample_photo("rocket").size
        assert "+" in body["index_version"]
        hits = _search(c, "a rocket launch")["hits"]
        assert hits[0]["id"] == rocket["id"]  # read your writes
        filtered = c.post("/search", json={"text": "x", "k": 5, "where": {"team": "space"}})
        assert [h["id"] for h in filtered.json()["hits"]] == [rocket["id"]]
        assert c.get(f"/images/{rocket['id']}").content == jpeg_bytes(sample_photo("rocket"))
        assert c.get(f"/images/{rocket['id']}/thumbnail").status_code == 200
        again = _upload(c, "rocket").json()["items"][0]
        assert again["id"] == again["duplicate_of"] == rocket["id"]
        cat = _search(c, "a cat", 1)["hits"][0]
        assert c.delete(f"/images/{cat['id']}").json() == {"deleted": cat["id"]}
        assert c.delete(f"/images/{cat['id']}").status_code == 404
        assert c.delete("/images/nope").status_code == 404
        assert c.get(f"/images/{cat['id']}").status_code == 404
        hits = _search(c, "a cat", 10)["hits"]
        assert cat["id"] not in [h["id"] for h in hits] and len(hits) == 3
    with make_client(idx, starter_encoder, warmup=False, writable=True) as c:  # a restart
        wait_ready(c)
        ids = [h["id"] for h in _search(c, "a cat", 10)["hits"]]
        assert rocket["id"] in ids and astro["id"] in ids and cat["id"] not in ids


def test_paths_under_the_corpus_root_only(corpus_index, photos_dir, starter_encoder):
    corpus, idx = corpus_index
    shutil.copy(photos_dir / "camera.jpg", corpus / "camera.jpg")
    with make_client(idx, starter_encoder, warmup=False, writable=True) as c:
        wait_ready(c)
        r = c.post("/images", json={"paths": ["camera.jpg"], "meta": [{"k": 1}]})
        assert r.status_code == 201, r.text
        item = r.json()["items"][0]
        assert item["path"] == "camera.jpg" and item["duplicate_of"] is None
        cat_id = _search(c, "a cat", 1)["hits"][0]["id"]
        dup = c.post("/images", json={"paths": ["cat.jpg"]}).json()["items"][0]
        assert dup["duplicate_of"] == cat_id
        (corpus / "cat.jpg").write_bytes(jpeg_bytes(sample_photo("cat").resize((300, 200))))
        edited = c.post("/images", json={"paths": ["cat.jpg"]}).json()["items"][0]
        assert edited["id"] == cat_id and edited["duplicate_of"] is None  # same id, re-encoded
        assert (edited["width"], edited["height"]) == (300, 200)
        for bad, status in (
            ("../idx/CURRENT", 422),
            ("nope.jpg", 404),
            ("/etc/passwd", 422),
            ("media:x.jpg", 422),
        ):
            r = c.post("/images", json={"paths": [bad]})
            assert r.status_code == status, (bad, r.text)
        r = _upload(c, "rocket", meta=["[1]"])
        assert r.status_code == 422 and "meta" in r.json()["error"]["message"]
        assert c.post("/images", json={}).status_code == 422
        r = c.post("/images", files=[("image", ("x.jpg", b"not an image", "image/jpeg"))])
        assert r.status_code in (415, 422) and "error" in r.json()


def test_grown_by_uploads_and_compacted_equals_a_clean_build(tmp_path, photos_dir,
                                                             starter_encoder):  # fmt: skip
    names = ["cat", "coffee", "rocket", "astronaut", "camera"]
    (tmp_path / "empty").mkdir()
    idx = tmp_path / "grown"
    build_index(tmp_path / "empty", idx, starter_encoder, progress=False, workers=0)
    with make_client(idx, starter_encoder, warmup=False, writable=True) as c:
        wait_ready(c)
        assert _upload(c, *names[:3]).status_code == 201
        assert _upload(c, *names[3:]).status_code == 201
        engine = c.app.state.engine
        assert compact(engine.live) is not None
    clean = tmp_path / "clean"
    corpus = tmp_path / "files"
    corpus.mkdir()
    for n in names:
        (corpus / f"{n}.jpg").write_bytes(jpeg_bytes(sample_photo(n)))
    build_index(corpus, clean, starter_encoder, progress=False, workers=0)
    queries = starter_encoder.encode_texts(["a cat", "a rocket", "coffee", "a man", "space"])
    a, b = open_index(idx), open_index(clean)
    try:
        assert a.count == b.count == 5 and a.factory == b.factory
        for ha, hb in zip(a.search(queries, 10), b.search(queries, 10), strict=True):
            sa = [round(h.score, 3) for h in ha]
            np.testing.assert_allclose(sa, [h.score for h in hb], atol=2e-3)
            # tie-tolerant: the same contents at (nearly) the same scores
            assert sorted(h.item.sha256 for h in ha) == sorted(h.item.sha256 for h in hb)
    finally:
        a.close()
        b.close()
    json.loads((idx / "versions" / open_index(idx).id / "live.json").read_text())


def test_a_read_only_replica_follows_the_log(corpus_index, starter_encoder):
    import time

    _, idx = corpus_index
    with make_client(idx, starter_encoder, warmup=False, writable=True) as w:
        wait_ready(w)
        first = _upload(w, "camera").json()["items"][0]["id"]  # the log exists now
        with make_client(idx, starter_encoder, warmup=False, reload_poll_s=0.2) as r:
            wait_ready(r)
            assert first in [h["id"] for h in _search(r, "a camera", 10)["hits"]]
            new = _upload(w, "rocket").json()["items"][0]["id"]
            assert w.delete(f"/images/{first}").status_code == 200
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                ids = [h["id"] for h in _search(r, "a rocket", 10)["hits"]]
                if new in ids and first not in ids:
                    break
                time.sleep(0.1)
            assert new in ids and first not in ids
            assert r.get(f"/images/{first}").status_code == 404
            assert _upload(r, "astronaut").status_code == 403  # replicas do not write
            assert r.get("/readyz").json()["writable"] is False
            m = _samples(r.get("/metrics").text)  # the replica's view of the living index
            assert m["clipsearch_writable"] == 0 and m["clipsearch_live_delta_items"] == 1


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` → value of every sample line of a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_show_the_living_index(corpus_index, starter_encoder):
    _, idx = corpus_index
    with make_client(idx, starter_encoder, warmup=False) as c:  # read-only: no live block
        wait_ready(c)
        assert c.get("/readyz").json()["writable"] is False
        m = _samples(c.get("/metrics").text)
        assert m["clipsearch_writable"] == 0 and "clipsearch_live_log_bytes" not in m
    with make_client(idx, starter_encoder, warmup=False, writable=True) as c:
        wait_ready(c)
        assert c.get("/readyz").json()["writable"] is True
        assert c.get("/stats").json()["writable"] is True
        added = _upload(c, "rocket", "astronaut").json()["items"]
        assert c.delete("/images/0").status_code == 200
        text = c.get("/metrics").text
        m = _samples(text)
        assert m["clipsearch_writable"] == 1
        assert m["clipsearch_live_delta_items"] == len(added) == 2
        assert m["clipsearch_live_tombstones"] == 1 and m["clipsearch_live_pending_changes"] == 3
        assert m["clipsearch_live_log_bytes"] > 0
        assert m["clipsearch_live_last_compaction_timestamp_seconds"] == 0  # none yet
        assert "clipsearch_live_seconds_since_compaction" not in m
        assert "# TYPE clipsearch_live_write_seconds summary" in text
        p50 = m['clipsearch_live_write_seconds{quantile="0.5"}']
        assert 0 < p50 <= m['clipsearch_live_write_seconds{quantile="0.99"}'] < 10
        assert compact(c.app.state.engine.live) is not None
        m = _samples(c.get("/metrics").text)
        assert m["clipsearch_live_delta_items"] == m["clipsearch_live_tombstones"] == 0
        assert 0 <= m["clipsearch_live_seconds_since_compaction"] < 60
