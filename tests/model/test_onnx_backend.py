"""ONNX Runtime backend: exported towers give the PyTorch embeddings (cosine ≥ 0.999) on real
photos and texts, with dynamic batch and sequence length, for every model family."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from model import ModelSpecError, load_encoder  # noqa: E402
from model.onnx_backend import OnnxEncoder, onnx_encoder  # noqa: E402
from model.onnx_export import IMAGE_FILE, TEXT_FILE, ensure_onnx  # noqa: E402

PHOTOS = ["cat.jpg", "coffee.jpg", "rocket.jpg", "astronaut.jpg", "camera.jpg"]
TEXTS = [
    "a cat",
    "a cup of coffee",
    "an astronaut in an orange space suit standing next to an american flag",
    "",
    "a rocket on the launch pad at dusk, seen from far away across the water, with clouds",
    "ÉCOLE: café — 東京 🚀",
]


def _row_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _assert_parity(ref, ort, images, texts) -> None:
    img_ref, img_ort = ref.encode_images(images), ort.encode_images(images)
    assert img_ort.shape == img_ref.shape and img_ort.dtype == np.float32
    assert _row_cos(img_ref, img_ort).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(img_ort, axis=1), 1.0, atol=1e-4)
    txt_ref, txt_ort = ref.encode_texts(texts), ort.encode_texts(texts)
    assert _row_cos(txt_ref, txt_ort).min() >= 0.999
    # dynamic batch and length: one text alone (its own length) equals its row in the batch
    for i in (0, 2):
        alone = ort.encode_texts([texts[i]])
        assert _row_cos(alone, txt_ort[i : i + 1]).min() >= 0.9999
    one = ort.encode_images(images[:1])
    assert _row_cos(one, img_ort[:1]).min() >= 0.9999


@pytest.fixture(scope="module")
def photos(photos_dir):
    from model import load_image

    return [load_image(photos_dir / name) for name in PHOTOS]


@pytest.fixture(scope="module")
def starter_torch():
    return load_encoder("starter", device="cpu", backend="torch")


@pytest.mark.slow
def test_starter_parity_and_ranking(starter_torch, photos, tmp_path):
    ort = onnx_encoder(starter_torch, cache_dir=tmp_path)
    assert isinstance(ort, OnnxEncoder)
    _assert_parity(starter_torch, ort, photos, TEXTS)
    # the golden behaviour survives the export: each query finds its photo first
    sims = ort.encode_texts(["a cat", "a cup of coffee"]) @ ort.encode_images(photos).T
    assert list(sims.argmax(1)) == [0, 1]
    assert ort.fingerprint == starter_torch.fingerprint
    assert ort.dim == starter_torch.dim
    assert ort.logit_scale == pytest.approx(starter_torch.logit_scale)


def test_tiny_hf_clip_parity(tiny_hf_dir, photos, tmp_path):
    ref = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    _assert_parity(ref, onnx_encoder(ref, cache_dir=tmp_path), photos, TEXTS)


def test_tiny_checkpoint_parity_and_int8(tiny_ckpt_dir, photos, tmp_path):
    ref = load_encoder(str(tiny_ckpt_dir), device="cpu", backend="torch")
    _assert_parity(ref, onnx_encoder(ref, cache_dir=tmp_path), photos, TEXTS)
    q = onnx_encoder(ref, int8=True, cache_dir=tmp_path)
    assert q.backend == "onnx-int8"
    assert q.towers.image.name.endswith(".int8.onnx")
    # int8 weights move the vectors a little, so they must not pass for the fp32 model's
    assert _row_cos(ref.encode_texts(TEXTS), q.encode_texts(TEXTS)).min() >= 0.9
    assert q.fingerprint != ref.fingerprint


def test_export_is_cached(tiny_ckpt_dir, tmp_path):
    ref = load_encoder(str(tiny_ckpt_dir), device="cpu", backend="torch")
    towers = ensure_onnx(ref, cache_dir=tmp_path / "c")
    assert {p.name for p in (towers.image, towers.text)} == {IMAGE_FILE, TEXT_FILE}
    stamp = towers.image.stat().st_mtime_ns
    assert ensure_onnx(ref, cache_dir=tmp_path / "c") == towers
    assert towers.image.stat().st_mtime_ns == stamp


def test_load_encoder_backend_option(tiny_ckpt_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))
    enc = load_encoder(str(tiny_ckpt_dir), backend="onnx")
    assert isinstance(enc, OnnxEncoder) and enc.device.type == "cpu"
    assert (tmp_path / "onnx").is_dir()  # exported into the cache, nowhere else
    ref = load_encoder(str(tiny_ckpt_dir), device="cpu", backend="torch")
    assert enc.fingerprint == ref.fingerprint
    with pytest.raises(ModelSpecError, match="unknown backend"):
        load_encoder(str(tiny_ckpt_dir), backend="tensorrt")


def test_cli_backend_flag(tiny_ckpt_dir, monkeypatch, tmp_path, capsys):
    import json

    from app.cli import main

    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))
    args = ["embed", "--text", "a red car", "--model", str(tiny_ckpt_dir)]
    assert main([*args, "--backend", "onnx-int8"]) == 0
    int8 = json.loads(capsys.readouterr().out)["texts"][0]
    assert main([*args, "--backend", "onnx"]) == 0
    fp32 = json.loads(capsys.readouterr().out)["texts"][0]
    assert main([*args, "--backend", "torch"]) == 0
    ref = json.loads(capsys.readouterr().out)["texts"][0]
    np.testing.assert_allclose(fp32, ref, atol=1e-4)
    assert main(args) == 0  # the default, auto, runs the fp32 graphs here
    np.testing.assert_allclose(json.loads(capsys.readouterr().out)["texts"][0], fp32, atol=1e-6)
    assert not np.allclose(int8, ref, atol=1e-6)  # the int8 graph really ran


def test_index_built_in_torch_is_served_by_onnx(tiny_ckpt_dir, photos_dir, monkeypatch, tmp_path):
    """fp32 ONNX keeps the fingerprint, so the service can switch backends without re-indexing;
    int8 is a different model and is refused by the same check."""
    from app.engine import SearchEngine
    from app.settings import Settings
    from indexer import ModelMismatchError, build_index

    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path / "cache"))
    ref = load_encoder(str(tiny_ckpt_dir), device="cpu", backend="torch")
    build_index(photos_dir, tmp_path / "idx", ref, progress=False)
    engine = SearchEngine.load(Settings(index=tmp_path / "idx", backend="onnx"))
    try:
        assert isinstance(engine.encoder, OnnxEncoder) and engine.encoder.backend == "onnx"
    finally:
        engine.version.close()
    with pytest.raises(ModelMismatchError):
        SearchEngine.load(Settings(index=tmp_path / "idx", backend="onnx-int8"))


def test_missing_onnxruntime_is_a_clear_error(tiny_ckpt_dir, monkeypatch, tmp_path):
    from model import ClipsearchError

    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    with pytest.raises(ClipsearchError, match=r"pip install 'clipsearch\[onnx\]'"):
        load_encoder(str(tiny_ckpt_dir), backend="onnx")
    assert not (tmp_path / "onnx").exists()
