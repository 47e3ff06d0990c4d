"""An open_clip model through the whole user path: `clipsearch index build --model
open_clip:local-dir:DIR` → `clipsearch serve` → /search and /classify; an image's vector from
the indexer equals the server's."""

from __future__ import annotations

import json

import httpx
import numpy as np

from app.cli import main
from tests.model.open_clip_fakes import write_open_clip_dir
from tests.utils.images import write_sample_photos

from ._server import free_port, start, stop, wait_ready


def test_open_clip_local_dir_indexes_and_serves(tmp_path, capsys):
    from indexer import open_index

    model_dir = write_open_clip_dir(tmp_path / "oc", "ViT-B-32")
    spec = f"open_clip:local-dir:{model_dir}"
    photos = write_sample_photos(tmp_path / "photos", fmt="png")
    index_dir = tmp_path / "index"
    argv = ["index", "build", str(tmp_path / "photos"), "--index", str(index_dir),
            "--model", spec, "--workers", "0", "--no-progress", "--json"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    index = open_index(index_dir)

    port = free_port()
    proc = start(["serve", "--index", str(index_dir), "--port", str(port)], cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base)
        r = httpx.post(base + "/search", json={"text": "a photo", "k": 3}, timeout=60)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == spec and len(body["hits"]) == min(3, len(photos))

        path = next(iter(photos.values()))
        image = ("image", (path.name, path.read_bytes(), "image/png"))
        form = {"labels": "a cat,a dog,a car"}
        r = httpx.post(base + "/classify", files=[image], data=form, timeout=60)
        assert r.status_code == 200, r.text
        labels = r.json()["labels"]
        assert sorted(x["label"] for x in labels) == ["a car", "a cat", "a dog"]
        assert abs(sum(x["score"] for x in labels) - 1) < 1e-3

        files = [("images", (path.name, path.read_bytes(), "image/png"))]
        r = httpx.post(base + "/embed", files=files, timeout=60)
        assert r.status_code == 200, r.text
        served = np.array(r.json()["images"][0], dtype=np.float32)
    finally:
        stop(proc)
    item = next(it for it in _items(index) if it.path == path.name)
    stored = index.get_vector(item.id)  # float16 at rest
    np.testing.assert_allclose(stored, served, atol=2e-3)
    assert float(stored @ served) > 0.9999


def _items(index):
    hits = index.search(np.ones((1, index.dim), dtype=np.float32), k=100)[0]
    return [h.item for h in hits]


def test_index_info_names_the_open_clip_model(tmp_path, capsys):
    model_dir = write_open_clip_dir(tmp_path / "oc", "RN50")
    write_sample_photos(tmp_path / "photos", fmt="png")
    index_dir = tmp_path / "index"
    spec = f"open_clip:local-dir:{model_dir}"
    argv = ["index", "build", str(tmp_path / "photos"), "--index", str(index_dir),
            "--model", spec, "--workers", "0", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["index", "info", "--index", str(index_dir), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == spec and info["dim"] == 32
