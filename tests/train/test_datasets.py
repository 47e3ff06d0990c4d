"""Caption datasets read as they come, from small files written in each layout: COCO captions,
Flickr30k results.csv, Flickr8k captions.txt / Flickr8k.token.txt and Karpathy split files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from model.train.data import DataError, load_pairs
from model.train.datasets import split_for


def images(d: Path, *names: str) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(names):
        (d / n).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(d / n)


def captions_by_image(data) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for image, caption in zip(data.images, data.captions, strict=True):
        out.setdefault(Path(image).name, []).append(caption)
    return out


def test_coco_captions_json(tmp_path):
    images(tmp_path / "val2017", "000000000139.jpg", "000000000285.jpg")
    ann = {
        "info": {},
        "images": [
            {"id": 139, "file_name": "000000000139.jpg"},
            {"id": 285, "file_name": "000000000285.jpg"},
        ],
        "annotations": [
            {"image_id": 139, "id": 1, "caption": "A living room."},
            {"image_id": 285, "id": 2, "caption": "A bear."},
            {"image_id": 139, "id": 3, "caption": "A room with a TV."},
        ],
    }
    (tmp_path / "annotations").mkdir()
    path = tmp_path / "annotations" / "captions_val2017.json"
    path.write_text(json.dumps(ann))
    data = load_pairs(path)
    assert captions_by_image(data) == {
        "000000000139.jpg": ["A living room.", "A room with a TV."],
        "000000000285.jpg": ["A bear."],
    }
    assert data.num_images == 2 and len(set(data.image_ids)) == 2
    assert data.image_ids[0] == data.image_ids[2]  # several captions, one image


def test_flickr30k_results_csv(tmp_path):
    root = tmp_path / "flickr30k_images"
    images(root / "flickr30k_images", "1000092795.jpg", "10002456.jpg")  # Kaggle's nesting
    (root / "results.csv").write_text(
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair .\n"
        "1000092795.jpg| 1| Two friends enjoy time spent together .\n"
        "10002456.jpg| 0| Several men in hard hats | operating a pulley .\n"
    )
    data = load_pairs(root / "results.csv")
    by = captions_by_image(data)
    assert by["1000092795.jpg"] == [
        "Two young guys with shaggy hair .",
        "Two friends enjoy time spent together .",
    ]
    assert by["10002456.jpg"] == ["Several men in hard hats | operating a pulley ."]


def test_flickr8k_captions_txt_and_token_file(tmp_path):
    images(tmp_path / "Images", "1000268201_693b08cb0e.jpg", "1001773457_577c3a7d70.jpg")
    (tmp_path / "captions.txt").write_text(
        "image,caption\n"
        "1000268201_693b08cb0e.jpg,A child in a pink dress is climbing up a set of stairs .\n"
        '1000268201_693b08cb0e.jpg,"A girl going into a wooden building , smiling ."\n'
        "1001773457_577c3a7d70.jpg,A black dog and a spotted dog are fighting\n"
    )
    by = captions_by_image(load_pairs(tmp_path / "captions.txt"))
    assert by["1000268201_693b08cb0e.jpg"][1] == "A girl going into a wooden building , smiling ."
    assert len(by["1000268201_693b08cb0e.jpg"]) == 2 and len(by) == 2
    (tmp_path / "Flickr8k.token.txt").write_text(
        "1000268201_693b08cb0e.jpg#0\tA child in a pink dress .\n"
        "1001773457_577c3a7d70.jpg#0\tA black dog .\n"
    )
    assert len(load_pairs(tmp_path / "Flickr8k.token.txt")) == 2


def karpathy(tmp_path: Path, coco: bool) -> Path:
    entries = []
    for i, split in enumerate(["train", "restval", "val", "test", "test"]):
        name = f"img{i}.jpg"
        entry = {"filename": name, "split": split, "sentences": [
            {"raw": f"caption {i} a"}, {"raw": f"caption {i} b"},
        ]}  # fmt: skip
        if coco:
            entry["filepath"] = "val2014"
        entries.append(entry)
        images(tmp_path / ("val2014" if coco else "flickr30k-images"), name)
    if not coco:
        (tmp_path / "flickr30k_images").mkdir()
        for p in (tmp_path / "flickr30k-images").iterdir():
            p.rename(tmp_path / "flickr30k_images" / p.name)
    path = tmp_path / ("dataset_coco.json" if coco else "dataset_flickr30k.json")
    path.write_text(json.dumps({"images": entries, "dataset": "coco" if coco else "flickr30k"}))
    return path


@pytest.mark.parametrize("coco", [True, False])
def test_karpathy_split_files(tmp_path, coco):
    path = karpathy(tmp_path, coco)
    test = load_pairs(path, split="test")
    assert sorted(captions_by_image(test)) == ["img3.jpg", "img4.jpg"]
    assert len(test) == 4 and test.num_images == 2  # five captions per image in the real files
    assert sorted(captions_by_image(load_pairs(path, split="val"))) == ["img2.jpg"]
    assert sorted(captions_by_image(load_pairs(path, split="train"))) == ["img0.jpg", "img1.jpg"]
    with pytest.raises(DataError, match="needs --split"):
        load_pairs(path)
    with pytest.raises(DataError, match="choose one of train, val, test"):
        load_pairs(path, split="dev")
    assert split_for(path, None, "test") == "test" and split_for(path, "val", "test") == "val"


def test_split_is_only_for_karpathy_files(tmp_path):
    (tmp_path / "m.csv").write_text("image,caption\n")
    assert split_for(tmp_path / "m.csv", None, "test") is None
    with pytest.raises(DataError, match="Karpathy"):
        load_pairs(tmp_path / "m.csv", split="test")


def test_missing_images_are_counted_not_fatal(tmp_path):
    images(tmp_path / "Images", "a.jpg")
    (tmp_path / "captions.txt").write_text("image,caption\na.jpg,one\nmissing.jpg,two\n")
    data = load_pairs(tmp_path / "captions.txt")
    assert len(data) == 1 and data.skipped["image_not_found"] == 1


def test_eval_cli_reads_a_karpathy_test_split(tmp_path, capsys, tiny_ckpt_dir):
    from app.cli import main

    path = karpathy(tmp_path, coco=False)
    argv = ["eval", "--model", str(tiny_ckpt_dir), "--data", str(path), "--json"]
    assert main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n_images"] == 2 and res["n_texts"] == 4  # the test split by default
    assert main([*argv, "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["n_images"] == 2
