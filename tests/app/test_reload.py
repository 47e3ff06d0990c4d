"""POST /admin/reload: atomic swaps under load; bad versions are refused while the old serves."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from tests.app.conftest import make_client, wait_ready
from tests.app.test_bad_input import error_of

ADMIN = {"X-API-Key": "admin-secret"}
PHOTOS = {0: {"cat", "coffee", "rocket"}, 1: {"cat", "astronaut", "camera"}}


def set_current(index: Path, version: str) -> None:
    tmp = index / "CURRENT.tmp-test"
    tmp.write_text(version + "\n")
    os.replace(tmp, index / "CURRENT")


def names(hits) -> set[str]:
    return {h["path"].rsplit("/", 1)[-1].split(".")[0] for h in hits}


@pytest.fixture()
def reload_client(two_version_index, starter_encoder):
    index, va, vb = two_version_index
    set_current(index, va)
    with make_client(index, starter_encoder, api_key="admin-secret", text_cache_size=0) as c:
        wait_ready(c)
        yield c, index, va, vb
    set_current(index, vb)


def test_reload_under_load_is_atomic_and_consistent(reload_client):
    client, index, va, vb = reload_client
    expected = {va: PHOTOS[0], vb: PHOTOS[1]}
    seen: list[tuple[int, str | None, set[str]]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def query(n: int) -> None:
        i = 0
        while not stop.is_set() and i < 200:
            body = {"text": ["a cat", "a photo", "a rocket"][i % 3], "k": 3}
            r = client.post("/search", json=body, headers=ADMIN)
            ok = r.status_code == 200
            with lock:
                seen.append(
                    (r.status_code, r.json().get("index_version") if ok else r.text,
                     names(r.json()["hits"]) if ok else set())
                )  # fmt: skip
            i += 1

    threads = [threading.Thread(target=query, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    swaps = []
    try:
        i = 0
        while (i < 12 or len(seen) < 150) and i < 400:  # bounded: at most 400 swaps
            target = vb if i % 2 == 0 else va
            set_current(index, target)
            r = client.post("/admin/reload", headers=ADMIN)
            swaps.append((r.status_code, r.json()))
            i += 1
        if len(swaps) % 2:  # end on version a, like the other tests expect
            set_current(index, va)
            r = client.post("/admin/reload", headers=ADMIN)
            swaps.append((r.status_code, r.json()))
    finally:
        stop.set()
        for t in threads:
            t.join(60)

    assert all(s == 200 for s, _ in swaps), swaps
    assert all(body["changed"] for _, body in swaps)
    assert [body["index_version"] for _, body in swaps][-2:] == [vb, va]
    assert len(seen) >= 150 and len(swaps) >= 12
    assert all(status == 200 for status, _, _ in seen), [x for x in seen if x[0] != 200]
    for _, version, found in seen:
        assert found == expected[version], (version, found)  # hits all from the named version
    assert {v for _, v, _ in seen} == {va, vb}  # both versions really served during the run


def test_corrupt_or_mismatched_version_is_refused_and_old_keeps_serving(reload_client):
    client, index, va, _ = reload_client
    versions = index / "versions"
    broken = versions / f"{va}-broken"
    mismatched = versions / f"{va}-othermodel"
    try:
        shutil.copytree(versions / va, broken)
        faiss_file = broken / "images.faiss"
        faiss_file.write_bytes(faiss_file.read_bytes()[:-7] + b"garbage")
        shutil.copytree(versions / va, mismatched)
        manifest = json.loads((mismatched / "manifest.json").read_text())
        manifest["fingerprint"] = "0" * 64
        (mismatched / "manifest.json").write_text(json.dumps(manifest))

        for bad, code in [(broken, "index_corrupt"), (mismatched, "model_mismatch")]:
            set_current(index, bad.name)
            r = client.post("/admin/reload", headers=ADMIN)
            assert error_of(r, 409) == code
            r = client.post("/search", json={"text": "a cat", "k": 3}, headers=ADMIN)
            assert r.status_code == 200 and r.json()["index_version"] == va
        r = client.post("/admin/reload", params={"version": "no-such-version"}, headers=ADMIN)
        assert error_of(r, 409) == "index_not_found"
        r = client.post("/admin/reload", params={"version": "../../etc"}, headers=ADMIN)
        assert r.status_code == 409
        assert client.get("/readyz").json()["index_version"] == va
    finally:
        set_current(index, va)
        shutil.rmtree(broken, ignore_errors=True)
        shutil.rmtree(mismatched, ignore_errors=True)


def test_reload_needs_the_admin_key(reload_client):
    client, *_ = reload_client
    assert error_of(client.post("/admin/reload"), 401) == "unauthorized"
    r = client.post("/admin/reload", headers={"X-API-Key": "nope"})
    assert error_of(r, 401) == "unauthorized"


def test_a_request_holding_the_old_version_keeps_using_it_after_a_swap(reload_client):
    import numpy as np

    client, index, va, vb = reload_client
    engine = client.app.state.engine
    with engine.lease() as old:  # what a request in flight holds
        set_current(index, vb)
        assert client.post("/admin/reload", headers=ADMIN).json()["index_version"] == vb
        assert engine.version.id == vb and old.id == va
        q = np.zeros((1, old.dim), np.float32)
        q[0, 0] = 1.0
        hits = old.search(q, 3)[0]  # still open and answering from version a
        assert {h.item.path.split(".")[0] for h in hits} == PHOTOS[0]
    set_current(index, va)
    assert client.post("/admin/reload", headers=ADMIN).json()["index_version"] == va


def test_following_current_reloads_by_itself(two_version_index, starter_encoder):
    import time

    index, va, vb = two_version_index
    set_current(index, va)
    try:
        with make_client(index, starter_encoder, reload_poll_s=0.1) as c:
            wait_ready(c)
            assert c.get("/readyz").json()["index_version"] == va
            set_current(index, vb)
            deadline = time.monotonic() + 30
            while c.get("/readyz").json()["index_version"] != vb:
                assert time.monotonic() < deadline, "CURRENT was not followed"
                time.sleep(0.05)
            r = c.post("/search", json={"text": "a cat", "k": 3})
            assert r.json()["index_version"] == vb and names(r.json()["hits"]) == PHOTOS[1]
    finally:
        set_current(index, va)
