"""The offline starter model: built from the two PyPI wheels, and golden zero-shot behaviour."""

from __future__ import annotations

import numpy as np
import pytest

from model import load_encoder
from model.zeroshot import classify
from tests.utils.images import sample_photo

LABELS = [
    "a cat",
    "a dog",
    "a cup of coffee",
    "a rocket",
    "an astronaut",
    "a car",
    "a bicycle",
    "a pizza",
]


def test_build_from_wheels_gives_a_loadable_checkpoint(tmp_path, starter_encoder):
    from model.starter import build_starter

    out = build_starter(tmp_path / "starter")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    built = load_encoder(str(out), device="cpu")
    assert built.dim == 384
    # the build is deterministic: same recipe, same weights, same fingerprint as the cache
    assert built.fingerprint == starter_encoder.fingerprint


def test_effnet_weights_are_mapped_not_random(starter_encoder):
    # ImageNet top-1 for the cat photo must be a cat class (281-285)
    import torch

    pixels = starter_encoder.preprocess(sample_photo("cat"))[None]
    with torch.no_grad():
        logits = starter_encoder.module.visual.trunk(pixels)
    assert 281 <= int(logits.argmax()) <= 285


@pytest.mark.parametrize(
    ("photo", "expected"), [("cat", "a cat"), ("coffee", "a cup of coffee"), ("rocket", "a rocket")]
)
def test_golden_zero_shot(starter_encoder, photo, expected):
    emb = starter_encoder.encode_images([sample_photo(photo)])
    ranked = classify(starter_encoder, emb, LABELS)[0]
    assert ranked[0][0] == expected, ranked[:3]
    assert ranked[0][1] > 0.5
    assert abs(sum(p for _, p in ranked) - 1.0) < 1e-5


def test_golden_text_to_image_ranking(starter_encoder):
    names = ["cat", "coffee", "rocket", "astronaut", "camera"]
    imgs = starter_encoder.encode_images([sample_photo(n) for n in names])
    queries = {"a cat": "cat", "a cup of coffee": "coffee", "a rocket launch": "rocket"}
    sims = starter_encoder.encode_texts(list(queries)) @ imgs.T  # (Q, N)
    for row, want in zip(sims, queries.values(), strict=True):
        assert names[int(np.argmax(row))] == want
