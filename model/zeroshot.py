"""Zero-shot classification: labels → prompt-ensemble text embeddings → calibrated probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .encoder import Encoder

# A small ensemble in the spirit of CLIP's prompt engineering; labels are inserted as given
# ("a cat", "coffee"), so the templates carry no article of their own.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a photo of {}.",
    "a close-up photo of {}.",
    "a good photo of {}.",
    "a cropped photo of {}.",
    "an image showing {}.",
)


def parse_labels(labels: str | Sequence[str]) -> list[str]:
    """'a cat, a dog' or ['a cat', 'a dog'] → cleaned, de-duplicated labels (order kept)."""
    items = labels.split(",") if isinstance(labels, str) else list(labels)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"labels must be strings, got {type(item).__name__}")
        label = item.strip()
        if label and label not in out:
            out.append(label)
    if len(out) < 1:
        raise ValueError("give at least one non-empty label")
    return out


def validate_templates(templates: Sequence[str] | None) -> tuple[str, ...]:
    if templates is None:
        return DEFAULT_TEMPLATES
    templates = tuple(templates)
    if not templates:
        raise ValueError("templates must not be empty")
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"template {t!r} must contain exactly one '{{}}' for the label")
    return templates


def label_embeddings(
    encoder: Encoder, labels: Sequence[str], templates: Sequence[str] | None = None
) -> np.ndarray:
    """(L, D) unit vectors: each label's mean over its prompt templates, re-normalised."""
    templates = validate_templates(templates)
    prompts = [t.format(label) for label in labels for t in templates]
    embs = encoder.encode_texts(prompts).reshape(len(labels), len(templates), -1)  # (L, T, D)
    mean = embs.mean(axis=1)
    return mean / np.linalg.norm(mean, axis=1, keepdims=True).clip(min=1e-12)


def probabilities(image_embs: np.ndarray, label_embs: np.ndarray, logit_scale: float) -> np.ndarray:
    """softmax(logit_scale · cos) over labels: (N, D) × (L, D) → (N, L)."""
    logits = logit_scale * (image_embs @ label_embs.T)  # (N, L)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def classify(
    encoder: Encoder,
    image_embs: np.ndarray,
    labels: Sequence[str],
    templates: Sequence[str] | None = None,
) -> list[list[tuple[str, float]]]:
    """For each image embedding, the labels sorted by probability (highest first)."""
    probs = probabilities(
        image_embs, label_embeddings(encoder, labels, templates), encoder.logit_scale
    )
    return [sorted(zip(labels, map(float, row), strict=True), key=lambda x: -x[1]) for row in probs]
