"""Near-duplicate groups of a whole index (indexer.dedup): planted copies among distinct photos."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from indexer.dedup import DedupOptions, find_duplicates, similar_pairs
from tests.utils.images import sample_photo, write_sample_photos

# the groups planted by make_planted_corpus (the other photos are distinct)
PLANTED = [
    {"astronaut.jpg", "astronaut_crop.jpg"},  # 5 % cropped off every side
    {"cat.jpg", "cat_small.jpg"},  # half the size
    {"coffee.jpg", "coffee_low.jpg"},  # re-encoded at JPEG quality 30
    {"rocket copy.jpg", "rocket.jpg"},  # the same file twice
]


def make_planted_corpus(dest: Path) -> Path:
    """The five sample photos plus a resized, a re-encoded, a cropped and an exact copy."""
    write_sample_photos(dest)
    cat, coffee, astro = sample_photo("cat"), sample_photo("coffee"), sample_photo("astronaut")
    cat.resize((cat.width // 2, cat.height // 2)).save(dest / "cat_small.jpg", quality=90)
    coffee.save(dest / "coffee_low.jpg", quality=30)
    w, h = astro.size
    astro.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(dest / "astronaut_crop.jpg")
    shutil.copy(dest / "rocket.jpg", dest / "rocket copy.jpg")
    return dest


@pytest.fixture(scope="module")
def planted_index(tmp_path_factory, starter_encoder) -> Path:
    from indexer import build_index

    base = tmp_path_factory.mktemp("dedup")
    corpus = make_planted_corpus(base / "photos")
    build_index(corpus, base / "idx", starter_encoder, workers=0, progress=False)
    return base / "idx"


def test_planted_duplicates_are_grouped_and_distinct_photos_are_not(planted_index):
    report = find_duplicates(planted_index)
    assert report.count == 9 and report.threshold == 0.95
    assert sorted(map(set, (g.paths for g in report.groups)), key=sorted) == PLANTED
    assert report.duplicates == 4
    for g in report.groups:
        assert g.ids == sorted(g.ids) and 0.95 <= g.min_score <= g.max_score <= 1.0
    d = report.to_dict()
    assert d["groups"][0]["items"][0].keys() == {"id", "path"}


def test_a_higher_threshold_keeps_only_the_closest_copies(planted_index):
    report = find_duplicates(planted_index, DedupOptions(threshold=0.99))
    groups = [set(g.paths) for g in report.groups]
    assert {"rocket copy.jpg", "rocket.jpg"} in groups
    assert {"astronaut.jpg", "astronaut_crop.jpg"} not in groups  # the crop moved it most


def test_range_search_matches_all_pairs_across_chunks():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((300, 32)).astype(np.float32)
    v[17] = v[250] + 0.05 * rng.standard_normal(32)
    v[100] = v[250]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    v16 = v.astype(np.float16)
    pairs = similar_pairs(v16, 0.9, chunk=64)  # several chunks, pairs across their borders
    sims = v16.astype(np.float32) @ v16.astype(np.float32).T
    want = {(i, j) for i, j in zip(*np.nonzero(np.triu(sims, 1) >= 0.9), strict=True)}
    assert {(int(i), int(j)) for i, j, _ in pairs} == want == {(17, 100), (17, 250), (100, 250)}


def test_groups_are_connected_components(tmp_path):
    """a~b and b~c put a, b and c in one group even when a and c are further apart."""
    from indexer.dedup import _components

    pairs = np.array([[0, 1, 0.96], [1, 2, 0.96], [5, 6, 0.99]])
    comps = sorted(sorted(m) for m in _components(7, pairs).values())
    assert comps == [[0, 1, 2], [5, 6]]


def test_bad_options():
    with pytest.raises(ValueError, match="threshold"):
        DedupOptions(threshold=1.5)
    with pytest.raises(ValueError, match="chunk"):
        DedupOptions(chunk=0)
