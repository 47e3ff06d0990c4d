"""`clipsearch model starter` and `clipsearch model info`, and the cheap imports --help needs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model import load_encoder
from model.backends import BACKENDS


@pytest.mark.slow
def test_model_starter_out_writes_a_loadable_checkpoint(cli, tmp_path, starter_encoder):
    code, stdout, err = cli("model", "starter", "--out", tmp_path / "starter")
    assert code == 0, err
    assert stdout.strip() == str(tmp_path / "starter")
    built = load_encoder(stdout.strip(), device="cpu")
    assert built.dim == 384 and built.fingerprint == starter_encoder.fingerprint


def test_model_info_json_names_the_backend(cli, tiny_ckpt_dir, shipping_default_backend):
    code, stdout, err = cli("model", "info", "--model", tiny_ckpt_dir, "--device", "cpu", "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["model"] == str(tiny_ckpt_dir) and info["backend"] == "onnx"  # auto, on a CPU
    assert info["dim"] == 16 and len(info["fingerprint"]) == 64 and info["device"] == "cpu"


def test_model_info_table(cli, tiny_ckpt_dir):
    argv = ["model", "info", "--model", tiny_ckpt_dir, "--device", "cpu", "--backend", "torch"]
    code, stdout, err = cli(*argv)
    assert code == 0, err
    rows = dict(line.split(None, 1) for line in stdout.splitlines())
    assert rows["backend"] == "torch" and rows["dim"] == "16"


def test_model_info_onnx_backend(cli, tiny_ckpt_dir, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("CLIPSEARCH_CACHE", str(tmp_path))  # the export's cache
    argv = ["model", "info", "--model", tiny_ckpt_dir, "--backend", "onnx", "--json"]
    code, stdout, err = cli(*argv)
    assert code == 0, err
    assert json.loads(stdout)["backend"] == "onnx"


def test_model_info_relative_path_is_reported_absolute(cli, tiny_ckpt_dir, monkeypatch):
    monkeypatch.chdir(tiny_ckpt_dir.parent)
    code, stdout, err = cli("model", "info", "--model", tiny_ckpt_dir.name, "--json")
    assert code == 0, err
    assert json.loads(stdout)["model"] == str(tiny_ckpt_dir.resolve())


def test_model_info_offline_hub_id_is_one_line(cli, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, stdout, err = cli("model", "info", "--model", "hf:clipsearch-tests/not-cached")
    assert code == 1 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("clipsearch: error: cannot reach the Hugging")
    assert "hf:/path/to/model" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["model", "info", "--model", "nonsense"], "hf:<hub id"),
        (["model", "info", "--backend", "tensorrt"], "unknown backend 'tensorrt'"),
    ],
)
def test_model_info_bad_input(cli, argv, message):
    code, _, err = cli(*argv)
    assert code != 0 and message in err and "Traceback" not in err


def test_backend_env_sets_every_commands_default(cli, tiny_ckpt_dir, monkeypatch):
    """CLIPSEARCH_BACKEND, which `serve` reads through Settings, is every command's default too;
    a bad value is refused like a bad --backend, naming the variable."""
    from app.cli import build_parser
    from app.cli.model_cmds import BACKEND_ENV
    from app.settings import ENV_PREFIX, Settings

    assert BACKEND_ENV == ENV_PREFIX + "BACKEND" and "backend" in Settings.model_fields
    monkeypatch.setenv("CLIPSEARCH_BACKEND", "torch")
    assert Settings().backend == "torch"  # the server reads the same variable
    parser = build_parser()
    for argv in (["model", "info"], ["embed"], ["classify", "a.jpg", "--labels", "a,b"],
                 ["index", "build", "src", "--index", "idx"]):  # fmt: skip
        assert parser.parse_args(argv).backend == "torch", argv
    assert parser.parse_args(["model", "info", "--backend", "onnx"]).backend == "onnx"
    code, stdout, err = cli("model", "info", "--model", tiny_ckpt_dir, "--json")
    assert code == 0 and json.loads(stdout)["backend"] == "torch", err
    monkeypatch.setenv("CLIPSEARCH_BACKEND", "tensorrt")
    code, _, err = cli("model", "info", "--model", tiny_ckpt_dir)
    assert code == 2 and "unknown backend 'tensorrt'" in err and "CLIPSEARCH_BACKEND" in err


def test_backend_choices_are_the_model_layers(shipping_default_backend):
    from app.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["model", "info"]).backend == "auto"
    for backend in BACKENDS:
        assert parser.parse_args(["embed", "--backend", backend]).backend == backend


def test_model_and_cli_parsing_import_no_torch():
    """`import model`, the training config and the parsers of these commands stay cheap."""
    code = (
        "import sys, argparse, model, model.train, model.train.config, model.backends\n"
        "import model.samples.shapes\n"
        "from app.cli import model_cmds, train_cmds\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "model_cmds.register(sub); train_cmds.register(sub)\n"
        "assert model.BACKENDS == model.backends.BACKENDS\n"
        "print(sorted(m for m in ('torch', 'transformers', 'timm') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_relative_model_path_is_stored_absolute_in_the_index(cli, tmp_path, tiny_ckpt_dir,
                                                             photos_dir, monkeypatch):  # fmt: skip
    """`--model runs/x` given in one directory: the index records the absolute path, so
    `search` from another directory loads the same model."""
    monkeypatch.chdir(tiny_ckpt_dir.parent)
    index = tmp_path / "index"
    argv = ["index", "build", photos_dir, "--index", index, "--model", tiny_ckpt_dir.name]
    code, _, err = cli(*argv, "--workers", "0", "--no-progress")
    assert code == 0, err
    monkeypatch.chdir(tmp_path)
    code, stdout, err = cli("index", "info", "--index", index, "--json")
    assert code == 0, err
    assert json.loads(stdout)["model"] == str(tiny_ckpt_dir.resolve())
    code, stdout, err = cli("search", "a cat", "--index", index, "--json")
    assert code == 0, err
    assert json.loads(stdout)["model"] == str(tiny_ckpt_dir.resolve())


def test_model_list_json_derives_every_name_from_open_clip(cli):
    import open_clip

    code, stdout, err = cli("model", "list", "--json")
    assert code == 0, err
    rows = {m["name"]: m for m in json.loads(stdout)["models"]}
    assert rows["starter"]["family"] == "starter" and rows["starter"]["embed_dim"] == 384
    assert rows["ViT-B/32"] == {
        "name": "ViT-B/32",
        "family": "openai",
        "arch": "ViT-B-32",
        "tag": "openai",
        "embed_dim": 512,
        "image_size": 224,
    }
    assert rows["ViT-L/14@336px"]["image_size"] == 336
    for arch, tag in open_clip.list_pretrained():  # every pretrained tag, nothing hand-kept
        assert f"open_clip:{arch}/{tag}" in rows
    assert rows["open_clip:ViT-B-16-SigLIP/webli"]["embed_dim"] == 768


def test_model_list_table_and_family_filter(cli):
    code, stdout, err = cli("model", "list", "--family", "openai")
    assert code == 0, err
    names = [line.split()[0] for line in stdout.splitlines()[1:]]
    assert "ViT-B/32" in names and "RN50" in names and "starter" not in names
    code, _, err = cli("model", "list", "--family", "nope")
    assert code == 1 and "families: starter, openai, open_clip" in err


def test_model_info_open_clip_local_dir(cli, tmp_path):
    from tests.model.open_clip_fakes import write_open_clip_dir

    d = write_open_clip_dir(tmp_path / "oc", "ViT-B-32")
    code, stdout, err = cli("model", "info", "--model", f"open_clip:local-dir:{d}", "--json")
    assert code == 0, err
    info = json.loads(stdout)
    assert info["model"] == f"open_clip:local-dir:{d}" and info["dim"] == 32
    assert info["image_size"] == 64 and info["text_max_length"] == 77


def test_model_info_unknown_openai_name_lists_the_names(cli):
    code, stdout, err = cli("model", "info", "--model", "ViT-B/99")
    assert code == 1 and "ViT-L/14@336px" in err and err.count("\n") == 1


def test_model_list_markdown_is_the_docs_table(cli):
    code, stdout, err = cli("model", "list", "--markdown", "--family", "openai")
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0] == "| name | family | embedding width | image size |"
    assert "| `ViT-L/14@336px` | openai | 768 | 336 |" in lines
