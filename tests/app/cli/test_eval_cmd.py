"""`clipsearch eval`: Recall@K both ways and zero-shot accuracy, as JSON or a table."""

from __future__ import annotations

import json


def test_eval_json(cli, shapes_data, tiny_ckpt_dir):
    data = shapes_data / "heldout.csv"
    code, stdout, err = cli("eval", "--model", tiny_ckpt_dir, "--data", data, "--json")
    assert code == 0, err
    res = json.loads(stdout)
    assert set(res["t2i"]) == set(res["i2t"]) == {"R@1", "R@5", "R@10"}
    assert res["model"] == str(tiny_ckpt_dir) and res["n_images"] == 8
    assert res["zeroshot"]["classes"] >= 2 and 0 <= res["zeroshot"]["top1"] <= 1


def test_eval_table(cli, shapes_data, tiny_ckpt_dir):
    data = shapes_data / "heldout.csv"
    code, stdout, err = cli("eval", "--model", tiny_ckpt_dir, "--data", data)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split() == ["R@1", "R@5", "R@10"]
    assert lines[1].startswith("t2i") and lines[2].startswith("i2t")


def test_eval_errors_are_one_line(cli, tmp_path, shapes_data):
    code, _, err = cli("eval", "--data", tmp_path / "missing.csv")
    assert code == 1 and err.count("\n") == 1 and "no such file" in err
    data = shapes_data / "heldout.csv"
    code, _, err = cli("eval", "--model", "nonsense", "--data", data)
    assert code == 1 and err.count("\n") == 1 and "hf:<hub id" in err
