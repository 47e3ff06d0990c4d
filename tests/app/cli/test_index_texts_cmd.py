"""`clipsearch index texts` then `clipsearch search --texts`, as a user runs them."""

from __future__ import annotations

import json
import shutil

import pytest

from app.cli import main


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, photos_dir):
    base = tmp_path_factory.mktemp("texts")
    shutil.copytree(photos_dir, base / "src")
    assert main(["index", "build", str(base / "src"), "--index", str(base / "idx")]) == 0
    return base


def test_index_texts_then_search_texts(small_index, photos_dir, capsys):
    idx = small_index / "idx"
    labels = small_index / "labels.txt"
    labels.write_text("a rocket launch\na cup of coffee\n\na cat\na cat\n")
    capsys.readouterr()
    assert main(["index", "texts", str(labels), "--index", str(idx)]) == 0
    version = capsys.readouterr().out.strip()
    args = ["search", "--image", str(photos_dir / "coffee.jpg"), "--index", str(idx)]
    assert main([*args, "--texts", "-k", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["index_version"] == version
    assert [h["text"] for h in result["hits"]][0] == "a cup of coffee"
    assert len(result["hits"]) == 2


def test_index_texts_errors(small_index, tmp_path, capsys):
    idx = small_index / "idx"
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(SystemExit) as e:
        main(["index", "texts", str(blank), "--index", str(idx)])
    assert e.value.code == 1 and "no texts to add" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a folder index has no captions to fall back on
        main(["index", "texts", "--index", str(idx)])
    assert e.value.code == 1 and "no texts to add" in capsys.readouterr().err
