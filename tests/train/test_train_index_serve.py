"""Train → index → serve: a checkpoint from `clipsearch train` is indexed and searched, and an
image's vector is the same from the indexer, from load_encoder and from the server."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.main import create_app
from app.settings import Settings
from model import load_encoder, load_image
from model.train.data import load_pairs
from tests.app.conftest import wait_ready


@pytest.mark.slow
def test_trained_checkpoint_indexes_searches_and_serves(tmp_path, small_shapes_dir, clip_tok_dir):
    from indexer import build_index, open_index
    from tests.train.conftest import write_model_config

    ckpt = tmp_path / "model"
    argv = [
        "train", "--train", str(small_shapes_dir / "train.csv"), "--out", str(ckpt),
        "--model-config", str(write_model_config(tmp_path / "m.json")),
        "--tokenizer", str(clip_tok_dir), "--steps", "3", "--batch-size", "8",
        "--workers", "0", "--no-progress", "--no-tensorboard",
    ]  # fmt: skip
    assert main(argv) == 0

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    held = load_pairs(small_shapes_dir / "heldout.csv")
    for p in held.images:
        shutil.copy(p, corpus)
    index_dir = tmp_path / "index"
    enc = load_encoder(str(ckpt), device="cpu")
    report = build_index(corpus, index_dir, enc, progress=False, workers=0)
    assert report is not None

    index = open_index(index_dir, expected_fingerprint=enc.fingerprint)
    hits = index.search(enc.encode_texts([held.captions[0]]), k=5)[0]
    assert len(hits) == 5 and all(-1.0 <= h.score <= 1.0 for h in hits)
    assert hits == sorted(hits, key=lambda h: -h.score)

    item = hits[0].item
    path = corpus / item.path
    direct = enc.encode_images([load_image(path)])[0]
    stored = index.get_vector(item.id)
    # the indexer keeps vectors as float16: equal to the float32 encoding up to that rounding
    np.testing.assert_array_equal(stored, direct.astype(np.float16).astype(np.float32))

    with TestClient(create_app(Settings(index=index_dir))) as client:
        wait_ready(client)
        r = client.post("/embed", files=[("images", (path.name, path.read_bytes(), "image/png"))])
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(np.array(r.json()["images"][0]), direct, atol=1e-5)
        r = client.post("/search", json={"text": held.captions[0], "k": 3})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == str(ckpt)
        assert [h["path"] for h in body["hits"]] == [h.item.path for h in hits[:3]]
