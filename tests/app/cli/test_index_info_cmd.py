"""`clipsearch index info --index DIR` (like every other command), and the texts corpus an
update carries over keeps its count."""

from __future__ import annotations

import json
import shutil

import pytest

from app.cli import main


def _info(idx, capsys) -> dict:
    capsys.readouterr()
    assert main(["index", "info", "--index", str(idx), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_takes_index_like_every_command(photo_index, capsys, starter_encoder):
    data = _info(photo_index, capsys)
    assert data["count"] == 5 and data["model"] == "starter"
    assert data["backend"] == starter_encoder.backend  # the one that ran: onnx when auto picks it
    assert data["has_texts"] is True and data["texts_count"] == 5
    assert [v["live"] for v in data["versions"]][-1] is True
    assert main(["index", "info", "--index", str(photo_index)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("version ") and "texts_count    5" in text
    with pytest.raises(SystemExit) as e:  # the old positional form is gone
        main(["index", "info", str(photo_index)])
    assert e.value.code == 2


def test_update_carries_the_texts_with_their_count(tmp_path, photos_dir, capsys):
    src = tmp_path / "src"
    shutil.copytree(photos_dir, src)
    idx = tmp_path / "idx"
    labels = tmp_path / "labels.txt"
    labels.write_text("a cat\na rocket launch\na cup of coffee\n")
    assert main(["index", "build", str(src), "--index", str(idx), "--no-progress"]) == 0
    assert main(["index", "texts", str(labels), "--index", str(idx)]) == 0
    (src / "camera.jpg").unlink()
    assert main(["index", "update", str(src), "--index", str(idx), "--no-progress"]) == 0
    data = _info(idx, capsys)
    assert data["count"] == 4 and data["has_texts"] is True and data["texts_count"] == 3
