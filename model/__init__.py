"""clipsearch.model: encoders, preprocessing and checkpoints (no web, no FAISS).

Exports resolve lazily, so `import model` (or `model.backends`, `model.errors`,
`model.train.config`) does not import torch; the first use of an encoder-side name does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_getattr

_EXPORTS = {
    "BACKENDS": "backends",
    "CheckpointError": "errors",
    "ClipsearchError": "errors",
    "ImageLoadError": "errors",
    "ModelSpecError": "errors",
    "DualEncoderConfig": "config",
    "ImageTowerConfig": "config",
    "PreprocessConfig": "config",
    "TextTowerConfig": "config",
    "Encoder": "encoder",
    "TextSettings": "encoder",
    "SPEC_FORMS": "loader",
    "load_encoder": "loader",
    "parse_spec": "loader",
    "build_transform": "preprocess",
    "load_image": "preprocess",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .backends import BACKENDS
    from .config import DualEncoderConfig, ImageTowerConfig, PreprocessConfig, TextTowerConfig
    from .encoder import Encoder, TextSettings
    from .errors import CheckpointError, ClipsearchError, ImageLoadError, ModelSpecError
    from .loader import SPEC_FORMS, load_encoder, parse_spec
    from .preprocess import build_transform, load_image


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
