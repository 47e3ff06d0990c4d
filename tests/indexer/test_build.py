"""Building an index from a real folder: bad files skipped and reported, duplicates encoded once,
the photos found by text with the starter model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from indexer import build_index, live_version, open_index
from tests.indexer.conftest import BAD_FILES, GOOD_EXTRAS, cli


def test_build_skips_bad_files_and_keeps_odd_ones(built):
    corpus, idx, report = built
    skipped = {s.path: s.code for s in report.skipped}
    assert skipped == BAD_FILES
    assert all(s.message for s in report.skipped)
    v = open_index(idx)
    try:
        paths = {it.path for it in (v.get_item(i) for i in range(v.count))}
    finally:
        v.close()
    photos = {"cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.jpg"}
    assert paths == photos | set(GOOD_EXTRAS)
    assert report.items == len(paths) == report.scanned - len(BAD_FILES)
    assert report.ignored_files == 1  # README.txt
    assert report.duplicates == 1  # sub/cat_copy.jpg
    assert report.encoded == len(paths) - 1  # the duplicate is encoded once
    assert report.factory == "Flat" and report.recall_at_10 == 1.0


def test_item_metadata_and_vectors(built, starter_encoder):
    corpus, idx, _ = built
    v = open_index(idx, expected_fingerprint=starter_encoder.fingerprint)
    try:
        by_path = {v.get_item(i).path: v.get_item(i) for i in range(v.count)}
        rotated = by_path["rotated.jpg"]
        cat = Image.open(corpus / "cat.jpg")
        assert (rotated.width, rotated.height) == cat.size  # EXIF orientation applied
        assert (by_path["tiny_1x1.png"].width, by_path["tiny_1x1.png"].height) == (1, 1)
        assert by_path["cat.jpg"].size == os.path.getsize(corpus / "cat.jpg")
        a, b = by_path["cat.jpg"], by_path["sub/cat_copy.jpg"]
        assert a.sha256 == b.sha256 and a.id != b.id
        np.testing.assert_array_equal(v.get_vector(a.id), v.get_vector(b.id))
        direct = starter_encoder.encode_images([Image.open(corpus / "coffee.jpg")])[0]
        stored = v.get_vector(by_path["coffee.jpg"].id)
        assert stored.dtype == np.float32 and stored.shape == (v.dim,)
        assert float(stored @ direct) > 0.999  # same vector as the encoder's own path (fp16)
        assert v.get_item(10_000) is None and v.get_vector(10_000) is None
    finally:
        v.close()


@pytest.mark.parametrize(("query", "expected"), [("a cup of coffee", "coffee.jpg")])
def test_cli_search_finds_the_photo(built, query, expected):
    _, idx, _ = built
    r = cli("search", query, "--index", str(idx), "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    hits = data["hits"]
    assert hits[0]["path"] == expected
    assert len(hits) == 3
    assert set(hits[0]) == {"id", "score", "path", "url", "thumbnail_url", "caption", "width",
                            "height"}  # fmt: skip
    assert isinstance(hits[0]["id"], str) and hits[0]["url"] == f"/images/{hits[0]['id']}"
    assert hits[0]["score"] >= hits[1]["score"] >= hits[2]["score"]
    assert data["index_version"] == live_version(idx)


def test_cli_search_by_image_and_info(built, corpus):
    _, idx, _ = built
    r = cli("search", "--image", str(corpus / "rocket.jpg"), "--index", str(idx), "-k", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[2] == "rocket.jpg"
    r = cli("index", "info", "--index", str(idx), "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["count"] == 10 and data["factory"] == "Flat" and data["recall_at_10"] == 1.0
    assert data["model"] == "starter" and data["skipped"] == len(BAD_FILES)
    assert data["versions"][-1]["live"] is True


def test_cli_errors_are_one_line(tmp_path, built):
    _, idx, _ = built
    r = cli("search", "a cat", "--index", str(tmp_path / "nothing"))
    assert r.returncode == 1
    assert r.stderr.strip().count("\n") == 0 and "no index directory" in r.stderr
    r = cli("index", "build", str(tmp_path / "missing"), "--index", str(tmp_path / "i"))
    assert r.returncode == 1 and "no such folder" in r.stderr
    r = cli("search", "--index", str(idx))
    assert r.returncode == 1 and "give either" in r.stderr


def test_symlink_loop_outside_link_and_index_inside_source(tmp_path, photos_dir, starter_encoder):
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "cat.jpg").write_bytes((photos_dir / "cat.jpg").read_bytes())
    (src / "a" / "b" / "loop").symlink_to(src / "a")  # a directory cycle
    outside = tmp_path / "outside.jpg"
    outside.write_bytes((photos_dir / "rocket.jpg").read_bytes())
    (src / "escape.jpg").symlink_to(outside)
    (src / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (src / ".hidden.jpg").write_bytes(b"hidden files are not indexed")
    report = build_index(src, src / "idx", starter_encoder, workers=0, progress=False)
    assert report.items == 1
    codes = {s.path: s.code for s in report.skipped}
    assert codes == {"escape.jpg": "outside_corpus", "broken.jpg": "file_not_found"}
    # the index directory inside the source is not scanned on a second build
    report2 = build_index(src, src / "idx", starter_encoder, workers=0, progress=False)
    assert report2.items == 1 and report2.ignored_files == 0


def test_manifest_with_captions_and_metadata(tmp_path, photos_dir, starter_encoder):
    m = tmp_path / "list.jsonl"
    rows = [
        {"path": str(photos_dir / "cat.jpg"), "caption": "a cat on a rug", "color": "orange"},
        {"path": str(photos_dir / "coffee.jpg"), "caption": "coffee", "color": "brown"},
        {"path": "missing.jpg"},
        {"path": "https://example.com/x.jpg"},
    ]
    m.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = build_index(m, tmp_path / "idx", starter_encoder, workers=0, progress=False)
    assert report.items == 2
    assert {s.code for s in report.skipped} == {"file_not_found", "unsupported_source"}
    v = open_index(tmp_path / "idx")
    try:
        q = starter_encoder.encode_texts(["a cat"])
        hits = v.search(q, 5, where={"color": "brown"})[0]
        assert [h.item.path for h in hits] == ["coffee.jpg"]
        assert hits[0].item.caption == "coffee" and hits[0].item.extra == {"color": "brown"}
        assert v.image_path(hits[0].item.id) == (photos_dir / "coffee.jpg").resolve()
    finally:
        v.close()

    csv = tmp_path / "list.csv"
    csv.write_text(f"image,caption,split\n{photos_dir / 'rocket.jpg'},a rocket,train\n")
    report = build_index(csv, tmp_path / "idx2", starter_encoder, workers=0, progress=False)
    assert report.items == 1


def test_bad_manifest_is_a_clear_error(tmp_path, starter_encoder):
    from indexer import SourceError

    bad = tmp_path / "bad.csv"
    bad.write_text("name,caption\nx.jpg,hi\n")
    with pytest.raises(SourceError, match="no image column"):
        build_index(bad, tmp_path / "idx", starter_encoder, progress=False)
    with pytest.raises(SourceError, match="folder or a manifest"):
        build_index(__file__, tmp_path / "idx", starter_encoder, progress=False)


def test_empty_corpus_publishes_an_empty_version(tmp_path, starter_encoder):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.md").write_text("no images here")
    report = build_index(tmp_path / "src", tmp_path / "idx", starter_encoder, progress=False)
    assert report.items == 0 and report.ignored_files == 1
    v = open_index(tmp_path / "idx")
    try:
        assert v.count == 0
        assert v.search(starter_encoder.encode_texts(["a cat"]), 5) == [[]]
    finally:
        v.close()


def test_factory_override_is_tuned_with_text_queries(photos_dir, tmp_path, starter_encoder):
    report = build_index(
        photos_dir, tmp_path / "idx", starter_encoder, factory="HNSW16", progress=False
    )
    v = open_index(tmp_path / "idx")
    try:
        m = v.manifest
        assert v.factory == "HNSW16" and m.rerank and not m.exact
        assert "efSearch" in m.search_params and m.recall_queries > 100
        assert report.recall_at_10 == m.recall_at_10 >= 0.95
        hits = v.search(starter_encoder.encode_texts(["a cup of coffee"]), 3)[0]
        assert hits[0].item.path == "coffee.jpg" and len(hits) == 3
    finally:
        v.close()
    with pytest.raises(ValueError, match="invalid FAISS factory"):
        build_index(photos_dir, tmp_path / "idx2", starter_encoder, factory="Nope", progress=False)
