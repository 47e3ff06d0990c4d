"""`clipsearch serve` as a user runs it: flags derived from the settings, one-line errors, a
real server on each backend, and an exit with the reason when it can never become ready."""

from __future__ import annotations

import httpx
import pytest

from app.cli import build_parser, main
from app.cli._settings_args import settings_from_args
from app.settings import Settings

from ._server import free_port, start, stop, wait_ready


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(f"CLIPSEARCH_{name.upper()}", raising=False)


def test_every_setting_is_a_flag_with_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for name, field in Settings.model_fields.items():
        assert "--" + name.replace("_", "-") in text
        assert field.description, f"Settings.{name} has no description (it is the flag's help)"
    assert "CLIPSEARCH_" in text and "examples:" in text


def test_flags_win_over_the_environment(monkeypatch):
    monkeypatch.setenv("CLIPSEARCH_PORT", "9001")
    monkeypatch.setenv("CLIPSEARCH_MAX_BATCH", "4")
    args = build_parser().parse_args(["serve", "--port", "9002", "--no-batching"])
    s = settings_from_args(args)
    assert (s.port, s.max_batch, s.batching) == (9002, 4, False)


def test_settings_travel_to_workers_unchanged(monkeypatch, tmp_path):
    s = Settings(index=tmp_path, api_key="k", batching=False, port=9, torch_threads=2)
    for key, value in s.to_env().items():
        monkeypatch.setenv(key, value)
    assert Settings() == s


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_refuses_a_missing_or_unpublished_index(tmp_path, capsys, make):
    index = tmp_path / "index"
    if make == "empty":
        index.mkdir()
    with pytest.raises(SystemExit) as e:
        main(["serve", "--index", str(index), "--port", "0"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clipsearch: error:") and str(index) in err[0]


def test_without_index_says_how_to_give_one(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve"])
    assert e.value.code == 1
    assert "--index" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("env", "argv", "field"),
    [({"CLIPSEARCH_MAX_BATCH": "lots"}, [], "max_batch"), ({}, ["--port", "70000"], "port")],
)
def test_a_bad_setting_is_one_line(monkeypatch, tmp_path, capsys, env, argv, field):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SystemExit) as e:
        main(["serve", "--index", str(tmp_path), *argv])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and field in err[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["auto", "torch", "onnx"])
def test_serves_a_search_on_each_backend(photo_index, tmp_path, backend):
    port = free_port()
    proc = start(["serve", "--index", str(photo_index), "--port", str(port),
                  "--backend", backend], cwd=tmp_path)  # fmt: skip
    try:
        ready = wait_ready(proc, f"http://127.0.0.1:{port}")
        shown = "onnx" if backend == "auto" else backend  # auto picks ONNX on a CPU
        assert ready["backend"] == shown
        r = httpx.post(f"http://127.0.0.1:{port}/search", json={"text": "a cat", "k": 3})
        assert r.status_code == 200 and len(r.json()["hits"]) == 3
        stats = httpx.get(f"http://127.0.0.1:{port}/stats").json()
        assert stats["backend"] == shown
    finally:
        assert stop(proc) == 0
    assert "ready in" in proc.stderr.read()  # the server says when loading finished


@pytest.mark.slow
def test_a_server_that_can_never_be_ready_exits_with_the_reason(photo_index, tmp_path):
    # int8 weights give other vectors than the PyTorch model the index was built with
    proc = start(["serve", "--index", str(photo_index), "--port", str(free_port()),
                  "--backend", "onnx-int8"], cwd=tmp_path)  # fmt: skip
    try:
        code = proc.wait(timeout=600)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("clipsearch: error:") and "--backend onnx-int8" in last
