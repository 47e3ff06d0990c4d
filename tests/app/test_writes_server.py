"""Writes through a real `clipsearch serve --writable` process: read your writes over HTTP, and
the server SIGKILLed at random moments while a client streams adds and deletes (compacting
every few changes, so kills also land during compactions). After each restart every
acknowledged change is there, the one request in flight is all there or not at all, and the
live version passes its checksums."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from indexer import build_index, live_version, open_index
from tests.app.cli._server import free_port
from tests.utils.images import jpeg_bytes, random_image

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
KILLS = 10


def _serve(idx: Path, port: int, log) -> subprocess.Popen:
    args = ["serve", "--index", str(idx), "--port", str(port), "--writable", "--no-warmup",
            "--compact-changes", "4", "--compact-idle-s", "0.5",
            "--log-level", "warning"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], stdout=log, stderr=log,
                            env=env, cwd=idx.parent)  # fmt: skip


def _wait_ready(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            if httpx.get(base + "/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("not ready")


def _visible(c: httpx.Client) -> set[str]:
    r = c.post("/search", json={"text": "anything", "k": 1000})
    assert r.status_code == 200, r.text
    return {h["id"] for h in r.json()["hits"]}


def _check(c: httpx.Client, expected: dict[str, str | None], in_flight: tuple | None) -> None:
    visible = _visible(c)
    for item_id, sha in expected.items():
        if in_flight and in_flight[0] == "delete" and in_flight[1] == item_id:
            continue
        got = c.get(f"/images/{item_id}")
        if sha is None:
            assert got.status_code == 404 and item_id not in visible, f"{item_id} came back"
        else:
            assert got.status_code == 200 and item_id in visible, f"{item_id} was lost"
            assert hashlib.sha256(got.content).hexdigest() == sha
    extra = visible - {i for i, s in expected.items() if s is not None}
    if in_flight and in_flight[0] == "delete":
        extra.discard(in_flight[1])
        if in_flight[1] not in visible:
            expected[in_flight[1]] = None
    if in_flight and in_flight[0] == "add" and extra:
        (new_id,) = extra  # the upload in flight: whole (its file and vector) or absent
        assert hashlib.sha256(c.get(f"/images/{new_id}").content).hexdigest() == in_flight[1]
        expected[new_id] = in_flight[1]
    else:
        assert not extra, f"unacknowledged items appeared: {extra}"


def _stream_writes(c: httpx.Client, expected: dict, counter: list[int], rnd: random.Random):
    """Adds and deletes until the server dies → the request in flight then (or None)."""
    while True:
        live = [i for i, s in expected.items() if s is not None]
        if live and rnd.random() < 0.3:
            op: tuple = ("delete", rnd.choice(live))
        else:
            counter[0] += 1
            data = jpeg_bytes(random_image((48, 40), seed=counter[0]))
            op = ("add", hashlib.sha256(data).hexdigest(), data)
        acked = False
        try:
            if op[0] == "delete":
                r = c.delete(f"/images/{op[1]}")
                assert r.status_code == 200, r.text
                expected[op[1]] = None
                acked = True
                assert c.get(f"/images/{op[1]}").status_code == 404  # never again
            else:
                r = c.post("/images", files=[("image", ("x.jpg", op[2], "image/jpeg"))])
                assert r.status_code == 201, r.text
                new_id = r.json()["items"][0]["id"]
                expected[new_id] = op[1]
                acked = True
                s = c.post(
                    "/search", json={"image_id": new_id, "k": 1, "exclude_self": False}
                ).json()
                assert s["hits"][0]["id"] == new_id  # read your writes
        except httpx.TransportError:
            return None if acked else op[:2]


def test_server_kill_9_while_writing(tmp_path, photos_dir, starter_encoder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in ("cat", "coffee"):
        shutil.copy(photos_dir / f"{name}.jpg", corpus / f"{name}.jpg")
    idx = tmp_path / "idx"
    build_index(corpus, idx, starter_encoder, progress=False, workers=0)
    expected: dict[str, str | None] = {}
    v = open_index(idx)
    for r in v.rows():
        expected[str(r["id"])] = r["sha256"]
    v.close()
    rnd, counter, in_flight, versions = random.Random(7), [0], None, set()
    log_path = tmp_path / "server.log"
    for _ in range(KILLS + 1):
        port = free_port()
        with log_path.open("a") as log:
            proc = _serve(idx, port, log)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, base, log_path)
            with httpx.Client(base_url=base, timeout=30) as c:
                _check(c, expected, in_flight)
                killer = threading.Timer(rnd.uniform(1.0, 4.0), os.kill, (proc.pid, signal.SIGKILL))
                killer.start()
                in_flight = _stream_writes(c, expected, counter, rnd)
                killer.join()
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        open_index(idx).close()  # the live version passes its checksums
        versions.add(live_version(idx))
    assert len(versions) >= 3, "no compaction happened between the kills"
    assert sum(s is not None for s in expected.values()) > 5
