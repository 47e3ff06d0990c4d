"""The text queries every build measures its ANN recall@10 with: caption-like prompts over the
ImageNet class names, encoded with the version's own model (text queries sit across the modality
gap from the images: the hard case for an approximate index); and the re-rank depth chosen from
that measurement."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model import Encoder

    from ._search import Searcher

log = logging.getLogger(__name__)

RECALL_PROMPT = "a photo of a {}."


def recall_queries(enc: Encoder, limit: int = 500) -> np.ndarray:
    """(≤limit, dim) unit text embeddings of generic caption-like texts."""
    from model.starter import imagenet_class_synonyms

    names = [syns[0] for syns in imagenet_class_synonyms() if syns]
    step = max(1, len(names) // limit)
    return enc.encode_texts([RECALL_PROMPT.format(n) for n in names[::step][:limit]])


# Re-rank depths the tuner tries (each at least k = 10): the re-rank reads one scattered stored row
# per candidate, so the smallest depth that keeps the recall is the cheapest.
RERANK_DEPTHS = (10, 12, 16, 20, 25, 32, 40, 50, 64, 80, 100, 128, 160, 200, 400, 800, 1600)


def smallest_rerank_k(
    searcher: Searcher,
    tune: tuple[np.ndarray, np.ndarray],
    held_out: tuple[np.ndarray, np.ndarray],
    goal: float,
    target: float,
) -> int:
    """The smallest re-rank depth, up to `searcher.rerank_k`, whose recall@10 is ≥ `goal` on the
    tuning queries and ≥ `target` on the held-out ones (each a (queries, exact top-k ids) pair),
    at the searcher's nprobe. The recall of an exact re-rank can only grow with the depth (a true
    top-k item among the candidates stays in the re-ranked top-k), so the first depth that passes
    is the smallest. If the current depth does not pass either, it is kept."""
    current = searcher.rerank_k
    k = tune[1].shape[1]
    depths = sorted({d for d in RERANK_DEPTHS if k <= d < current} | {current})
    by_tune = searcher.recall_by_depth(tune[0], tune[1], depths)
    passing = [d for d in depths if by_tune[d] >= goal]
    if not passing:
        return current
    by_held_out = searcher.recall_by_depth(held_out[0], held_out[1], passing)
    for depth in passing:
        if by_held_out[depth] >= target:
            log.info(
                "re-rank depth %d: recall@10 %.4f (tuning) / %.4f (held out); %d: %.4f / %.4f",
                depth, by_tune[depth], by_held_out[depth],
                current, by_tune[current], by_held_out.get(current, float("nan")),
            )  # fmt: skip
            return depth
    return current
