"""torchrun --nproc_per_node 2 (gloo): the same loss and gradients as one process on the
concatenated batch, with and without accumulation; a whole CLI run matches too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.train.config import TrainConfig
from model.train.modeling import build_model
from tests.train.test_accum import batch_for, grads_of

REPO = Path(__file__).resolve().parents[2]


def torchrun(args: list[str], tmp_path: Path, timeout: int = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *args,
    ]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("accum", [1, 2])
def test_two_processes_match_one_process(tmp_path, vit_config, clip_tok_dir, accum):
    out = tmp_path / "ddp.pt"
    torchrun(
        [str(REPO / "tests/train/ddp_worker.py"), str(out), str(vit_config), str(clip_tok_dir),
         str(accum)],
        tmp_path,
    )  # fmt: skip
    ddp = torch.load(out, weights_only=True)
    assert ddp["world"] == 2
    tm = build_model(
        TrainConfig(train="-", out="-", model_config=str(vit_config), tokenizer=str(clip_tok_dir))
    )
    tm.module.train()
    loss, grads = grads_of(tm, batch_for(tm), 1)
    assert ddp["loss"] == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == ddp["grads"].keys()
    for name, g in grads.items():
        err = (ddp["grads"][name] - g).norm()
        assert err <= 1e-4 * g.norm() + 1e-9, (name, float(err))


@pytest.mark.slow
def test_torchrun_training_matches_single_process(tmp_path, vit_config, clip_tok_dir,
                                                  small_shapes_dir):  # fmt: skip
    common = [
        "--train", str(small_shapes_dir / "train.csv"), "--model-config", str(vit_config),
        "--tokenizer", str(clip_tok_dir), "--steps", "3", "--batch-size", "8",
        "--warmup-steps", "1", "--workers", "0", "--save-every", "0", "--no-progress",
        "--no-tensorboard",
    ]  # fmt: skip
    torchrun(["-m", "app.cli", "train", "--out", str(tmp_path / "ddp"), *common], tmp_path)
    from app.cli import main

    assert main(["train", "--out", str(tmp_path / "one"), *common]) == 0
    a = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    b = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert a.keys() == b.keys()
    moved = 0
    init = build_model(
        TrainConfig(train="-", out="-", model_config=str(vit_config), tokenizer=str(clip_tok_dir))
    ).module.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        moved += not torch.equal(a[k], init[k])
    assert moved > len(a) // 2  # training really changed the weights
