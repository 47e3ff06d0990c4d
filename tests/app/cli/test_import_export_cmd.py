"""`clipsearch index import --from clip-retrieval` and `index export --to clip-retrieval`, as a
user runs them (a folder in clip-retrieval's output layout, a tiny `hf:` model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.indexer.test_clip_retrieval import CAPTIONS, write_clip_retrieval_folder


@pytest.fixture(scope="module")
def emb_folder(tmp_path_factory, photos_dir, tiny_hf_dir):
    """clip-retrieval's output over the sample photos: captions and a url column, no text_emb."""
    from model import load_encoder

    enc = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    names = sorted(CAPTIONS)
    paths = [str(photos_dir / f"{n}.jpg") for n in names]
    img = enc.encode_images([Image.open(p).convert("RGB") for p in paths])
    meta = [{"url": f"https://example.com/{n}.jpg"} for n in names]
    base = tmp_path_factory.mktemp("cli_cr")
    caps = [CAPTIONS[n] for n in names]
    return write_clip_retrieval_folder(base / "emb", paths, img, caps, None, meta), img


def test_import_then_search_then_export_round_trip(cli, emb_folder, tiny_hf_dir, tmp_path):
    folder, img = emb_folder
    model = f"hf:{tiny_hf_dir}"
    code, out, err = cli("index", "import", folder, "--from", "clip-retrieval", "--model", model,
                         "--index", tmp_path / "idx")  # fmt: skip
    assert code == 0, err
    version = out.strip()
    assert "reused 5" in err and "recall@10 1.000" in err
    code, out, _ = cli("index", "info", "--index", tmp_path / "idx", "--json")
    info = json.loads(out)
    assert (info["version"], info["count"], info["dim"], info["model"]) == (version, 5, 16, model)
    assert info["texts_count"] == 5  # the captions, encoded with the model's text tower
    code, out, _ = cli(
        "search", "a cup of coffee", "--index", tmp_path / "idx", "-k", "5", "--json"
    )
    assert code == 0 and len(json.loads(out)["hits"]) == 5

    code, out, err = cli("index", "export", tmp_path / "out", "--index", tmp_path / "idx",
                         "--to", "clip-retrieval")  # fmt: skip
    assert code == 0, err
    assert "wrote 5 embeddings" in err
    exported = np.load(tmp_path / "out" / "img_emb" / "img_emb_0.npy")
    assert exported.dtype == np.float16 and np.array_equal(exported, img.astype(np.float16))
    assert (tmp_path / "out" / "text_emb" / "text_emb_0.npy").is_file()
    code, out, err = cli("index", "import", tmp_path / "out", "--from", "clip-retrieval",
                         "--model", model, "--index", tmp_path / "idx2", "--json")  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert (report["items"], report["encoded"], report["mode"]) == (5, 0, "import")
    a = sorted((tmp_path / "idx" / "versions").iterdir())[-1]
    b = sorted((tmp_path / "idx2" / "versions").iterdir())[-1]
    assert np.array_equal(np.load(a / "vectors.npy"), np.load(b / "vectors.npy"))


def test_import_errors_are_one_line(cli, emb_folder, tmp_path, tiny_hf_dir):
    folder, _ = emb_folder
    # the starter model is 384 wide, the embeddings 16
    code, _, err = cli("index", "import", folder, "--from", "clip-retrieval", "--model",
                       "starter", "--index", tmp_path / "idx")  # fmt: skip
    assert code == 1
    assert err.startswith("clipsearch: error: the embeddings are 16 wide but model 'starter'")
    assert err.count("\n") == 1
    code, _, err = cli("index", "import", tmp_path / "nope", "--from", "clip-retrieval",
                       "--model", f"hf:{tiny_hf_dir}", "--index", tmp_path / "idx")  # fmt: skip
    assert (code, err) == (1, f"clipsearch: error: {tmp_path / 'nope'}: no such folder\n")
    code, _, err = cli("index", "import", folder, "--from", "faiss", "--model", "starter",
                       "--index", tmp_path / "idx")  # fmt: skip
    assert code == 2 and "invalid choice" in err


def test_export_errors_are_one_line(cli, tmp_path):
    code, _, err = cli("index", "export", tmp_path / "out", "--index", tmp_path / "none",
                       "--to", "clip-retrieval")  # fmt: skip
    assert code == 1 and err.startswith("clipsearch: error: ") and err.count("\n") == 1
