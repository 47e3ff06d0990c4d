"""Data sources (CSV/TSV/JSONL, folder, WebDataset tars), skipped rows, deterministic batches."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from model.samples.shapes import all_scenes, generate, is_heldout
from model.train.data import (
    DataError,
    PairDataset,
    StepBatchSampler,
    TarMember,
    collate,
    load_pairs,
)


def png(color=(200, 10, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture()
def corpus(tmp_path) -> Path:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "b.png").write_bytes(png((0, 0, 255)))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return tmp_path


def test_csv_with_several_captions_per_image_and_bad_rows(corpus):
    (corpus / "m.csv").write_text(
        "image,caption\n"
        "a.png,a red square\n"
        "a.png,red\n"
        "b.png,a blue square\n"
        "missing.png,gone\n"
        "b.png,\n"
        "broken.png,broken\n"
    )
    data = load_pairs(corpus / "m.csv")
    assert data.captions == ["a red square", "red", "a blue square", "broken"]
    assert data.image_ids[0] == data.image_ids[1] != data.image_ids[2]
    assert data.num_images == 3
    assert dict(data.skipped) == {"image_not_found": 1, "empty_caption": 1}
    ds = PairDataset(data, lambda im: torch.zeros(3, 4, 4), 4)
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["valid"].tolist() == [True, True, True, False]  # undecodable → placeholder
    assert batch["pixels"].shape == (4, 3, 4, 4)


def test_tsv_and_jsonl(corpus):
    (corpus / "m.tsv").write_text("path\ttext\tlabel\na.png\tred thing\tred\n")
    data = load_pairs(corpus / "m.tsv")
    assert data.captions == ["red thing"] and data.labels == ["red"]
    (corpus / "m.jsonl").write_text(
        json.dumps({"image": "a.png", "caption": "x"}) + "\nnot json\n"
        + json.dumps({"image": str(corpus / "b.png"), "caption": "y"}) + "\n"
    )  # fmt: skip
    data = load_pairs(corpus / "m.jsonl")
    assert data.captions == ["x", "y"] and data.skipped["invalid_json"] == 1


def test_folder_of_images_and_txt(corpus):
    (corpus / "a.txt").write_text("first caption\n\nsecond caption\n")
    (corpus / "b.txt").write_text("   \n")
    data = load_pairs(corpus)
    assert data.captions == ["first caption", "second caption"]
    assert data.skipped["empty_caption"] == 1 and data.skipped["missing_caption"] == 1


def test_webdataset_shards(tmp_path):
    for s in range(2):
        with tarfile.open(tmp_path / f"shard-{s:03d}.tar", "w") as tar:
            for i in range(3):
                for ext, payload in ((".png", png((s * 100, i * 50, 0))), (".txt", b"cap %d" % i)):
                    info = tarfile.TarInfo(f"s{s}_{i:04d}{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
            info = tarfile.TarInfo("s_orphan.txt")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    for spec in (tmp_path / "shard-{000..001}.tar", tmp_path / "shard-*.tar", tmp_path):
        data = load_pairs(str(spec))
        assert len(data) == 6 and data.skipped["missing_image"] == 2
    assert isinstance(data.images[0], TarMember)
    img = Image.open(io.BytesIO(data.images[0].read()))
    assert img.size == (16, 16)


def test_unusable_sources_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_pairs(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("foo,bar\n1,2\n")
    with pytest.raises(DataError, match="image column"):
        load_pairs(tmp_path / "bad.csv")
    (tmp_path / "empty.csv").write_text("image,caption\nmissing.png,x\n")
    with pytest.raises(DataError, match="no usable"):
        load_pairs(tmp_path / "empty.csv")
    (tmp_path / "x.parquet").write_text("")
    with pytest.raises(DataError, match="unknown data format"):
        load_pairs(tmp_path / "x.parquet")


def test_batches_are_deterministic_by_step_and_split_by_rank():
    full = list(StepBatchSampler(20, 8, seed=3, start_step=0, total_steps=6))
    assert all(len(b) == 8 for b in full)
    assert list(StepBatchSampler(20, 8, seed=3, start_step=4, total_steps=6)) == full[4:]
    r0 = list(StepBatchSampler(20, 8, seed=3, start_step=0, total_steps=6, rank=0, world=2))
    r1 = list(StepBatchSampler(20, 8, seed=3, start_step=0, total_steps=6, rank=1, world=2))
    assert [a + b for a, b in zip(r0, r1, strict=True)] == full
    rows = [i % 20 for i in full[0] + full[1]]  # one epoch (2 steps of 8 of 20 rows): no repeats
    assert len(set(rows)) == 16
    assert full[2] != full[0]  # a new permutation each epoch


def test_shapes_generator_holds_out_unseen_combinations(tmp_path):
    counts = generate(tmp_path, n=30, seed=0, n_heldout=10)
    assert counts == {"train": 30, "heldout": 10}
    train = load_pairs(tmp_path / "train.csv")
    held = load_pairs(tmp_path / "heldout.csv")
    assert len(train) == 60 and train.num_images == 30  # two captions per image
    assert len(set(held.captions)) == 10  # unique, so retrieval is unambiguous
    train_pairs = {
        tuple(c.split()[2:4]) for c in train.captions if not c.startswith(("on", "at", "in"))
    }
    held_pairs = {tuple(c.split()[2:4]) for c in held.captions}
    assert not {(col, shp.rstrip("s")) for col, shp in held_pairs} & {
        (col, shp.rstrip("s")) for col, shp in train_pairs
    }
    assert all(is_heldout(s.shape, s.colour) for s in all_scenes(heldout=True))
    again = tmp_path / "again"
    generate(again, n=30, seed=0, n_heldout=10)
    assert (again / "train.csv").read_text() == (tmp_path / "train.csv").read_text()
    assert (again / "images/train_000003.png").read_bytes() == (
        tmp_path / "images/train_000003.png"
    ).read_bytes()
