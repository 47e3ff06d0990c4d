"""A writer SIGKILLed at random moments (also during compaction): after every restart each
acknowledged add and delete is there, the one change in flight is all there or not at all, and
the live version passes its checksums."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from indexer import open_index
from indexer.live import LiveIndex
from tests.indexer.live_util import DIM, make_vector_index

REPO = Path(__file__).resolve().parents[2]
KILLS = 12

CHILD = r"""
import hashlib, json, random, sys
import numpy as np
from indexer.live import LiveIndex, NewImage, compact

def vec(name):
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    v = rng.standard_normal(%(dim)d).astype(np.float32)
    return v / np.linalg.norm(v)

def say(*parts):
    print(json.dumps(parts), flush=True)

live = LiveIndex.open(sys.argv[1])
rnd = random.Random(int(sys.argv[2]))
say("open")
n = 0
while True:
    n += 1
    if n %% 6 == 0:
        say("compact-begin")
        compact(live)
        say("compact-end")
    visible = [h.item.id for h in live.view().search(vec("q")[None], 1000)[0]]
    if visible and rnd.random() < 0.35:
        i = rnd.choice(visible)
        say("begin", "delete", i)
        live.delete(i)
        say("ack", "delete", i)
    else:
        name = "%%s-%%d" %% (sys.argv[2], n)
        sha = hashlib.sha256(name.encode()).hexdigest()
        say("begin", "add", name)
        item = live.put(NewImage("media:%%s.jpg" %% sha, sha, 10, 8, 8, vec(name)))
        say("ack", "add", name, item.id)
"""


def _vec(name: str) -> np.ndarray:
    rng = np.random.default_rng(int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
    v = rng.standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _run_and_kill(idx: Path, seed: int, during_compaction: bool) -> list[list]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", CHILD % {"dim": DIM}, str(idx), str(seed)],
        stdout=subprocess.PIPE, env=env, cwd=REPO, text=True,
    )  # fmt: skip
    lines: list[list] = []
    assert p.stdout is not None
    deadline = time.monotonic() + random.uniform(0.3, 1.5)
    while True:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(json.loads(line))
        if during_compaction and lines[-1][0] == "compact-begin":
            time.sleep(random.uniform(0, 0.02))
            break
        if not during_compaction and lines[-1][0] != "open" and time.monotonic() > deadline:
            break
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    # printed before the kill. Not communicate(timeout=…): it reads the raw pipe and would skip
    # lines readline() already pulled into p.stdout's buffer (a lost "begin" or "ack" then
    # looks like an unacknowledged item appearing, or an acknowledged delete coming back)
    rest = p.stdout.read()
    p.stdout.close()
    lines += [json.loads(x) for x in rest.splitlines() if x.strip()]
    assert p.returncode == -signal.SIGKILL, "the writer died on its own"
    return lines


def _check(idx: Path, expected: dict[int, str | None], in_flight: list | None) -> None:
    live = LiveIndex.open(idx)
    try:
        view = live.view()
        for item_id, name in expected.items():
            if in_flight and in_flight[1] == "delete" and in_flight[2] == item_id:
                continue  # may or may not have been applied
            item = view.get_item(item_id)
            if name is None:
                assert item is None, f"deleted item {item_id} came back"
                continue
            assert item is not None, f"acknowledged item {item_id} ({name}) was lost"
            if not name.startswith("base-"):
                np.testing.assert_allclose(view.get_vector(item_id), _vec(name), atol=2e-3)
        known = {i for i, n in expected.items() if n is not None}
        hits = view.search(_vec("q")[None], 1000)[0]
        extra = {h.item.id for h in hits} - known
        if in_flight and in_flight[1] == "add" and extra:
            (new_id,) = extra  # the add in flight: whole (its vector) or absent
            np.testing.assert_allclose(view.get_vector(new_id), _vec(in_flight[2]), atol=2e-3)
            expected[new_id] = in_flight[2]
        else:
            assert not extra, f"unacknowledged items appeared: {extra}"
        if in_flight and in_flight[1] == "delete" and view.get_item(in_flight[2]) is None:
            expected[in_flight[2]] = None
    finally:
        live.close()
    open_index(idx).close()  # the live version passes its checksums


@pytest.mark.slow
def test_kill_9_at_random_moments_keeps_every_acknowledged_change(tmp_path):
    idx = tmp_path / "idx"
    make_vector_index(idx, 40)
    expected: dict[int, str | None] = {i: f"base-{i}" for i in range(40)}
    random.seed(1234)
    compaction_kills = 0
    for round_ in range(KILLS):
        during = round_ % 3 == 2
        lines = _run_and_kill(idx, round_, during)
        in_flight = None
        for rec in lines:
            if rec[0] == "begin":
                in_flight = rec
            elif rec[0] == "ack":
                in_flight = None
                if rec[1] == "add":
                    expected[rec[3]] = rec[2]
                else:
                    expected[rec[2]] = None
        compaction_kills += lines[-1][0] == "compact-begin"
        _check(idx, expected, in_flight)
    assert compaction_kills >= 2, "no kill landed during a compaction"
    assert sum(n is not None for n in expected.values()) > 40
