"""FolderWatcher.run follows a folder by file-system events (watchfiles), or by polling when
asked: a new file is in the index within seconds, an idle folder costs no passes, and setting
`stop` ends it."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from indexer import build_index
from indexer.live import LiveIndex
from indexer.live.watch import FolderWatcher, SyncReport
from tests.utils.images import jpeg_bytes, sample_photo


def _wait(cond, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("poll", [False, True], ids=["events", "poll"])
def test_run_follows_the_folder_until_stopped(tmp_path, photos_dir, starter_encoder, poll):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photos_dir / "cat.jpg", src / "cat.jpg")
    build_index(src, tmp_path / "idx", starter_encoder, progress=False, workers=0)
    live = LiveIndex.open(tmp_path / "idx")
    passes: list[SyncReport] = []
    stop = threading.Event()
    watcher = FolderWatcher(live, src, starter_encoder)
    opts = {"debounce_s": 0.2, "force_polling": poll}
    t = threading.Thread(target=watcher.run, args=(stop, passes.append), kwargs=opts, daemon=True)
    t.start()
    try:
        assert _wait(lambda: len(passes) == 1)  # the first pass, once the watcher is up
        assert not passes[0].any()
        time.sleep(1.5)  # idle: only a change starts a pass (polling too: it compares listings)
        assert len(passes) == 1
        (src / "rocket.jpg").write_bytes(jpeg_bytes(sample_photo("rocket")))
        assert _wait(lambda: live.find_path("rocket.jpg") is not None)
        (src / "cat.jpg").unlink()
        assert _wait(lambda: live.find_path("cat.jpg") is None)
        assert sum(p.added for p in passes) == 1 and sum(p.deleted for p in passes) == 1
    finally:
        stop.set()
        t.join(timeout=10)
        live.close()
    assert not t.is_alive()  # `stop` ends the watch within its timeout


def test_run_refuses_a_non_positive_debounce(tmp_path, photos_dir, starter_encoder):
    build_index(photos_dir, tmp_path / "idx", starter_encoder, progress=False, workers=0)
    live = LiveIndex.open(tmp_path / "idx")
    try:
        with pytest.raises(ValueError, match="debounce_s"):
            FolderWatcher(live, photos_dir, starter_encoder).run(threading.Event(), debounce_s=0)
    finally:
        live.close()
