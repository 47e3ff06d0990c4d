"""Contrastive training and evaluation (`clipsearch train`, `clipsearch eval`).

Only the train/eval commands import this package; the indexer and the server never do, so
training-only dependencies stay out of the serving import graph. Exports resolve lazily, so
`model.train.config` (TrainConfig, which the CLI reads to build its flags) imports no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_EXPORTS = {
    "ConfigError": "config",
    "TrainConfig": "config",
    "make_config": "config",
    "DataError": "data",
    "PairData": "data",
    "load_pairs": "data",
    "evaluate": "evaluate",
    "TrainResult": "loop",
    "train": "loop",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .config import ConfigError, TrainConfig, make_config
    from .data import DataError, PairData, load_pairs
    from .evaluate import evaluate
    from .loop import TrainResult, train


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
