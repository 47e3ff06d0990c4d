"""`clipsearch serve`: flags and environment, and one-line errors for a missing index."""

from __future__ import annotations

import pytest

from app.cli import build_parser, main
from app.cli.serve_cmd import FLAGS


@pytest.fixture(autouse=True)
def _restore_env(monkeypatch):
    """`serve` hands its flags to the workers through the environment; undo that after."""
    for name in [*FLAGS.values(), "BATCHING", "MAX_BATCH"]:
        monkeypatch.setenv(f"CLIPSEARCH_{name}", "")
        monkeypatch.delenv(f"CLIPSEARCH_{name}")


def test_serve_help_lists_flags_and_examples(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--index", "--model", "--host", "--port", "--workers", "CLIPSEARCH_INDEX"):
        assert flag in text


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_serve_refuses_a_missing_or_unpublished_index(tmp_path, capsys, make):
    index = tmp_path / "index"
    if make == "empty":
        index.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["serve", "--index", str(index), "--port", "0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clipsearch: error:") and str(index) in err[0]


def test_serve_without_index_says_how_to_give_one(monkeypatch, capsys):
    with pytest.raises(SystemExit):
        main(["serve"])
    assert "--index" in capsys.readouterr().err


def test_bad_setting_from_environment_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CLIPSEARCH_MAX_BATCH", "lots")
    with pytest.raises(SystemExit) as e:
        main(["serve", "--index", str(tmp_path)])
    assert e.value.code == 1
    assert "max_batch" in capsys.readouterr().err


def test_flags_are_parsed():
    args = build_parser().parse_args(["serve", "--index", "x", "--port", "9000", "--workers", "2"])
    assert (args.index, args.port, args.workers) == ("x", 9000, 2)
