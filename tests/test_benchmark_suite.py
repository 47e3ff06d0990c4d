"""The benchmark suite's plumbing (not its timings): every listed benchmark speaks the shared
protocol, targets are marked pass/fail the right way round, and the docs table is rebuilt."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks._common import REPO, target
from benchmarks.run_all import BENCHMARKS, DOC_BEGIN, DOC_END, markdown, run_one, table


def test_target_marks_both_directions_and_unmeasured():
    assert target("a", "a", 1.2, 1.0)["ok"] is True
    assert target("a", "a", 0.8, 1.0)["ok"] is False
    assert target("b", "b", 0.8, 1.0, op="<=")["ok"] is True
    assert target("b", "b", 1.2, 1.0, op="<=")["ok"] is False
    assert target("c", "c", None, 1.0, note="no GPU")["ok"] is None
    with pytest.raises(ValueError):
        target("d", "d", 1.0, 1.0, op="==")


@pytest.mark.parametrize("name", [b[0] for b in BENCHMARKS])
def test_every_benchmark_takes_the_suite_flags(name):
    out = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "--json-out" in out.stdout


def test_missing_benchmark_is_reported_not_fatal(tmp_path):
    r = run_one("no_such_benchmark", [], 10, tmp_path)
    assert r["status"] == "missing" and r["targets"] == []


def test_table_and_docs_block():
    results = [
        {"benchmark": "x", "status": "ok", "targets": [
            target("x1", "speed ratio", 1.5, 1.3, unit="×"),
            target("x2", "p50 ratio", 1.2, 1.1, op="<=", note="HTTP path, see profile"),
            target("x3", "gpu rate", None, 2500, note="no GPU"),
        ]},
        {"benchmark": "y", "status": "timed out after 5 s", "targets": []},
    ]  # fmt: skip
    rows = table(results)
    assert [r[4] for r in rows] == ["✅ pass", "❌ miss", "⏸ not run", "timed out after 5 s"]
    assert rows[0][3] == "≥ 1.3×" and rows[1][3] == "≤ 1.1"
    machine = {"lscpu": {"Model name": "CPU"}, "cpu_count": 2, "torch_threads": 2,
               "versions": {"torch": "2", "faiss-cpu": "1"}, "gpu": None,
               "gemm_fp32_gflops": 100.0, "memory_copy_gbs": 10.0, "loadavg_1min": 0.1}  # fmt: skip
    block = markdown({"date": "d", "quick": False, "seconds": 60, "machine": machine}, rows)
    assert block.startswith(DOC_BEGIN) and block.endswith(DOC_END)
    assert "HTTP path, see profile" in block and block.count("\n| ") == len(rows) + 2
    docs = (REPO / "docs" / "benchmarks.md").read_text()
    assert DOC_BEGIN in docs and DOC_END in docs
