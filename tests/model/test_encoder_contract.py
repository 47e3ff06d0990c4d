"""The encoder contract, checked the same way for every model family on every fp32 backend:
auto (the default; ONNX Runtime on this CPU), torch and onnx."""

from __future__ import annotations

import numpy as np
import pytest

from model import load_encoder
from tests.utils.images import random_image, sample_photo

TEXTS = ["a cat", "a cup of coffee on a table", "", "a rocket", "x" * 5000, "ümlaut ✓", "a", "dog"]


@pytest.fixture(
    scope="module",
    params=[(m, b) for m in ("starter", "tiny_hf", "tiny_ckpt") for b in ("auto", "torch", "onnx")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
def encoder(request, tiny_hf_dir, tiny_ckpt_dir):
    model, backend = request.param
    spec = {"starter": "starter", "tiny_hf": f"hf:{tiny_hf_dir}", "tiny_ckpt": str(tiny_ckpt_dir)}
    enc = load_encoder(spec[model], device="cpu", backend=backend)
    assert enc.backend == ("onnx" if backend == "auto" else backend)  # auto picks ONNX on a CPU
    return enc


def _images():
    return [sample_photo("cat"), sample_photo("camera")] + [
        random_image((40 + 7 * i, 30 + 5 * i), seed=i) for i in range(6)
    ]


def test_shapes_dtype_norm_finite(encoder):
    img = encoder.encode_images(_images())
    txt = encoder.encode_texts(TEXTS)
    for arr, n in ((img, 8), (txt, len(TEXTS))):
        assert arr.shape == (n, encoder.dim)
        assert arr.dtype == np.float32
        assert np.isfinite(arr).all()
        np.testing.assert_allclose(np.linalg.norm(arr, axis=1), 1.0, atol=1e-5)


def test_batch_of_one_equals_row_in_batch(encoder):
    images = _images()
    batch = encoder.encode_images(images)
    for i in (0, 5):
        np.testing.assert_allclose(encoder.encode_images([images[i]])[0], batch[i], atol=1e-5)
    texts = encoder.encode_texts(TEXTS)
    for i in (1, 4, 6):  # padding to the longest text in a batch must not change an embedding
        np.testing.assert_allclose(encoder.encode_texts([TEXTS[i]])[0], texts[i], atol=1e-5)


def test_empty_inputs(encoder):
    assert encoder.encode_images([]).shape == (0, encoder.dim)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)


def test_text_type_errors(encoder):
    with pytest.raises(TypeError):
        encoder.encode_texts("a cat")
    with pytest.raises(TypeError):
        encoder.encode_texts([1, 2])


def test_long_text_is_truncated_to_context(encoder):
    ids = encoder.tokenize(["word " * 10_000])["input_ids"]
    assert ids.shape[1] == encoder.text.max_length


def test_encode_pixels_matches_encode_images(encoder):
    import torch

    images = _images()[:3]
    pixels = torch.stack([encoder.preprocess(im) for im in images])
    np.testing.assert_allclose(
        encoder.encode_pixels(pixels), encoder.encode_images(images), atol=1e-6
    )
    with pytest.raises(ValueError, match="shape"):
        encoder.encode_pixels(pixels[0])


def test_logit_scale_and_fingerprint(encoder):
    assert 1.0 < encoder.logit_scale <= 100.0
    fp = encoder.fingerprint
    assert len(fp) == 64 and int(fp, 16) >= 0
    again = load_encoder(encoder.spec, device="cpu")
    assert again.fingerprint == fp  # stable across loads


def test_fingerprint_changes_with_weights(tmp_path):
    from tests.utils.tiny_models import make_tiny_dual_encoder

    a = load_encoder(str(make_tiny_dual_encoder(tmp_path / "a", seed=1)), device="cpu")
    b = load_encoder(str(make_tiny_dual_encoder(tmp_path / "b", seed=2)), device="cpu")
    assert a.fingerprint != b.fingerprint


def test_encoder_load_image_decodes_jpegs_small_but_faithfully(starter_encoder, tmp_path):
    from tests.utils.images import sample_photo

    big = sample_photo("astronaut").resize((2048, 2048))
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    small = starter_encoder.load_image(path)
    assert 256 <= min(small.size) < 2048  # decoded at a reduced DCT scale
    full = big.convert("RGB")
    a, b = starter_encoder.encode_images([small]), starter_encoder.encode_images([full])
    assert float((a * b).sum()) > 0.99
