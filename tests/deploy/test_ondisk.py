"""On-disk IVF at small scale: a sharded build (trained on a sample, shards filled in parallel,
merged into one .ivfdata file) served memory-mapped by the normal reader, with text-like queries
reaching the recall target; the full-size run (millions of vectors, RSS) is benchmarks/ondisk.py."""

from __future__ import annotations

import shutil

import faiss
import numpy as np
import pytest

from benchmarks._synthetic import GapSpace, publish_vectors
from indexer import open_index
from indexer._search import exact_rows
from indexer.ondisk import OnDiskOptions, build_ondisk_ivf, make_ondisk_version
from indexer.ondisk_format import IVFDATA, read_ondisk_index

N, DIM = 60_000, 64


@pytest.fixture(scope="module")
def space() -> GapSpace:
    return GapSpace(dim=DIM, concepts=300, seed=3)


@pytest.fixture(scope="module")
def flat_index(tmp_path_factory, space):
    d = tmp_path_factory.mktemp("flat") / "idx"
    publish_vectors(d, space.images(N, chunk=8192), N, DIM, model="synthetic", fingerprint="0" * 64)
    return d


def _recall(found: list[list[int]], truth: np.ndarray) -> float:
    pairs = zip(found, truth, strict=True)
    return float(np.mean([len(set(f) & set(t.tolist())) / len(t) for f, t in pairs]))


def test_sharded_ondisk_version_is_served_mmapped_with_target_recall(flat_index, space, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(flat_index, idx)
    q = space.text_queries(200)
    manifest = make_ondisk_version(idx, q, nlist=128, shards=3, workers=2)
    assert manifest.ondisk is True and manifest.factory == "IVF128,Flat"
    assert manifest.ondisk_build["shards"] == 3
    assert manifest.recall_at_10 >= 0.95

    moved = tmp_path / "moved"  # the lists are found next to the index, wherever it lives now
    idx.rename(moved)
    v = open_index(moved)
    try:
        assert v.factory == "IVF128,Flat" and v.count == N
        assert (v.path / IVFDATA).stat().st_size >= N * DIM * 4
        invlists = faiss.extract_index_ivf(v._searcher.index).invlists
        assert isinstance(faiss.downcast_InvertedLists(invlists), faiss.OnDiskInvertedLists)
        held_out = space.text_queries(400)[200:]
        vectors = np.load(v.path / "vectors.npy", mmap_mode="r")
        _, truth = exact_rows(vectors, held_out, 10)
        found = [[h.item.id for h in hits] for hits in v.search(held_out, 10)]
        assert _recall(found, truth) >= 0.95
        # filters still never make a result short on the on-disk index
        hits = v.search(held_out[:3], 10, path_prefix="vectors/00000")
        assert all(len(h) == 10 and all(x.item.id < 100_000 for x in h) for h in hits)
    finally:
        v.close()


def test_shard_count_does_not_change_the_index(flat_index, tmp_path):
    vectors = flat_index / "versions"
    vpath = next(vectors.iterdir()) / "vectors.npy"
    ids = np.arange(N, dtype=np.int64)
    out = {}
    for shards in (1, 4):
        d = tmp_path / f"s{shards}"
        d.mkdir()
        build_ondisk_ivf(vpath, ids, d, nlist=64, shards=shards, workers=2)
        index = read_ondisk_index(d / "images.faiss")
        faiss.extract_index_ivf(index).nprobe = 8
        q = np.asarray(np.load(vpath, mmap_mode="r")[:50], dtype=np.float32)
        s, i = index.search(q, 10)
        out[shards] = (index.ntotal, np.sort(i, axis=1), np.sort(s, axis=1))
    assert out[1][0] == out[4][0] == N
    np.testing.assert_array_equal(out[1][1], out[4][1])
    np.testing.assert_allclose(out[1][2], out[4][2], rtol=1e-5)


def test_bad_code_and_too_few_vectors_are_refused(flat_index, tmp_path):
    vpath = next((flat_index / "versions").iterdir()) / "vectors.npy"
    with pytest.raises(ValueError, match="code must be one of"):
        build_ondisk_ivf(vpath, np.arange(N), tmp_path, code="PQ999")
    with pytest.raises(ValueError, match="needs at least"):
        build_ondisk_ivf(vpath, np.arange(N), tmp_path, nlist=N * 2)


def test_service_serves_an_ondisk_index_and_reports_its_memory(tmp_path, starter_encoder):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings
    from tests.app.conftest import wait_ready

    dim, n = starter_encoder.dim, 20_000
    space = GapSpace(dim=dim, concepts=200, seed=5)
    publish_vectors(
        tmp_path / "idx",
        space.images(n, chunk=8192),
        n,
        dim,
        model=starter_encoder.spec,
        fingerprint=starter_encoder.fingerprint,
        ondisk=OnDiskOptions(nlist=64, shards=2, workers=2),
        queries=space.text_queries(200),
    )
    app = create_app(Settings(index=tmp_path / "idx", warmup=False), encoder=starter_encoder)
    with TestClient(app) as client:
        wait_ready(client)
        q = space.text_queries(201)[200]
        r = client.post("/search", json={"embedding": q.tolist(), "k": 10})
        assert r.status_code == 200, r.text
        assert len(r.json()["hits"]) == 10
        stats = client.get("/stats").json()
    assert stats["factory"] == "IVF64,Flat"
    mem = stats["memory"]
    assert mem["rss_bytes"] > 0 and mem["anon_bytes"] > 0 and mem["file_bytes"] > 0
    assert mem["rss_bytes"] >= mem["anon_bytes"]
    assert mem["index_bytes"] > n * dim * 4  # the on-disk lists alone hold every vector


@pytest.mark.slow  # encodes the recall-tuning captions with the starter model
def test_cli_converts_the_live_version_to_ondisk(tmp_path, starter_encoder):
    import subprocess
    import sys
    from pathlib import Path

    cli = str(Path(sys.executable).parent / "clipsearch")
    space = GapSpace(dim=starter_encoder.dim, concepts=100, seed=9)
    n = 6000
    publish_vectors(
        tmp_path / "idx",
        space.images(n, chunk=4096),
        n,
        starter_encoder.dim,
        model=starter_encoder.spec,
        fingerprint=starter_encoder.fingerprint,
    )
    bad = subprocess.run(
        [cli, "index", "ondisk", "--index", str(tmp_path / "idx"), "--code", "PQ7"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "code must be one of" in bad.stderr
    r = subprocess.run(
        [cli, "index", "ondisk", "--index", str(tmp_path / "idx"), "--nlist", "32"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    v = open_index(tmp_path / "idx")
    try:
        assert v.id == r.stdout.strip() and v.factory == "IVF32,Flat" and v.count == n
        assert v.manifest.ondisk and (v.path / IVFDATA).is_file()
    finally:
        v.close()
