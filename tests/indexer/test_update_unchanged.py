"""`index update` with nothing changed publishes no new version (only a few are kept)."""

from __future__ import annotations

import shutil

from indexer import build_index, live_version, update_index


def test_update_with_no_changes_publishes_nothing(photos_dir, tmp_path, starter_encoder):
    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    idx = tmp_path / "idx"
    first = build_index(src, idx, starter_encoder, workers=0, progress=False)
    (src / "notes.txt").write_text("not an image")
    (src / "cat.jpg").touch()  # a new mtime, the same content
    again = update_index(src, idx, starter_encoder, workers=0, progress=False)
    assert again.version == first.version == live_version(idx)
    assert again.items == first.items and again.encoded == 0
    assert len(list((idx / "versions").iterdir())) == 1
    (src / "camera.jpg").unlink()
    changed = update_index(src, idx, starter_encoder, workers=0, progress=False)
    assert changed.version != first.version and changed.items == first.items - 1
