"""`--engine` / `--ray-address` argument checks (fast: no cluster is started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "clipsearch")


def test_ray_address_without_the_ray_engine_is_refused(photos_dir, tmp_path):
    r = subprocess.run(
        [CLI, "index", "build", str(photos_dir), "--index", str(tmp_path / "idx")]
        + ["--ray-address", "127.0.0.1:6379"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert "--ray-address needs --engine ray" in r.stderr
    assert not (tmp_path / "idx" / "CURRENT").exists()


def test_unknown_engine_is_refused(photos_dir, tmp_path):
    r = subprocess.run(
        [
            CLI,
            "index",
            "build",
            str(photos_dir),
            "--index",
            str(tmp_path / "idx"),
            "--engine",
            "k8s",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "invalid choice: 'k8s'" in r.stderr


def test_build_help_documents_the_engine():
    r = subprocess.run([CLI, "index", "build", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "--engine {local,ray}" in r.stdout and "--ray-address ADDR" in r.stdout


def test_ray_engine_refuses_the_int8_backend(photos_dir, tmp_path):
    r = subprocess.run(
        [CLI, "index", "build", str(photos_dir), "--index", str(tmp_path / "idx")]
        + ["--engine", "ray", "--backend", "onnx-int8"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "use --backend auto, torch or onnx with --engine ray" in r.stderr


def test_ray_encoder_actors_run_the_backend_the_driver_asked_for(tiny_ckpt_dir):
    """A CPU worker loads the model with the driver's backend (auto, torch or onnx all give the
    driver's fingerprint); run here in-process, as Ray would construct it on a node."""
    from indexer.ray_engine import EncodeActor
    from model import load_encoder

    fp = load_encoder(str(tiny_ckpt_dir), device="cpu", backend="torch").fingerprint
    for backend in ("torch", "onnx"):
        actor = EncodeActor(str(tiny_ckpt_dir), fp, "cpu", threads=1, backend=backend)
        assert actor.enc.backend == backend and actor.enc.fingerprint == fp
