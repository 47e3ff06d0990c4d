"""`clipsearch index build|update` as a user runs them, on folders with nothing to index: every
file unreadable, an update whose only new file is corrupt, an empty folder."""

from __future__ import annotations

import json
import shutil

from app.cli import main
from indexer import open_index, read_manifest


def _corrupt_only(d):
    d.mkdir()
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 20)
    (d / "empty.png").write_bytes(b"")
    return d


def test_build_of_only_unreadable_files_reports_them(tmp_path, capsys):
    src = _corrupt_only(tmp_path / "src")
    idx = tmp_path / "idx"
    assert main(["index", "build", str(src), "--index", str(idx), "--no-progress", "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["items"] == 0 and report["encoded"] == 0
    assert sorted(s["path"] for s in report["skipped"]) == ["corrupt.jpg", "empty.png"]
    assert "warning: no image could be read" in captured.err
    v = open_index(idx)
    try:
        assert v.count == 0 and v.search(_unit(v.dim), 3) == [[]]
    finally:
        v.close()


def test_update_whose_only_new_file_is_corrupt(tmp_path, photos_dir, capsys):
    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    idx = tmp_path / "idx"
    assert main(["index", "build", str(src), "--index", str(idx), "--no-progress"]) == 0
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    capsys.readouterr()
    assert main(["index", "update", str(src), "--index", str(idx), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "broken.jpg: invalid_image" in err and "skipped     1" in err
    assert read_manifest(idx).count == 5


def test_empty_folder_builds_an_empty_index_with_a_warning(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    idx = tmp_path / "idx"
    assert main(["index", "build", str(tmp_path / "empty"), "--index", str(idx)]) == 0
    err = capsys.readouterr().err
    assert "warning: no images found in" in err
    assert "recall@10 n/a" in err  # nothing to measure: not a silent 1.000
    assert read_manifest(idx).recall_at_10 is None
    assert main(["index", "info", "--index", str(idx), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["count"] == 0 and data["recall_at_10"] is None


def test_bad_options_are_one_line_errors(tmp_path, photos_dir, capsys):
    for flag, value in (("--batch-size", "0"), ("--shard-size", "0"), ("--workers", "-1")):
        try:
            main(["index", "build", str(photos_dir), "--index", str(tmp_path / "i"), flag, value])
        except SystemExit as e:
            assert e.code == 1
        err = capsys.readouterr().err
        assert err.startswith(f"clipsearch: error: {flag} must be at least"), err
    assert not (tmp_path / "i").exists()


def _unit(dim):
    import numpy as np

    q = np.zeros((1, dim), np.float32)
    q[0, 0] = 1.0
    return q


def test_device_decode_builds_the_same_vectors(tmp_path, photos_dir):
    # On a CPU the batch decoder runs the same code as on a GPU (libjpeg instead of nvJPEG).
    for name, extra in (("plain", []), ("device", ["--device-decode"])):
        args = ["index", "build", str(photos_dir), "--index", str(tmp_path / name)]
        assert main([*args, "--model", "starter", "--no-progress", *extra]) == 0
    plain, device = open_index(tmp_path / "plain"), open_index(tmp_path / "device")
    try:
        paths = sorted(p.name for p in photos_dir.iterdir())
        cosines = [
            float(
                plain.get_vector(plain.item_with_path(p).id)
                @ device.get_vector(device.item_with_path(p).id)
            )
            for p in paths
        ]
        # the CPU path decodes large JPEGs at a reduced DCT scale: the decode tolerance is 0.99
        assert len(cosines) == 5 and min(cosines) >= 0.99
    finally:
        plain.close()
        device.close()
