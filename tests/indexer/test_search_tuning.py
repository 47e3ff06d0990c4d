"""The re-rank depth a build chooses from its own recall measurement, and where the re-rank reads
its vectors: the smallest depth that keeps recall@10, versions whose manifest carries the old
fixed depth (100) still opening and searching, and the vectors file read ahead into the page
cache."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from benchmarks._synthetic import GapSpace
from indexer import live_version, open_index
from indexer._search import Searcher, exact_rows, prefetch_vectors
from indexer.assemble import Plan, write_version_files
from indexer.faiss_build import RECALL_TARGET, TUNE_MARGIN, PreadRows, build_faiss, searcher_for
from indexer.manifest import Manifest
from indexer.publish import new_version_id, publish, staging_dir
from indexer.recall import RERANK_DEPTHS, smallest_rerank_k
from indexer.scan import Entry
from indexer.store import VectorWriter
from indexer.types import RERANK_K

DIM = 64


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """20k text-gap vectors in an IVF + SQ8 index tuned by build_faiss with 200 text queries."""
    n = 20_000
    space = GapSpace(dim=DIM, concepts=200, seed=1)
    path = tmp_path_factory.mktemp("tuned") / "vectors.npy"
    w = VectorWriter(path, n, DIM)
    for chunk in space.images(n, chunk=5000):
        w.write(chunk)
    w.close()
    ids = np.arange(n, dtype=np.int64) * 2 + 1
    queries = space.text_queries(200)
    built = build_faiss(path, ids, DIM, factory="IVF128,SQ8", queries=queries)
    vectors = PreadRows(path)
    _, gt_rows = exact_rows(vectors, queries, 10)
    return built, vectors, ids, queries, ids[gt_rows]


def _recall(searcher: Searcher, q: np.ndarray, truth: np.ndarray) -> float:
    got = searcher.search(q, 10)
    return float(
        np.mean(
            [len({i for i, _ in g} & set(t.tolist())) / 10 for g, t in zip(got, truth, strict=True)]
        )
    )


def test_recall_by_depth_matches_the_search_at_each_depth(tuned):
    built, vectors, ids, q, truth = tuned
    s = searcher_for(built.index, vectors, ids, built.factory, 100, built.search_params)
    depths = [10, 16, 25, 50, 100]
    curve = s.recall_by_depth(q, truth, depths)
    for depth in depths:
        at = searcher_for(built.index, vectors, ids, built.factory, depth, built.search_params)
        assert curve[depth] == pytest.approx(_recall(at, q, truth), abs=0.002)
    values = [curve[d] for d in depths]
    assert values == sorted(values)  # a deeper exact re-rank never loses a true neighbour
    assert curve[100] > curve[10]  # and here it finds more of them


def test_build_chooses_the_smallest_depth_that_keeps_recall(tuned):
    built, vectors, ids, q, truth = tuned
    assert 10 <= built.rerank_k < RERANK_K  # SQ8's order is nearly right: far fewer than 100
    assert built.recall_at_10 >= RECALL_TARGET
    tune, held_out = (q[0::2], truth[0::2]), (q[1::2], truth[1::2])
    s = searcher_for(built.index, vectors, ids, built.factory, built.rerank_k, built.search_params)
    assert _recall(s, *held_out) == pytest.approx(built.recall_at_10, abs=1e-4)
    smaller = [d for d in RERANK_DEPTHS if d < built.rerank_k]
    if smaller:  # the next smaller depth misses the tuning goal or the held-out target
        curve_t = s.recall_by_depth(*tune, [smaller[-1]])
        curve_h = s.recall_by_depth(*held_out, [smaller[-1]])
        goal = RECALL_TARGET + TUNE_MARGIN
        assert curve_t[smaller[-1]] < goal or curve_h[smaller[-1]] < RECALL_TARGET


def test_an_unreachable_goal_keeps_the_depth(tuned):
    built, vectors, ids, q, truth = tuned
    s = searcher_for(built.index, vectors, ids, built.factory, 64, built.search_params)
    halves = (q[0::2], truth[0::2]), (q[1::2], truth[1::2])
    assert smallest_rerank_k(s, *halves, goal=1.01, target=0.95) == 64
    assert smallest_rerank_k(s, *halves, goal=0.0, target=0.0) == 10


def test_a_larger_k_re_ranks_proportionally_more_candidates(tuned):
    """The depth is tuned for recall@10; recall@50 keeps up because k=50 re-ranks 5× as many
    candidates, not just 50 (what a fixed depth below k would give)."""
    built, vectors, ids, q, _ = tuned
    s = searcher_for(built.index, vectors, ids, built.factory, 16, built.search_params)
    assert [s.rerank_depth(k) for k in (1, 10, 11, 50)] == [16, 16, 18, 80]
    _, rows = exact_rows(vectors, q, 50)
    truth = ids[rows]

    def recall_at_50(searcher: Searcher) -> float:
        got = searcher.search(q, 50)
        return float(np.mean([len({i for i, _ in g} & set(t.tolist())) / 50
                              for g, t in zip(got, truth, strict=True)]))  # fmt: skip

    bare = searcher_for(built.index, vectors, ids, built.factory, 1, built.search_params)
    assert bare.rerank_depth(50) == 50
    assert recall_at_50(s) > recall_at_50(bare)


def _ivf_version(index_dir, n: int = 3000):
    """A published IVF16,SQ8 version of GapSpace vectors (ids 0..n-1), tuned with text queries."""
    space = GapSpace(dim=DIM, concepts=60, seed=3)
    vecs = np.concatenate(list(space.images(n, chunk=n)))
    plan = Plan()
    for i in range(n):
        sha = hashlib.sha256(f"v-{i}".encode()).hexdigest()
        plan.add(Entry(f"i{i}.jpg", index_dir / f"i{i}.jpg", None, {}, 10, 0, sha), vecs[i], 8, 8)
        plan.items[-1].id = i
    version = new_version_id()
    staging = staging_dir(index_dir, version)
    queries = space.text_queries(100)
    built = write_version_files(
        staging, plan, DIM, factory="IVF16,SQ8", memory_budget=None, queries=lambda: queries
    )
    m = Manifest(model="fake", fingerprint="fake-fp", dim=DIM, count=n, root=str(index_dir),
                 **built.manifest_fields())  # fmt: skip
    publish(index_dir, staging, version, m)
    return queries, vecs.astype(np.float16).astype(np.float32)


def test_versions_with_the_old_fixed_depth_still_open_and_search(tmp_path):
    idx = tmp_path / "idx"
    idx.mkdir()
    q, vecs = _ivf_version(idx)
    manifest_path = idx / "versions" / live_version(idx) / "manifest.json"
    data = json.loads(manifest_path.read_text())
    assert data["rerank"] and 10 <= data["rerank_k"] <= RERANK_K
    exact_top = np.argsort(-(q @ vecs.T), axis=1)[:, :10]
    variants = [data["rerank_k"], 100, None]  # tuned; as written before tuning; key absent
    for depth in variants:
        old = dict(data)
        if depth is None:
            old.pop("rerank_k")
        else:
            old["rerank_k"] = depth
        manifest_path.write_text(json.dumps(old))
        v = open_index(idx)
        try:
            assert v._searcher.rerank_k == (depth or RERANK_K)
            got = v.search(q, 10)
        finally:
            v.close()
        found = [[h.item.id for h in hits] for hits in got]
        rec = np.mean(
            [len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, exact_top, strict=True)]
        )
        assert rec >= 0.9
        for hits, qi in zip(got, q, strict=True):  # exact scores, best first
            ids = [h.item.id for h in hits]
            np.testing.assert_allclose([h.score for h in hits], vecs[ids] @ qi, atol=1e-5)
            assert all(a.score >= b.score for a, b in zip(hits, hits[1:], strict=False))


def test_vectors_are_read_ahead_and_gathered_without_memmap_overhead(tmp_path):
    path = tmp_path / "v.npy"
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 8)).astype(np.float16)
    np.save(path, data)
    mm = np.load(path, mmap_mode="r")
    assert prefetch_vectors(mm)
    assert not prefetch_vectors(mm, share_of_available=0.0)  # over the share: left alone
    assert not prefetch_vectors(np.asarray(data))  # not a mapped file
    s = Searcher(index=None, vectors=mm, ids=np.arange(500), rerank=True)
    assert type(s.vectors) is np.ndarray and not isinstance(s.vectors, np.memmap)
    np.testing.assert_array_equal(s.vectors[[3, 499, 0]], data[[3, 499, 0]])
