"""The open_clip family: our encode_images/encode_texts against open_clip's own encode_image /
encode_text with its own preprocess and tokenizer (lossless PNG input), in PyTorch and in ONNX
Runtime, for a ViT, a ResNet, a SigLIP and a multilingual (XLM-R) model; the spec forms."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from model import ModelSpecError, load_encoder, parse_spec
from tests.model.open_clip_fakes import TINY, write_open_clip_dir

TEXTS = ["a photo of a cat", "ein Foto einer Katze", "猫の写真", "", "a very long caption " * 40]
MIN_COSINE = 0.9999


def png_images(n: int = 3) -> list[bytes]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        buf = io.BytesIO()
        pixels = rng.integers(0, 256, (90 + 17 * i, 130, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def open_clip_reference(spec_name: str, images: list[bytes], texts: list[str]):
    """open_clip's own vectors: its model, its eval preprocess, its tokenizer."""
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(spec_name, pretrained_text=False)
    tokenizer = open_clip.get_tokenizer(spec_name)
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in images])
    with torch.no_grad():
        img = model.eval().encode_image(pixels, normalize=True).numpy()
        txt = model.encode_text(tokenizer(texts), normalize=True).numpy()
    return img, txt


def assert_parity(enc, images: list[bytes], ref_img, ref_txt) -> None:
    ours_img = enc.encode_images([enc.load_image(b) for b in images])
    ours_txt = enc.encode_texts(TEXTS)
    assert ours_img.shape == ref_img.shape and ours_txt.shape == ref_txt.shape
    assert (ours_img * ref_img).sum(1).min() >= MIN_COSINE
    assert (ours_txt * ref_txt).sum(1).min() >= MIN_COSINE


@pytest.fixture(scope="module", params=sorted(TINY))
def oc_dir(request, tmp_path_factory):
    return write_open_clip_dir(tmp_path_factory.mktemp(request.param), request.param)


def test_parity_torch_and_onnx(oc_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))  # a fresh ONNX export per model
    images = png_images()
    ref_img, ref_txt = open_clip_reference(f"local-dir:{oc_dir}", images, TEXTS)
    enc = load_encoder(f"open_clip:local-dir:{oc_dir}", device="cpu")
    assert_parity(enc, images, ref_img, ref_txt)
    onnx = load_encoder(f"open_clip:local-dir:{oc_dir}", backend="onnx")
    assert onnx.backend == "onnx" and onnx.fingerprint == enc.fingerprint
    assert_parity(onnx, images, ref_img, ref_txt)


def test_preprocess_and_text_settings_come_from_the_config(tmp_path):
    enc = load_encoder(f"open_clip:local-dir:{write_open_clip_dir(tmp_path, 'ViT-B-16-SigLIP')}")
    pre = enc.preprocess_config
    assert (pre.size, pre.resize_mode, pre.mean) == (160, "squash", (0.5, 0.5, 0.5))
    assert enc.text.max_length == 64 and enc.text.pad_to_max_length  # SigLIP: fixed padding
    assert enc.tokenize(["a cat"])["input_ids"].shape == (1, 64)
    assert 0 < enc.logit_scale <= 100


def test_fingerprint_covers_preprocessing_and_tokenizer(tmp_path):
    base = write_open_clip_dir(tmp_path / "a", "ViT-B-32")
    fp = load_encoder(f"open_clip:local-dir:{base}").fingerprint
    assert load_encoder(f"open_clip:local-dir:{base}").fingerprint == fp  # stable
    for i, edit in enumerate(
        (
            lambda c: c["preprocess_cfg"].update(mean=[0.5, 0.5, 0.5]),
            lambda c: c["preprocess_cfg"].update(interpolation="bilinear"),
            lambda c: c["model_cfg"]["text_cfg"].update(tokenizer_kwargs={"clean": "whitespace"}),
        )
    ):
        other = tmp_path / f"edit{i}"
        shutil.copytree(base, other)
        cfg = json.loads((other / "open_clip_config.json").read_text())
        edit(cfg)
        (other / "open_clip_config.json").write_text(json.dumps(cfg))
        assert load_encoder(f"open_clip:local-dir:{other}").fingerprint != fp, i


def test_spec_forms_load_the_same_model(tmp_path, monkeypatch):
    d = write_open_clip_dir(tmp_path / "oc", "ViT-B-32")
    monkeypatch.chdir(tmp_path)
    a = load_encoder("open_clip:local-dir:oc")
    assert a.spec == f"open_clip:local-dir:{d}"  # stored absolute
    b = load_encoder(str(d))  # a plain directory in open_clip's layout (what train writes)
    c = load_encoder("hf:oc")  # an hf: dir holding only open_clip files
    assert a.fingerprint == b.fingerprint == c.fingerprint


def test_openai_names_derive_from_open_clip():
    from model.open_clip_models import openai_names

    names = openai_names()
    for name in ("ViT-B/32", "ViT-B/16", "ViT-L/14", "ViT-L/14@336px", "RN50", "RN50x64"):
        assert name in names
    assert parse_spec("ViT-B/32") == ("open_clip", "ViT-B-32/openai")
    assert parse_spec("ViT-L/14@336px") == ("open_clip", "ViT-L-14-336/openai")
    assert parse_spec("open_clip:ViT-B-32/laion2b_s34b_b79k")[1] == "ViT-B-32/laion2b_s34b_b79k"


def test_openai_weights_use_quick_gelu():
    from model.open_clip_models import model_config, openai_source

    cfg, pre = model_config(openai_source("ViT-B/32"))
    assert cfg["quick_gelu"] is True and pre["interpolation"] == "bicubic"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("ViT-B/99", ["not one of OpenAI's", "ViT-B/32"]),
        ("open_clip:ViT-B-32/nope", ["no pretrained tag", "laion2b_s34b_b79k"]),
        ("open_clip:NoSuchArch/x", ["no architecture"]),
        ("open_clip:ViT-B-32", ["ARCH/TAG"]),
        ("open_clip:local-dir:/no/such/dir", ["no open_clip_config.json"]),
        ("open_clip:hf-hub:onlyone", ["hf-hub:ORG/REPO"]),
    ],
)
def test_bad_specs_say_why(spec, words):
    with pytest.raises(ModelSpecError) as e:
        load_encoder(spec)
    for w in words:
        assert w in str(e.value)


def test_hub_model_offline_fails_fast_with_one_line():
    import time

    t = time.perf_counter()
    with pytest.raises(ModelSpecError, match="cannot reach the Hugging Face hub"):
        load_encoder("open_clip:hf-hub:timm/ViT-B-16-SigLIP")
    with pytest.raises(ModelSpecError, match="cannot reach the Hugging Face hub"):
        load_encoder("open_clip:ViT-B-32/laion2b_s34b_b79k")
    assert time.perf_counter() - t < 10


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["ViT-B-32", "RN50", "ViT-B-16-SigLIP"])
def test_parity_full_size(arch, tmp_path, monkeypatch):
    """open_clip's own configs unchanged (create_model(name, pretrained=None)), random weights."""
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    d = write_open_clip_dir(tmp_path / "m", arch, full=True)
    images = png_images(2)
    ref_img, ref_txt = open_clip_reference(f"local-dir:{d}", images, TEXTS)
    enc = load_encoder(f"open_clip:local-dir:{d}", device="cpu")
    assert enc.preprocess_config.size == 224
    assert_parity(enc, images, ref_img, ref_txt)
    onnx = load_encoder(f"open_clip:local-dir:{d}", backend="onnx")
    assert_parity(onnx, images, ref_img, ref_txt)


def _family(enc) -> str:
    from model.hf_clip import HFDualEncoder
    from model.open_clip_models import OpenClipDualEncoder

    kinds = {HFDualEncoder: "hf", OpenClipDualEncoder: "open_clip"}
    return kinds[type(enc.module)]


def test_hf_dir_with_both_formats_loads_through_transformers(tiny_hf_dir, tmp_path):
    """The rule for `hf:`: transformers when a transformers config.json (one with a
    model_type) is there, as many LAION repos ship beside their open_clip files; open_clip
    when only open_clip_config.json is, or when config.json is not transformers' (timm's)."""
    oc = write_open_clip_dir(tmp_path / "oc", "ViT-B-32")
    both = tmp_path / "both"
    shutil.copytree(tiny_hf_dir, both)
    _copy_open_clip_files(oc, both)
    enc = load_encoder(f"hf:{both}")
    assert _family(enc) == "hf" and enc.dim == 16  # the tiny CLIPModel's projection
    assert enc.fingerprint == load_encoder(f"hf:{tiny_hf_dir}").fingerprint
    assert _family(load_encoder(f"open_clip:local-dir:{both}")) == "open_clip"  # when asked

    timm = shutil.copytree(oc, tmp_path / "timm")
    (timm / "config.json").write_text(json.dumps({"architecture": "vit_base_patch32_224"}))
    enc = load_encoder(f"hf:{timm}")
    assert _family(enc) == "open_clip" and enc.dim == 32


def test_hf_hub_id_rule_reads_the_hub_cache_offline(tiny_hf_dir, tmp_path, monkeypatch):
    from model.open_clip_models import hf_as_open_clip
    from tests.model.hub_cache_fakes import snapshot_dir, use_hub_cache

    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    oc = write_open_clip_dir(tmp_path / "oc", "ViT-B-32")
    _copy_open_clip_files(oc, snapshot_dir(cache, "org/oc-only"))
    both = snapshot_dir(cache, "org/both")
    shutil.copytree(tiny_hf_dir, both, dirs_exist_ok=True)
    _copy_open_clip_files(oc, both)
    assert hf_as_open_clip("org/oc-only") == "hf-hub:org/oc-only"
    assert hf_as_open_clip("org/both") is None  # transformers
    assert hf_as_open_clip("org/not-cached") is None  # transformers says it is not there
    enc = load_encoder("hf:org/oc-only")  # through open_clip's hf-hub: loading, from the cache
    assert _family(enc) == "open_clip" and enc.spec == "hf:org/oc-only"


def _copy_open_clip_files(src, dst) -> None:
    for name in ("open_clip_config.json", "open_clip_model.safetensors"):
        shutil.copy(src / name, dst / name)
