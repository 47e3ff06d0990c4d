"""The default model: the pretrained default when its weights are in the hub cache (a random-
weight model of its architecture placed there under its repo id, loaded by open_clip's own
hub lookup), the starter with one notice when the cache is empty and the hub unreachable
(offline mode, and a hub address that refuses the connection). Nothing is downloaded."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import torch

from model import load_encoder, parse_spec
from model.default_model import (
    DEFAULT_MODEL,
    FALLBACK_MODEL,
    cached_default_weights,
    default_hub_files,
    resolve_default_model,
)
from model.loader import absolute_spec
from tests.model.hub_cache_fakes import use_hub_cache, write_default_in_cache


def test_the_default_is_open_clips_vit_b32_laion2b_and_its_hub_files():
    assert DEFAULT_MODEL == "open_clip:ViT-B-32/laion2b_s34b_b79k"
    assert parse_spec(DEFAULT_MODEL) == ("open_clip", "ViT-B-32/laion2b_s34b_b79k")
    repo, files = default_hub_files()
    assert repo == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    # open_clip's order: the safetensors twin first, then the pickle
    assert files == ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def test_warm_cache_resolves_to_the_default_and_loads_those_weights(tmp_path, monkeypatch):
    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    assert cached_default_weights() is None
    ref = write_default_in_cache(cache, seed=7).state_dict()
    assert cached_default_weights().startswith(str(cache))
    notes: list[str] = []
    assert resolve_default_model(notify=notes.append) == DEFAULT_MODEL
    assert notes == []  # a warm cache needs no word and no network
    enc = load_encoder("default", device="cpu", backend="torch")
    assert enc.spec == DEFAULT_MODEL  # the concrete spec, what an index records
    assert enc.dim == 512 and enc.preprocess_config.size == 224
    state = enc.module.model.state_dict()
    for key in ("visual.conv1.weight", "text_projection", "token_embedding.weight"):
        assert torch.equal(state[key], ref[key]), key
    vec = enc.encode_texts(["a photo of a cat"])
    assert vec.shape == (1, 512) and abs(float((vec**2).sum()) - 1) < 1e-4


def test_offline_empty_cache_falls_back_to_the_starter_with_one_notice(tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    notes: list[str] = []
    assert resolve_default_model(notify=notes.append) == FALLBACK_MODEL
    assert len(notes) == 1 and "\n" not in notes[0]
    note = notes[0]
    assert note.startswith("using the offline starter model: the default model " + DEFAULT_MODEL)
    assert "and offline mode is set (HF_HUB_OFFLINE" in note
    assert "run once with network access to fetch it" in note and "--model starter" in note


def test_unreachable_hub_falls_back_fast(tmp_path, monkeypatch):
    """Offline mode off, the hub at an address that refuses connections: one probe, no retries."""
    import socket

    from huggingface_hub import constants

    use_hub_cache(monkeypatch, tmp_path / "hub")
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    notes: list[str] = []
    t = time.perf_counter()
    assert resolve_default_model(notify=notes.append) == FALLBACK_MODEL
    assert time.perf_counter() - t < 5
    assert len(notes) == 1 and "the hub cannot be reached" in notes[0]


def test_default_spec_resolves_once_through_the_loader(tmp_path, monkeypatch, caplog):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    with caplog.at_level(logging.WARNING, logger="model.default_model"):
        assert absolute_spec("default") == "starter"
    assert len(caplog.records) == 1 and "using the offline starter" in caplog.records[0].message
    assert parse_spec(" default ") == ("starter", "")


@pytest.mark.parametrize("spec", ["Default", "defaults"])
def test_only_the_exact_word_is_the_default(spec):
    from model import ModelSpecError

    with pytest.raises(ModelSpecError, match="not a known model"):
        parse_spec(spec)


def test_reachable_hub_fetches_once_with_a_progress_bar(tmp_path, monkeypatch, capsys):
    """The hub answers (a local one) and the cache is empty: the weights are fetched once, with
    a bar on stderr even where Hugging Face's own bars are switched off (the CLI does that)."""
    import importlib

    from huggingface_hub.utils import are_progress_bars_disabled

    from tests.model.hub_cache_fakes import local_hub

    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    hf_tqdm = importlib.import_module("huggingface_hub.utils.tqdm")
    monkeypatch.setattr(hf_tqdm, "HF_HUB_DISABLE_PROGRESS_BARS", True)  # as the CLI's env does
    assert are_progress_bars_disabled()
    repo, files = default_hub_files()
    payload = bytes(range(256)) * 8192  # 2 MiB stand-in: this test fetches, it does not load
    with local_hub(monkeypatch, {(repo, files[0]): payload}) as served:
        notes: list[str] = []
        assert resolve_default_model(notify=notes.append) == DEFAULT_MODEL
        assert len(notes) == 1 and notes[0].startswith("fetching the default model")
        assert "100%" in capsys.readouterr().err  # the bar ran to the end
        path = cached_default_weights()
        assert path.startswith(str(cache)) and Path(path).read_bytes() == payload
        assert resolve_default_model(notify=notes.append) == DEFAULT_MODEL
        assert len(notes) == 1 and served == [(repo, files[0])]  # once


def test_a_failed_fetch_falls_back_to_the_starter(tmp_path, monkeypatch):
    from tests.model.hub_cache_fakes import local_hub

    use_hub_cache(monkeypatch, tmp_path / "hub")
    with local_hub(monkeypatch, {}):  # the hub answers but holds no weights file
        notes: list[str] = []
        assert resolve_default_model(notify=notes.append, progress=False) == FALLBACK_MODEL
    assert notes[0].startswith("fetching the default model")
    assert notes[1].startswith("using the offline starter model")
    assert "could not be fetched" in notes[1]
