"""Shared fixtures. Models are tiny random ones or the offline starter; nothing is downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# The starter checkpoint is built once into a cache kept between runs (rebuilt when its recipe
# version changes); tests that exercise the build itself use their own temp dirs.
os.environ.setdefault("CLIPSEARCH_CACHE", str(REPO / ".pytest_cache" / "clipsearch"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The default model is whatever the Hugging Face cache holds (model/default_model.py): tests see
# an empty cache, so a developer's downloads never change which model a test runs.
os.environ["HF_HUB_CACHE"] = str(REPO / ".pytest_cache" / "hf-hub-empty")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_addoption(parser):
    parser.addoption(
        "--default-backend",
        choices=("auto", "torch", "onnx"),
        default=None,
        help="run the suite with this encoder backend as the default everywhere: load_encoder, "
        "the CLI and the server (CLIPSEARCH_BACKEND, inherited by subprocesses); "
        "`make test-backends` runs the suite once with torch and once with onnx",
    )


def pytest_configure(config):
    backend = config.getoption("--default-backend")
    if not backend:
        return
    # the CLI and Settings read this variable; in-process callers get the library defaults below
    os.environ["CLIPSEARCH_BACKEND"] = backend
    for fn in _backend_defaulting():
        fn.__kwdefaults__["backend"] = backend


def _backend_defaulting() -> list:
    """The library functions whose `backend` argument defaults to DEFAULT_BACKEND."""
    from indexer import resolve
    from model import loader

    return [loader.load_encoder, resolve.encoder_for_index]


@pytest.fixture
def shipping_default_backend(monkeypatch):
    """For tests of the default itself (auto): undo a --default-backend run's override."""
    from model.backends import DEFAULT_BACKEND

    monkeypatch.delenv("CLIPSEARCH_BACKEND", raising=False)
    for fn in _backend_defaulting():
        monkeypatch.setitem(fn.__kwdefaults__, "backend", DEFAULT_BACKEND)


def pytest_report_header(config):
    return f"default encoder backend: {config.getoption('--default-backend') or 'auto'}"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def starter_encoder():
    from model import load_encoder

    return load_encoder("starter", device="cpu")


@pytest.fixture(scope="session")
def photos_dir(tmp_path_factory) -> Path:
    from tests.utils.images import write_sample_photos

    d = tmp_path_factory.mktemp("photos")
    write_sample_photos(d)
    return d


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    from tests.utils.tiny_models import make_tiny_hf_clip

    return make_tiny_hf_clip(tmp_path_factory.mktemp("tiny_hf_clip"))


@pytest.fixture(scope="session")
def tiny_ckpt_dir(tmp_path_factory) -> Path:
    from tests.utils.tiny_models import make_tiny_dual_encoder

    return make_tiny_dual_encoder(tmp_path_factory.mktemp("tiny_ckpt"))
