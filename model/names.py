"""Every model name clipsearch knows, derived from the registries that define them: the
starter, OpenAI's names (open_clip's `openai` tags) and open_clip's pretrained tags. Nothing
here is a hand-kept list; `clipsearch model list` prints it and docs/models.md's table is
generated from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class KnownModel:
    name: str  # the spec --model takes
    family: str  # starter | openai | open_clip
    arch: str  # open_clip architecture (or the starter's towers)
    tag: str  # open_clip pretrained tag ("" for the starter)
    embed_dim: int | None  # width of the shared embedding
    image_size: int | None  # side of the square the image tower sees

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def known_models() -> list[KnownModel]:
    """The starter, then OpenAI's names, then every open_clip architecture/tag pair."""
    import open_clip

    from .open_clip_models import openai_names
    from .starter import EMBED_DIM, starter_preprocess

    rows = [
        KnownModel(
            "starter",
            "starter",
            "efficientnet_lite0+all-MiniLM-L6-v2",
            "",
            EMBED_DIM,
            starter_preprocess().size,
        )
    ]
    for spelling, arch in openai_names().items():
        rows.append(_row(spelling, "openai", arch, "openai", open_clip))
    for arch, tag in open_clip.list_pretrained():
        rows.append(_row(f"open_clip:{arch}/{tag}", "open_clip", arch, tag, open_clip))
    return rows


def _row(name: str, family: str, arch: str, tag: str, open_clip: Any) -> KnownModel:
    cfg = open_clip.get_model_config(arch) or {}
    size = cfg.get("vision_cfg", {}).get("image_size")
    if isinstance(size, list | tuple):
        size = size[0]
    return KnownModel(name, family, arch, tag, cfg.get("embed_dim"), size)
