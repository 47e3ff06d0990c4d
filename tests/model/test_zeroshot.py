from __future__ import annotations

import numpy as np
import pytest

from model.zeroshot import parse_labels, probabilities, validate_templates


def test_parse_labels():
    assert parse_labels(" a cat, a dog ,,a cat") == ["a cat", "a dog"]
    assert parse_labels(["x", " y "]) == ["x", "y"]
    with pytest.raises(ValueError):
        parse_labels(" , ")


def test_templates_need_one_slot():
    assert validate_templates(None)
    assert validate_templates(["a photo of {}."]) == ("a photo of {}.",)
    for bad in (["no slot"], ["{} and {}"], []):
        with pytest.raises(ValueError):
            validate_templates(bad)


def test_probabilities_are_a_softmax_over_labels():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 8)).astype(np.float32)
    lab = rng.normal(size=(4, 8)).astype(np.float32)
    p = probabilities(img, lab, 50.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (p.argmax(axis=1) == (img @ lab.T).argmax(axis=1)).all()
