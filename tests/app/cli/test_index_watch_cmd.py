"""`clipsearch index watch DIR --index IDX`: created, modified, renamed and deleted files in the
folder are followed into the index, ids kept across edits and moves."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.cli import main
from indexer import build_index, open_index
from tests.utils.images import jpeg_bytes, sample_photo


def _items(idx) -> dict[str, tuple[int, int, int]]:
    v = open_index(idx)
    try:
        return {r["path"]: (int(r["id"]), int(r["width"]), int(r["height"])) for r in v.rows()}
    finally:
        v.close()


def _watch_once(src, idx, capsys) -> str:
    capsys.readouterr()
    assert main(["index", "watch", str(src), "--index", str(idx), "--once"]) == 0
    return capsys.readouterr().err


def test_watch_follows_the_folder(tmp_path, photos_dir, starter_encoder, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("cat", "coffee", "camera"):
        shutil.copy(photos_dir / f"{name}.jpg", src / f"{name}.jpg")
    idx = tmp_path / "idx"
    build_index(src, idx, starter_encoder, progress=False, workers=0)
    before = _items(idx)

    (src / "rocket.jpg").write_bytes(jpeg_bytes(sample_photo("rocket")))  # created
    (src / "cat.jpg").write_bytes(jpeg_bytes(sample_photo("cat").resize((300, 200))))  # modified
    (src / "coffee.jpg").rename(src / "mug.jpg")  # renamed
    (src / "camera.jpg").unlink()  # deleted
    err = _watch_once(src, idx, capsys)
    assert "added 1, changed 1, moved 1, deleted 1, failed 0" in err
    after = _items(idx)
    assert set(after) == {"cat.jpg", "mug.jpg", "rocket.jpg"}
    assert after["cat.jpg"] == (before["cat.jpg"][0], 300, 200)  # re-encoded under its id
    assert after["mug.jpg"][0] == before["coffee.jpg"][0]  # a move keeps the id
    assert after["rocket.jpg"][0] not in {i for i, *_ in before.values()}
    v = open_index(idx)
    try:
        hit = v.search(starter_encoder.encode_texts(["a rocket launch"]), 1)[0][0]
        assert hit.item.path == "rocket.jpg"
    finally:
        v.close()
    version = open_index(idx).id
    assert "added" not in _watch_once(src, idx, capsys)  # nothing changed: nothing published
    assert open_index(idx).id == version


def test_watch_refuses_another_folder(tmp_path, photos_dir, starter_encoder, capsys):
    idx = tmp_path / "idx"
    build_index(photos_dir, idx, starter_encoder, progress=False, workers=0)
    (tmp_path / "other").mkdir()
    with pytest.raises(SystemExit) as e:
        main(["index", "watch", str(tmp_path / "other"), "--index", str(idx), "--once"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("clipsearch: error:") and "corpus root" in err and "\n" not in err
    with pytest.raises(SystemExit):
        main(["index", "watch", str(tmp_path / "nope"), "--index", str(idx)])


def test_watch_keeps_following_until_stopped(tmp_path, photos_dir, starter_encoder):
    import signal
    import time

    from indexer.live.follow import LiveFollower
    from tests.app.cli._server import start

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(photos_dir / "cat.jpg", src / "cat.jpg")
    idx = tmp_path / "idx"
    build_index(src, idx, starter_encoder, progress=False, workers=0)
    proc = start(["index", "watch", str(src), "--index", str(idx), "--interval", "0.2"], tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (idx / "live" / "writer.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        follower = LiveFollower.open_follower(idx)
        (src / "rocket.jpg").write_bytes(jpeg_bytes(sample_photo("rocket")))
        found = None
        while found is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            follower.refresh()
            found = follower.find_path("rocket.jpg")
            time.sleep(0.2)
        assert found is not None, "the watcher did not pick up the new file"
        follower.close()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            err = proc.stderr.read()[-3000:]
            raise AssertionError(f"Ctrl-C did not stop the watcher: {err}") from None
    assert proc.returncode == 130
    err = proc.stderr.read()
    assert "added 1" in err and err.rstrip().endswith("interrupted")
