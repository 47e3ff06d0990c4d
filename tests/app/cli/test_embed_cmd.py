"""`clipsearch embed` prints what HTTP POST /embed answers: same keys, same nesting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from app.schemas import EmbedResponse


def test_embed_json_is_the_http_shape(cli, photos_dir):
    code, stdout, err = cli(
        "embed", "--text", "a cat", "--text", "a dog", "--image", photos_dir / "cat.jpg"
    )
    assert code == 0, err
    data = json.loads(stdout)
    assert set(data) == set(EmbedResponse.model_fields) == {"model", "dim", "texts", "images"}
    assert EmbedResponse.model_validate(data).model_dump() == data
    assert data["model"] == "starter" and data["dim"] == 384
    texts, images = np.array(data["texts"]), np.array(data["images"])
    assert texts.shape == (2, 384) and images.shape == (1, 384)  # lists of vectors, in order
    assert abs(np.linalg.norm(images[0]) - 1) < 1e-5
    assert images[0] @ texts[0] > images[0] @ texts[1]  # the cat photo is nearer "a cat"


def test_embed_texts_only(cli, tiny_ckpt_dir):
    code, stdout, err = cli("embed", "--text", "a red car", "--model", tiny_ckpt_dir)
    assert code == 0, err
    data = json.loads(stdout)
    assert data["images"] == [] and len(data["texts"]) == 1 and len(data["texts"][0]) == 16


def test_embed_equals_the_http_response(cli, client, photos_dir):
    """The same request through the CLI and through the running service gives the same JSON."""
    cat = photos_dir / "cat.jpg"
    code, stdout, err = cli("embed", "--text", "a cat", "--image", cat)
    assert code == 0, err
    r = client.post(
        "/embed", files={"images": ("cat.jpg", cat.read_bytes(), "image/jpeg")},
        data={"texts": "a cat"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    http, ours = r.json(), json.loads(stdout)
    assert set(http) == set(ours) and http["model"] == ours["model"] and http["dim"] == ours["dim"]
    for key in ("texts", "images"):
        assert np.allclose(http[key], ours[key], atol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["embed"], "--text or --image"), (["embed", "--image", "/nonexistent.jpg"], "no such file")],
)
def test_embed_errors_are_one_line(cli, args, message):
    code, stdout, err = cli(*args)
    assert code == 1 and stdout == "" and err.count("\n") == 1 and message in err
