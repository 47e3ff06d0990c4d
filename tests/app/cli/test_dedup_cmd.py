"""`clipsearch dedup`, as a user runs it, on an index holding planted near-duplicates."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.indexer.test_dedup import PLANTED, make_planted_corpus


@pytest.fixture(scope="module")
def planted_idx(tmp_path_factory):
    from app.cli import main

    base = tmp_path_factory.mktemp("dedup_cli")
    corpus = make_planted_corpus(base / "photos")
    args = ["index", "build", str(corpus), "--index", str(base / "idx"), "--no-progress"]
    assert main([*args, "--workers", "0"]) == 0
    return base / "idx"


def test_dedup_json(cli, planted_idx):
    code, out, err = cli("dedup", "--index", planted_idx, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["count"], data["duplicates"], data["threshold"]) == (9, 4, 0.95)
    groups = [{i["path"] for i in g["items"]} for g in data["groups"]]
    assert sorted(groups, key=sorted) == PLANTED
    assert all(g["size"] == 2 and 0.95 <= g["min_score"] <= 1 for g in data["groups"])


def test_dedup_csv_and_text(cli, planted_idx):
    code, out, _ = cli("dedup", "--index", planted_idx, "--csv", "--threshold", "0.99")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and set(rows[0]) == {"group", "id", "path", "min_score"}
    by_group: dict[str, set[str]] = {}
    for r in rows:
        by_group.setdefault(r["group"], set()).add(r["path"])
    assert {"rocket copy.jpg", "rocket.jpg"} in by_group.values()
    assert {"astronaut.jpg", "astronaut_crop.jpg"} not in by_group.values()
    code, out, err = cli("dedup", "--index", planted_idx)
    assert code == 0 and out.count("group ") == 4 and "rocket copy.jpg" in out
    assert "4 groups, 4 duplicates among 9" in err


def test_dedup_errors(cli, planted_idx, tmp_path):
    code, _, err = cli("dedup", "--index", planted_idx, "--threshold", "2")
    assert code == 1 and err.startswith("clipsearch: error: --threshold must be")
    code, _, err = cli("dedup", "--index", tmp_path / "none")
    assert code == 1 and err.startswith("clipsearch: error: ") and err.count("\n") == 1
    code, _, err = cli("dedup", "--index", planted_idx, "--json", "--csv")
    assert code == 2 and "not allowed with" in err
