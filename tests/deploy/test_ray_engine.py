"""`--engine ray` on a real two-node Ray cluster (a head and a worker node on this machine, each
its own `ray start` process group, both stopped at the end): the distributed build equals the
local one."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray", reason="the distributed extra is not installed")

pytestmark = pytest.mark.slow

RAY = str(Path(sys.executable).parent / "ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    # --block keeps `ray start` in the foreground as the parent of its node's processes; its own
    # session lets the fixture stop exactly this node (and nothing else on the machine).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    return subprocess.Popen(
        [RAY, "start", "--block", "--disable-usage-stats", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _alive_nodes(address: str) -> int:
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import ray; ray.init(address={address!r}, logging_level='ERROR'); "
            "print(sum(n['Alive'] for n in ray.nodes()))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
    )
    return int(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else 0


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A head node and a second node joined to it, both small (2 + 1 CPUs, 150 MB object stores)."""
    logs = tmp_path_factory.mktemp("ray-logs")
    port = _free_port()
    address = f"127.0.0.1:{port}"
    # everything on loopback: the nodes talk to each other over 127.0.0.1 only
    common = ["--object-store-memory", str(150 * 2**20), "--node-ip-address=127.0.0.1"]
    head_args = ["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false", *common]
    worker_args = [f"--address={address}", "--num-cpus=1", *common]
    head = _start(head_args, logs / "head.log")
    nodes = [head]
    try:
        deadline = time.monotonic() + 240
        # A loaded machine can make `ray start` give up on its raylet after a hard-coded 30 s;
        # such a node exits at once and is simply started again.
        while _alive_nodes(address) < 1:
            if head.poll() is not None:
                assert time.monotonic() < deadline, (logs / "head.log").read_text()[-3000:]
                head = nodes[0] = _start(head_args, logs / "head.log")
            assert time.monotonic() < deadline, "the head node did not come up"
            time.sleep(2)
        worker = _start(worker_args, logs / "worker.log")
        nodes.append(worker)
        while _alive_nodes(address) < 2:
            if worker.poll() is not None:
                assert time.monotonic() < deadline, (logs / "worker.log").read_text()[-3000:]
                worker = nodes[1] = _start(worker_args, logs / "worker.log")
            assert time.monotonic() < deadline, "the second node did not join"
            time.sleep(2)
        yield address
    finally:
        for proc in reversed(nodes):
            _stop(proc)
        # A killed head leaves ray's "current cluster" pointer behind; drop it if it is ours.
        pointer = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        if pointer.is_file() and pointer.read_text().strip().endswith(f":{port}"):
            pointer.unlink()


def test_ray_build_on_a_two_node_cluster_equals_the_local_build(
    ray_cluster, photos_dir, starter_encoder, tmp_path, monkeypatch
):
    from indexer import build_index, open_index
    from indexer.ray_engine import RayOptions, ray_build_index

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    corpus = tmp_path / "corpus"
    shutil.copytree(photos_dir, corpus)
    (corpus / "nested").mkdir()
    shutil.copy(corpus / "cat.jpg", corpus / "nested" / "cat-copy.jpg")  # a duplicate content
    (corpus / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")

    local = build_index(corpus, tmp_path / "local", starter_encoder, progress=False)
    dist = ray_build_index(
        corpus,
        tmp_path / "ray",
        starter_encoder,
        ray=RayOptions(address=ray_cluster, encoders=2, decode_batch=2),
        batch_size=2,
        progress=False,
    )
    assert dist.encoded == local.encoded == 5  # the broken file fails, the copy is deduplicated
    assert [s.path for s in dist.skipped] == [s.path for s in local.skipped] == ["broken.jpg"]
    assert dist.items == local.items == 6

    a, b = open_index(tmp_path / "local"), open_index(tmp_path / "ray")
    try:
        assert a.count == b.count
        rows_a = {r["id"]: dict(r) for r in a._db().execute("SELECT * FROM items")}
        rows_b = {r["id"]: dict(r) for r in b._db().execute("SELECT * FROM items")}
        assert {i: (r["path"], r["sha256"]) for i, r in rows_a.items()} == {
            i: (r["path"], r["sha256"]) for i, r in rows_b.items()
        }
        for item_id in rows_a:
            va, vb = a.get_vector(item_id), b.get_vector(item_id)
            np.testing.assert_allclose(va, vb, atol=2e-3)  # fp16 storage, other batch shapes
        q = starter_encoder.encode_texts(["a cat", "a cup of coffee"])
        top = [hits[0].item.path for hits in b.search(q, 3)]
        assert top[0] in ("cat.jpg", "nested/cat-copy.jpg") and top[1] == "coffee.jpg"
        assert [[h.item.id for h in hits] for hits in a.search(q, 3)] == [
            [h.item.id for h in hits] for hits in b.search(q, 3)
        ]
    finally:
        a.close()
        b.close()


def test_ray_update_encodes_only_new_files(ray_cluster, photos_dir, starter_encoder, tmp_path):
    from indexer import encoder_for_index, open_index
    from indexer.ray_engine import RayOptions, ray_build_index

    corpus = tmp_path / "corpus"
    shutil.copytree(photos_dir, corpus)
    opts = RayOptions(address=ray_cluster, encoders=1)
    ray_build_index(corpus, tmp_path / "idx", starter_encoder, ray=opts, progress=False)
    (corpus / "rocket.jpg").rename(corpus / "rocket-renamed.jpg")
    shutil.copy(corpus / "cat.jpg", corpus / "cat2.jpg")
    (corpus / "coffee.jpg").write_bytes((corpus / "astronaut.jpg").read_bytes())  # changed
    with Image.open(corpus / "camera.jpg") as img:
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(corpus / "camera-flipped.jpg")
    enc = encoder_for_index(tmp_path / "idx", device="cpu")  # the live version's model
    r = ray_build_index(corpus, tmp_path / "idx", enc, mode="update", ray=opts, progress=False)
    assert r.encoded == 1  # only the new content; the others are in the previous version
    assert (r.renamed, r.changed, r.added) == (1, 1, 2)
    v = open_index(tmp_path / "idx")
    try:
        assert v.count == 7
        assert v.model_spec == starter_encoder.spec
    finally:
        v.close()


def test_cli_build_with_the_ray_engine(ray_cluster, photos_dir, tmp_path):
    import json

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    cli = str(Path(sys.executable).parent / "clipsearch")
    r = subprocess.run(
        [cli, "index", "build", str(photos_dir), "--index", str(tmp_path / "idx")]
        + ["--engine", "ray", "--ray-address", ray_cluster, "--no-progress", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["encoded"] == report["items"] == 5
    r = subprocess.run(
        [cli, "search", "a cup of coffee", "--index", str(tmp_path / "idx"), "-k", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["hits"][0]["path"] == "coffee.jpg"
