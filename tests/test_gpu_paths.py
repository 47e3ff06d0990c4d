"""The GPU code paths: encoder on CUDA against the CPU, an index build on CUDA with GPU JPEG
decoding, a training step with AMP bf16. The `gpu`-marked tests skip where no CUDA device exists
(tests/conftest.py); benchmarks/gpu_check.py runs them on a lent GPU. The device-decode path
also runs on a CPU device (same code, libjpeg instead of nvJPEG), tested here unmarked."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.utils.images import random_image

TEXTS = ["a photo of a cat", "a rocket on the launch pad", "coffee", ""]


def _corpus(root: Path, photos_dir: Path) -> Path:
    """The sample photos, a grayscale JPEG, a PNG, a truncated JPEG and a non-image."""
    root.mkdir()
    for p in sorted(photos_dir.glob("*.jpg")):
        (root / p.name).write_bytes(p.read_bytes())
    random_image((300, 200), seed=1, mode="L").save(root / "gray.jpg", "JPEG")
    random_image((120, 90), seed=2).save(root / "small.png")
    data = (root / sorted(photos_dir.glob("*.jpg"))[0].name).read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.jpg").write_bytes(b"not an image at all")
    return root


def _build(corpus: Path, index: Path, enc, device_decode: bool):
    from indexer import build_index
    from indexer.reader import open_index

    rep = build_index(corpus, index, enc, device_decode=device_decode, workers=0, progress=False)
    v = open_index(index)
    rows = v._db().execute("SELECT path FROM items ORDER BY id").fetchall()
    vectors = np.load(v.path / "vectors.npy").astype(np.float32)  # rows in id order
    v.close()
    return rep, dict(zip((r[0] for r in rows), vectors, strict=True))


def _assert_same_build(a, b, min_cos: float) -> None:
    (rep_a, vec_a), (rep_b, vec_b) = a, b
    assert sorted((s.path, s.code) for s in rep_a.skipped) == sorted(
        (s.path, s.code) for s in rep_b.skipped
    )
    assert vec_a.keys() == vec_b.keys() and len(vec_a) >= 6
    cos = [float(vec_a[k] @ vec_b[k]) for k in vec_a]
    assert min(cos) >= min_cos, dict(zip(vec_a, cos, strict=True))


def test_device_decode_on_cpu_matches_worker_decode(tiny_hf_dir, photos_dir, tmp_path):
    """BuildOptions.device_decode on a CPU device: the same items and skips as the worker path,
    and the same vectors up to resize rounding (the worker path decodes big JPEGs at a reduced
    DCT scale)."""
    from model import load_encoder

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    corpus = _corpus(tmp_path / "corpus", photos_dir)
    plain = _build(corpus, tmp_path / "a", enc, device_decode=False)
    device = _build(corpus, tmp_path / "b", enc, device_decode=True)
    _assert_same_build(plain, device, min_cos=0.995)
    assert {s.path for s in plain[0].skipped} == {"notes.jpg", "truncated.jpg"}


@pytest.mark.gpu
def test_encoder_on_cuda_equals_cpu(tiny_hf_dir, photos_dir):
    """fp16 autocast on CUDA gives the CPU's fp32 vectors within rounding."""
    from model import load_encoder

    cpu = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    gpu = load_encoder(f"hf:{tiny_hf_dir}", device="cuda")
    assert gpu.device.type == "cuda" and gpu.fingerprint == cpu.fingerprint
    images = [cpu.load_image(p) for p in sorted(photos_dir.glob("*.jpg"))]
    for a, b in ((cpu.encode_images(images), gpu.encode_images(images)),
                 (cpu.encode_texts(TEXTS), gpu.encode_texts(TEXTS))):  # fmt: skip
        assert a.shape == b.shape
        assert np.isfinite(b).all()
        assert (a * b).sum(1).min() >= 0.999


@pytest.mark.gpu
def test_index_build_on_cuda_with_gpu_jpeg_decode(tiny_hf_dir, photos_dir, tmp_path):
    """A build on CUDA with nvJPEG decoding equals the CPU build (items, skips, vectors), and
    the index it publishes answers searches."""
    from indexer.reader import open_index
    from model import load_encoder

    corpus = _corpus(tmp_path / "corpus", photos_dir)
    cpu = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    gpu = load_encoder(f"hf:{tiny_hf_dir}", device="cuda")
    on_cpu = _build(corpus, tmp_path / "cpu", cpu, device_decode=False)
    on_gpu = _build(corpus, tmp_path / "gpu", gpu, device_decode=True)
    _assert_same_build(on_cpu, on_gpu, min_cos=0.99)
    v = open_index(tmp_path / "gpu")
    hits = v.search(gpu.encode_texts(["a cat"]), 3)[0]
    v.close()
    assert len(hits) == 3


@pytest.mark.gpu
def test_training_step_amp_bf16_on_cuda(tiny_hf_dir, photos_dir, tmp_path):
    """Two real training steps on CUDA under bf16 autocast: finite loss, weights that moved,
    and a model that loads back."""
    from model import load_encoder
    from model.train import TrainConfig, train

    manifest = tmp_path / "train.csv"
    photos = sorted(photos_dir.glob("*.jpg"))
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption"])
        for i in range(8):
            w.writerow([str(photos[i % len(photos)]), f"{photos[i % len(photos)].stem} {i}"])
    before = load_encoder(f"hf:{tiny_hf_dir}", device="cpu", backend="torch")
    out = tmp_path / "run"
    cfg = TrainConfig(train=str(manifest), out=str(out), init=f"hf:{tiny_hf_dir}", steps=2,
                      batch_size=4, precision="bf16", device="cuda", workers=0, warmup_steps=0,
                      save_every=0, tensorboard=False, progress=False)  # fmt: skip
    result = train(cfg)
    assert result.steps == 2 and math.isfinite(result.final_loss)
    after = load_encoder(result.model_spec, device="cuda")
    assert after.fingerprint != before.fingerprint
    assert np.isfinite(after.encode_texts(TEXTS)).all()
    assert torch.cuda.is_bf16_supported()
