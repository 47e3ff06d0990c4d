"""The CLI as a user runs it: a subprocess, stdout for results, one stderr line for errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

LABELS = "a cat,a dog,a cup of coffee,a rocket,an astronaut,a car"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(("photo", "expected"), [("cat", "a cat"), ("coffee", "a cup of coffee")])
def test_classify_json(photos_dir, photo, expected):
    r = run("classify", str(photos_dir / f"{photo}.jpg"), "--labels", LABELS, "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "starter"
    assert [x["label"] for x in data["labels"]][0] == expected
    assert len(data["labels"]) == 6


def test_classify_table(photos_dir):
    r = run("classify", str(photos_dir / "cat.jpg"), "--labels", LABELS)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("a cat")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "{bad}", "--labels", "a,b"], "not a supported image"),
        (["classify", "{missing}", "--labels", "a,b"], "no such file"),
        (["classify", "{cat}", "--labels", "a,b", "--model", "nonsense"], "hf:<hub id"),
        (["classify", "{cat}", "--labels", " , "], "label"),
        (["classify", "{cat}", "--labels", "a,b", "--template", "no slot"], "{}"),
        (["embed"], "--text or --image"),
    ],
)
def test_errors_are_one_line(tmp_path, photos_dir, args, message):
    bad = tmp_path / "bad.jpg"
    bad.write_text("plain text")
    subs = {
        "{bad}": str(bad),
        "{missing}": str(tmp_path / "nope.jpg"),
        "{cat}": str(photos_dir / "cat.jpg"),
    }
    r = run(*[subs.get(a, a) for a in args])
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clipsearch: error:"), r.stderr
    assert message in lines[0]
    assert "Traceback" not in r.stderr


def test_embed_prints_unit_vectors(photos_dir):
    r = run("embed", "--text", "a cat", "--text", "a dog", "--image", str(photos_dir / "cat.jpg"))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["dim"] == 384 and len(data["texts"]) == 2 and len(data["images"]) == 1
    cat_txt = np.array(data["texts"][0]["vector"])
    cat_img = np.array(data["images"][0]["vector"])
    assert abs(np.linalg.norm(cat_img) - 1) < 1e-5
    assert cat_img @ cat_txt > cat_img @ np.array(data["texts"][1]["vector"])


def test_help_has_examples():
    for args in (["--help"], ["classify", "--help"], ["embed", "--help"], ["model", "--help"]):
        r = run(*args)
        assert r.returncode == 0 and "example" in r.stdout


def test_model_info_json(tiny_ckpt_dir):
    r = run("model", "info", "--model", str(tiny_ckpt_dir), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["dim"] == 16 and len(info["fingerprint"]) == 64
