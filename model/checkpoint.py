"""clipsearch checkpoint directories: config.json + model.safetensors + tokenizer files.
No pickle anywhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from transformers import AutoTokenizer

from .config import CHECKPOINT_FORMAT, DualEncoderConfig
from .dual_encoder import DualEncoder
from .errors import CheckpointError

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def is_checkpoint_dir(path: Path) -> bool:
    cfg = path / CONFIG_FILE
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text()).get("format") == CHECKPOINT_FORMAT
    except (OSError, ValueError):
        return False


def save_checkpoint(model: DualEncoder, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write `model` (its config travels with it) and `tokenizer` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2, sort_keys=True))
    save_model(model, str(out / WEIGHTS_FILE))
    tokenizer.save_pretrained(str(out))
    log.info("saved checkpoint to %s", out)
    return out


def load_checkpoint(path: str | Path) -> tuple[DualEncoder, Any]:
    """Rebuild the model from its own config.json and load its weights (strict) and tokenizer."""
    path = Path(path)
    if not is_checkpoint_dir(path):
        raise CheckpointError(
            f"{path} is not a clipsearch checkpoint: expected {CONFIG_FILE} with "
            f'"format": "{CHECKPOINT_FORMAT}", {WEIGHTS_FILE} and tokenizer files'
        )
    if not (path / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path}: missing {WEIGHTS_FILE}")
    try:
        cfg = DualEncoderConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
    except (TypeError, KeyError, ValueError) as e:
        raise CheckpointError(f"{path}/{CONFIG_FILE} is not a valid clipsearch config: {e}") from e
    model = DualEncoder(cfg)
    try:
        load_model(model, str(path / WEIGHTS_FILE), strict=True)
    except (RuntimeError, OSError) as e:
        raise CheckpointError(
            f"{path}: weights do not match config ({str(e).splitlines()[0]})"
        ) from e
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot load tokenizer files ({e})") from e
    return model.eval(), tokenizer
