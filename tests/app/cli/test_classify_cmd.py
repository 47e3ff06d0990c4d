"""`clipsearch classify`: zero-shot labels for one image, as a table or the HTTP /classify shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

LABELS = "a cat,a dog,a cup of coffee,a rocket,an astronaut,a car"


@pytest.mark.parametrize(("photo", "expected"), [("cat", "a cat"), ("coffee", "a cup of coffee")])
def test_classify_json(cli, photos_dir, photo, expected):
    code, stdout, err = cli("classify", photos_dir / f"{photo}.jpg", "--labels", LABELS, "--json")
    assert code == 0, err
    data = json.loads(stdout)
    assert set(data) == {"labels", "model"} and data["model"] == "starter"
    assert data["labels"][0]["label"] == expected and len(data["labels"]) == 6
    assert set(data["labels"][0]) == {"label", "score"}
    assert abs(sum(x["score"] for x in data["labels"]) - 1) < 1e-3


def test_classify_table(cli, photos_dir):
    code, stdout, err = cli("classify", photos_dir / "cat.jpg", "--labels", LABELS)
    assert code == 0, err
    assert stdout.splitlines()[0].startswith("a cat") and stdout.count("\n") == 6


def test_classify_with_a_template(cli, photos_dir):
    argv = ["--labels", "cat,rocket", "--template", "a photo of {}.", "--json"]
    code, stdout, err = cli("classify", photos_dir / "cat.jpg", *argv)
    assert code == 0, err
    assert json.loads(stdout)["labels"][0]["label"] == "cat"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "{bad}", "--labels", "a,b"], "not a supported image"),
        (["classify", "{missing}", "--labels", "a,b"], "no such file"),
        (["classify", "{cat}", "--labels", "a,b", "--model", "nonsense"], "hf:<hub id"),
        (["classify", "{cat}", "--labels", " , "], "label"),
        (["classify", "{cat}", "--labels", "a,b", "--template", "no slot"], "{}"),
    ],
)
def test_errors_are_one_line(cli, tmp_path, photos_dir, args, message):
    bad = tmp_path / "bad.jpg"
    bad.write_text("plain text")
    subs = {"{bad}": bad, "{missing}": tmp_path / "nope.jpg", "{cat}": photos_dir / "cat.jpg"}
    code, _, err = cli(*[subs.get(a, a) for a in args])
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("clipsearch: error:"), err
    assert message in err


@pytest.mark.slow  # two fresh interpreters loading torch: ~25 s on a busy 2-core machine
def test_console_script_as_a_subprocess(tmp_path, photos_dir):
    """The real entry point: results on stdout, an error as one stderr line, no traceback."""
    cmd = [sys.executable, "-m", "app.cli", "classify", str(photos_dir / "cat.jpg")]
    r = subprocess.run([*cmd, "--labels", LABELS, "--json"], capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["labels"][0]["label"] == "a cat"
    r = subprocess.run([*cmd, "--labels", " , "], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_help_has_examples(cli):
    for args in (["--help"], ["classify", "--help"], ["embed", "--help"], ["model", "--help"]):
        code, stdout, _ = cli(*args)
        assert code == 0 and "example" in stdout
