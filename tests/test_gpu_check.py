"""benchmarks/gpu_check.py --dry-run: the GPU check's own code paths (corpus, ViT-B/32 `hf:`
directory, the real indexer with device decoding and with workers, the real training loop, the
real server under concurrent text and image queries) at tiny sizes on the CPU, so the script a
lent GPU runs is never found broken on the day."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_measures_every_stage(tmp_path):
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--dry-run", "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (REPO / "docs" / "benchmarks.md").read_text() == docs  # a dry run writes no docs
    res = json.loads((tmp_path / "gpu_check.json").read_text())
    st = res["stages"]
    assert set(st) == {"gpu_tests", "indexer", "train", "server"}
    bad = {k: v for k, v in st.items() if v["status"] != "ok"}
    assert not bad, bad
    # no CUDA here: every gpu-marked test is collected and skipped, none fails
    assert st["gpu_tests"]["skipped"] >= 3 and st["gpu_tests"]["failed"] == 0
    idx = st["indexer"]
    for rate in (idx["model_alone_images_per_s"], idx["images_per_s"],
                 *(b["images_per_s"] for b in idx["builds"].values())):  # fmt: skip
        assert rate > 0
    assert set(idx["builds"]) == {"device_decode", "cpu_workers"} and idx["ratio_to_model"] > 0
    assert st["train"]["samples_per_s"] > 0 and st["train"]["steps"] == 2
    for kind in ("text", "image"):
        assert st["server"][kind]["queries_per_s"] > 0 and st["server"][kind]["errors"] == 0
    assert [t["id"] for t in res["targets"]] == ["gpu.indexer_rate", "gpu.indexer_vs_model"]
    assert "| indexer end to end" in r.stdout  # the docs table it would write
