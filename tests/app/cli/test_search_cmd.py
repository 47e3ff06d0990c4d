"""`clipsearch search` as a user runs it: bad queries are one-line errors, filters that match
nothing say so, `-k` has the HTTP API's bounds, and the index is opened once and closed."""

from __future__ import annotations

import json

import pytest

from app.cli import main
from indexer import MAX_K


def _search(capsys, index, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(["search", *args, "--index", str(index)])
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_search(photo_index, capsys):
    code, out, err = _search(capsys, photo_index, "a cup of coffee", "-k", "2", "--json")
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert hits[0]["path"] == "coffee.jpg" and len(hits) == 2


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_text_is_an_error(photo_index, capsys, text):
    code, out, err = _search(capsys, photo_index, text)
    assert code == 1 and out == ""
    assert err == "clipsearch: error: the query text is empty\n"


def test_k_has_the_http_bounds(photo_index, capsys):
    code, _, err = _search(capsys, photo_index, "a cat", "-k", str(MAX_K + 1))
    assert code == 1 and f"between 1 and {MAX_K}" in err
    code, out, _ = _search(capsys, photo_index, "a cat", "-k", str(MAX_K))
    assert code == 0 and len(out.splitlines()) == 5


def test_filters_that_match_nothing_say_so(photo_index, capsys):
    code, out, err = _search(capsys, photo_index, "a cat", "--path-prefix", "./x/")
    assert code == 0 and out == ""
    assert "no hits" in err and "no item path starts with './x/'" in err
    code, out, err = _search(capsys, photo_index, "a cat", "--where", "color=red")
    assert code == 0 and out == ""
    assert "no hits" in err and "no item has the metadata field 'color'" in err
    code, out, err = _search(capsys, photo_index, "a cat", "--min-score", "0.99", "--json")
    assert code == 0 and json.loads(out)["hits"] == [] and "no hits" in err
    assert "warning" not in err


def test_texts_search(photo_index, photos_dir, capsys):
    code, out, err = _search(
        capsys, photo_index, "--image", str(photos_dir / "rocket.jpg"), "--texts", "-k", "1"
    )
    assert code == 0, err
    assert out.split(None, 2)[2].strip() == "a rocket launch"


def test_the_index_is_opened_once_and_closed(photo_index, capsys, monkeypatch):
    from indexer import reader

    opened, closed = [], []
    init, close = reader.IndexVersion.__init__, reader.IndexVersion.close

    def counting_init(self, *a, **kw):
        opened.append(self)
        init(self, *a, **kw)

    def counting_close(self):
        closed.append(self)
        close(self)

    monkeypatch.setattr(reader.IndexVersion, "__init__", counting_init)
    monkeypatch.setattr(reader.IndexVersion, "close", counting_close)
    code, _, err = _search(capsys, photo_index, "a cat", "-k", "1")
    assert code == 0, err
    assert len(opened) == 1 and closed == opened
