"""A build SIGKILLed mid-way, several times, resumes from its shards and ends with the same items
as an uninterrupted build; the previous version stays live and openable throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from indexer import build_index, live_version, open_index
from tests.indexer.conftest import REPO
from tests.utils.images import sample_photo

pytestmark = pytest.mark.slow

SHARD = 3


def _corpus(root, n: int = 30):
    root.mkdir()
    names = ["cat", "coffee", "rocket", "astronaut", "camera"]
    for i in range(n):
        img = sample_photo(names[i % 5]).convert("RGB")
        w, h = img.size
        img = img.crop((i % 7, i % 5, w - i % 3, h - i % 4)).resize((96 + i, 80 + i))
        img.save(root / f"img_{i:03d}.jpg", quality=90)
    return root


def _items(idx):
    v = open_index(idx)
    try:
        return sorted(tuple(r) for r in v._db().execute("SELECT id, path, sha256 FROM items"))
    finally:
        v.close()


def _shards(idx):
    return sorted(idx.glob("work/shards/*/shard-*.npz"))


def _start_build(src, idx):
    cmd = [sys.executable, "-m", "app.cli", "index", "build", str(src), "--index", str(idx),
           "--shard-size", str(SHARD), "--batch-size", str(SHARD), "--workers", "0",
           "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_then_resume_equals_clean_build(tmp_path, starter_encoder):
    src = _corpus(tmp_path / "src")
    idx = tmp_path / "idx"
    # a live version to protect: an index of the first two images
    first = tmp_path / "first"
    first.mkdir()
    for p in sorted(src.iterdir())[:2]:
        (first / p.name).write_bytes(p.read_bytes())
    old = build_index(first, idx, starter_encoder, workers=0, progress=False).version

    kills = 0
    for _ in range(3):
        before = len(_shards(idx))
        proc = _start_build(src, idx)
        deadline = time.monotonic() + 240
        while len(_shards(idx)) <= before and proc.poll() is None:
            assert time.monotonic() < deadline, "no shard appeared"
            time.sleep(0.05)
        if proc.poll() is not None:
            break  # finished before it could be killed (very fast machine)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        # the old version is still live and complete after every kill
        assert live_version(idx) == old
        v = open_index(idx)
        assert v.count == 2
        v.close()
    assert kills >= 2

    proc = _start_build(src, idx)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr.decode()
    report = json.loads(stdout)
    assert report["resumed"] >= kills * SHARD
    assert report["encoded"] + report["resumed"] == 30
    assert live_version(idx) == report["version"] != old
    assert not _shards(idx), "shards are removed once published"
    assert not list(idx.glob("work/staging-*"))

    clean = tmp_path / "clean"
    build_index(src, clean, starter_encoder, workers=0, progress=False)
    assert _items(idx) == _items(clean)
    assert len(_items(idx)) == 30
