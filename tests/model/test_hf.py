"""hf: models load through the real from_pretrained path, from a tiny random CLIP saved to disk."""

from __future__ import annotations

import numpy as np
import torch

from model import load_encoder
from model.hf_clip import preprocess_from_hf
from tests.utils.images import sample_photo


def test_hf_encoder_matches_the_transformers_model(tiny_hf_dir):
    from transformers import CLIPModel, CLIPProcessor

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    ref = CLIPModel.from_pretrained(tiny_hf_dir).eval()
    proc = CLIPProcessor.from_pretrained(tiny_hf_dir)
    img = sample_photo("coffee")
    texts = ["a cup of coffee", "a photo of a cat on a sofa"]
    batch = proc(text=texts, images=[img], return_tensors="pt", padding=True)
    with torch.no_grad():
        img_ref = ref.get_image_features(pixel_values=batch["pixel_values"])
        txt_ref = ref.get_text_features(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        )
    img_ref = getattr(img_ref, "pooler_output", img_ref)
    txt_ref = getattr(txt_ref, "pooler_output", txt_ref)
    img_ref = torch.nn.functional.normalize(img_ref, dim=-1).numpy()
    txt_ref = torch.nn.functional.normalize(txt_ref, dim=-1).numpy()
    np.testing.assert_allclose(enc.encode_texts(texts), txt_ref, atol=1e-5)
    # our transform runs torchvision on PIL, HF its own resize: allow resampling differences
    cos = float((enc.encode_images([img]) * img_ref).sum())
    assert cos > 0.999
    assert enc.dim == 16
    assert abs(enc.logit_scale - ref.logit_scale.detach().exp().item()) < 1e-4


def test_preprocess_matches_hf_processor_pixels(tiny_hf_dir):
    from transformers import CLIPImageProcessor

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    proc = CLIPImageProcessor.from_pretrained(tiny_hf_dir)
    img = sample_photo("astronaut")
    ours = enc.preprocess(img)
    theirs = torch.as_tensor(np.asarray(proc(images=img, return_tensors="pt")["pixel_values"][0]))
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().mean() < 0.02


def test_clip_tokenizer_gives_reference_ids(tiny_hf_dir):
    import open_clip

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    texts = ["a photo of a Cat!", "Hello   world, it's 3.14 naïve café"]
    ref = open_clip.tokenize(texts)
    ours = enc.tokenize(texts)
    for i in range(len(texts)):
        n = int(ours["attention_mask"][i].sum())
        assert ours["input_ids"][i, :n].tolist() == ref[i, :n].tolist()


def test_processor_configs_translate():
    clip = preprocess_from_hf(
        {
            "size": {"shortest_edge": 224},
            "crop_size": {"height": 224, "width": 224},
            "do_center_crop": True,
            "resample": 3,
            "image_mean": [0.48, 0.45, 0.40],
            "image_std": [0.26, 0.26, 0.27],
        }
    )
    assert (clip.size, clip.resize_mode, clip.interpolation) == (224, "shortest", "bicubic")
    siglip = preprocess_from_hf(
        {
            "size": {"height": 256, "width": 256},
            "resample": 2,
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
        }
    )
    assert (siglip.size, siglip.resize_mode, siglip.interpolation) == (256, "squash", "bilinear")
