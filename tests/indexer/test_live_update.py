"""`index update` on a living index: refused while a writer runs or the log holds unfolded
changes; afterwards it keeps the uploaded images (same ids) and replays nothing twice."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from indexer import IndexBusyError, build_index, open_index, update_index
from indexer.live import LiveIndex, NewImage, compact
from indexer.media import store_media
from tests.utils.images import jpeg_bytes, sample_photo


def test_update_respects_the_living_index(tmp_path, photos_dir, starter_encoder):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cat", "coffee"):
        shutil.copy(photos_dir / f"{name}.jpg", src / f"{name}.jpg")
    idx = tmp_path / "idx"
    build_index(src, idx, starter_encoder, progress=False, workers=0)
    data = jpeg_bytes(sample_photo("rocket"))
    sha = hashlib.sha256(data).hexdigest()
    vec = starter_encoder.encode_images([starter_encoder.load_image(data)])[0]
    live = LiveIndex.open(idx)
    path = store_media(idx, data, sha, ".jpg")
    rocket = live.add(NewImage(path, sha, len(data), 10, 10, vec)).item
    with pytest.raises(IndexBusyError, match="writing to this index"):
        update_index(src, idx, starter_encoder, progress=False, workers=0)
    live.close()
    with pytest.raises(IndexBusyError, match="1 changes in the write-ahead log"):
        update_index(src, idx, starter_encoder, progress=False, workers=0)
    live = LiveIndex.open(idx)
    gone = live.put(NewImage("media:gone.jpg", "0" * 64, 1, 1, 1, -vec)).id
    assert live.delete(gone)
    compact(live)
    live.close()
    shutil.copy(photos_dir / "camera.jpg", src / "camera.jpg")
    report = update_index(src, idx, starter_encoder, progress=False, workers=0)
    assert report.items == 4 and report.encoded == 1
    v = open_index(idx)
    try:
        assert v.get_item(rocket.id).path == path  # the upload is kept, under its id
        assert v.image_path(rocket.id).read_bytes() == data
        assert v.item_with_path("camera.jpg").id == gone + 1  # a deleted id is never reused
    finally:
        v.close()
    live = LiveIndex.open(idx)
    try:
        assert live.pending() == 0 and live.view().count == 4
    finally:
        live.close()
