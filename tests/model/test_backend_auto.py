"""The default backend, `auto`: ONNX Runtime fp32 on a CPU for every model family that exports
and passes the parity check (same vectors, same fingerprint, so indexes built with either backend
serve the other), PyTorch with a logged reason when the export or the parity check fails, and one
export however many loads race for it."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
# these tests are about the default itself: a `--default-backend torch` run leaves them on auto
pytestmark = pytest.mark.usefixtures("shipping_default_backend")

from model import ClipsearchError, load_encoder  # noqa: E402
from model.backends import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from model.config import PreprocessConfig  # noqa: E402
from model.encoder import Encoder, TextSettings  # noqa: E402
from model.onnx_backend import (  # noqa: E402
    PARITY_MIN_COS,
    RECORD_FILE,
    OnnxEncoder,
    OnnxParityError,
    auto_encoder,
    checked_onnx_encoder,
)
from model.onnx_export import IMAGE_FILE  # noqa: E402
from tests.model.open_clip_fakes import write_open_clip_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["a cat", "", "a rocket on the launch pad at dusk, seen from far across the water"]
EXPORTING = "exporting"  # the progress line model/onnx_export.py logs once per export


def _min_cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def _exports(caplog) -> int:
    return sum(
        1 for r in caplog.records if r.name == "model.onnx_export" and EXPORTING in r.getMessage()
    )


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh clipsearch cache (with the suite's starter build linked in): every export here
    is a real first export."""
    shared = Path(os.environ["CLIPSEARCH_CACHE"])
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))
    for starter in shared.glob("starter-v*"):
        (tmp_path / starter.name).symlink_to(starter)
    return tmp_path


def test_auto_is_the_default_and_resolves_to_a_concrete_backend():
    assert DEFAULT_BACKEND == "auto" and BACKENDS[0] == "auto"
    from app.settings import Settings

    assert Settings().backend == "auto"


def _check_auto_picks_onnx(spec: str, photos: list, caplog) -> None:
    caplog.set_level(logging.INFO, logger="model")
    auto = load_encoder(spec, device="cpu")
    ref = load_encoder(spec, device="cpu", backend="torch")
    assert isinstance(auto, OnnxEncoder) and not isinstance(ref, OnnxEncoder)
    assert (auto.backend, auto.backend_label, ref.backend) == ("onnx", "auto → onnx", "torch")
    assert auto.fingerprint == ref.fingerprint and auto.dim == ref.dim
    assert _min_cos(auto.encode_images(photos), ref.encode_images(photos)) >= PARITY_MIN_COS
    assert _min_cos(auto.encode_texts(TEXTS), ref.encode_texts(TEXTS)) >= PARITY_MIN_COS
    assert _exports(caplog) == 1  # exported on this first load, with the progress line
    record = json.loads((auto.towers.image.parent / RECORD_FILE).read_text())
    assert record["ok"] and min(record["image_cos"], record["text_cos"]) >= PARITY_MIN_COS
    assert not [r for r in caplog.records if r.name.startswith("model") and r.levelno >= 30]


@pytest.fixture(scope="module")
def photos(photos_dir):
    from model import load_image

    return [load_image(p) for p in sorted(photos_dir.glob("*.jpg"))[:4]]


def test_auto_picks_onnx_for_an_hf_model(tiny_hf_dir, photos, cache, caplog):
    _check_auto_picks_onnx(f"hf:{tiny_hf_dir}", photos, caplog)


def test_auto_picks_onnx_for_a_clipsearch_checkpoint(tiny_ckpt_dir, photos, cache, caplog):
    _check_auto_picks_onnx(str(tiny_ckpt_dir), photos, caplog)


def test_auto_picks_onnx_for_an_open_clip_model(photos, cache, caplog):
    oc = write_open_clip_dir(cache / "oc", "ViT-B-32")
    _check_auto_picks_onnx(f"open_clip:local-dir:{oc}", photos, caplog)


@pytest.mark.slow
def test_auto_picks_onnx_for_the_starter(photos, cache, caplog):
    _check_auto_picks_onnx("starter", photos, caplog)


def test_second_load_reuses_the_export_and_the_parity_record(tiny_ckpt_dir, cache, caplog):
    caplog.set_level(logging.INFO, logger="model")
    first = load_encoder(str(tiny_ckpt_dir), device="cpu")
    record = first.towers.image.parent / RECORD_FILE
    stamps = (first.towers.image.stat().st_mtime_ns, record.stat().st_mtime_ns)
    caplog.clear()
    again = load_encoder(str(tiny_ckpt_dir), device="cpu")
    assert isinstance(again, OnnxEncoder) and again.towers == first.towers
    assert (again.towers.image.stat().st_mtime_ns, record.stat().st_mtime_ns) == stamps
    assert _exports(caplog) == 0 and "parity" not in caplog.text  # neither redone


# --- falling back to PyTorch ------------------------------------------------------------------
class _Eigen(nn.Module):
    """A tower ONNX cannot express: torch.linalg.eigh has no ONNX export."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(12, 8)
        self.emb = nn.Embedding(100, 8)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels.mean(1).flatten(1)[:, :12])  # (n, 8)
        gram = x.T @ x + torch.eye(8)  # (8, 8), symmetric positive definite
        return x @ torch.linalg.eigh(gram).eigenvectors  # (n, 8)

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return (self.emb(ids % 100) * mask[..., None]).sum(1)

    def scale(self) -> torch.Tensor:
        return torch.tensor(10.0)


class _Noisy(_Eigen):
    """A tower that exports but whose ONNX graph gives other vectors: its noise is drawn by
    ONNX Runtime's generator, not PyTorch's."""

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.proj(pixels.mean(1).flatten(1)[:, :12])
        return x + 10 * torch.rand_like(x)


def _encoder(kind: type[nn.Module]) -> Encoder:
    """`kind` with fixed weights, so each call is the same model (the same export cache)."""
    from transformers import BertTokenizerFast

    torch.manual_seed(0)
    module = kind()

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "cat", "photo", "of", "rocket"]
    tok_dir = Path(os.environ["CLIPSEARCH_CACHE"]) / "tok"
    tok_dir.mkdir(parents=True, exist_ok=True)
    (tok_dir / "vocab.txt").write_text("\n".join(vocab))
    tokenizer = BertTokenizerFast(str(tok_dir / "vocab.txt"))
    pre = PreprocessConfig(size=16, crop_pct=1.0, mean=(0.5,) * 3, std=(0.5,) * 3)
    return Encoder(
        module, tokenizer, pre, TextSettings(max_length=16), spec=f"test:{type(module).__name__}",
        device=torch.device("cpu"), fingerprint_meta={"test": type(module).__name__},
    )  # fmt: skip


def test_auto_falls_back_to_torch_when_the_export_fails(cache, caplog):
    base = _encoder(_Eigen)
    enc = auto_encoder(base)
    assert enc is base and enc.backend == "torch" and enc.backend_label == "auto → torch"
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "running test:_Eigen in PyTorch" in warning.getMessage()
    assert "ONNX export failed" in warning.getMessage() and "eigh" in warning.getMessage()
    assert "eigh" in enc.backend_reason
    pixels = torch.randn(3, 3, 16, 16)
    assert enc.encode_pixels(pixels).shape == (3, 8)  # PyTorch still serves the model
    # the failure is recorded: the next load does not pay for the export again
    caplog.clear()
    again = auto_encoder(_encoder(_Eigen))
    assert again.backend == "torch" and "delete it to retry" in again.backend_reason
    assert _exports(caplog) == 0
    # asked for explicitly, the onnx backend refuses rather than serving another model's vectors
    with pytest.raises(OnnxParityError, match="ONNX export failed"):
        checked_onnx_encoder(_encoder(_Eigen))


def test_auto_falls_back_to_torch_when_the_parity_check_fails(cache, caplog):
    base = _encoder(_Noisy)
    enc = auto_encoder(base)
    assert enc is base and enc.backend == "torch"
    assert "differ from PyTorch's" in caplog.text and f"needs {PARITY_MIN_COS}" in caplog.text
    record = json.loads(next(cache.glob(f"onnx/*/{RECORD_FILE}")).read_text())
    assert not record["ok"] and record["image_cos"] < PARITY_MIN_COS <= record["text_cos"]


def test_auto_falls_back_when_onnxruntime_is_missing(tiny_ckpt_dir, cache, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import now raises ImportError
    enc = load_encoder(str(tiny_ckpt_dir), device="cpu")
    assert enc.backend == "torch" and not isinstance(enc, OnnxEncoder)
    assert "pip install 'clipsearch[onnx]'" in caplog.text
    assert not (cache / "onnx").exists()
    with pytest.raises(ClipsearchError, match="needs onnx and onnxruntime"):
        load_encoder(str(tiny_ckpt_dir), device="cpu", backend="onnx")


def test_auto_runs_torch_on_an_accelerator(tiny_ckpt_dir, cache):
    """On CUDA `auto` is PyTorch (with its fp16 autocast); here the `meta` device stands in
    for one: anything but the CPU gets PyTorch and no export."""
    enc = load_encoder(str(tiny_ckpt_dir), device="meta")
    assert enc.backend == "torch" and enc.device.type == "meta"
    assert not (cache / "onnx").exists()


# --- one export under concurrency -------------------------------------------------------------
def test_concurrent_loads_export_once(tiny_ckpt_dir, cache, caplog):
    caplog.set_level(logging.INFO, logger="model")
    results: list = [None, None]
    start = threading.Barrier(2)

    def load(i: int) -> None:
        start.wait()
        results[i] = load_encoder(str(tiny_ckpt_dir), device="cpu")

    threads = [threading.Thread(target=load, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(isinstance(r, OnnxEncoder) for r in results)
    assert results[0].towers == results[1].towers
    assert _exports(caplog) == 1
    assert len(list((cache / "onnx").iterdir())) == 2  # one model directory + its lock file


@pytest.mark.slow
def test_concurrent_processes_export_once(tiny_ckpt_dir, cache):
    code = (
        "import logging, sys; logging.basicConfig(level=logging.INFO)\n"
        "from model import load_encoder\n"
        "print(load_encoder(sys.argv[1], device='cpu').backend)\n"
    )
    env = {**os.environ, "CLIPSEARCH_CACHE": str(cache)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tiny_ckpt_dir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["onnx", "onnx"]
    assert sum(err.count(f"{EXPORTING} ") for _, err in outs) == 1
    assert len([d for d in (cache / "onnx").iterdir() if (d / IMAGE_FILE).is_file()]) == 1


# --- indexes move between backends ------------------------------------------------------------
def test_indexes_move_between_torch_and_auto(tiny_ckpt_dir, photos_dir, cache, tmp_path):
    from app.engine import SearchEngine
    from app.settings import Settings
    from indexer import ModelMismatchError, build_index, read_manifest

    spec = str(tiny_ckpt_dir)
    by_torch, by_auto = tmp_path / "by_torch", tmp_path / "by_auto"
    build_index(photos_dir, by_torch, load_encoder(spec, device="cpu", backend="torch"),
                progress=False)  # fmt: skip
    build_index(photos_dir, by_auto, load_encoder(spec, device="cpu"), progress=False)
    assert (read_manifest(by_torch).backend, read_manifest(by_auto).backend) == ("torch", "onnx")
    assert read_manifest(by_torch).fingerprint == read_manifest(by_auto).fingerprint
    for index, backend, running in ((by_torch, "auto", "onnx"), (by_auto, "torch", "torch")):
        engine = SearchEngine.load(Settings(index=index, backend=backend))
        try:
            assert engine.backend == running
            v = engine.version
            hits = v.search(engine.encoder.encode_texts(["a cat"]), 3)
            assert len(hits[0]) == 3
        finally:
            engine.version.close()
    # int8 stays a different model, and the refusal says how to get an index for it
    with pytest.raises(ModelMismatchError, match="build the index with --backend onnx-int8"):
        SearchEngine.load(Settings(index=by_auto, backend="onnx-int8"))
