"""Retrieval evaluation with the CLIP protocol: Recall@K text→image and image→text, where a
query is a hit if ANY correct item is in its top K; zero-shot accuracy where rows carry labels.
Images go through `Encoder.preprocess`, the exact transform the indexer and server use."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..encoder import Encoder
from .data import PairData, PairDataset, collate

log = logging.getLogger(__name__)

KS = (1, 5, 10)


def recall_at_k(
    txt_emb: np.ndarray, img_emb: np.ndarray, txt_to_img: np.ndarray, ks: Sequence[int] = KS
) -> dict[str, dict[str, float]]:
    """txt_emb (T, D), img_emb (I, D) unit vectors; txt_to_img (T,) the image of each text."""
    sims = txt_emb @ img_emb.T  # (T, I)
    t = np.arange(len(txt_emb))
    # t2i: rank of the correct image = how many images score strictly higher
    t2i_rank = (sims > sims[t, txt_to_img][:, None]).sum(axis=1)
    # i2t: a hit if the best-scoring of the image's captions is within the top K
    best = np.full(len(img_emb), -np.inf)
    np.maximum.at(best, txt_to_img, sims[t, txt_to_img])
    has_text = np.isfinite(best)
    i2t_rank = (best[:, None] < sims.T).sum(axis=1)[has_text]
    return {
        "t2i": {f"R@{k}": float((t2i_rank < k).mean()) for k in ks},
        "i2t": {f"R@{k}": float((i2t_rank < k).mean()) for k in ks},
    }


def embed_images(
    encoder: Encoder, data: PairData, rows: list[int], batch_size: int = 64, workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Embed the images of `rows` → (embeddings of the loadable ones, their positions)."""
    sub = PairData(
        images=[data.images[i] for i in rows],
        captions=[data.captions[i] for i in rows],
        image_ids=list(range(len(rows))),
        labels=[None] * len(rows),
    )
    ds = PairDataset(sub, encoder.preprocess, encoder.preprocess_config.size)
    loader = DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate)
    embs, ok = [], []
    for batch in loader:
        valid = batch["valid"]
        if valid.any():
            embs.append(encoder.encode_pixels(batch["pixels"][valid]))
        ok.append(valid.numpy())
    valid_all = np.concatenate(ok) if ok else np.zeros(0, bool)
    emb = np.concatenate(embs) if embs else np.zeros((0, encoder.dim), np.float32)
    return emb, np.flatnonzero(valid_all)


@torch.no_grad()
def evaluate(
    encoder: Encoder,
    data: PairData,
    batch_size: int = 64,
    workers: int = 0,
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Recall@1/5/10 both ways (+ zero-shot top-1 when every image has a label)."""
    was_training = encoder.module.training
    encoder.module.eval()
    try:
        return _evaluate(encoder, data, batch_size, workers, templates)
    finally:
        encoder.module.train(was_training)


def _evaluate(encoder, data, batch_size, workers, templates) -> dict[str, Any]:
    first_row: dict[int, int] = {}
    for i, img_id in enumerate(data.image_ids):
        first_row.setdefault(img_id, i)
    img_ids = list(first_row)
    img_emb, ok = embed_images(encoder, data, [first_row[i] for i in img_ids], batch_size, workers)
    position = {img_ids[j]: k for k, j in enumerate(ok)}  # image id → row in img_emb
    rows = [i for i, img_id in enumerate(data.image_ids) if img_id in position]
    skipped = Counter({"unreadable_images": len(img_ids) - len(ok)})
    if not rows:
        raise ValueError(f"{data.source}: no readable images to evaluate")
    txt_emb = encoder.encode_texts([data.captions[i] for i in rows])
    txt_to_img = np.array([position[data.image_ids[i]] for i in rows])
    result: dict[str, Any] = recall_at_k(txt_emb, img_emb, txt_to_img)
    result["mean_recall"] = float(
        np.mean([v for d in (result["t2i"], result["i2t"]) for v in d.values()])
    )
    labels = [data.labels[first_row[img_ids[j]]] for j in ok]
    if labels and all(labels):
        from ..zeroshot import label_embeddings

        classes = sorted(set(labels))
        label_emb = label_embeddings(encoder, classes, templates)
        pred = (img_emb @ label_emb.T).argmax(axis=1)
        truth = np.array([classes.index(lb) for lb in labels])
        result["zeroshot"] = {"top1": float((pred == truth).mean()), "classes": len(classes)}
    result["n_images"] = len(ok)
    result["n_texts"] = len(rows)
    result["chance_t2i_R@1"] = 1.0 / max(1, len(ok))
    result["skipped"] = {k: v for k, v in (skipped + data.skipped).items() if v}
    return result
