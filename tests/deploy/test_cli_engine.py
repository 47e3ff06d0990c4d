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
