"""Tiny random models saved to disk: offline stand-ins with the real loading code paths."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import torch

from model.config import DualEncoderConfig, ImageTowerConfig, PreprocessConfig, TextTowerConfig
from model.dual_encoder import DualEncoder

CLIP_VOCAB_SIZE = 49408


def write_clip_tokenizer(out_dir: str | Path) -> Path:
    """OpenAI CLIP's BPE (shipped in the open_clip_torch wheel) → a Hugging Face CLIPTokenizer
    giving the same ids as the reference tokenizer."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    bpe = Path(os.path.dirname(open_clip.__file__)) / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out = Path(out_dir)
    raw = out / "_bpe"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (raw / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges))
    tok = CLIPTokenizer(str(raw / "vocab.json"), str(raw / "merges.txt"))
    tok.save_pretrained(str(out))
    return out


def make_tiny_hf_clip(out_dir: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """A random CLIPModel with hf:openai/clip-vit-base-patch32's layout, scaled down."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            vocab_size=CLIP_VOCAB_SIZE,
            eos_token_id=49407,
            bos_token_id=49406,
            pad_token_id=49407,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=16,
    )
    out = Path(out_dir)
    CLIPModel(cfg).eval().save_pretrained(str(out))
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    ).save_pretrained(str(out))
    write_clip_tokenizer(out)
    return out


def tiny_dual_encoder_config(image_size: int = 32, embed_dim: int = 16) -> DualEncoderConfig:
    """A few-thousand-parameter timm ViT + BERT pair using the CLIP tokenizer's vocabulary."""
    return DualEncoderConfig(
        name="tiny",
        image=ImageTowerConfig(timm_name="test_vit", timm_kwargs={"img_size": image_size}),
        text=TextTowerConfig(
            hf_config=dict(
                model_type="bert",
                vocab_size=CLIP_VOCAB_SIZE,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=64,
                max_position_embeddings=77,
                pad_token_id=49407,
            ),
            pooling="mean",
            max_length=77,
        ),
        preprocess=PreprocessConfig(
            size=image_size,
            crop_pct=1.0,
            interpolation="bicubic",
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        ),
        embed_dim=embed_dim,
    )


def make_tiny_dual_encoder(out_dir: str | Path, seed: int = 0, **cfg_kwargs) -> Path:
    """A random clipsearch checkpoint directory (config.json + model.safetensors + tokenizer)."""
    from model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = DualEncoder(tiny_dual_encoder_config(**cfg_kwargs)).eval()
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tok_dir:
        tokenizer = AutoTokenizer.from_pretrained(str(write_clip_tokenizer(tok_dir)))
    return save_checkpoint(model, tokenizer, out_dir)
