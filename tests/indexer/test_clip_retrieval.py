"""clip-retrieval's embedding folders in and out (indexer.clip_retrieval).

The folders are written the way clip-retrieval 2.45's `clip_inference/writer.py` writes them
(np.save of float16 L2-normalised rows, pandas `to_parquet` with `image_path`, `caption` and the
flattened metadata columns, parts numbered with the same zero padding). A real `clip-retrieval
inference` run over the sample photos with a tiny `hf_clip:` model gave exactly this shape:
img_emb/img_emb_0.npy float16 (5, 16), metadata/metadata_0.parquet with one `image_path`
column of absolute paths (plus stats/0.json, which the importer ignores)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import open_index
from indexer.clip_retrieval import ImportOptions, export_embeddings, import_embeddings

CAPTIONS = {
    "cat": "a cat on a sofa",
    "coffee": "a cup of coffee",
    "rocket": "a rocket launch",
    "astronaut": "an astronaut",
    "camera": "a man with a camera",
}


def write_clip_retrieval_folder(
    out: Path,
    image_paths: list[str],
    img_emb: np.ndarray,
    captions: list[str] | None = None,
    text_emb: np.ndarray | None = None,
    metadata: list[dict] | None = None,
    write_batch_size: int = 10**6,
) -> Path:
    """What clip-retrieval's OutputSink writes (one part per `write_batch_size` rows)."""
    import pandas as pd  # clip-retrieval writes its metadata with pandas (a dev dependency)

    parts = math.ceil(len(image_paths) / write_batch_size)
    width = int(math.log10(parts)) + 1
    for sub in ("img_emb", "metadata") + (("text_emb",) if text_emb is not None else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for n in range(parts):
        sl = slice(n * write_batch_size, (n + 1) * write_batch_size)
        tag = str(n).zfill(width)
        np.save(out / "img_emb" / f"img_emb_{tag}.npy", img_emb[sl].astype(np.float16))
        cols, data = ["image_path"], [image_paths[sl]]
        if text_emb is not None:
            np.save(out / "text_emb" / f"text_emb_{tag}.npy", text_emb[sl].astype(np.float16))
        if captions is not None:
            cols.append("caption")
            data.append(captions[sl])
        if metadata is not None:
            cols.append("metadata")
            data.append([json.dumps(m) for m in metadata[sl]])
        df = pd.DataFrame(data=list(zip(*data, strict=True)), columns=cols)
        if metadata is not None:
            parsed = pd.json_normalize(df["metadata"].apply(json.loads))
            df = df.join(parsed).drop(columns=["metadata"])
        df.to_parquet(out / "metadata" / f"metadata_{tag}.parquet")
    return out


@pytest.fixture(scope="module")
def tiny_encoder(tiny_hf_dir):
    from model import load_encoder

    return load_encoder(f"hf:{tiny_hf_dir}", device="cpu")


@pytest.fixture(scope="module")
def cr_folder(tmp_path_factory, photos_dir, tiny_encoder):
    """A captioned clip-retrieval folder over the sample photos (two parts, text_emb, url)."""
    base = tmp_path_factory.mktemp("cr")
    names = sorted(CAPTIONS)
    paths = [str(photos_dir / f"{n}.jpg") for n in names]
    img = tiny_encoder.encode_images([Image.open(p).convert("RGB") for p in paths])
    caps = [CAPTIONS[n] for n in names]
    txt = img  # a marker: the texts corpus must carry these vectors, not re-encoded captions
    meta = [{"url": f"https://example.com/{n}.jpg", "licence": {"name": "cc0"}} for n in names]
    write_clip_retrieval_folder(base / "emb", paths, img, caps, txt, meta, write_batch_size=3)
    return base / "emb", paths, img, caps


def test_import_publishes_a_searchable_version(cr_folder, tmp_path, tiny_encoder, photos_dir):
    folder, paths, img, caps = cr_folder
    assert sorted(p.name for p in (folder / "img_emb").iterdir()) == [
        "img_emb_0.npy",
        "img_emb_1.npy",
    ]
    report = import_embeddings(folder, tmp_path / "idx", tiny_encoder)
    assert (report.items, report.encoded, report.skipped) == (5, 0, [])
    v = open_index(tmp_path / "idx", expected_fingerprint=tiny_encoder.fingerprint)
    try:
        assert v.manifest.model == tiny_encoder.spec and v.dim == img.shape[1]
        assert v.manifest.recall_at_10 == 1.0 and v.factory == "Flat"
        assert v.manifest.texts_count == 5 and v.manifest.texts_source == "captions"
        rows = list(v.rows())
        assert [str(v.root / r["path"]) for r in rows] == paths
        assert [r["caption"] for r in rows] == caps
        extra = json.loads(rows[1]["extra"])
        assert extra == {"url": "https://example.com/camera.jpg", "licence.name": "cc0"}
        assert (rows[0]["width"], rows[0]["height"]) == Image.open(paths[0]).size
        assert v.image_path(int(rows[2]["id"])) == Path(paths[2]).resolve()
        # same top-k as exact search over clip-retrieval's own vectors
        q = tiny_encoder.encode_texts(["a photo", "a cup of coffee", "space"])
        exact = np.argsort(-(q @ img.astype(np.float16).astype(np.float32).T), axis=1)
        hits = v.search(q, k=5)
        for row_hits, order in zip(hits, exact, strict=True):
            assert [h.item.path for h in row_hits] == [Path(paths[i]).name for i in order]
        t = v.search_texts(img[2:3].astype(np.float32), k=1)[0][0]  # clip-retrieval's text_emb
        assert t.text == caps[2] and t.score > 0.999
    finally:
        v.close()


def test_width_must_match_the_model(tmp_path, tiny_encoder, photos_dir):
    vecs = np.eye(8, dtype=np.float32)[:2]
    paths = [str(photos_dir / "cat.jpg"), str(photos_dir / "coffee.jpg")]
    folder = write_clip_retrieval_folder(tmp_path / "emb", paths, vecs)
    with pytest.raises(ValueError, match=r"8 wide but model .* gives 16"):
        import_embeddings(folder, tmp_path / "idx", tiny_encoder)
    assert not (tmp_path / "idx").exists()


def test_not_a_clip_retrieval_folder(tmp_path, tiny_encoder):
    (tmp_path / "emb" / "img_emb").mkdir(parents=True)
    with pytest.raises(ValueError, match="no img_emb"):
        import_embeddings(tmp_path / "emb", tmp_path / "idx", tiny_encoder)
    np.save(tmp_path / "emb" / "img_emb" / "img_emb_0.npy", np.ones((2, 16), np.float16))
    with pytest.raises(ValueError, match="1 img_emb parts but 0 metadata parts"):
        import_embeddings(tmp_path / "emb", tmp_path / "idx", tiny_encoder)


def test_rows_outside_root_and_repeated_paths_are_skipped(tmp_path, tiny_encoder, photos_dir):
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((3, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    paths = [str(photos_dir / "cat.jpg"), str(photos_dir / "cat.jpg"), "/elsewhere/x.jpg"]
    folder = write_clip_retrieval_folder(tmp_path / "emb", paths, vecs)
    opts = ImportOptions(root=photos_dir)
    report = import_embeddings(folder, tmp_path / "idx", tiny_encoder, opts)
    assert report.items == 1
    assert sorted(s.code for s in report.skipped) == ["duplicate_path", "outside_corpus"]


def test_export_then_import_keeps_every_vector_and_caption(cr_folder, tmp_path, tiny_encoder):
    folder, paths, img, caps = cr_folder
    import_embeddings(folder, tmp_path / "a", tiny_encoder)
    assert export_embeddings(tmp_path / "a", tmp_path / "out", rows_per_part=2) == 5
    assert sorted(p.name for p in (tmp_path / "out" / "img_emb").iterdir()) == [
        "img_emb_0.npy", "img_emb_1.npy", "img_emb_2.npy",
    ]  # fmt: skip
    assert (tmp_path / "out" / "text_emb" / "text_emb_0.npy").is_file()
    import_embeddings(tmp_path / "out", tmp_path / "b", tiny_encoder)
    a, b = open_index(tmp_path / "a"), open_index(tmp_path / "b")
    try:
        va = np.load(a.path / "vectors.npy")
        vb = np.load(b.path / "vectors.npy")
        assert np.array_equal(va, vb)
        ra, rb = list(a.rows()), list(b.rows())
        key = ("caption", "extra", "width", "height", "size", "sha256")
        assert [str(b.root / r["path"]) for r in rb] == [str(a.root / r["path"]) for r in ra]
        assert [[r[k] for k in key] for r in rb] == [[r[k] for k in key] for r in ra]
        assert b.manifest.texts_count == a.manifest.texts_count == 5
    finally:
        a.close()
        b.close()


def test_export_refuses_a_non_empty_folder(cr_folder, tmp_path, tiny_encoder):
    import_embeddings(cr_folder[0], tmp_path / "idx", tiny_encoder)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(ValueError, match="not empty"):
        export_embeddings(tmp_path / "idx", tmp_path / "out")
