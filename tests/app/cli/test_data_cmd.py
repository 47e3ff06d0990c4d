"""`clipsearch data shapes`: the synthetic shapes set from the samples package."""

from __future__ import annotations

import csv


def test_data_shapes_writes_both_splits(cli, tmp_path):
    out = tmp_path / "s"
    code, stdout, err = cli("data", "shapes", "--out", out, "--n", "5", "--size", "32")
    assert code == 0, err
    assert stdout.strip() == str(out) and "5 training" in err
    with open(out / "train.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10  # two captions per image
    assert all((out / r["image"]).is_file() for r in rows)
    with open(out / "heldout.csv") as fh:
        held = list(csv.DictReader(fh))
    assert held and {"image", "caption", "label"} <= set(held[0])


def test_data_shapes_is_deterministic(cli, tmp_path):
    for name in ("a", "b"):
        assert cli("data", "shapes", "--out", tmp_path / name, "--n", "3", "--seed", "7")[0] == 0
    assert (tmp_path / "a" / "train.csv").read_text() == (tmp_path / "b" / "train.csv").read_text()


def test_data_shapes_bad_count_is_one_line(cli, tmp_path):
    code, _, err = cli("data", "shapes", "--out", tmp_path / "t", "--n", "0")
    assert code == 1 and err.startswith("clipsearch: error:") and "--n" in err
    assert err.count("\n") == 1
