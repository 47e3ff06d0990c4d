"""Training fixtures: the synthetic shapes set, an offline CLIP tokenizer and tiny model configs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tests.utils.tiny_models import tiny_dual_encoder_config, write_clip_tokenizer


def write_model_config(
    path: Path, timm_name: str = "test_vit", dropout: bool = True, image_size: int = 32
) -> Path:
    """A tiny DualEncoderConfig JSON (architecture as data) for from-scratch runs."""
    cfg = tiny_dual_encoder_config(image_size=image_size, embed_dim=32)
    kwargs = {"img_size": image_size, "patch_size": 8} if timm_name == "test_vit" else {}
    hf = dict(cfg.text.hf_config)
    if not dropout:  # exact-gradient comparisons across batch splits need no dropout
        hf.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    cfg = replace(
        cfg,
        image=replace(cfg.image, timm_name=timm_name, timm_kwargs=kwargs),
        text=replace(cfg.text, hf_config=hf),
    )
    path.write_text(json.dumps(cfg.to_dict()))
    return path


@pytest.fixture(scope="session")
def clip_tok_dir(tmp_path_factory) -> Path:
    return write_clip_tokenizer(tmp_path_factory.mktemp("clip_tok"))


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    from model.samples.shapes import generate

    d = tmp_path_factory.mktemp("shapes")
    generate(d, n=1500, seed=0, n_heldout=40)
    return d


@pytest.fixture(scope="session")
def small_shapes_dir(tmp_path_factory) -> Path:
    from model.samples.shapes import generate

    d = tmp_path_factory.mktemp("shapes_small")
    generate(d, n=48, seed=1, n_heldout=12)
    return d


@pytest.fixture()
def vit_config(tmp_path) -> Path:
    return write_model_config(tmp_path / "vit.json", "test_vit", dropout=False)


@pytest.fixture()
def make_cfg(tmp_path, clip_tok_dir, small_shapes_dir):
    """TrainConfig factory for quick runs on the small shapes set with a tiny ViT."""
    from model.train.config import TrainConfig

    def make(**kw):
        if "model_config" not in kw and kw.get("init", "scratch") == "scratch":
            kw["model_config"] = str(write_model_config(tmp_path / "model.json", "test_vit"))
        base = dict(
            train=str(small_shapes_dir / "train.csv"),
            out=str(tmp_path / "run"),
            tokenizer=str(clip_tok_dir),
            steps=4,
            batch_size=8,
            warmup_steps=1,
            workers=0,
            save_every=0,
            log_every=1,
            progress=False,
            tensorboard=False,
        )
        base.update(kw)
        return TrainConfig(**base)

    return make
