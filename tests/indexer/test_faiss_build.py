"""Index choice by size and memory budget, ANN recall with text-like queries, and filtered
search on an approximate index (the small-scale version of benchmarks/index_memory.py)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks._synthetic import GapSpace
from indexer._search import as_f32, exact_rows
from indexer.faiss_build import PreadRows, build_faiss, choose_factory, parse_size, searcher_for
from indexer.store import VectorWriter

GiB = 1 << 30


def test_parse_size():
    assert parse_size("512M") == 512 << 20
    assert parse_size("1.5g") == int(1.5 * GiB)
    assert parse_size("2GiB") == 2 * GiB and parse_size(1234) == 1234 and parse_size(None) is None
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("lots")


def test_choose_factory_by_size_and_budget():
    assert choose_factory(10_000, 512) == "Flat"
    assert choose_factory(1_000_000, 512) == "IVF1024,SQ8"
    assert choose_factory(1_000_000, 512, memory_budget=2 * GiB) == "IVF1024,SQ8"
    assert choose_factory(1_000_000, 512, memory_budget=512 << 20) == "IVF1024,SQ4"
    assert choose_factory(1_000_000, 512, memory_budget=300 << 20).startswith("IVF1024,PQ")
    assert choose_factory(40_000, 512, memory_budget=150 << 20) == "IVF256,SQ8"
    with pytest.raises(ValueError, match="cannot hold"):
        choose_factory(100_000_000, 512, memory_budget=256 << 20)


@pytest.fixture(scope="module")
def ivf(tmp_path_factory):
    """20k text-gap vectors in an IVF + SQ8 index tuned with text-like queries."""
    d, n = 64, 20_000
    space = GapSpace(dim=d, concepts=200, seed=1)
    path = tmp_path_factory.mktemp("ivf") / "vectors.npy"
    w = VectorWriter(path, n, d)
    for chunk in space.images(n, chunk=5000):
        w.write(chunk)
    w.close()
    ids = np.arange(n, dtype=np.int64) * 3 + 7  # ids need not be dense
    queries = space.text_queries(200)
    built = build_faiss(path, ids, d, factory="IVF128,SQ8", queries=queries)
    return built, path, ids, space


def test_ivf_recall_with_text_queries(ivf):
    built, *_ = ivf
    assert built.recall_at_10 >= 0.95
    assert built.recall_queries == 100 and not built.exact and built.rerank
    assert 1 <= built.search_params["nprobe"] <= 128


def test_text_queries_sit_away_from_images(ivf):
    _, path, _, space = ivf
    q = space.text_queries(50)
    scores, _ = exact_rows(PreadRows(path), q, 1)
    assert 0.2 < float(np.median(scores)) < 0.7  # a modality gap, as with CLIP


@pytest.mark.parametrize("fraction", [0.5, 0.02])
def test_filtered_ann_search_is_never_short(ivf, fraction):
    built, path, ids, space = ivf
    vectors = PreadRows(path)
    s = searcher_for(built.index, vectors, ids, built.factory, built.rerank_k, built.search_params)
    s.exact_filter_limit = 10  # force the FAISS IDSelector + widening path
    rng = np.random.default_rng(0)
    allowed = np.sort(rng.choice(ids, size=int(len(ids) * fraction), replace=False))
    q = space.text_queries(20)
    k = 50
    got = s.search(q, k, allowed_ids=allowed)
    allowed_set = set(allowed.tolist())
    rows = np.searchsorted(ids, allowed)
    for hits in got:
        assert len(hits) == k
        assert all(i in allowed_set for i, _ in hits)
        assert [sc for _, sc in hits] == sorted((sc for _, sc in hits), reverse=True)
    # quality of the filtered top-10 (what nprobe was tuned for) against exact filtered search
    top10 = s.search(q, 10, allowed_ids=allowed)
    _, exact = exact_rows(vectors, q, 10, rows)
    overlap = np.mean(
        [
            len({i for i, _ in h} & set(ids[e].tolist())) / 10
            for h, e in zip(top10, exact, strict=True)
        ]
    )
    assert overlap >= 0.9
    # a min_score cut returns exactly the allowed items above it (exact path for small sets)
    s.exact_filter_limit = 10_000_000
    few = allowed[:5]
    out = s.search(q[:1], 10, allowed_ids=few, min_score=-1.0)[0]
    assert sorted(i for i, _ in out) == sorted(few.tolist())


def test_as_f32_matches_numpy_cast_for_every_fp16_value():
    every = np.arange(1 << 16, dtype=np.uint16).view(np.float16).reshape(256, 256)
    for block in (every, every[:, ::3]):  # contiguous and strided
        got = as_f32(block)
        assert got.dtype == np.float32 and got.shape == block.shape
        np.testing.assert_array_equal(got, block.astype(np.float32))  # inf, NaN, subnormals too
    x = np.ones((2, 3), dtype=np.float32)
    assert as_f32(x).dtype == np.float32 and np.array_equal(as_f32(x), x)


def test_reranked_hits_carry_exact_scores(ivf):
    built, path, ids, space = ivf
    vectors = PreadRows(path)
    s = searcher_for(built.index, vectors, ids, built.factory, built.rerank_k, built.search_params)
    q = space.text_queries(5)
    for qi, hits in zip(q, s.search(q, 7), strict=True):
        assert len(hits) == 7  # k of them, though rerank_k candidates were scored
        got_ids = np.array([i for i, _ in hits])
        rows = np.searchsorted(ids, got_ids)
        exact = vectors[rows].astype(np.float32) @ qi
        np.testing.assert_allclose([sc for _, sc in hits], exact, rtol=0, atol=1e-6)
        assert np.all(np.diff(exact) <= 0)  # best first


@pytest.mark.parametrize("ids", [np.arange(5, 1005), np.arange(1000) * 3 + 7])
def test_rows_of_dense_and_gapped_ids(ids):
    from indexer._search import Searcher

    s = Searcher(index=None, vectors=np.zeros((len(ids), 4), np.float16), ids=ids, rerank=True)
    pick = np.array([ids[0], ids[17], ids[-1]])
    assert s.rows_of(pick).tolist() == [0, 17, len(ids) - 1]
    assert (
        Searcher(None, np.zeros((0, 4)), np.zeros(0, np.int64), rerank=True)
        .rows_of(np.zeros(0, np.int64))
        .tolist()
        == []
    )
