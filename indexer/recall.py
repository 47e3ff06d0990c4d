"""The text queries every build measures its ANN recall@10 with: caption-like prompts over the
ImageNet class names, encoded with the version's own model (text queries sit across the modality
gap from the images: the hard case for an approximate index)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model import Encoder

RECALL_PROMPT = "a photo of a {}."


def recall_queries(enc: Encoder, limit: int = 500) -> np.ndarray:
    """(≤limit, dim) unit text embeddings of generic caption-like texts."""
    from model.starter import imagenet_class_synonyms

    names = [syns[0] for syns in imagenet_class_synonyms() if syns]
    step = max(1, len(names) // limit)
    return enc.encode_texts([RECALL_PROMPT.format(n) for n in names[::step][:limit]])
