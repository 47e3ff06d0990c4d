"""model.clip_compat: the OpenAI `clip` package's calls (load, tokenize, encode_image,
encode_text, model(image, text)) give open_clip's own results."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import model.clip_compat as clip
from tests.model.open_clip_fakes import write_open_clip_dir
from tests.model.test_open_clip import open_clip_reference, png_images

TEXTS = ["a diagram", "a dog", "a cat"]


def test_tokenize_is_openai_clips():
    import open_clip

    ids = clip.tokenize(TEXTS)
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    assert torch.equal(ids, open_clip.tokenize(TEXTS))
    assert torch.equal(clip.tokenize("a cat"), open_clip.tokenize(["a cat"]))
    with pytest.raises(RuntimeError, match="too long for context length 77"):
        clip.tokenize("word " * 100)
    cut = clip.tokenize("word " * 100, truncate=True)
    assert cut.shape == (1, 77) and cut[0, -1] == 49407  # ends in <end_of_text>


def test_available_models_are_openais():
    names = clip.available_models()
    assert "ViT-B/32" in names and "ViT-L/14@336px" in names and "RN50" in names


def test_tutorial_snippet_matches_open_clip(tmp_path):
    d = write_open_clip_dir(tmp_path / "vit", "ViT-B-32")
    images = png_images(2)
    ref_img, ref_txt = open_clip_reference(f"local-dir:{d}", images, TEXTS)

    model, preprocess = clip.load(f"open_clip:local-dir:{d}", device="cpu")
    image = torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in images])
    text = clip.tokenize(TEXTS)
    with torch.no_grad():
        image_features = model.encode_image(image)
        text_features = model.encode_text(text)
        logits_per_image, logits_per_text = model(image, text)
        probs = logits_per_image.softmax(dim=-1)
    img = torch.nn.functional.normalize(image_features, dim=-1).numpy()
    txt = torch.nn.functional.normalize(text_features, dim=-1).numpy()
    assert (img * ref_img).sum(1).min() >= 0.9999 and (txt * ref_txt).sum(1).min() >= 0.9999
    assert logits_per_image.shape == (2, 3) and torch.equal(logits_per_text, logits_per_image.T)
    expected = model.encoder.logit_scale * torch.from_numpy(ref_img @ ref_txt.T)
    np.testing.assert_allclose(logits_per_image.numpy(), expected.numpy(), atol=1e-3)
    np.testing.assert_allclose(probs.sum(-1).numpy(), 1.0, atol=1e-5)
