"""`clipsearch train`, `eval` and `data shapes` from the command line, every init family."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from app.cli import build_parser, main
from model import load_encoder
from model.train.config import TrainConfig


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_flags_come_from_train_config():
    """Every TrainConfig field but `extra` is a flag, typed from the field; unset flags are None
    (so --config values stay) and bool fields take --x / --no-x."""
    parser = build_parser()
    args = parser.parse_args(["train", "--steps", "3", "--lr", "1e-3", "--no-tensorboard"])
    assert args.steps == 3 and args.lr == 1e-3 and args.tensorboard is False
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"extra"}
    assert all(getattr(args, n) is None for n in names - {"steps", "lr", "tensorboard"})
    args = parser.parse_args(["train", "--lock-image", "--val", "v.csv", "--device", "cpu"])
    assert args.lock_image is True and args.val == "v.csv" and args.device == "cpu"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--steps", "many"])


def quick(shapes, tok, out, *extra) -> list[str]:
    return [
        "train", "--train", str(shapes / "train.csv"), "--val", str(shapes / "heldout.csv"),
        "--out", str(out), "--tokenizer", str(tok), "--batch-size", "8", "--warmup-steps", "1",
        "--workers", "0", "--no-progress", "--no-tensorboard", "--log-every", "1", *extra,
    ]  # fmt: skip


def test_train_from_config_file_with_overrides_then_eval(
    tmp_path, capsys, small_shapes_dir, clip_tok_dir
):
    from tests.train.conftest import write_model_config

    mc = write_model_config(tmp_path / "m.json")
    (tmp_path / "run.yaml").write_text(f"model-config: {mc}\nsteps: 7\nsave_every: 2\nlr: 0.001\n")
    out = tmp_path / "run"
    code, stdout, err = run(
        capsys,
        *quick(small_shapes_dir, clip_tok_dir, out, "--config", str(tmp_path / "run.yaml")),
        "--steps", "3", "--json",
    )  # fmt: skip
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["steps"] == 3 and summary["model"] == str(out)  # CLI beat the file's 7
    assert set(summary["val"]["t2i"]) == {"R@1", "R@5", "R@10"}
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["lr"] == 0.001 and saved["steps"] == 3
    assert (out / "train_state").is_dir()
    header, *rows = (out / "metrics.csv").read_text().splitlines()
    assert header.startswith("step,epoch,samples,loss,lr")
    assert len(rows) == 4  # 3 steps + the final eval row
    enc = load_encoder(str(out), device="cpu")
    assert enc.dim == 32

    code, stdout, err = run(
        capsys, "eval", "--model", str(out), "--data", str(small_shapes_dir / "heldout.csv"),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(stdout)
    assert res["t2i"] == summary["val"]["t2i"] and set(res["i2t"]) == {"R@1", "R@5", "R@10"}
    assert res["zeroshot"]["classes"] == 4 and res["n_images"] == 12


def test_finetune_hf_clip_and_load_the_output(tmp_path, capsys, small_shapes_dir, tiny_hf_dir):
    out = tmp_path / "ft"
    argv = quick(small_shapes_dir, tiny_hf_dir, out, "--init", f"hf:{tiny_hf_dir}", "--steps", "2")
    code, stdout, err = run(capsys, *argv, "--accum-steps", "2", "--lr-text", "1e-3")
    assert code == 0, err
    assert stdout.strip() == f"hf:{out}"
    before = load_encoder(f"hf:{tiny_hf_dir}", device="cpu")
    after = load_encoder(f"hf:{out}", device="cpu")
    assert after.preprocess_config == before.preprocess_config
    v0, v1 = before.encode_texts(["a red circle"]), after.encode_texts(["a red circle"])
    assert v1.shape == v0.shape and not np.allclose(v0, v1)


def test_finetune_a_clipsearch_checkpoint_with_siglip(tmp_path, capsys, small_shapes_dir,
                                                     tiny_ckpt_dir):  # fmt: skip
    out = tmp_path / "sig"
    argv = quick(small_shapes_dir, tiny_ckpt_dir, out, "--init", str(tiny_ckpt_dir))
    code, _, err = run(capsys, *argv, "--steps", "2", "--loss", "siglip")
    assert code == 0, err
    enc = load_encoder(str(out), device="cpu")
    assert enc.fingerprint != load_encoder(str(tiny_ckpt_dir), device="cpu").fingerprint


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--out", "x"], "no training data"),
        (["train", "--train", "/nonexistent.csv", "--out", "x", "--init", "starter"], "no such"),
        (["train", "--train", "a.csv", "--out", "x", "--loss", "triplet"], "loss must be"),
        (["train", "--train", "a.csv", "--out", "x", "--init", "nonsense"], "nonsense"),
        (["eval", "--data", "/nonexistent.csv"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("clipsearch: error:") and message in err


def test_unknown_config_keys_are_named(tmp_path, capsys):
    (tmp_path / "c.json").write_text(json.dumps({"stepz": 3}))
    code, _, err = run(capsys, "train", "--config", str(tmp_path / "c.json"))
    assert code == 1 and "stepz" in err
    with pytest.raises(ValueError):
        TrainConfig(train="a", out="b", batch_size=10, accum_steps=3).validate()
