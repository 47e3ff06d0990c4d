"""`clipsearch train`: a tiny fine-tune on the shapes set, as a user runs it."""

from __future__ import annotations

import json

from model import load_encoder


def quick(shapes, out, *extra) -> list:
    return [
        "train", "--train", shapes / "train.csv", "--out", out, "--batch-size", "8",
        "--warmup-steps", "1", "--workers", "0", "--save-every", "0", "--log-every", "1",
        "--no-progress", "--no-tensorboard", *extra,
    ]  # fmt: skip


def test_train_from_a_checkpoint_then_load_it(cli, tmp_path, shapes_data, tiny_ckpt_dir):
    out = tmp_path / "run"
    argv = quick(shapes_data, out, "--init", tiny_ckpt_dir, "--steps", "2")
    code, stdout, err = cli(*argv, "--val", shapes_data / "heldout.csv", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert set(summary) == {"model", "steps", "final_loss", "val", "skipped"}
    assert summary["model"] == str(out) and summary["steps"] == 2
    assert set(summary["val"]["t2i"]) == {"R@1", "R@5", "R@10"}
    assert (out / "metrics.csv").is_file() and not (out / "train_state").exists()
    enc = load_encoder(summary["model"], device="cpu")
    assert enc.dim == 16
    assert enc.fingerprint != load_encoder(str(tiny_ckpt_dir), device="cpu").fingerprint


def test_flags_override_the_config_file_only_where_given(cli, tmp_path, shapes_data,
                                                        tiny_ckpt_dir):  # fmt: skip
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"steps": 5, "lr": 0.002, "init": str(tiny_ckpt_dir)}))
    out = tmp_path / "run"
    code, stdout, err = cli(*quick(shapes_data, out, "--config", config, "--steps", "1"))
    assert code == 0, err
    assert stdout.strip() == str(out) and "trained 1 steps" in err
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["steps"] == 1 and saved["lr"] == 0.002 and saved["progress"] is False


def test_bad_training_input_is_one_line(cli, tmp_path):
    code, _, err = cli("train", "--train", "a.csv", "--out", tmp_path, "--loss", "triplet")
    assert code == 1 and err.count("\n") == 1 and "loss must be" in err
    code, _, err = cli("train", "--out", tmp_path)
    assert code == 1 and "no training data" in err
