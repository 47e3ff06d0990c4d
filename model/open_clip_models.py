"""The open_clip family behind the encoder contract: `open_clip:ARCH/TAG`,
`open_clip:hf-hub:ORG/REPO`, `open_clip:local-dir:DIR` and OpenAI's names (`ViT-B/32`, `RN50`, …).

The model, its preprocessing and its tokenizer all come from open_clip's own configuration
(`model_cfg` + `preprocess_cfg`), so a model here gives the vectors open_clip gives; the
fingerprint covers the architecture, the preprocessing and the tokenizer settings.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import PreprocessConfig
from .errors import ModelSpecError

log = logging.getLogger(__name__)

CONFIG_FILE = "open_clip_config.json"  # open_clip's own layout (local-dir:, hf-hub:)
WEIGHTS_FILE = "open_clip_model.safetensors"
HUB_PREFIX, DIR_PREFIX = "hf-hub:", "local-dir:"
# the spelling of OpenAI's `clip` package: ViT-B/32, ViT-L/14@336px, RN50, RN50x4 …
_OPENAI_SPELLING = re.compile(r"^(RN\d+(?:x\d+)?|ViT-[A-Za-z]+/\d+(?:@\d+px)?)$")


@dataclass(frozen=True)
class OpenClipSource:
    """Where one open_clip model comes from: `name` as open_clip.create_model takes it (a
    built-in architecture, `hf-hub:ORG/REPO` or `local-dir:DIR`) and the pretrained tag."""

    name: str
    pretrained: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}/{self.pretrained}" if self.pretrained else self.name


class OpenClipDualEncoder(nn.Module):
    """An open_clip model with the surface DualEncoder has: encode_image, encode_text
    (unnormalised; the mask is not needed: open_clip pools by its own rule) and scale()."""

    def __init__(self, model: nn.Module, model_cfg: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.model_cfg = model_cfg  # what open_clip_config.json holds: the model rebuilds from it

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(input_ids)

    def scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp().clamp(max=100.0)


class OpenClipTokenizer:
    """open_clip's tokenizer behind the Hugging Face call the Encoder makes. open_clip's text
    towers add the whole learned positional table, so every text is padded to the context
    length (the padding and truncation arguments are accepted and ignored)."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, texts: list[str], max_length: int | None = None, **_: Any) -> dict:
        ids = self.tokenizer(list(texts), context_length=max_length or self.context_length)
        return {"input_ids": ids.long()}

    def describe(self) -> dict[str, Any]:
        """What the fingerprint records of the tokenizer."""
        inner = getattr(self.tokenizer, "tokenizer", None)
        return {
            "class": type(self.tokenizer).__name__,
            "inner": type(inner).__name__ if inner is not None else None,
            "vocab_size": len(inner) if inner is not None else None,
            "context_length": self.context_length,
        }

    def save_pretrained(self, out_dir: str | Path) -> None:
        """Tokenizer files for a local-dir copy (open_clip's BPE tokenizer needs none)."""
        save = getattr(self.tokenizer, "save_pretrained", None)
        if save is not None:
            save(str(out_dir))


def openai_names() -> dict[str, str]:
    """OpenAI's `clip` spelling → open_clip architecture, derived from open_clip's `openai` tags."""
    import open_clip

    return {
        clip_spelling(arch): arch
        for arch in open_clip.list_pretrained_models_by_tag("openai")
        if not arch.endswith("-quickgelu")
    }


def clip_spelling(arch: str) -> str:
    """open_clip's 'ViT-L-14-336' → the clip package's 'ViT-L/14@336px'; 'RN50x4' unchanged."""
    m = re.fullmatch(r"(ViT-[A-Za-z]+)-(\d+)(?:-(\d+))?", arch)
    if not m:
        return arch
    return f"{m[1]}/{m[2]}" + (f"@{m[3]}px" if m[3] else "")


def looks_like_openai_name(spec: str) -> bool:
    return bool(_OPENAI_SPELLING.match(spec))


def openai_source(spec: str) -> OpenClipSource:
    names = openai_names()
    if spec not in names:
        raise ModelSpecError(
            f"{spec!r} is not one of OpenAI's CLIP models; choose one of {', '.join(names)}"
        )
    return OpenClipSource(names[spec], "openai")


def parse_source(ref: str) -> OpenClipSource:
    """'ARCH/TAG' | 'hf-hub:ORG/REPO' | 'local-dir:DIR' (after 'open_clip:') → OpenClipSource."""
    ref = ref.strip()
    if ref.startswith(HUB_PREFIX):
        if ref[len(HUB_PREFIX) :].count("/") != 1:
            raise ModelSpecError(f"open_clip:{ref}: expected hf-hub:ORG/REPO")
        return OpenClipSource(ref)
    if ref.startswith(DIR_PREFIX):
        path = Path(ref[len(DIR_PREFIX) :]).expanduser()
        if not (path / CONFIG_FILE).is_file():
            raise ModelSpecError(f"open_clip:{ref}: no {CONFIG_FILE} in {path}")
        return OpenClipSource(DIR_PREFIX + str(path.resolve()))
    arch, _, tag = ref.partition("/")
    if not arch or not tag:
        raise ModelSpecError(
            f"open_clip:{ref}: expected ARCH/TAG (e.g. open_clip:ViT-B-32/laion2b_s34b_b79k), "
            "hf-hub:ORG/REPO or local-dir:DIR; `clipsearch model list` shows every name"
        )
    _check_tag(arch, tag)
    return OpenClipSource(arch, tag)


def _check_tag(arch: str, tag: str) -> None:
    import open_clip

    if arch not in open_clip.list_models():
        raise ModelSpecError(
            f"open_clip has no architecture {arch!r}; `clipsearch model list` shows every name"
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise ModelSpecError(
            f"open_clip:{arch} has no pretrained tag {tag!r}; choose one of {', '.join(tags)}"
        )


def model_config(src: OpenClipSource) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model_cfg, preprocess_cfg overrides) of a source, as open_clip will build it."""
    import open_clip

    if src.name.startswith(DIR_PREFIX):
        data = json.loads((Path(src.name[len(DIR_PREFIX) :]) / CONFIG_FILE).read_text())
        return data["model_cfg"], data.get("preprocess_cfg", {})
    if src.name.startswith(HUB_PREFIX):
        data = json.loads(Path(_hub_file(src.name[len(HUB_PREFIX) :], CONFIG_FILE)).read_text())
        return data["model_cfg"], data.get("preprocess_cfg", {})
    cfg = copy.deepcopy(open_clip.get_model_config(src.name))
    tag_cfg = open_clip.get_pretrained_cfg(src.name, src.pretrained or "") or {}
    if tag_cfg.get("quick_gelu"):  # e.g. OpenAI's weights: the built-in config says GELU
        cfg["quick_gelu"] = True
    return cfg, {k: v for k, v in tag_cfg.items() if k in _PREPROCESS_KEYS}


_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")


def _hub_file(repo: str, filename: str) -> str:
    """A file of a hub repo: fetched when the hub answers, else from the local cache, else a
    one-line error (no retries against an unreachable hub)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from .hf_clip import _offline_message, hub_reachable

    cache_only = not hub_reachable()
    try:
        return hf_hub_download(repo, filename, local_files_only=cache_only)
    except Exception as e:  # not cached offline, no such file, unknown repo, transport error
        if cache_only:
            raise ModelSpecError(_offline_message(repo)) from e
        if isinstance(e, EntryNotFoundError):
            raise ModelSpecError(f"hf-hub:{repo} has no {filename}: not an open_clip model") from e
        raise ModelSpecError(f"cannot fetch {filename} of hf-hub:{repo}: {e}") from e


def load_open_clip(src: OpenClipSource) -> tuple[OpenClipDualEncoder, OpenClipTokenizer, Any]:
    """Build the model and its tokenizer; returns (module, tokenizer, open_clip preprocess cfg)."""
    import open_clip

    cfg, _ = model_config(src)
    try:
        model = open_clip.create_model(
            src.name,
            pretrained=src.pretrained,
            force_quick_gelu=bool(cfg.get("quick_gelu")),
            require_pretrained=True,
            pretrained_text=False,
        )
        tokenizer = open_clip.get_tokenizer(src.name)
    except (RuntimeError, OSError, ValueError) as e:
        from .hf_clip import _offline_message, hub_reachable

        if not src.name.startswith(DIR_PREFIX) and not hub_reachable():
            raise ModelSpecError(_offline_message(f"open_clip:{src.ref}")) from e
        raise ModelSpecError(f"cannot load open_clip:{src.ref}: {e}".splitlines()[0]) from e
    context = int(getattr(tokenizer, "context_length", None) or _context_length(cfg))
    log.info("loaded open_clip:%s (%s)", src.ref, type(model).__name__)
    pre = open_clip.get_model_preprocess_cfg(model)
    return OpenClipDualEncoder(model.eval(), cfg), OpenClipTokenizer(tokenizer, context), pre


def _context_length(cfg: dict[str, Any]) -> int:
    return int(cfg.get("text_cfg", {}).get("context_length", 77))


def preprocess_from_open_clip(p: dict[str, Any]) -> PreprocessConfig:
    """open_clip's preprocess_cfg (size, mean, std, interpolation, resize_mode) → ours."""
    size = p.get("size", 224)
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise ModelSpecError(f"non-square model input {tuple(size)} is not supported")
        size = size[0]
    mode = p.get("resize_mode", "shortest")
    if mode not in ("shortest", "squash"):
        raise ModelSpecError(f"open_clip resize_mode {mode!r} is not supported (shortest, squash)")
    return PreprocessConfig(
        size=int(size),
        resize_mode=mode,
        crop_pct=1.0,  # open_clip resizes the short side to the crop size, then centre-crops
        interpolation=p.get("interpolation", "bicubic"),
        mean=tuple(float(x) for x in p["mean"]),
        std=tuple(float(x) for x in p["std"]),
    )


def load_weights(src: OpenClipSource) -> tuple[Any, Any, PreprocessConfig, dict, dict]:
    """(module, tokenizer, preprocess config, text settings, fingerprint meta), as
    loader._load_weights returns them for every family."""
    module, tokenizer, oc_pre = load_open_clip(src)
    pre = preprocess_from_open_clip(oc_pre)
    text = {
        "max_length": tokenizer.context_length,
        "pad_to_max_length": True,
        "use_attention_mask": False,
    }
    meta = {
        "family": "open_clip",
        "model_cfg": module.model_cfg,
        "preprocess": pre.__dict__,
        "text": text,
        "tokenizer": tokenizer.describe(),
    }
    return module, tokenizer, pre, text, meta


def save_local_dir(module: OpenClipDualEncoder, tokenizer: Any, pre: PreprocessConfig, out: Path):
    """Write open_clip's own layout (open_clip_config.json + open_clip_model.safetensors +
    tokenizer files): `open_clip:local-dir:OUT`, plain `OUT` and open_clip itself load it."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(module.model_cfg)
    preprocess = {
        "mean": list(pre.mean),
        "std": list(pre.std),
        "interpolation": pre.interpolation,
        "resize_mode": pre.resize_mode,
    }
    (out / CONFIG_FILE).write_text(
        json.dumps({"model_cfg": cfg, "preprocess_cfg": preprocess}, indent=2)
    )
    state = {k: v.detach().cpu().contiguous() for k, v in module.model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE))
    tokenizer.save_pretrained(out)
    return out


def hf_as_open_clip(ref: str) -> str | None:
    """The open_clip ref (local-dir:… / hf-hub:…) of an `hf:ref` that loads through open_clip
    (hf_holds_open_clip), else None (transformers loads it)."""
    if not hf_holds_open_clip(ref):
        return None
    local = Path(ref).expanduser()
    return f"{DIR_PREFIX}{local}" if local.is_dir() else f"{HUB_PREFIX}{ref}"


def hf_holds_open_clip(ref: str) -> bool:
    """Whether `hf:ref` (a local dir or a hub repo) loads through open_clip: it holds an
    open_clip_config.json and no transformers config (a config.json with a `model_type`).

    A repo with both (many LAION ones ship a CLIPModel beside the open_clip files) loads
    through transformers, as `hf:` did before open_clip was supported, so the fingerprints of
    indexes built with it stay valid; `open_clip:hf-hub:REPO` picks its open_clip files. A
    config.json that is not transformers' (timm's own) does not count."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return (path / CONFIG_FILE).is_file() and not _is_transformers_config(path / "config.json")
    if ref.startswith(("/", ".", "~")) or ref.count("/") != 1:
        return False  # not a hub id: transformers' loader says what is wrong
    from .hf_clip import hub_reachable

    if hub_reachable():
        return _hub_holds_open_clip(ref)
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(ref, CONFIG_FILE), str):
        return False
    hf_cached = try_to_load_from_cache(ref, "config.json")
    return not (isinstance(hf_cached, str) and _is_transformers_config(Path(hf_cached)))


def _hub_holds_open_clip(ref: str) -> bool:
    from huggingface_hub import HfApi, hf_hub_download

    try:
        files = set(HfApi().list_repo_files(ref))
        if CONFIG_FILE not in files:
            return False
        if "config.json" not in files:
            return True
        return not _is_transformers_config(Path(hf_hub_download(ref, "config.json")))
    except Exception as e:  # unknown repo, gated, transport: transformers says why
        log.info("cannot list hf:%s: %s", ref, e)
        return False


def _is_transformers_config(path: Path) -> bool:
    """A transformers config.json names its `model_type` (CLIPModel's: "clip")."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or not JSON: not a transformers model
        return False
    return isinstance(data, dict) and "model_type" in data
