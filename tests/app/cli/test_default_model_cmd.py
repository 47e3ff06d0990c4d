"""Commands without --model take the default model: the pretrained default from a warm hub cache
(a random-weight ViT-B/32 placed under its repo id), else the starter with one notice; an
existing index keeps the model it was built with when the default changes under it."""

from __future__ import annotations

import json

import numpy as np
import torch

from model.default_model import DEFAULT_ARCH, DEFAULT_MODEL
from tests.model.hub_cache_fakes import use_hub_cache, write_default_in_cache


def _manifest_model(cli, index) -> dict:
    code, stdout, err = cli("index", "info", "--index", index, "--json")
    assert code == 0, err
    return json.loads(stdout)


def test_no_hub_and_empty_cache_use_the_starter_with_one_notice(cli, tmp_path, monkeypatch):
    use_hub_cache(monkeypatch, tmp_path / "hub")
    code, stdout, err = cli("embed", "--text", "a red car")
    assert code == 0, err
    assert json.loads(stdout)["model"] == "starter"
    assert len(err.splitlines()) == 1, err
    assert err.startswith("using the offline starter model: the default model " + DEFAULT_MODEL)
    assert "run once with network access" in err and "--model starter" in err
    code, _, err = cli("embed", "--text", "a red car", "--model", "starter")
    assert code == 0 and err == ""  # naming a model: no notice


def test_warm_cache_default_builds_with_the_pretrained_model(
    cli, tmp_path, monkeypatch, photos_dir
):
    cache = use_hub_cache(monkeypatch, tmp_path / "hub")
    idx_starter = tmp_path / "idx-starter"
    code, _, err = cli("index", "build", photos_dir, "--index", idx_starter, "--no-progress")
    assert code == 0 and "using the offline starter model" in err
    assert _manifest_model(cli, idx_starter)["model"] == "starter"

    ref = write_default_in_cache(cache, seed=3)  # the default "downloaded" meanwhile
    idx = tmp_path / "idx"
    code, _, err = cli(
        "index", "build", photos_dir, "--index", idx, "--backend", "torch", "--no-progress"
    )
    assert code == 0, err
    assert "starter" not in err  # a warm cache: no notice
    info = _manifest_model(cli, idx)
    assert (info["model"], info["dim"], info["count"]) == (DEFAULT_MODEL, 512, 5)

    # the weights are the ones in the cache: our vector equals open_clip's from that state
    code, stdout, err = cli("embed", "--text", "a cat", "--backend", "torch")
    assert code == 0, err
    got = json.loads(stdout)
    assert got["model"] == DEFAULT_MODEL
    assert np.dot(got["texts"][0], _open_clip_text(ref, "a cat")) > 0.9999

    # an index built before keeps its model: no switch to the default now in the cache
    code, stdout, err = cli("search", "a cat", "--index", idx_starter, "--json")
    assert code == 0, err
    assert json.loads(stdout)["model"] == "starter" and err == ""
    code, _, err = cli("index", "update", photos_dir, "--index", idx_starter, "--no-progress")
    assert code == 0, err
    assert _manifest_model(cli, idx_starter)["model"] == "starter"


def _open_clip_text(model: torch.nn.Module, text: str) -> np.ndarray:
    """open_clip's own normalised text vector: its model (the weights in the cache), its
    tokenizer."""
    import open_clip

    with torch.no_grad():
        vec = model.encode_text(open_clip.get_tokenizer(DEFAULT_ARCH)([text]), normalize=True)
    return vec[0].numpy()
