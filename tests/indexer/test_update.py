"""Incremental updates and the caption/label corpus."""

from __future__ import annotations

import shutil

from indexer import add_texts, build_index, live_version, open_index, update_index
from tests.indexer.conftest import cli
from tests.utils.images import jpeg_bytes, sample_photo


def _paths_to_ids(idx):
    v = open_index(idx)
    try:
        rows = v._db().execute("SELECT path, id FROM items").fetchall()
        return {p: i for p, i in rows}
    finally:
        v.close()


def test_update_encodes_only_new_files(photos_dir, tmp_path, starter_encoder):
    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    idx = tmp_path / "idx"
    first = build_index(src, idx, starter_encoder, workers=0, progress=False)
    assert first.encoded == 5
    before = _paths_to_ids(idx)

    (src / "new_coffee.jpg").write_bytes(jpeg_bytes(sample_photo("coffee").rotate(90, expand=True)))
    (src / "new_cat.jpg").write_bytes(jpeg_bytes(sample_photo("cat").resize((200, 133))))
    (src / "camera.jpg").unlink()
    (src / "rocket.jpg").rename(src / "launch.jpg")

    report = update_index(src, idx, starter_encoder, workers=0, progress=False)
    assert report.encoded == 2
    assert (report.added, report.removed, report.renamed, report.changed) == (2, 1, 1, 0)
    assert report.reused == 4 and report.items == 6  # 3 unchanged + the renamed one
    after = _paths_to_ids(idx)
    assert after["launch.jpg"] == before["rocket.jpg"]  # renamed: same id
    for p in ("cat.jpg", "coffee.jpg", "astronaut.jpg"):
        assert after[p] == before[p]
    assert "camera.jpg" not in after
    assert {after["new_cat.jpg"], after["new_coffee.jpg"]} == {5, 6}  # after the old maximum
    v = open_index(idx)
    try:
        hit = v.search(starter_encoder.encode_texts(["a rocket"]), 1)[0][0]
        assert hit.item.path == "launch.jpg"
    finally:
        v.close()

    # no change at all: nothing encoded, nothing re-read
    again = update_index(src, idx, starter_encoder, workers=0, progress=False)
    assert again.encoded == 0 and again.items == 6 and again.added == 0
    # a changed file (same path, new content) is re-encoded and keeps its id (its links stay)
    (src / "cat.jpg").write_bytes(jpeg_bytes(sample_photo("cat").resize((300, 200))))
    changed = update_index(src, idx, starter_encoder, workers=0, progress=False)
    assert changed.encoded == 1 and changed.changed == 1
    assert _paths_to_ids(idx)["cat.jpg"] == after["cat.jpg"]


def test_texts_corpus_and_cli_update(photos_dir, tmp_path, starter_encoder):
    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    idx = tmp_path / "idx"
    build_index(src, idx, starter_encoder, workers=0, progress=False)
    labels = tmp_path / "labels.txt"
    labels.write_text("a cup of coffee\na rocket launch\n\na cat\na cat\n")
    old = live_version(idx)
    version = add_texts(idx, labels.read_text().splitlines(), starter_encoder)
    assert live_version(idx) == version != old
    v = open_index(idx)
    try:
        assert v.has_texts and v.manifest.texts_count == 3
        coffee = next(i for i in range(v.count) if v.get_item(i).path == "coffee.jpg")
        hits = v.search_texts(v.get_vector(coffee)[None, :], 2)[0]
        assert hits[0].text == "a cup of coffee" and len(hits) == 2
    finally:
        v.close()

    # the CLI update keeps the texts (same model) and reports through --json
    (src / "astronaut.jpg").unlink()
    r = cli("index", "update", str(src), "--index", str(idx), "--json", "--no-progress")
    assert r.returncode == 0, r.stderr
    v = open_index(idx)
    try:
        assert v.count == 4 and v.has_texts
    finally:
        v.close()
