"""clipsearch.model: encoders, preprocessing and checkpoints (no web, no FAISS)."""

from .config import DualEncoderConfig, ImageTowerConfig, PreprocessConfig, TextTowerConfig
from .encoder import Encoder, TextSettings
from .errors import CheckpointError, ClipsearchError, ImageLoadError, ModelSpecError
from .loader import SPEC_FORMS, load_encoder, parse_spec
from .preprocess import build_transform, load_image

__all__ = [
    "CheckpointError",
    "ClipsearchError",
    "DualEncoderConfig",
    "Encoder",
    "ImageLoadError",
    "ImageTowerConfig",
    "ModelSpecError",
    "PreprocessConfig",
    "SPEC_FORMS",
    "TextSettings",
    "TextTowerConfig",
    "build_transform",
    "load_encoder",
    "load_image",
    "parse_spec",
]
