"""A real `clip-retrieval inference` run (PyPI clip-retrieval 2.45.0 in its own venv, offline,
a tiny random `hf_clip:` model directory) imported with `clipsearch index import`, as a user
switching over does it.

Two runs over the same 24 images, started together: a folder (`--input_format files`, image
paths absolute) and the same images with captions as a webdataset shard (clip-retrieval 2.45
cannot embed captions from a folder: `--enable_text True` with files fails with
KeyError 'x.txt', rom1504/clip-retrieval#352, so its webdataset reader is the way to get
`text_emb/` and a `caption` column)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from indexer import open_index
from tests.utils.clip_retrieval_env import pytest_cache_env
from tests.utils.images import SAMPLE_PHOTOS, random_image, sample_photo

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TOL = 2e-3  # float16 storage: scores this close are ties


@pytest.fixture(scope="session")
def cr_env(request):
    return pytest_cache_env(request.config)


VARIANTS = {
    "": lambda im: im,
    "mirrored": ImageOps.mirror,
    "cropped": lambda im: im.crop((im.width // 6, im.height // 6, im.width * 5 // 6, im.height)),
    "turned": lambda im: im.rotate(90, expand=True),
}


def write_corpus(folder: Path) -> dict[str, str]:
    """24 images (the five sample photos, three variants of each, four noise images) and a
    distinct caption for each; → file stem → caption."""
    folder.mkdir(parents=True)
    captions = {}
    for name in SAMPLE_PHOTOS:
        photo = sample_photo(name).convert("RGB")
        for variant, fn in VARIANTS.items():
            stem = f"{name}-{variant}" if variant else name
            fn(photo).save(folder / f"{stem}.jpg", quality=90)
            captions[stem] = f"a {variant} photo of a {name}".replace("a  ", "a ")
    for seed in range(4):
        random_image((80 + 16 * seed, 64), seed=seed).save(folder / f"noise{seed}.jpg")
        captions[f"noise{seed}"] = f"random noise number {seed}"
    return captions


def write_shard(folder: Path, captions: dict[str, str], shard: Path) -> Path:
    """The same images with their captions as one webdataset tar (key = file stem)."""
    with tarfile.open(shard, "w") as tar:
        for stem, caption in sorted(captions.items()):
            tar.add(folder / f"{stem}.jpg", arcname=f"{stem}.jpg")
            txt = shard.parent / f"{stem}.txt"
            txt.write_text(caption)
            tar.add(txt, arcname=f"{stem}.txt")
            txt.unlink()
    return shard


@pytest.fixture(scope="module")
def runs(cr_env, tmp_path_factory, tiny_hf_dir):
    """Both clip-retrieval inference runs, concurrently (each is mostly imports and one model
    load); → (images folder, captions, files output, webdataset output)."""
    base = tmp_path_factory.mktemp("cr_inference")
    captions = write_corpus(base / "images")
    shard = write_shard(base / "images", captions, base / "shard-0000.tar")
    common = ["--clip_model", f"hf_clip:{tiny_hf_dir}", "--batch_size", "8",
              "--num_prepro_workers", "0"]  # fmt: skip
    jobs = {
        "files": ["--input_dataset", base / "images", "--enable_text", "False"],
        "wds": ["--input_dataset", shard, "--input_format", "webdataset", "--enable_text", "True"],
    }
    procs = {
        k: subprocess.Popen(
            cr_env.cli("inference", *args, "--output_folder", base / k, *common),
            env=cr_env.environ(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        for k, args in jobs.items()
    }
    for k, p in procs.items():
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, f"clip-retrieval inference ({k}) exited {p.returncode}:\n{out}"
    return base / "images", captions, base / "files", base / "wds"


def clipsearch(*args, cwd: Path) -> str:
    """`clipsearch ARGS` in its own process, as a user runs it; stdout."""
    p = subprocess.run(
        [sys.executable, "-m", "app.cli", *map(str, args)], cwd=cwd, capture_output=True,
        text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def read_output(folder: Path) -> tuple[np.ndarray, np.ndarray | None, pd.DataFrame]:
    """clip-retrieval's own vectors and metadata, read with numpy and pandas (not our reader)."""
    (img,) = sorted((folder / "img_emb").glob("*.npy"))
    (meta,) = sorted((folder / "metadata").glob("*.parquet"))
    texts = sorted((folder / "text_emb").glob("*.npy")) if (folder / "text_emb").is_dir() else []
    txt = np.load(texts[0]).astype(np.float32) if texts else None
    return np.load(img).astype(np.float32), txt, pd.read_parquet(meta)


def assert_same_top_k(got: list[int], scores: np.ndarray, k: int = 10) -> None:
    """`got` (row numbers) is the exact top-k under `scores`, ties (within TOL) in any order."""
    assert len(got) == k and len(set(got)) == k
    best = np.sort(scores)[::-1][:k]
    np.testing.assert_allclose(scores[got], best, atol=TOL)


def import_cli(folder: Path, model: Path, index: Path, cwd: Path) -> dict:
    out = clipsearch("index", "import", folder, "--from", "clip-retrieval", "--model",
                     f"hf:{model}", "--index", index, "--json", cwd=cwd)  # fmt: skip
    return json.loads(out)


def test_folder_run_imports_with_the_same_top_10_as_exact_search(runs, tiny_hf_dir, tmp_path):
    from model import load_encoder

    images, captions, files_out, _ = runs
    img, txt, meta = read_output(files_out)
    assert txt is None and img.shape == (24, 16) and len(meta) == 24
    report = import_cli(files_out, tiny_hf_dir, tmp_path / "idx", tmp_path)
    assert (report["items"], report["encoded"], report["reused"]) == (24, 0, 24)
    assert report["skipped"] == [] and report["recall_at_10"] == 1.0
    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    # the model clipsearch loads as hf:DIR is the one clip-retrieval ran as hf_clip:DIR
    ours = enc.encode_images([Image.open(p).convert("RGB") for p in meta["image_path"]])
    assert ((ours * img).sum(1) > 0.99).all()
    v = open_index(tmp_path / "idx", expected_fingerprint=enc.fingerprint)
    try:
        row_of = {str(v.root / r["path"]): i for i, r in enumerate(v.rows())}
        to_row = {i: row_of[p] for i, p in enumerate(meta["image_path"])}
        assert sorted(to_row.values()) == list(range(24))
        for r in v.rows():  # every item points at its file and knows its size
            with Image.open(v.root / r["path"]) as im:
                assert (r["width"], r["height"]) == im.size
        texts = [f"a photo of a {n}" for n in SAMPLE_PHOTOS] + ["random noise", "a mirrored cat"]
        queries = np.concatenate([enc.encode_texts(texts), img[[0, 7, 13, 22]]])
        rows = {v_row: cr_row for cr_row, v_row in to_row.items()}
        for q, hits in zip(queries, v.search(queries, k=10), strict=True):
            got = [rows[int(h.item.id)] for h in hits]
            assert_same_top_k(got, img @ q)
    finally:
        v.close()
    # and through the CLI, as a user searches it
    hits = json.loads(clipsearch("search", "a photo of a coffee", "--index", tmp_path / "idx",
                                 "-k", "10", "--json", cwd=tmp_path))["hits"]  # fmt: skip
    by_path = {p: i for i, p in enumerate(meta["image_path"])}
    got = [by_path[str(Path(images) / h["path"])] for h in hits]
    assert_same_top_k(got, img @ enc.encode_texts(["a photo of a coffee"])[0])


def test_captioned_run_round_trips_every_vector_and_caption(runs, tiny_hf_dir, tmp_path):
    _, captions, _, wds_out = runs
    img, txt, meta = read_output(wds_out)
    assert txt is not None and txt.shape == img.shape == (24, 16)
    assert dict(zip(meta["image_path"], meta["caption"], strict=True)) == captions
    report = import_cli(wds_out, tiny_hf_dir, tmp_path / "a", tmp_path)
    assert (report["items"], report["encoded"]) == (24, 0)
    info = json.loads(
        clipsearch("index", "info", "--index", tmp_path / "a", "--json", cwd=tmp_path)
    )
    assert (info["count"], info["texts_count"]) == (24, 24)
    a = open_index(tmp_path / "a")
    try:  # the texts corpus: the captions, with clip-retrieval's own caption vectors
        assert a.manifest.texts_source == "captions"
        for i in (0, 9, 23):
            (top,) = a.search_texts(txt[i : i + 1], k=1)[0]
            assert top.text == meta["caption"][i] and top.score > 0.999
    finally:
        a.close()

    clipsearch("index", "export", tmp_path / "out", "--index", tmp_path / "a", "--to",
               "clip-retrieval", cwd=tmp_path)  # fmt: skip
    img2, txt2, meta2 = read_output(tmp_path / "out")
    order = [list(meta2["image_path"]).index(str(wds_out / k)) for k in meta["image_path"]]
    assert list(meta2["caption"][order]) == list(meta["caption"])
    # every vector comes back (re-normalised once on import: float16 rounding only)
    np.testing.assert_allclose(img2[order], img, atol=2e-3)
    np.testing.assert_allclose(txt2[order], txt, atol=2e-3)

    import_cli(tmp_path / "out", tiny_hf_dir, tmp_path / "b", tmp_path)
    a, b = open_index(tmp_path / "a"), open_index(tmp_path / "b")
    try:
        assert np.array_equal(np.load(a.path / "vectors.npy"), np.load(b.path / "vectors.npy"))
        key = ("path", "caption", "extra")
        assert [[r[k] for k in key] for r in b.rows()] == [[r[k] for k in key] for r in a.rows()]
        assert b.manifest.texts_count == 24
    finally:
        a.close()
        b.close()
