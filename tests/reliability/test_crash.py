"""Crash safety of the index: the indexer is SIGKILLed at random points of `index build` and
`index update` (subprocesses). After every kill the live version opens and answers a search; the
last, uninterrupted run ends equal to a clean build. Corrupt, truncated or inconsistent versions
are refused when opened, at service start and at /admin/reload, while the old one keeps serving."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import IndexOpenError, build_index, live_version, open_index
from indexer.publish import sha256_file
from tests.app.conftest import make_client, wait_load_error, wait_ready
from tests.reliability.conftest import ADMIN_KEY, error_code
from tests.utils.images import sample_photo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
SHARD = 3
KILLS = 10
NAMES = ["cat", "coffee", "rocket", "astronaut", "camera"]


def _add_images(root: Path, start: int, n: int) -> None:
    root.mkdir(exist_ok=True)
    for i in range(start, start + n):
        img = sample_photo(NAMES[i % 5]).convert("RGB")
        w, h = img.size
        img = img.crop((i % 7, i % 5, w - i % 3, h - i % 4)).resize((80 + i, 64 + i))
        img.save(root / f"img_{i:03d}.jpg", quality=90)


def _items(idx: Path) -> list[tuple]:
    v = open_index(idx)
    try:
        return sorted(tuple(r) for r in v._db().execute("SELECT path, sha256 FROM items"))
    finally:
        v.close()


def _live_answers(idx: Path) -> int:
    """The live version opens, passes its checksums and answers a search; → its item count."""
    v = open_index(idx)
    try:
        q = np.zeros((1, v.dim), np.float32)
        q[0, 0] = 1.0
        hits = v.search(q, 5)[0]
        assert len(hits) == min(5, v.count)
        return v.count
    finally:
        v.close()


def _start(action: str, src: Path, idx: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "app.cli", "index", action, str(src), "--index", str(idx),
           "--shard-size", str(SHARD), "--batch-size", str(SHARD), "--workers", "0",
           "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_at_random_points_never_breaks_the_live_version(tmp_path, starter_encoder):
    rng = random.Random(8)
    src, idx = tmp_path / "src", tmp_path / "idx"
    _add_images(src, 0, 4)
    build_index(src, idx, starter_encoder, workers=0, progress=False)
    _add_images(src, 4, 14)  # 18 images: 6 shards to encode

    # One uninterrupted run sets the time scale the kill points are drawn from.
    t0 = time.monotonic()
    proc = _start("build", src, idx)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    span = time.monotonic() - t0
    assert _live_answers(idx) == 18

    kills, counts, n = 0, set(), 18
    for run in range(KILLS + 6):  # a run that finishes before its kill point does not count
        if kills >= KILLS:
            break
        action = "update" if run % 3 == 2 else "build"
        if action == "update":
            _add_images(src, n, 3)  # new files, so the update has work to do
            n += 3
        t0 = time.monotonic()
        proc = _start(action, src, idx)
        time.sleep(rng.uniform(0.1, span * 0.9))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        else:
            span = time.monotonic() - t0  # runs got faster (warm caches): draw from a shorter span
        proc.communicate()
        # Whatever the kill point, the live version is complete and answers.
        assert live_version(idx) is not None
        counts.add(_live_answers(idx))
    assert kills >= KILLS, f"only {kills} runs were killed before they finished"

    proc = _start("update", src, idx)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert _live_answers(idx) == n
    assert not list(idx.glob("work/staging-*")), "a finished run leaves no staging directory"

    clean = tmp_path / "clean"
    build_index(src, clean, starter_encoder, workers=0, progress=False)
    assert _items(idx) == _items(clean)
    print(f"kills={kills} live counts seen={sorted(counts)} span={span:.1f}s")


# --- corrupt, truncated, inconsistent versions ------------------------------------------------


def _rewrite_manifest(vdir: Path, **changes) -> None:
    manifest = json.loads((vdir / "manifest.json").read_text())
    manifest.update(changes)
    (vdir / "manifest.json").write_text(json.dumps(manifest))


def _refresh_checksums(vdir: Path) -> None:
    """Make the manifest agree with the files again, so only deeper checks can catch the fault."""
    manifest = json.loads((vdir / "manifest.json").read_text())
    for name, meta in manifest["files"].items():
        if (vdir / name).is_file():
            meta["size"] = (vdir / name).stat().st_size
            meta["sha256"] = sha256_file(vdir / name)
    (vdir / "manifest.json").write_text(json.dumps(manifest))


def _break(vdir: Path, how: str) -> None:
    if how == "bad_checksum":
        f = vdir / "vectors.npy"
        data = bytearray(f.read_bytes())
        data[-1] ^= 0xFF
        f.write_bytes(bytes(data))
    elif how == "truncated_faiss":
        f = vdir / "images.faiss"
        f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        _refresh_checksums(vdir)
    elif how == "truncated_sqlite":
        f = vdir / "items.sqlite"
        f.write_bytes(f.read_bytes()[:100])
        _refresh_checksums(vdir)
    elif how == "missing_vectors":
        (vdir / "vectors.npy").unlink()
    elif how == "missing_manifest":
        (vdir / "manifest.json").unlink()
    elif how == "garbage_manifest":
        (vdir / "manifest.json").write_text("{not json")
    elif how == "manifest_wrong_dim":
        m = json.loads((vdir / "manifest.json").read_text())
        _rewrite_manifest(vdir, dim=m["dim"] * 2)
    elif how == "consistent_wrong_dim":
        # Every file agrees with a 16-d index: only the model's dimension gives it away.
        import faiss

        m = json.loads((vdir / "manifest.json").read_text())
        vecs = np.random.default_rng(0).standard_normal((m["count"], 16)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        np.save(vdir / "vectors.npy", vecs)
        old = faiss.read_index(str(vdir / "images.faiss"))
        new = faiss.IndexIDMap2(faiss.IndexFlatIP(16)) if m["factory"] != "Flat" else None
        if new is None:
            new = faiss.IndexFlatIP(16)
            new.add(vecs)
        else:
            new.add_with_ids(vecs, faiss.vector_to_array(faiss.downcast_index(old).id_map))
        faiss.write_index(new, str(vdir / "images.faiss"))
        _rewrite_manifest(vdir, dim=16)
        _refresh_checksums(vdir)
    else:
        raise AssertionError(how)


LOAD_FAULTS = [
    "bad_checksum",
    "truncated_faiss",
    "truncated_sqlite",
    "missing_vectors",
    "missing_manifest",
    "garbage_manifest",
    "manifest_wrong_dim",
]


def _set_current(index: Path, version: str) -> None:
    tmp = index / "CURRENT.tmp-test"
    tmp.write_text(version + "\n")
    os.replace(tmp, index / "CURRENT")


@pytest.fixture()
def broken_copy(two_version_index):
    """A copy of a live version under a new name, to be broken; CURRENT restored afterwards."""
    index, va, _ = two_version_index
    made = []

    def make(how: str) -> str:
        name = f"{va}-{how}"
        shutil.copytree(index / "versions" / va, index / "versions" / name)
        made.append(name)
        _break(index / "versions" / name, how)
        return name

    yield index, va, make
    _set_current(index, va)
    for name in made:
        shutil.rmtree(index / "versions" / name, ignore_errors=True)


@pytest.mark.parametrize("how", LOAD_FAULTS)
def test_broken_version_is_refused_when_opened(broken_copy, how):
    index, _, make = broken_copy
    name = make(how)
    with pytest.raises(IndexOpenError) as e:
        open_index(index, version=name)
    assert e.value.code == "index_corrupt"


@pytest.mark.parametrize("how", ["truncated_faiss", "missing_vectors", "consistent_wrong_dim"])
def test_broken_live_version_keeps_the_service_unready(broken_copy, starter_encoder, how):
    index, _, make = broken_copy
    _set_current(index, make(how))
    with make_client(index, starter_encoder) as c:
        assert wait_load_error(c)
        r = c.get("/readyz")
        assert error_code(r, 503) == "not_ready"
        assert c.get("/healthz").status_code == 200


def test_broken_versions_are_refused_at_reload_and_the_old_keeps_serving(
    broken_copy, starter_encoder
):
    index, va, make = broken_copy
    faults = [*LOAD_FAULTS, "consistent_wrong_dim"]
    names = {how: make(how) for how in faults}
    with make_client(index, starter_encoder, admin_api_key=ADMIN_KEY) as c:
        wait_ready(c)
        for how, name in names.items():
            for params in ({"version": name}, None):  # named, and via CURRENT
                if params is None:
                    _set_current(index, name)
                r = c.post("/admin/reload", params=params, headers={"X-API-Key": ADMIN_KEY})
                code = error_code(r, 409)
                want = "model_mismatch" if how == "consistent_wrong_dim" else "index_corrupt"
                assert code == want, (how, r.text)
                r = c.post("/search", json={"text": "a cat", "k": 2})
                assert r.status_code == 200 and r.json()["index_version"] == va, (how, r.text)
                assert len(r.json()["hits"]) == 2
        _set_current(index, va)
        assert c.post("/admin/reload", headers={"X-API-Key": ADMIN_KEY}).status_code == 200
