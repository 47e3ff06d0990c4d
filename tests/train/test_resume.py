"""Exact resume: N steps straight through == N/2-ish, SIGKILL, --resume to N (bitwise on CPU)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from model.train.config import ConfigError
from model.train.loop import train
from model.train.state import find_latest_state

REPO = Path(__file__).resolve().parents[2]
STEPS = 24


def cli(out: Path, args: list[str], extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "app.cli", "train", "--out", str(out), *args, *extra]


@pytest.mark.slow
def test_kill_and_resume_gives_identical_weights(
    tmp_path, make_cfg, clip_tok_dir, small_shapes_dir
):
    from tests.train.conftest import write_model_config

    mc = write_model_config(tmp_path / "m.json", dropout=True)  # dropout: RNG state matters
    args = [
        "--train", str(small_shapes_dir / "train.csv"), "--model-config", str(mc),
        "--tokenizer", str(clip_tok_dir), "--steps", str(STEPS), "--batch-size", "8",
        "--warmup-steps", "3", "--workers", "1", "--save-every", "4", "--no-progress",
        "--no-tensorboard", "--log-every", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONPATH": str(REPO)}
    run = lambda cmd: subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)  # noqa: E731

    r = run(cli(tmp_path / "straight", args))
    assert r.returncode == 0, r.stderr[-2000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(killed, args), cwd=REPO, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while find_latest_state(killed) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = find_latest_state(killed)
    assert state is not None, "no step checkpoint appeared"
    assert not (killed / "model.safetensors").exists(), "the run finished before the kill"
    resumed_from = int(state.stem.split("_")[1])
    assert 0 < resumed_from < STEPS

    r = run(cli(killed, args, ("--resume",)))
    assert r.returncode == 0, r.stderr[-2000:]
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(killed / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), f"{k} differs after resuming from step {resumed_from}"
    # the metrics log continues without duplicate steps
    steps = [ln.split(",")[0] for ln in (killed / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(1, STEPS + 1)]


def test_resume_refuses_a_different_run(make_cfg):
    cfg = make_cfg(steps=2, save_every=1)
    train(cfg)
    with pytest.raises(ConfigError, match="batch_size"):
        train(make_cfg(steps=2, save_every=1, batch_size=4), resume=True)
    with pytest.raises(ConfigError, match="no step checkpoint"):
        train(make_cfg(steps=2, out=cfg.out + "-empty"), resume=True)
